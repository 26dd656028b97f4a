"""SAPF: steps against the NumPy reference, the properties every attack owes its users (on a
small real trained model), the extensions, the host-side weights, and the real ResNet-20."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax
from sparsejax import metrics
from sparsejax.attacks import SAPFConfig, SAPFGSConfig, Status, sapf, sapf_gs, sapf_vi
from sparsejax.attacks import _sapf as S
from sparsejax.attacks import _sapf_weights as W
from sparsejax.attacks.engine import Classifier, Problem
from sparsejax.errors import SparsejaxError
from tests.helpers import XLA_DEFAULT
from tests.reference import sapf_np as R

N = 24
K = 10.0
CFG = SAPFConfig(k=K, lambda1=1.0, delta_steps=50, g_steps=50, finetune_steps=50)
attack = jax.jit(sapf)


# --------------------------------------------------------------------------- reference steps


def _affine(rng, shape, num_classes=10):
    n = int(np.prod(shape))
    a = rng.normal(0, 0.3, size=(num_classes, n))
    b = rng.normal(0, 0.1, size=num_classes)
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    fn = jax.tree_util.Partial(
        lambda a, b, z: jnp.dot(z.reshape(z.shape[0], -1), a.T, precision="highest") + b[None],
        f32(a),
        f32(b),
    )
    return fn, a, b


def _problem(x, t, lo, hi, w=None):
    extras = {} if w is None else {"weights": jnp.asarray(w)}
    return Problem(
        x=jnp.asarray(x), label=jnp.int32(0), target=jnp.int32(t), lower=jnp.asarray(lo),
        upper=jnp.asarray(hi), key=jax.random.key(0), extras=extras, targeted=True,
    )  # fmt: skip


@pytest.mark.parametrize("loss", ["cw", "ce"])
@pytest.mark.parametrize("implicit", [False, True])
def test_delta_and_g_steps_match_reference_on_an_affine_model(rng, loss, implicit):
    """Eq. (7) and the smooth part of Eq. (14) (with Eq. 17's weights), through the clip."""
    shape = (4, 4, 3)
    fn, a, b = _affine(rng, shape)
    x = rng.uniform(0.05, 0.95, shape).astype(np.float32)
    lo, hi = np.zeros(shape, np.float32), np.ones(shape, np.float32)
    delta = rng.normal(0, 0.4, shape).astype(np.float32)  # some x + δ⊙G leave [0, 1]
    g = rng.uniform(-0.2, 1.2, shape).astype(np.float32)
    w = rng.uniform(0, 1, shape).astype(np.float32)
    t, lam, kappa, lr = 3, 2.5, 0.5, 0.1
    p = _problem(x, t, lo, hi, w=w)
    f = Classifier(fn, shape)
    cfg = SAPFConfig(confidence=kappa, loss=loss, implicit=implicit)
    d_new, _ = S.delta_step(f, p, cfg, jnp.asarray(delta), jnp.asarray(g), lr, lam)
    flat = lambda v: np.asarray(v, np.float64).ravel()
    ref = R.delta_step_np(
        flat(x), flat(lo), flat(hi), a, b, t, flat(delta), flat(g), flat(w), lr, lam, kappa, loss,
        implicit,
    )  # fmt: skip
    np.testing.assert_allclose(flat(d_new), ref, rtol=1e-5, atol=1e-5)
    lin, curv = S.g_smooth_gradient(f, p, cfg, jnp.asarray(delta), jnp.asarray(g), lam)
    ref_lin, ref_curv = R.g_smooth_np(
        flat(x), flat(lo), flat(hi), a, b, t, flat(delta), flat(g), flat(w), lam, kappa, loss
    )
    np.testing.assert_allclose(flat(lin), ref_lin, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flat(curv), ref_curv, rtol=1e-5, atol=1e-6)
    assert np.any(ref_lin != 0)  # the loss is active, the test compares something


def test_group_gradient_matches_reference_and_guards_empty_groups(rng):
    g = rng.normal(size=(6, 6, 3)).astype(np.float32)
    seg = rng.integers(0, 5, size=(6, 6)).astype(np.int32)
    g[seg == 2] = 0.0  # a group of norm 0: subgradient 0, not NaN
    out = np.asarray(S.group_gradient(jnp.asarray(g), jnp.asarray(seg), 8))
    np.testing.assert_allclose(out, R.group_grad_np(g.astype(np.float64), seg), atol=1e-6)
    assert np.all(np.isfinite(out)) and np.all(out[seg == 2] == 0)


def test_binarize(rng):
    g = rng.normal(size=(5, 5, 3)).astype(np.float32)
    g.ravel()[[3, 9, 40]] = 2.0  # ties: lowest index first
    for k in (1, 3, 7, 75, 100):
        got = np.asarray(S.binarize(jnp.asarray(g), k, "exact")).ravel()
        np.testing.assert_array_equal(got, R.topk_np(g.ravel(), k))
        assert got.sum() == min(k, g.size)
    np.testing.assert_array_equal(S.binarize(jnp.asarray(g), 3, "soft"), g > 0.5)


# --------------------------------------------------------------------------- the attack
# (the properties every attack owes are in tests/test_conformance.py)


@pytest.fixture(scope="module")
def batch(digits_model, digits_test):
    x, y = jnp.asarray(digits_test.x[:N]), jnp.asarray(digits_test.y[:N])
    return digits_model, x, y, (y + 3) % 10


@pytest.fixture(scope="module")
def result(batch):
    model, x, y, t = batch
    return attack(model.logits_fn, x, y, CFG, targets=t)


def test_asr_cardinality_and_stats(batch, result):
    r = result
    ok = np.asarray(r.success)
    assert ok.mean() >= 0.8  # targeted, 10 of 64 elements, 150 passes per λ1
    assert np.all(np.asarray(r.l0_elements) <= K)  # exact cardinality (default)
    # In the budget schedule the ADMM meets 1ᵀG = k closely before binarisation.
    assert np.median(np.abs(np.asarray(r.stats.g_sum) - K)) < 0.5
    assert np.all(np.asarray(r.iterations) >= 1)
    assert np.all(np.asarray(r.iterations) <= CFG.max_iter)
    # Per atom: 150 gradient passes and a success check; plus the clean pass and the
    # re-verification.
    atoms = np.asarray(r.iterations)
    np.testing.assert_array_equal(r.backwards, atoms * 150)
    np.testing.assert_array_equal(r.forwards, 2 + atoms * 151)


def test_soft_cardinality_reports_selected_positions(batch, result):
    model, x, y, t = batch
    r = attack(model.logits_fn, x, y, dataclasses.replace(CFG, cardinality="soft"), targets=t)
    moved = np.asarray(r.l0_elements)
    np.testing.assert_array_equal(
        moved[np.asarray(r.success)], np.asarray(r.stats.selected)[np.asarray(r.success)]
    )


def test_a_target_equal_to_the_label_is_not_attacked(batch):
    model, x, y, t = batch
    r = attack(model.logits_fn, x, y, CFG, targets=y)
    np.testing.assert_array_equal(r.x_adv, x)
    clean = np.asarray(r.clean_pred) == np.asarray(y)
    assert set(np.asarray(r.status)[clean]) == {Status.SKIPPED}
    assert not bool(r.success.any())


def test_a_diverging_model_is_nonfinite_and_contained(batch):
    """A model whose gradients blow δ and G up to inf/NaN: NONFINITE, finite, x unchanged."""
    _, x, y, t = batch
    huge = jax.tree_util.Partial(
        lambda c, z: (
            c
            * jnp.sum(z.reshape(z.shape[0], -1) ** 3, axis=1)[:, None]
            * jnp.arange(-5.0, 5.0)[None]
        ),
        jnp.float32(1e36),
    )
    r = attack(huge, x, jnp.full_like(y, 9), CFG, targets=jnp.full_like(y, 0))
    assert set(np.unique(r.status)) == {Status.NONFINITE}
    for leaf in jax.tree.leaves(r):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert bool(jnp.all(jnp.isfinite(leaf)))
    np.testing.assert_array_equal(r.x_adv, x)


def test_a_k_sweep_shares_one_queue_and_matches_separate_runs(batch):
    model, x, y, t = batch
    n = 8
    xs, ys, ts = x[:n], y[:n], t[:n]
    ks = [4.0, 8.0, 16.0]
    swept = jax.jit(sparsejax.sweep, static_argnums=0)(
        sapf, model.logits_fn, xs, ys, CFG, values={"k": ks}, targets=ts
    )
    assert swept.x_adv.shape == (3, n, 8, 8, 1)
    for j, k in enumerate(ks):
        assert np.all(np.asarray(swept.l0_elements[j]) <= k)
        single = attack(model.logits_fn, xs, ys, dataclasses.replace(CFG, k=k), targets=ts)
        np.testing.assert_array_equal(swept.iterations[j], single.iterations)
        np.testing.assert_array_equal(swept.status[j], single.status)


def test_search_rules(batch):
    """Paper: stop at the first success (so λ1 only grows ×10 from its start). Code: keep
    bisecting after a success and return the last success, which is never a larger λ1."""
    model, x, y, t = batch
    paper = attack(model.logits_fn, x, y, dataclasses.replace(CFG, lambda1=0.1), targets=t)
    code = attack(
        model.logits_fn, x, y, dataclasses.replace(CFG, lambda1=0.1, search="code"), targets=t
    )
    ok_p, ok_c = np.asarray(paper.success), np.asarray(code.success)
    lam_p, lam_c = np.asarray(paper.stats.lambda1), np.asarray(code.stats.lambda1)
    np.testing.assert_allclose(
        lam_p[ok_p], 0.1 * 10.0 ** (np.asarray(paper.iterations)[ok_p] - 1), rtol=1e-5
    )
    assert np.all(ok_c[ok_p])  # the code's rule keeps searching from the same first success
    assert np.all(lam_c[ok_p] <= lam_p[ok_p] * (1 + 1e-6))
    assert np.all(np.asarray(code.iterations)[ok_p] >= np.asarray(paper.iterations)[ok_p])
    assert np.asarray(code.iterations).max() == CFG.max_iter


def test_visual_imperceptibility_weights_move_the_perturbation(batch):
    """SAPF-VI (Eq. 17): a heavy weight on the left half moves ℓ2 energy to the right half."""
    model, x, y, t = batch
    w = jnp.ones_like(x).at[:, :, 4:].set(0.05)
    cfg = S.SAPFVIConfig(**{f.name: getattr(CFG, f.name) for f in dataclasses.fields(CFG)})
    r0 = attack(model.logits_fn, x, y, CFG, targets=t)
    r1 = jax.jit(sapf_vi)(model.logits_fn, x, y, cfg, targets=t, weights=w)
    ok = np.asarray(r0.success & r1.success)

    def left_share(r):
        e = (np.asarray(r.x_adv) - np.asarray(x)) ** 2
        return e[:, :, :4].sum(axis=(1, 2, 3)) / np.maximum(e.sum(axis=(1, 2, 3)), 1e-12)

    assert ok.sum() >= N // 2
    assert left_share(r1)[ok].mean() < 0.5 * left_share(r0)[ok].mean()


def test_group_sparsity_concentrates_the_perturbation(batch):
    """SAPF-GS (Eq. 16): with λ2 > 0 the same k elements fall in fewer superpixels."""
    model, x, y, t = batch
    seg = jnp.asarray(W.slic_segments(np.asarray(x), n_segments=16))
    fields = {f.name: getattr(CFG, f.name) for f in dataclasses.fields(CFG)}
    cfg = SAPFGSConfig(**fields, n_segments=16, max_segments=32)
    touched = []
    for lam2 in (0.0, 5.0):
        r = jax.jit(sapf_gs)(
            model.logits_fn, x, y, dataclasses.replace(cfg, lambda2=lam2), targets=t,
            segments=seg,
        )  # fmt: skip
        moved = np.asarray(r.x_adv != x).any(-1)
        touched.append(
            np.array([len(np.unique(np.asarray(seg)[i][moved[i]])) for i in range(N)], float)
        )
        ok = np.asarray(r.success)
        assert ok.mean() >= 0.6
    assert touched[1].mean() < 0.85 * touched[0].mean()
    # Without segments, SAPF-GS computes SLIC itself (never plain SAPF).
    auto = jax.jit(sapf_gs)(model.logits_fn, x, y, cfg, targets=t)
    given = jax.jit(sapf_gs)(model.logits_fn, x, y, cfg, targets=t, segments=seg)
    chex.assert_trees_all_equal(auto, given)


def test_input_validation(batch):
    model, x, y, t = batch
    for bad, match in [
        (dict(k=0.0), "k must be >= 1"),
        (dict(k=2.5), "whole number"),
        (dict(lambda1=0.0), "lambda1 must be > 0"),
        (dict(lambda1=200.0), "lambda1 must lie in"),
        (dict(g_steps=0), "g_steps must lie in"),
        (dict(rho_growth=0.9), "rho_growth must be >= 1"),
        (dict(confidence=float("nan")), "confidence must be finite"),
    ]:
        with pytest.raises(SparsejaxError, match=match):
            dataclasses.replace(CFG, **bad).validate()
    for bad, match in [
        (dict(loss="l2"), "loss must be one of"),
        (dict(cardinality="hard"), "cardinality must be one of"),
    ]:
        with pytest.raises(SparsejaxError, match=match):
            dataclasses.replace(CFG, **bad)
    with pytest.raises(SparsejaxError, match="targeted attack"):
        sapf(model.logits_fn, x, y, CFG)
    with pytest.raises(SparsejaxError, match="unexpected keyword argument 'segments'"):
        sapf(model.logits_fn, x, y, CFG, targets=t, segments=jnp.zeros((N, 8, 8), jnp.int32))
    gs = SAPFGSConfig(k=K, n_segments=16, max_segments=32)
    with pytest.raises(SparsejaxError, match="segments must be int"):
        sapf_gs(model.logits_fn, x, y, gs, targets=t, segments=jnp.zeros((N, 8), jnp.int32))
    with pytest.raises(SparsejaxError, match="segment ids must lie"):
        sapf_gs(model.logits_fn, x, y, gs, targets=t, segments=jnp.full((N, 8, 8), 300))
    with pytest.raises(SparsejaxError, match="weights must"):
        sapf_vi(model.logits_fn, x, y, S.SAPFVIConfig(k=K), targets=t, weights=2 * jnp.ones_like(x))
    with pytest.raises(SparsejaxError, match="takes a SAPFGSConfig"):
        sapf_gs(model.logits_fn, x, y, CFG, targets=t)


# --------------------------------------------------------------------------- host-side weights


def test_slic_segments_start_at_zero_and_are_consecutive(digits_test):
    rng = np.random.default_rng(1)
    rgb = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
    for x, n_seg in ((rgb, 150), (np.asarray(digits_test.x[:3]), 16)):
        seg = W.slic_segments(x, n_segments=n_seg)
        assert seg.shape == x.shape[:3] and seg.dtype == np.int32
        for s in seg:
            ids = np.unique(s)
            np.testing.assert_array_equal(ids, np.arange(len(ids)))  # 0..m-1
            assert 2 <= len(ids) <= 2 * n_seg
    one = W.slic_segments(rgb[0])
    np.testing.assert_array_equal(one, W.slic_segments(rgb)[0])


def _local_stats_loop(img, size):
    h, w, c = img.shape
    r = size // 2
    mean, std = np.zeros(img.shape), np.zeros(img.shape)
    for i in range(h):
        for j in range(w):
            win = img[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1]  # truncated
            mean[i, j] = win.mean(axis=(0, 1))
            std[i, j] = win.std(axis=(0, 1))
    return mean, std


def test_visual_weights_match_their_definition():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(2, 9, 7, 3)).astype(np.float32)
    x[0, :4, :4] = 0.3  # a flat patch: σ = 0 there, the largest weight
    for kind in ("variance", "variance_mean"):
        w = W.visual_weights(x, kind)
        assert w.shape == x.shape and w.dtype == np.float32
        assert w.min() > 0 and w.max() == pytest.approx(1.0)
        for i in range(2):
            mean, std = _local_stats_loop(x[i].astype(np.float64), 3)
            raw = 1.0 / ((std if kind == "variance" else std * mean) + 1e-4)
            np.testing.assert_allclose(w[i], raw / raw.max(), rtol=1e-4, atol=1e-7)
        assert w[0, 1, 1].min() == pytest.approx(1.0)
        mm = W.visual_weights(x, kind, normalize="minmax")
        np.testing.assert_allclose(mm.min(axis=(1, 2)), 0.0, atol=1e-7)
        np.testing.assert_allclose(mm.max(axis=(1, 2)), 1.0, atol=1e-6)
    np.testing.assert_array_equal(W.visual_weights(x, "uniform"), np.ones_like(x))
    with pytest.raises(SparsejaxError, match="kind must be one of"):
        W.visual_weights(x, "contrast")


# --------------------------------------------------------------------------- real model


@pytest.mark.slow
@pytest.mark.shared
def test_resnet20_cifar10_all_targets(assets):
    """Targeted ASR >= 95% on 3 CIFAR-10 images x 9 targets with the CI budget."""
    from sparsejax import data, models

    model = models.load("resnet20-cifar10", str(assets / "weights/cifar10/resnet20-12fca82f.th"))
    ds = data.load_dataset("cifar10", n=3)
    idx, tgt = metrics.all_target_pairs(ds.y, 10)
    x, y = jnp.asarray(ds.x[idx]), jnp.asarray(ds.y[idx])
    cfg = SAPFConfig(k=200.0, lambda1=0.1, delta_steps=100, g_steps=100, finetune_steps=50)
    r = jax.jit(sapf, compiler_options=XLA_DEFAULT)(
        model.logits_fn, x, y, cfg, targets=jnp.asarray(tgt)
    )
    correct = np.asarray(r.clean_pred) == np.asarray(y)
    ok = np.asarray(r.success)
    assert correct.sum() >= 18
    assert ok[correct].mean() >= 0.95
    assert np.all(np.asarray(r.l0_elements) <= 200)
    norms = metrics.lp_norms(r.x_adv, x)
    assert float(np.mean(np.asarray(norms["l2"])[ok])) < 2.0
    assert not bool((np.asarray(r.status) == Status.NONFINITE).any())
