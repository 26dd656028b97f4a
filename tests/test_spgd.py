"""sPGD and sAA: the two gradient rules against closed forms on an affine model (float64),
the top-k mask, the units, the cascade's stages and accounting. The generic properties are
in test_conformance.py; the side-by-side run with the official code is
benchmarks/bench_l0_attacks.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import SAAConfig, SPGDConfig, Status, _spgd, _units, saa, spgd
from sparsejax.attacks.engine import Classifier, Problem
from tests.test_sparse_l0 import affine_logits_fn, affine_problem


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _numpy_top_k(scores, k):
    """The k largest (NaN last, ties by position: NumPy's stable argsort of -scores)."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    ranks = np.empty(scores.size, np.int64)
    ranks[order] = np.arange(scores.size)
    return ranks < k


def _closed_form(W, b, x, label, pert, m, k, unit, projected):
    """sPGD's forward and backward on Z = W z + b (CE), in NumPy: (L, Z, M(m), δ, g_p, g_m)
    with g = Wᵀ(softmax(Z) - e_y) at δ = p ⊙ M(m); g_p = g ⊙ σ(m) (unprojected, MaskingA)
    or g ⊙ M(m) (projected, MaskingB); g_m = Σ_values(g ⊙ p) σ(m)(1 - σ(m))."""
    u, v = _units.unit_shape(x.shape, unit)
    spread = lambda a: np.repeat(a[:, None], v, axis=1).reshape(x.shape)
    top = _numpy_top_k(m, k)
    s = 1 / (1 + np.exp(-m))
    delta = pert * spread(top)
    z = W @ (x + delta).ravel() + b
    g = (W.T @ (_softmax(z) - np.eye(len(b))[label])).reshape(x.shape)
    g_p = g * spread(top if projected else s)
    g_m = (g * pert).reshape(u, v).sum(1) * s * (1 - s)
    return -np.log(_softmax(z)[label]), z, top, delta, g_p, g_m


@pytest.mark.parametrize("projected", [False, True], ids=["unprojected", "projected"])
@pytest.mark.parametrize("unit", ["pixels", "elements"])
def test_the_gradient_rules_match_the_closed_form(x64, projected, unit):
    """``_forward_backward`` against :func:`_closed_form` on an affine model (float64)."""
    W, b, x, label = affine_problem(3)  # x: [4, 4, 2]
    rng = np.random.default_rng(0)
    cfg = SPGDConfig(k=3.0, unit=unit)
    u, _ = _units.unit_shape(x.shape, unit)
    pert = rng.uniform(-0.3, 0.3, x.shape)
    m = rng.normal(size=u)
    loss, _, top, delta, want_p, want_m = _closed_form(W, b, x, label, pert, m, 3, unit, projected)
    f = Classifier(affine_logits_fn(W, b), x.shape, jnp.float64)
    p = Problem(
        x=jnp.asarray(x), label=jnp.int32(label), target=jnp.int32(-1),
        lower=jnp.zeros(x.shape), upper=jnp.ones(x.shape), key=jax.random.key(0), extras={},
    )  # fmt: skip
    value, _, got_delta, got_p, got_m, finite, got_top = _spgd._forward_backward(
        f, p, cfg, jnp.asarray(pert), jnp.asarray(m), projected
    )
    assert bool(finite)
    np.testing.assert_array_equal(np.asarray(got_top), top)
    np.testing.assert_allclose(np.asarray(got_delta), delta, atol=1e-15)
    np.testing.assert_allclose(float(value), loss, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got_p), want_p, atol=1e-12)
    np.testing.assert_allclose(np.asarray(got_m), want_m, atol=1e-12)


def _numpy_spgd(W, b, x, label, cfg, key, steps, projected):
    """The released ``SparsePGD.__call__`` loop for one example in NumPy (float64), with its
    random draws taken from the keys sparsejax uses. Returns per step (fooled, reinits, m, p,
    best_loss)."""
    u, _ = _units.unit_shape(x.shape, cfg.unit)
    ce = lambda z: -np.log(_softmax(z)[label])

    def forward_backward(pert, m):
        loss, z, _, delta, g_p, g_m = _closed_form(
            W, b, x, label, pert, m, cfg.k, cfg.unit, projected
        )
        return loss, z, delta, g_p, g_m

    key_p, key_m = jax.random.split(jax.random.fold_in(key, 0))
    pert = np.asarray(jax.random.uniform(key_p, x.shape, jnp.float64, -cfg.epsilon, cfg.epsilon))
    pert = np.clip(pert, -x, 1 - x)
    m = np.asarray(jax.random.normal(key_m, (u,), jnp.float64))
    best_loss = ce(W @ x.ravel() + b)
    _, _, _, g_p, g_m = forward_backward(pert, m)
    count, reinits, out = 0, 0, []
    for t in range(steps):
        prev_top = _numpy_top_k(m, cfg.k)
        norm = np.linalg.norm(g_m)
        m = m + (0.0 if norm < 2e-10 else cfg.beta * np.sqrt(u) / (norm + 1e-10)) * g_m
        pert = np.clip(pert + cfg.alpha * cfg.epsilon * np.sign(g_p), -cfg.epsilon, cfg.epsilon)
        pert = np.clip(pert, -x, 1 - x)
        loss, z, delta, g_p, g_m = forward_backward(pert, m)
        fooled = np.argmax(z) != label
        if loss >= best_loss:
            best_loss = loss
        if not fooled:
            unchanged = np.array_equal(_numpy_top_k(m, cfg.k), prev_top)
            if cfg.unchanged_count == "since-redraw":
                count += unchanged  # reset only by a draw (a batch of this one example and
                # another whose set never changes)
            else:
                count = count + 1 if unchanged else 0  # a batch of this example alone
            if count >= cfg.patience:
                m = np.asarray(jax.random.normal(jax.random.fold_in(key, t + 1), (u,), jnp.float64))
                count, reinits = 0, reinits + 1
        out.append((fooled, reinits, m.copy(), pert.copy(), best_loss))
    return out


@pytest.mark.parametrize("projected", [False, True], ids=["unprojected", "projected"])
def test_the_steps_match_a_numpy_port_of_the_released_loop(x64, projected):
    """40 steps from the same draws: the same m, p, best loss and reinitialisations at every
    step, under both readings of the patience count, which reinitialise differently here."""
    W, b, x, label = affine_problem(4)
    b = b.copy()
    b[label] += 1.0  # rarely fooled: most steps count toward patience
    f = Classifier(affine_logits_fn(W, b), x.shape, jnp.float64)
    key = jax.random.key(3)
    p = Problem(
        x=jnp.asarray(x), label=jnp.int32(label), target=jnp.int32(-1),
        lower=jnp.zeros(x.shape), upper=jnp.ones(x.shape), key=key, extras={},
    )  # fmt: skip
    reinits = {}
    for count in ("since-redraw", "consecutive"):
        cfg = SPGDConfig(k=3.0, beta=0.1, unchanged_count=count)
        want = _numpy_spgd(W, b, x, label, cfg, key, 40, projected)
        step = jax.jit(lambda s, cfg=cfg: _spgd.step_with_rule(f, p, cfg, s, projected)[0])
        s, _ = _spgd.init_with_rule(f, p, cfg, projected)
        for fooled, n_reinits, m, pert, best_loss in want:
            s = step(s)
            assert bool(s.fooled) == fooled
            assert int(s.reinits) == n_reinits
            np.testing.assert_allclose(np.asarray(s.m), m, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(np.asarray(s.p), pert, atol=1e-12)
            np.testing.assert_allclose(float(s.best_loss), best_loss, rtol=1e-10, atol=1e-13)
        reinits[count] = [r for _, r, *_ in want]
    assert reinits["since-redraw"] != reinits["consecutive"], reinits


def test_top_k_keeps_exactly_k_even_with_ties():
    scores = jnp.asarray([1.0, 3.0, 3.0, 3.0, 0.0, 3.0])
    for k in range(7):
        got = np.asarray(_units.top_k(scores, jnp.float32(k)))
        assert got.sum() == k
    np.testing.assert_array_equal(np.asarray(_units.top_k(scores, 2)), [0, 1, 1, 0, 0, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.uint32])
def test_top_k_is_numpys_stable_ranking(dtype):
    """The one-operand threshold search against NumPy's stable argsort,
    on draws with ties, ±0, ±inf and NaN, for whole and fractional k from 0 to U."""
    rng = np.random.default_rng(0)
    top_k = jax.jit(_units.top_k)
    for _ in range(20):
        if dtype == np.float32:
            scores = rng.choice([-2.0, -0.0, 0.0, 1.5, 3.0, np.inf, -np.inf, np.nan], 40)
            scores = np.where(rng.random(40) < 0.5, rng.normal(size=40), scores)
        else:
            scores = rng.choice([0, 1, 7, 2**31, 2**32 - 1], 40)
            scores = np.where(rng.random(40) < 0.5, rng.integers(0, 2**32, 40), scores)
        scores = scores.astype(dtype)
        for k in (0.0, 0.5, 1.0, 2.5, 7.0, 39.0, 40.0):
            got = np.asarray(top_k(jnp.asarray(scores), jnp.float32(k)))
            np.testing.assert_array_equal(got, _numpy_top_k(scores, k), err_msg=f"k={k}")


@pytest.fixture(scope="module")
def rgb_problem(digits_model, digits_test):
    """The digits LeNet on 3 identical channels (a model whose pixels have 3 elements)."""
    base = digits_model.logits_fn
    fn = jax.tree_util.Partial(lambda b, z: b(jnp.mean(z, axis=-1, keepdims=True)), base)
    x = jnp.repeat(jnp.asarray(digits_test.x[:6]), 3, axis=-1)
    return fn, x, jnp.asarray(digits_test.y[:6])


def test_k_counts_pixels_or_elements(rgb_problem):
    fn, x, y = rgb_problem
    key = jax.random.key(1)
    run = jax.jit(spgd, static_argnums=3)
    by_pixel = run(fn, x, y, SPGDConfig(k=2.0, steps=30), key=key)
    by_element = run(fn, x, y, SPGDConfig(k=2.0, steps=30, unit="elements"), key=key)
    assert int(by_pixel.l0_pixels.max()) <= 2 and int(by_pixel.l0_elements.max()) <= 6
    assert int(by_pixel.l0_elements.max()) > 2  # a pixel moves its 3 channels together
    assert int(by_element.l0_elements.max()) <= 2


def test_the_cascade_runs_each_stage_on_the_survivors(digits_model, digits_test):
    """At k = 1 pixel most digits survive both sPGD stages; those reach Sparse-RS and spend
    exactly the stated budget; an example fooled in stage 0 spends nothing more."""
    x, y = jnp.asarray(digits_test.x[:8]), jnp.asarray(digits_test.y[:8])
    cfg = SAAConfig(k=1.0, spgd_steps=12, rs_queries=40)
    r = jax.jit(saa)(digits_model.logits_fn, x, y, cfg, key=jax.random.key(0))
    stage, status = np.asarray(r.stats.stage), np.asarray(r.status)
    attacked = status != Status.ALREADY_MISCLASSIFIED
    survived = attacked & (stage == 2)
    assert survived.any()
    for i in np.flatnonzero(survived & (status != Status.SUCCESS)):
        # 2 clean + (2 + 12) per sPGD stage forwards, 40 queries; (1 + 12) backwards each.
        assert int(r.forwards[i]) == 2 + 2 * (2 + 12) + 40
        assert int(r.backwards[i]) == 2 * (1 + 12)
        assert int(r.stats.rs_queries[i]) == 40
        assert int(r.iterations[i]) == cfg.spgd_steps * 2 + 2 + 40 - 1
    for i in np.flatnonzero(attacked & (stage == 0)):
        assert status[i] == Status.SUCCESS and int(r.stats.rs_queries[i]) == 0
        assert int(r.backwards[i]) == 1 + int(r.stats.spgd_steps[i])
