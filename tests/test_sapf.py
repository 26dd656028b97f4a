"""SAPF: steps against the NumPy reference, the properties every attack owes its users (on a
small real trained model), the extensions, the host-side weights, and the real ResNet-20."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import metrics
from sparsejax.attacks import sapf as S
from sparsejax.attacks import sapf_weights as W
from sparsejax.attacks.common import Status
from sparsejax.errors import SparsejaxError
from sparsejax.sweep import sweep_config
from tests.helpers import assert_results_equal, count_compilations
from tests.reference import sapf_np as R

N = 24
K = 10.0
CFG = S.SAPFConfig(k=K, lambda1=1.0, delta_steps=50, g_steps=50, finetune_steps=50)
attack = jax.jit(S.sapf_batch_details, static_argnames="slots")


def run(logits_fn, x, y, cfg, t, lower=0.0, upper=1.0, mask=None, **kw):
    """:data:`attack` with bounds and mask always passed as arrays: one trace for all."""
    full = lambda v: jnp.broadcast_to(jnp.asarray(v, x.dtype), x.shape)
    mask = jnp.ones(x.shape[:1], bool) if mask is None else mask
    return attack(logits_fn, x, y, cfg, t, lower=full(lower), upper=full(upper), mask=mask, **kw)


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


def _item(x, t, lo, hi, w=None, seg=None):
    return S._make_item(jnp.asarray(x), t, jnp.asarray(lo), jnp.asarray(hi), w, seg, True)


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
    item = _item(x, t, lo, hi, w=jnp.asarray(w))
    d_new, _ = S.delta_step(
        fn, item, jnp.asarray(delta), jnp.asarray(g), lr, lam, kappa, loss, implicit
    )
    flat = lambda v: np.asarray(v, np.float64).ravel()
    ref = R.delta_step_np(
        flat(x), flat(lo), flat(hi), a, b, t, flat(delta), flat(g), flat(w), lr, lam, kappa, loss,
        implicit,
    )  # fmt: skip
    np.testing.assert_allclose(flat(d_new), ref, rtol=1e-5, atol=1e-5)
    lin, curv = S.g_smooth_gradient(
        fn, item, jnp.asarray(delta), jnp.asarray(g), lam, 0.0, kappa, loss, False, 1
    )
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


# --------------------------------------------------------------------------- attack properties


@pytest.fixture(scope="module")
def batch(digits_model, digits_test):
    x, y = jnp.asarray(digits_test.x[:N]), jnp.asarray(digits_test.y[:N])
    return digits_model, x, y, (y + 3) % 10


@pytest.fixture(scope="module")
def result(batch):
    model, x, y, t = batch
    return run(model.logits_fn, x, y, CFG, t)


def test_result_shapes_and_dtypes(result):
    r, d = result
    assert r.x_adv.shape == (N, 8, 8, 1) and r.x_adv.dtype == jnp.float32
    for name in ("l0_pixels", "l0_elements", "iterations", "status", "model_evals", "adv_pred"):
        assert getattr(r, name).shape == (N,) and getattr(r, name).dtype == jnp.int32
    assert r.success.dtype == jnp.bool_
    assert d.g_sum.shape == d.lambda1.shape == d.selected.shape == (N,)


def test_success_is_reverified_l0_recounted_and_asr_high(batch, result):
    model, x, y, t = batch
    r, d = result
    pred = np.asarray(jnp.argmax(model.logits_fn(r.x_adv), axis=1))
    clean = np.asarray(jnp.argmax(model.logits_fn(x), axis=1))
    np.testing.assert_array_equal(r.adv_pred, pred)
    np.testing.assert_array_equal(r.clean_pred, clean)
    np.testing.assert_array_equal(r.success, (pred == np.asarray(t)) & (clean == np.asarray(y)))
    changed = np.asarray(r.x_adv) != np.asarray(x)
    np.testing.assert_array_equal(r.l0_elements, changed.sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(r.l0_pixels, changed.any(-1).sum(axis=(1, 2)))
    ok = np.asarray(r.success)
    assert ok.mean() >= 0.8  # targeted, 10 of 64 elements, 150 passes per λ1
    assert set(np.asarray(r.status)[ok]) == {Status.SUCCESS}
    assert np.all(np.asarray(r.l0_elements) <= K)  # exact cardinality (default)
    np.testing.assert_array_equal(r.model_evals, r.forwards + r.backwards)
    # In the budget schedule the ADMM meets 1ᵀG = k closely before binarisation.
    assert np.median(np.abs(np.asarray(d.g_sum) - K)) < 0.5
    assert np.all(np.asarray(r.iterations) >= 1)
    assert np.all(np.asarray(r.iterations) <= CFG.search_steps)


def test_passes_are_counted_exactly(batch):
    """Every forward and backward pass of the model is counted: a logits function that
    counts its own executions (forward rule and backward rule of a custom VJP) agrees."""
    model, x, y, t = batch
    counts = {"f": 0, "b": 0}

    def bump(key):
        def cb():
            counts[key] += 1

        return cb

    @jax.custom_vjp
    def logits(z):
        jax.debug.callback(bump("f"))
        return model.logits_fn(z)

    def fwd(z):
        jax.debug.callback(bump("f"))
        return model.logits_fn(z), z

    def bwd(z, ct):
        jax.debug.callback(bump("b"))
        return jax.vjp(model.logits_fn, z)[1](ct)

    logits.defvjp(fwd, bwd)
    cfg = dataclasses.replace(CFG, delta_steps=7, g_steps=5, finetune_steps=3)
    for i in (0, 5):
        counts.update(f=0, b=0)
        out = jax.jit(lambda xi, ti: S.sapf(logits, xi, ti, cfg))(x[i], t[i])
        jax.block_until_ready(out)
        jax.effects_barrier()
        assert counts["f"] == int(out.forwards) and counts["b"] == int(out.backwards)
        atoms = int(out.iterations)
        assert int(out.backwards) == atoms * (7 + 5 + 3)
        assert int(out.forwards) == 1 + atoms * (7 + 5 + 3 + 1)


def test_bounds_hold_bit_for_bit(batch):
    model, x, y, t = batch
    lower = jnp.zeros_like(x).at[:, :4].set(x[:, :4])  # a frozen region
    upper = jnp.ones_like(x).at[:, :4].set(x[:, :4])
    upper = upper.at[:, 4:].set(jnp.maximum(x[:, 4:], 0.6))  # and a tighter box elsewhere
    r, _ = run(model.logits_fn, x, y, CFG, t, lower=lower, upper=upper)
    np.testing.assert_array_equal(r.x_adv[:, :4], x[:, :4])
    assert bool(jnp.all(r.x_adv >= lower)) and bool(jnp.all(r.x_adv <= upper))


def test_soft_cardinality_reports_selected_positions(batch):
    model, x, y, t = batch
    r, d = attack(model.logits_fn, x, y, dataclasses.replace(CFG, cardinality="soft"), t)
    # G > 0.5 is what is kept: ℓ0 cannot exceed it (δ may be 0 or clipped on some).
    assert np.all(np.asarray(r.l0_elements) <= np.asarray(d.selected))
    assert np.asarray(r.success).mean() >= 0.8


def test_deterministic(batch, result):
    model, x, y, t = batch
    again = run(model.logits_fn, x, y, CFG, t)
    assert_results_equal(result, again)


def test_slots_vmap_and_python_loop_agree(batch, result):
    """Chunks of 1 (lax.map), all items side by side (vmap), and the one-pair function in a
    Python loop compute the same attack."""
    model, x, y, t = batch
    r, _ = result  # default slots: 1 on CPU
    wide, _ = attack(model.logits_fn, x, y, CFG, t, slots=N)
    single = jax.jit(lambda xi, ti, yi: S.sapf(model.logits_fn, xi, ti, CFG, label=yi))
    for i in range(N):
        one = single(x[i], t[i], y[i])
        for other in (r, wide):
            # Convolutions round differently at other batch sizes: values agree to float32
            # rounding, the path (positions, λ1 values tried, status) exactly.
            np.testing.assert_allclose(other.x_adv[i], one.x_adv, atol=1e-4)
            np.testing.assert_array_equal(other.x_adv[i] != x[i], one.x_adv != x[i])
            assert int(other.iterations[i]) == int(one.iterations)
            assert int(other.forwards[i]) == int(one.forwards) + 1  # + the re-verification
        assert int(r.status[i]) == int(one.status)


def test_already_misclassified_and_masked_items_are_untouched(batch):
    model, x, y, t = batch
    clean = jnp.argmax(model.logits_fn(x), axis=1)
    wrong = (clean + 1) % 10
    mask = jnp.arange(N) % 3 != 0
    tgt = (wrong + 2) % 10
    r, _ = run(model.logits_fn, x, wrong, CFG, tgt, mask=mask)
    np.testing.assert_array_equal(r.x_adv, x)
    status = np.asarray(r.status)
    assert set(status[np.asarray(mask)]) == {Status.ALREADY_MISCLASSIFIED}
    assert set(status[~np.asarray(mask)]) == {Status.SKIPPED}
    assert not bool(r.success.any())
    # A target equal to the label is no targeted attack: not attacked.
    r, _ = run(model.logits_fn, x, y, CFG, y)
    np.testing.assert_array_equal(r.x_adv, x)
    assert set(np.asarray(r.status)[np.asarray(clean == y)]) == {Status.SKIPPED}
    assert not bool(r.success.any())


def test_degenerate_models_fail_cleanly(batch):
    _, x, y, t = batch
    flat = jax.tree_util.Partial(
        lambda c, z: jnp.zeros((z.shape[0], 10)) + c[None], jnp.arange(10.0)[::-1]
    )  # constant logits, predicts 0: no gradient anywhere
    r, d = attack(flat, x, jnp.zeros_like(y), CFG, jnp.full_like(y, 4))
    assert set(np.unique(r.status)) == {Status.FAILED}
    assert bool(d.degenerate.all()) and int(r.iterations.max()) == 1
    np.testing.assert_array_equal(r.x_adv, x)
    # A model whose gradients blow δ and G up to inf/NaN: FAILED, finite, x unchanged.
    huge = jax.tree_util.Partial(
        lambda c, z: (
            c
            * jnp.sum(z.reshape(z.shape[0], -1) ** 3, axis=1)[:, None]
            * jnp.arange(-5.0, 5.0)[None]
        ),
        jnp.float32(1e36),
    )
    r, d = attack(huge, x, jnp.full_like(y, 9), CFG, jnp.full_like(y, 0))
    assert set(np.unique(r.status)) == {Status.FAILED}
    assert bool(d.diverged.all())
    for leaf in jax.tree.leaves((r, d)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert bool(jnp.all(jnp.isfinite(leaf)))
    np.testing.assert_array_equal(r.x_adv, x)


def test_changing_numbers_does_not_recompile_and_k_sweeps_in_one_vmap(batch, digits_model):
    model, x, y, t = batch
    run(model.logits_fn, x, y, CFG, t)  # warm (the module's compiled call)
    other = type(model)(model.spec, jax.tree.map(lambda a: a * 1.01, model.variables), "s")
    with count_compilations() as c:
        run(model.logits_fn, x, y, dataclasses.replace(CFG, k=6.0, lambda1=0.3), t)
        run(other.logits_fn, x, y, dataclasses.replace(CFG, lambda2=0.5, kappa=0.2), t)
    assert c["n"] == 0
    n = 8
    xs, ys, ts = x[:n], y[:n], t[:n]
    ks = [4.0, 8.0, 16.0]
    cfg, axes = sweep_config(CFG, k=ks)
    swept = jax.jit(
        jax.vmap(lambda c: S.sapf_batch(model.logits_fn, xs, ys, c, ts), in_axes=(axes,))
    )(cfg)
    assert swept.x_adv.shape == (3, n, 8, 8, 1)
    for j, k in enumerate(ks):
        assert np.all(np.asarray(swept.l0_elements[j]) <= k)
        single, _ = run(model.logits_fn, x, y, dataclasses.replace(CFG, k=k), t)
        single = jax.tree.map(lambda a: a[:n], single)
        np.testing.assert_allclose(swept.x_adv[j], single.x_adv, atol=1e-4)
        np.testing.assert_array_equal(swept.iterations[j], single.iterations)


def test_search_rules(batch):
    """Paper: stop at the first success (so λ1 only grows ×10 from its start). Code: keep
    bisecting after a success and return the last success, which is never a larger λ1."""
    model, x, y, t = batch
    paper, dp = run(model.logits_fn, x, y, dataclasses.replace(CFG, lambda1=0.1), t)
    code, dc = attack(
        model.logits_fn, x, y, dataclasses.replace(CFG, lambda1=0.1, search="code"), t
    )
    ok_p, ok_c = np.asarray(paper.success), np.asarray(code.success)
    lam_p, lam_c = np.asarray(dp.lambda1), np.asarray(dc.lambda1)
    np.testing.assert_allclose(
        lam_p[ok_p], 0.1 * 10.0 ** (np.asarray(paper.iterations)[ok_p] - 1), rtol=1e-5
    )
    assert np.all(ok_c[ok_p])  # the code's rule keeps searching from the same first success
    assert np.all(lam_c[ok_p] <= lam_p[ok_p] * (1 + 1e-6))
    assert np.all(np.asarray(code.iterations)[ok_p] >= np.asarray(paper.iterations)[ok_p])
    assert np.asarray(code.iterations).max() == CFG.search_steps


def test_visual_imperceptibility_weights_move_the_perturbation(batch):
    """SAPF-VI (Eq. 17): a heavy weight on the left half moves ℓ2 energy to the right half."""
    model, x, y, t = batch
    w = jnp.ones_like(x).at[:, :, 4:].set(0.05)
    r0, _ = run(model.logits_fn, x, y, CFG, t)
    r1, _ = attack(model.logits_fn, x, y, CFG, t, weights=w)
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
    cfg = dataclasses.replace(CFG, max_segments=32)
    touched = []
    for lam2 in (0.0, 5.0):
        r, _ = attack(
            model.logits_fn, x, y, dataclasses.replace(cfg, lambda2=lam2), t, segments=seg
        )
        moved = np.asarray(r.x_adv != x).any(-1)
        touched.append(
            np.array([len(np.unique(np.asarray(seg)[i][moved[i]])) for i in range(N)], float)
        )
        ok = np.asarray(r.success)
        assert ok.mean() >= 0.6
    assert touched[1].mean() < 0.85 * touched[0].mean()


def test_input_validation(batch):
    model, x, y, t = batch
    for bad, match in [
        (dict(k=0.0), "k must be >= 1"),
        (dict(k=2.5), "whole number"),
        (dict(lambda1=0.0), "lambda1 must be > 0"),
        (dict(lambda1=200.0), "lambda1 must lie in"),
        (dict(g_steps=0), "g_steps must be >= 1"),
        (dict(loss="l2"), "loss must be one of"),
        (dict(cardinality="hard"), "cardinality must be one of"),
        (dict(rho_growth=0.9), "rho_growth must be >= 1"),
        (dict(kappa=float("nan")), "kappa must be finite"),
    ]:
        with pytest.raises(SparsejaxError, match=match):
            dataclasses.replace(CFG, **bad).validate()
    with pytest.raises(SparsejaxError, match="targeted attack"):
        S.sapf_batch(model.logits_fn, x, y, CFG)
    with pytest.raises(SparsejaxError, match="segments must be int"):
        S.sapf_batch(model.logits_fn, x, y, CFG, t, segments=jnp.zeros((N, 8), jnp.int32))
    with pytest.raises(SparsejaxError, match="segment ids must lie"):
        S.sapf_batch(model.logits_fn, x, y, CFG, t, segments=jnp.full((N, 8, 8), 300, jnp.int32))
    with pytest.raises(SparsejaxError, match="weights must"):
        S.sapf_batch(model.logits_fn, x, y, CFG, t, weights=2 * jnp.ones_like(x))


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
    """Targeted ASR >= 95% on 10 CIFAR-10 images x 9 targets with the CI budget."""
    from sparsejax import data, models

    model = models.load("resnet20-cifar10", str(assets / "weights/cifar10/resnet20-12fca82f.th"))
    ds = data.load_dataset("cifar10", n=10)
    idx, tgt = metrics.all_target_pairs(ds.y, 10)
    x, y = jnp.asarray(ds.x[idx]), jnp.asarray(ds.y[idx])
    cfg = S.SAPFConfig(k=200.0, lambda1=0.1, delta_steps=100, g_steps=100, finetune_steps=50)
    r, d = attack(model.logits_fn, x, y, cfg, jnp.asarray(tgt))
    correct = np.asarray(r.clean_pred) == np.asarray(y)
    ok = np.asarray(r.success)
    assert correct.sum() >= 80
    assert ok[correct].mean() >= 0.95
    assert np.all(np.asarray(r.l0_elements) <= 200)
    norms = metrics.lp_norms(r.x_adv, x)
    assert float(np.mean(np.asarray(norms["l2"])[ok])) < 2.0
    assert not bool(d.diverged.any())
