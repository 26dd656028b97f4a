"""JSMA: every pair chosen against a NumPy port of CleverHans' ``jsma_symbolic`` on small
tanh networks with hand-derived Jacobians (float64), the blocked pair search against the
full d x d matrix (ties included), θ < 0, the γ cap and the random target. The generic
properties are in test_conformance.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import JSMAConfig, Status, jsma
from sparsejax.attacks._jsma import ALGORITHM, _target, best_pair
from sparsejax.attacks.engine import Classifier, Problem
from sparsejax.errors import SparsejaxError
from tests.reference import jsma_np as ref

SHAPE = (4, 5, 2)  # d = 40 features
K = 4


def _mlp_apply(W1, b1, W2, b2, x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ W1.T + b1[None]) @ W2.T + b2[None]


def _mlp(seed, dtype=np.float64):
    """A random 40-16-4 tanh network and an input in [0, 1] with some features at 1 (out of
    the increasing search domain) and some at 0."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(SHAPE))
    W1, b1 = rng.normal(size=(16, d)) / 3, rng.normal(size=16) / 3
    W2, b2 = rng.normal(size=(K, 16)), rng.normal(size=K)
    x = rng.uniform(size=d)
    x[rng.permutation(d)[:6]] = 1.0
    x[rng.permutation(d)[:6]] = 0.0
    weights = [a.astype(dtype) for a in (W1, b1, W2, b2)]
    fn = jax.tree_util.Partial(_mlp_apply, *map(jnp.asarray, weights))
    return weights, fn, x.reshape(SHAPE).astype(dtype)


def _problem(x, label, target, targeted):
    return Problem(
        x=jnp.asarray(x), label=jnp.int32(label), target=jnp.int32(target),
        lower=jnp.zeros(x.shape, x.dtype), upper=jnp.ones(x.shape, x.dtype),
        key=jax.random.key(0), extras={}, targeted=targeted,
    )  # fmt: skip


@jax.jit  # one trace per Problem structure: weights and config are arguments
def _pairs(fn, p, cfg):
    """The final state and the pair chosen at each of the cap's 10 steps (-1 once done)."""
    f = Classifier(fn, SHAPE, jnp.float64)
    s, _ = ALGORITHM.init(f, p, cfg)

    def step(s, _):
        done = ALGORITHM.done(f, p, cfg, s)
        pair = jnp.where(done, -1, s.pair)
        return jax.lax.cond(done, lambda s: s, lambda s: ALGORITHM.step(f, p, cfg, s)[0], s), pair

    return jax.lax.scan(step, s, None, length=10)  # the cap: ⌊40·0.5/2⌋ = 10 pairs


@pytest.mark.parametrize("theta", [1.0, 0.4, -0.7], ids=["theta1", "theta0.4", "theta-0.7"])
@pytest.mark.parametrize("targeted", [True, False], ids=["targeted", "sparsefool-untargeted"])
def test_every_pair_matches_the_numpy_port(x64, theta, targeted):
    cfg = JSMAConfig(theta=theta, gamma=0.5)
    changed = stopped = 0
    for seed in range(8):
        weights, fn, x = _mlp(seed)
        logits, jacobian = ref.mlp(*weights)
        label = int(np.argmax(logits(x.ravel())))
        target = (label + 1 + seed % (K - 1)) % K
        p = _problem(x, label, target if targeted else -1, targeted)
        # Untargeted (SparseFool's variant), the attack draws the target: the port gets it.
        cls = target if targeted else int(_target(p, K))
        want_x, want_pairs = ref.jsma_np(
            logits, jacobian, x, cls, theta=theta, gamma=0.5,
            label=None if targeted else label,
        )  # fmt: skip
        s, pairs = _pairs(fn, p, cfg)
        got = [tuple(sorted(map(int, q))) for q in np.asarray(pairs) if q[0] >= 0]
        want = [tuple(sorted(q)) for q in want_pairs]
        if (0, 0) in want:  # no admissible pair: the reference moves feature 0, we stop
            want = want[: want.index((0, 0))]
            assert bool(s.found) is False and got == want, seed
            stopped += 1
            continue
        assert got == want, seed
        np.testing.assert_allclose(np.asarray(s.x).ravel(), want_x, atol=1e-12)
        changed += len(got)
    print(f"[jsma parity] pairs compared {changed}, stopped at no admissible pair {stopped}")
    assert changed >= 5 and stopped <= 6  # most problems are compared to their end


def test_the_blocked_search_is_the_full_matrix_argmax():
    rng = np.random.default_rng(0)
    for d, increase in [(300, True), (300, False), (128, True), (5, True)]:
        a, b = rng.normal(size=d), rng.normal(size=d)
        a[7 % d] = a[3 % d]  # ties: the same pair score in two places
        b[7 % d] = b[3 % d]
        domain = rng.uniform(size=d) < 0.8
        sa, sb = a[:, None] + a[None], b[:, None] + b[None]
        ok = domain[:, None] & domain[None] & ~np.eye(d, dtype=bool)
        ok &= ((sa > 0) & (sb < 0)) if increase else ((sa < 0) & (sb > 0))
        score = np.where(ok, -sa * sb, -np.inf)
        want = np.unravel_index(np.argmax(score), score.shape)  # first maximum, row-major
        pair, found = best_pair(
            jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), jnp.asarray(domain),
            jnp.asarray(increase),
        )  # fmt: skip
        assert bool(found) == bool(np.isfinite(score.max()))
        if found:
            assert tuple(map(int, pair)) == tuple(map(int, want)), d
    # nothing admissible: all gradients zero
    pair, found = best_pair(jnp.zeros(10), jnp.zeros(10), jnp.ones(10, bool), True)
    assert not bool(found)


_attack = jax.jit(jsma)  # one compilation for the tests below (same shapes)


def test_the_attack_caps_changes_at_gamma_and_draws_its_target_from_the_key():
    _, fn, _ = _mlp(0, np.float32)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(size=(6, *SHAPE)), jnp.float32)
    y = jnp.argmax(fn(x), axis=1)
    attack = _attack
    for gamma in (0.1, 0.3):
        r = attack(fn, x, y, JSMAConfig(gamma=gamma), key=jax.random.key(3))
        cap = int(np.floor(40 * gamma / 2))
        assert int(r.iterations.max()) <= cap
        assert int(r.l0_elements.max()) <= 2 * cap
        fooled = np.asarray(r.success)
        failed = ~fooled & (np.asarray(r.status) == Status.MAX_ITER)
        np.testing.assert_array_equal(np.asarray(r.iterations)[failed], cap)
    targets = np.asarray(r.stats.target)
    assert np.all(targets != np.asarray(y)) and np.all((0 <= targets) & (targets < K))
    again = attack(fn, x, y, JSMAConfig(gamma=0.3), key=jax.random.key(3))
    np.testing.assert_array_equal(again.stats.target, targets)
    other = attack(fn, x, y, JSMAConfig(gamma=0.3), key=jax.random.key(4))
    assert np.any(np.asarray(other.stats.target) != targets)


def test_a_negative_theta_only_decreases_features():
    _, fn, _ = _mlp(2, np.float32)
    x = jnp.asarray(np.random.default_rng(2).uniform(size=(6, *SHAPE)), jnp.float32)
    y = jnp.argmax(fn(x), axis=1)
    r = _attack(fn, x, y, JSMAConfig(theta=-1.0, gamma=0.5), key=jax.random.key(0))
    assert bool(jnp.all(r.x_adv <= x))
    assert int(r.l0_elements.sum()) > 0


def test_bad_settings_fail_before_compilation():
    _, fn, x = _mlp(0, np.float32)
    x = jnp.asarray(x)[None]
    with pytest.raises(SparsejaxError, match="theta must be nonzero"):
        jsma(fn, x, jnp.asarray([0]), JSMAConfig(theta=0.0), key=jax.random.key(0))
    with pytest.raises(SparsejaxError, match="gamma"):
        jsma(fn, x, jnp.asarray([0]), JSMAConfig(gamma=1.5), key=jax.random.key(0))
