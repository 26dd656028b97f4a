"""SparseFool: the properties every attack owes its users, on a real (small) trained model."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import metrics
from sparsejax.attacks import (
    SparseFoolConfig,
    Status,
    perceptibility_box,
    sparsefool,
    sparsefool_batch,
    sparsefool_sweep,
)
from sparsejax.errors import SparsejaxError
from sparsejax.sweep import sweep
from tests.helpers import assert_masked_untouched, assert_results_equal, count_compilations

N = 24
CFG = SparseFoolConfig(lambda_=1.0, max_iter=10)
attack = jax.jit(sparsefool_batch, static_argnames="slots")


@pytest.fixture(scope="module")
def batch(digits_model, digits_test):
    x, y = jnp.asarray(digits_test.x[:N]), jnp.asarray(digits_test.y[:N])
    return digits_model, x, y


@pytest.fixture(scope="module")
def result(batch):
    model, x, y = batch
    return attack(model.logits_fn, x, y, CFG)


def test_result_shapes_and_dtypes(result):
    assert result.x_adv.shape == (N, 8, 8, 1) and result.x_adv.dtype == jnp.float32
    for name in (
        "l0_pixels",
        "l0_elements",
        "iterations",
        "status",
        "model_evals",
        "forwards",
        "backwards",
        "clean_pred",
        "adv_pred",
    ):
        assert getattr(result, name).shape == (N,) and getattr(result, name).dtype == jnp.int32
    assert result.success.dtype == jnp.bool_


def test_success_is_reverified_and_l0_recounted(batch, result):
    model, x, y = batch
    pred = np.asarray(jnp.argmax(model.logits_fn(result.x_adv), axis=1))
    clean = np.asarray(jnp.argmax(model.logits_fn(x), axis=1))
    np.testing.assert_array_equal(result.adv_pred, pred)
    np.testing.assert_array_equal(result.clean_pred, clean)
    y_np = np.asarray(y)
    np.testing.assert_array_equal(result.success, (pred != y_np) & (clean == y_np))
    changed = np.asarray(result.x_adv) != np.asarray(x)
    np.testing.assert_array_equal(result.l0_elements, changed.sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(result.l0_pixels, changed.any(-1).sum(axis=(1, 2)))
    status = np.asarray(result.status)
    assert set(status[np.asarray(result.success)]) <= {Status.SUCCESS}
    assert np.asarray(result.success).mean() > 0.9
    # The forward/backward counts add up and follow the cost model of one tick.
    np.testing.assert_array_equal(result.model_evals, result.forwards + result.backwards)


def test_bounds_hold_bit_for_bit_including_the_delta_box(batch):
    model, x, y = batch
    for delta in (1.0, 25 / 255):
        r = attack(model.logits_fn, x, y, dataclasses.replace(CFG, delta=delta))
        lo, hi = jax.vmap(perceptibility_box, in_axes=(0, None))(x, delta)
        assert bool(jnp.all(r.x_adv >= lo)) and bool(jnp.all(r.x_adv <= hi))
        assert bool(jnp.all(r.x_adv >= 0)) and bool(jnp.all(r.x_adv <= 1))
    # Per-element user bounds: a frozen region is never touched.
    lower = jnp.zeros_like(x).at[:, :4].set(x[:, :4])
    upper = jnp.ones_like(x).at[:, :4].set(x[:, :4])
    r = attack(model.logits_fn, x, y, CFG, lower=lower, upper=upper)
    np.testing.assert_array_equal(r.x_adv[:, :4], x[:, :4])


def test_iteration_cap(batch):
    model, x, y = batch
    r = attack(model.logits_fn, x, y, dataclasses.replace(CFG, max_iter=1, lambda_=1.0))
    assert int(r.iterations.max()) <= 1
    assert set(np.unique(r.status)) <= {
        Status.SUCCESS,
        Status.MAX_ITER,
        Status.ALREADY_MISCLASSIFIED,
    }


def test_already_misclassified_inputs_are_untouched(batch):
    model, x, y = batch
    clean = jnp.argmax(model.logits_fn(x), axis=1)
    wrong = (clean + 1) % 10  # claim a label the model does not predict
    r = attack(model.logits_fn, x, wrong, CFG)
    np.testing.assert_array_equal(r.x_adv, x)
    assert set(np.unique(r.status)) == {Status.ALREADY_MISCLASSIFIED}
    assert not bool(r.success.any())
    np.testing.assert_array_equal(r.l0_pixels, 0)


def test_masked_examples_are_not_attacked(batch, result):
    model, x, y = batch
    mask = jnp.arange(N) % 3 != 0
    r = attack(model.logits_fn, x, y, CFG, mask=mask)
    assert_masked_untouched(r, x, mask, result.x_adv)


def test_deterministic(batch, result):
    model, x, y = batch
    again = attack(model.logits_fn, x, y, CFG)
    assert_results_equal(result, again)


def test_slots_vmap_and_python_loop_agree(batch, result):
    """The refill scheduler, a plain vmap of the one-example function, and a Python loop
    over examples compute the same attack."""
    model, x, y = batch
    one_slot = attack(model.logits_fn, x, y, CFG, slots=1)
    wide = attack(model.logits_fn, x, y, CFG, slots=N)
    single = jax.jit(lambda xi, yi: sparsefool(model.logits_fn, xi, yi, CFG))
    lockstep = jax.jit(jax.vmap(lambda xi, yi: sparsefool(model.logits_fn, xi, yi, CFG)))(x, y)
    # XLA's convolutions round differently at different batch sizes (1, 4, N lanes), so
    # values agree to float32 rounding, not bit for bit; the path (coordinates, iterations,
    # status) is the same.
    for i in range(N):
        one = single(x[i], y[i])
        moved = np.asarray(one.x_adv != x[i])
        for other in (one_slot, wide, lockstep, result):
            np.testing.assert_allclose(other.x_adv[i], one.x_adv, atol=1e-5)
            np.testing.assert_array_equal(np.asarray(other.x_adv[i] != x[i]), moved)
            assert int(other.iterations[i]) == int(one.iterations)
        for other in (one_slot, wide, result):
            assert int(other.status[i]) == int(one.status)
            assert int(other.forwards[i]) == int(one.forwards) + 1  # + the re-verification


def test_changing_lambda_delta_or_weights_does_not_recompile(batch, digits_model):
    model, x, y = batch
    attack(model.logits_fn, x, y, CFG)  # warm
    other = type(model)(model.spec, jax.tree.map(lambda a: a * 1.01, model.variables), "scaled")
    with count_compilations() as c:
        attack(model.logits_fn, x, y, dataclasses.replace(CFG, lambda_=2.5, delta=0.2))
        attack(other.logits_fn, x, y, dataclasses.replace(CFG, overshoot=0.05))
    assert c["n"] == 0


def test_lambda_sweep_is_one_call_and_matches_separate_runs(batch):
    model, x, y = batch
    lambdas = [1.0, 2.0, 4.0]
    swept = sweep(sparsefool_batch, model.logits_fn, x, y, CFG, lambda_=lambdas)
    assert swept.x_adv.shape == (3, N, 8, 8, 1)
    for j, lam in enumerate(lambdas):
        single = attack(model.logits_fn, x, y, dataclasses.replace(CFG, lambda_=lam))
        # vmap over λ batches the convolutions differently, so the normals differ by float32
        # rounding, and a LinearSolver step |f + β| / |w_d| divides that rounding by a small
        # |w_d|: values agree to 1e-4 (measured up to 2.1e-5), the path exactly.
        np.testing.assert_allclose(swept.x_adv[j], single.x_adv, atol=1e-4)
        np.testing.assert_array_equal(swept.x_adv[j] != x, single.x_adv != x)
        np.testing.assert_array_equal(swept.iterations[j], single.iterations)


def test_queued_sweep_matches_separate_runs(batch):
    """sparsefool_sweep puts every (value, example) pair in one queue: same results as
    separate runs (λ and δ swept together here), one compiled call."""
    model, x, y = batch
    lambdas, deltas = [1.0, 3.0], [1.0, 30 / 255]
    swept = jax.jit(sparsefool_sweep)(
        model.logits_fn, x, y, CFG, lambda_=jnp.asarray(lambdas), delta=jnp.asarray(deltas)
    )
    assert swept.x_adv.shape == (2, N, 8, 8, 1)
    for j in range(2):
        cfg = dataclasses.replace(CFG, lambda_=lambdas[j], delta=deltas[j])
        single = attack(model.logits_fn, x, y, cfg)
        np.testing.assert_allclose(swept.x_adv[j], single.x_adv, atol=1e-5)
        np.testing.assert_array_equal(swept.iterations[j], single.iterations)
        np.testing.assert_array_equal(swept.success[j], single.success)
    with pytest.raises(SparsejaxError, match="cannot sweep"):
        sparsefool_sweep(model.logits_fn, x, y, CFG, max_iter=[1, 2])


def test_targeted_variant_reaches_the_target(batch):
    model, x, y = batch
    t = (y + 3) % 10
    r = attack(
        model.logits_fn, x, y, dataclasses.replace(CFG, targeted=True, max_iter=20), targets=t
    )
    pred = np.asarray(r.adv_pred)
    np.testing.assert_array_equal(
        r.success, (pred == np.asarray(t)) & (np.asarray(r.clean_pred) == np.asarray(y))
    )
    assert np.asarray(r.success).mean() > 0.8
    with pytest.raises(SparsejaxError, match="targets exactly when config.targeted"):
        sparsefool_batch(model.logits_fn, x, y, CFG, targets=t)


def test_a_model_without_gradients_fails_cleanly(batch):
    _, x, y = batch
    flat = jax.tree_util.Partial(
        lambda c, z: jnp.zeros((z.shape[0], 10)) + c[None], jnp.arange(10.0)[::-1]
    )
    r = attack(flat, x, jnp.zeros_like(y), CFG)
    assert set(np.unique(r.status)) == {Status.FAILED}
    for leaf in (r.x_adv,):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    np.testing.assert_array_equal(r.x_adv, x)


def test_config_validation():
    for bad, match in [
        (dict(lambda_=0.0), "lambda_ must be > 0"),
        (dict(delta=-1.0), "delta must be > 0"),
        (dict(max_iter=0), "max_iter must be >= 1"),
        (dict(overshoot=float("nan")), "overshoot must be finite"),
    ]:
        with pytest.raises(SparsejaxError, match=match):
            dataclasses.replace(SparseFoolConfig(), **bad).validate()


def test_summary_counts_only_attacked_successes():
    s = metrics.summarize(
        success=np.array([True, True, False, False]),
        clean_correct=np.array([True, True, True, False]),
        l0_pixels=np.array([2, 4, 100, 0]),
        l0_elements=np.array([3, 5, 100, 0]),
        image_shape=(8, 8, 3),
    )
    assert s["n_attacked"] == 3 and s["success_rate"] == pytest.approx(2 / 3)
    assert s["median_l0_pixels"] == 3.0 and s["median_l0_pixels_pct"] == pytest.approx(3 / 64 * 100)
    assert s["median_l0_elements"] == 4.0
