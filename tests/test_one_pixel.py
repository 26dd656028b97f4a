"""The one-pixel attack: DE/rand/1's donors, greedy selection, the paper's initial
distribution, a planted one-pixel and two-pixel weakness found, SparseFool's k + 1 protocol
and its query accounting. The generic properties are in test_conformance.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.attacks import OnePixelConfig, one_pixel
from sparsejax.attacks._one_pixel import ALGORITHM, _random_population, donors
from sparsejax.attacks.engine import Classifier, Problem

SHAPE = (6, 6, 3)


def _planted(positions, x):
    """Class 1 when every planted position has its first channel above 0.9, else class 0
    (a smooth score, so that the probabilities guide the search)."""
    score = sum(x[:, r, c, 0] - 0.9 for r, c in positions) / len(positions)
    hit = jnp.all(jnp.stack([x[:, r, c, 0] > 0.9 for r, c in positions]), axis=0)
    return jnp.stack([0.1 - score, jnp.where(hit, 1.0, 0.0) + score], axis=1)


def test_donors_are_distinct_and_never_the_member_itself():
    r = np.asarray(donors(jax.random.key(0), 50))
    assert r.shape == (50, 3)
    assert all(len(set(row)) == 3 for row in r)
    assert not np.any(r == np.arange(50)[:, None])
    draws = np.concatenate([np.asarray(donors(jax.random.key(k), 400)).ravel() for k in range(10)])
    counts = np.bincount(draws, minlength=400)  # 30 per member on average, sd about 5.5
    assert counts.min() > 8 and counts.max() < 60


def test_the_initial_population_follows_the_paper():
    p = _problem(jnp.zeros(SHAPE), 0)
    cfg = OnePixelConfig(population=4000)
    pop = np.asarray(_random_population(jax.random.key(0), p, cfg))  # [P, 1, 5]
    assert pop.shape == (4000, 1, 5)
    assert 0 <= pop[..., :2].min() and pop[..., 0].max() < 6 and pop[..., 1].max() < 6
    np.testing.assert_allclose(pop[..., 2:].mean(), 128 / 255, atol=0.02)
    np.testing.assert_allclose(pop[..., 2:].std(), 127 / 255, atol=0.02)


def _problem(x, label):
    return Problem(
        x=jnp.asarray(x), label=jnp.int32(label), target=jnp.int32(-1),
        lower=jnp.zeros(SHAPE), upper=jnp.ones(SHAPE), key=jax.random.key(3), extras={},
    )  # fmt: skip


def test_selection_is_greedy():
    fn = jax.tree_util.Partial(_planted, ((2, 3),))
    cfg = OnePixelConfig(population=16, generations=5)
    f = Classifier(fn, SHAPE)
    p = _problem(jnp.full(SHAPE, 0.2), 0)
    s, passes = ALGORITHM.init(f, p, cfg)
    assert passes.forwards == 16
    step = jax.jit(lambda s: ALGORITHM.step(f, p, cfg, s)[0])
    for _ in range(5):
        nxt = step(s)
        assert bool(jnp.all(nxt.fitness <= s.fitness))  # a member is only ever replaced
        kept = np.asarray(nxt.fitness == s.fitness)  # by a better child
        np.testing.assert_array_equal(
            np.asarray(nxt.population)[kept], np.asarray(s.population)[kept]
        )
        s = nxt


_attack = jax.jit(one_pixel)


def test_a_planted_pixel_is_found_and_k_grows_when_one_is_not_enough():
    x = jnp.full((3, *SHAPE), 0.2)
    y = jnp.zeros((3,), jnp.int32)
    one = jax.tree_util.Partial(_planted, ((2, 3),))
    cfg = OnePixelConfig(pixels=1, max_pixels=3, population=60, generations=30)
    r = _attack(one, x, y, cfg, key=jax.random.key(0))
    assert bool(r.success.all())
    np.testing.assert_array_equal(r.l0_pixels, 1)
    assert bool(jnp.all(r.x_adv[:, 2, 3, 0] > 0.9))
    np.testing.assert_array_equal(r.stats.pixels, 1)
    # Targeted: the fitness is the target's probability (raised, not lowered).
    t = jnp.ones((3,), jnp.int32)
    rt = _attack(one, x, y, cfg, targets=t, key=jax.random.key(0))
    assert bool(rt.success.all()) and bool(jnp.all(rt.adv_pred == 1))
    assert bool(jnp.all(rt.stats.fitness > 0.5))

    two = jax.tree_util.Partial(_planted, ((1, 1), (4, 4)))
    r = _attack(two, x, y, cfg, key=jax.random.key(0))
    assert bool(r.success.all())
    assert set(np.asarray(r.stats.pixels)) <= {2, 3}  # one pixel cannot do it
    np.testing.assert_array_equal(np.asarray(r.l0_pixels) <= np.asarray(r.stats.pixels), True)
    # Queries: the clean pass, P per generation, P per population drawn (one per round),
    # the re-verification.
    rounds = np.asarray(r.stats.pixels) - 1 + 1
    want = 1 + 60 * np.asarray(r.iterations) + 60 * rounds + 1
    np.testing.assert_array_equal(r.forwards, want)
    np.testing.assert_array_equal(r.backwards, 0)
