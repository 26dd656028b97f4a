"""Sparse-RS: the α schedule against the reference's piecewise constants, the candidate
(exactly k units, values at the box corners, a new colour when one unit moves), and the
query accounting. The generic properties are in test_conformance.py; the side-by-side run
with the official code is benchmarks/bench_l0_attacks.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import SparseRSConfig, Status, _sparse_rs, _units, sparse_rs
from sparsejax.attacks.engine import Problem


def _p_selection(it, n_queries, p_init):
    """The reference's schedule for norm L0 with resc_schedule=True, written out."""
    it = int(it / n_queries * 10000)
    for hi, div in ((0, 1), (50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10),
                    (6000, 12), (8000, 15)):  # fmt: skip
        if it <= hi:
            return p_init / div
    return p_init / 20


def _problem(x, targeted=False, lower=None, upper=None):
    return Problem(
        x=jnp.asarray(x), label=jnp.int32(0), target=jnp.int32(1 if targeted else -1),
        lower=jnp.zeros(x.shape) if lower is None else lower,
        upper=jnp.ones(x.shape) if upper is None else upper,
        key=jax.random.key(0), extras={}, targeted=targeted,
    )  # fmt: skip


@pytest.mark.parametrize("targeted", [False, True])
def test_the_schedule_is_the_references(targeted):
    c = SparseRSConfig(queries=1000, queries_targeted=3000)
    p = _problem(np.zeros((2, 2, 1)), targeted)
    n, p_init = (3000, 0.1) if targeted else (1000, 0.3)
    alpha = jax.jit(lambda i: _sparse_rs._alpha(c, p, i))
    for i in range(1, n):
        np.testing.assert_allclose(float(alpha(i)), _p_selection(i, n, p_init), rtol=1e-6)


def test_a_candidate_moves_n_units_to_corners_and_keeps_exactly_k():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 0.9, (6, 6, 3)).astype(np.float32)
    lower, upper = jnp.full(x.shape, 0.05), jnp.full(x.shape, 0.95)
    p = _problem(x, lower=lower, upper=upper)
    c = SparseRSConfig(k=5.0)
    f = _ConstantQueries()
    s, _ = _sparse_rs.ALGORITHM.init(f, p, c)
    for _ in range(15):
        chosen = np.asarray(s.chosen)
        assert chosen.sum() == 5
        best_u = np.asarray(_units.as_units(s.best, "pixels"))
        x_u = x.reshape(36, 3)
        np.testing.assert_array_equal(best_u[~chosen], x_u[~chosen])  # the rest is clean
        assert np.all(np.isin(best_u[chosen], np.float32([0.05, 0.95])))  # corners only
        s, passes = _sparse_rs.ALGORITHM.step(f, p, c, s)
        assert passes == (1, 0)
        # n = max(⌊0.3 · 5⌋, 1) = 1 unit left the set and 1 entered it (every step accepted).
        assert np.sum(np.asarray(s.chosen) != chosen) == 2


@pytest.mark.parametrize("u", [6, 784, 5000])  # 5000 > 4096: the key-value sort
def test_random_ranks_order_by_flag_then_the_draws_then_position(u):
    """A permutation of the units: flagged ones first, then by the draw's top bits (all 31
    beyond 4096 units), ties by position; against NumPy's lexsort."""
    rng = np.random.default_rng(u)
    for _ in range(3):
        draws = rng.integers(0, 2**32, u, dtype=np.uint32)
        draws[: u // 3] = draws[u // 3 : 2 * (u // 3)]  # some equal draws: ties
        first = rng.random(u) < 0.2
        got = np.asarray(jax.jit(_units.random_ranks)(jnp.asarray(draws), jnp.asarray(first)))
        low = (u - 1).bit_length()
        top = draws >> (low + 1) if low <= 12 else draws >> 1
        order = np.lexsort((np.arange(u), -top.astype(np.int64), ~first))
        want = np.empty(u, np.int64)
        want[order] = np.arange(u)
        np.testing.assert_array_equal(got, want)


def test_random_ranks_are_uniform():
    """Which of 6 units comes first (and which of the flagged two): uniform over 6000 draws
    (each count within 5 standard deviations of 1000, resp. 3000)."""
    keys = jax.random.split(jax.random.key(0), 6000)
    draws = jax.vmap(lambda k: jax.random.bits(k, (6,), jnp.uint32))(keys)
    first = jnp.asarray([False, True, False, False, True, False])
    plain = jax.vmap(_units.random_ranks)(draws)
    flagged = jax.vmap(lambda d: _units.random_ranks(d, first))(draws)
    np.testing.assert_allclose(np.sum(np.asarray(plain) == 0, axis=0), 1000, atol=5 * 29)
    leads = np.sum(np.asarray(flagged) == 0, axis=0)
    assert leads[~np.asarray(first)].sum() == 0
    np.testing.assert_allclose(leads[np.asarray(first)], 3000, atol=5 * 39)


class _ConstantQueries:
    """A stand-in model (run eagerly) whose margin falls by 1 on every query but stays
    positive: every candidate is accepted and the search goes on."""

    def __init__(self):
        self.calls = 0

    def logits(self, z):
        self.calls += 1
        return jnp.asarray([100.0 - self.calls, 0.0, -1.0]) + 0 * jnp.sum(z)


def test_one_moved_unit_gets_a_colour_other_than_its_clean_one():
    """With n = 1 the new corner differs from the clean value where that value is a corner."""
    x = np.zeros((4, 4, 3), np.float32)  # every pixel at the lower corner already
    p = _problem(x)
    c = SparseRSConfig(k=1.0)
    for seed in range(20):
        bits = jax.random.bits(jax.random.key(seed), (16,), jnp.uint32)
        values = _sparse_rs._corners(bits, p, c, avoid=jnp.asarray(x.reshape(16, 3)))
        assert np.all(np.any(np.asarray(values) != 0.0, axis=1))


def test_queries_are_counted_and_the_budget_stops_it(digits_model, digits_test):
    x, y = jnp.asarray(digits_test.x[:8]), jnp.asarray(digits_test.y[:8])
    cfg = SparseRSConfig(k=1.0, queries=50)
    r = jax.jit(sparse_rs)(digits_model.logits_fn, x, y, cfg, key=jax.random.key(0))
    attacked = np.asarray(r.status) != Status.ALREADY_MISCLASSIFIED
    np.testing.assert_array_equal(
        np.asarray(r.forwards)[attacked], np.asarray(r.stats.queries)[attacked] + 2
    )
    np.testing.assert_array_equal(r.backwards, 0)
    assert int(r.stats.queries.max()) <= 50
    failed = attacked & ~np.asarray(r.success)
    assert failed.any()  # one pixel rarely fools the digits LeNet in 50 queries
    np.testing.assert_array_equal(np.asarray(r.stats.queries)[failed], 50)
    assert int(r.l0_pixels.max()) <= 1
    again = jax.jit(sparse_rs)(digits_model.logits_fn, x, y, cfg, key=jax.random.key(0))
    np.testing.assert_array_equal(again.x_adv, r.x_adv)
    other = jax.jit(sparse_rs)(digits_model.logits_fn, x, y, cfg, key=jax.random.key(1))
    assert not np.array_equal(np.asarray(other.x_adv), np.asarray(r.x_adv))
