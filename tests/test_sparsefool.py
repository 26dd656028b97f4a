"""SparseFool on a real (small) trained model: what is particular to it. The properties
every attack owes are in tests/test_conformance.py; the reference parity (the LinearSolver's
NumPy port, DeepFool on affine models, the PyTorch path) in the files next to this one."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax
from sparsejax.attacks import SparseFoolConfig, Status, perceptibility_box, sparsefool
from sparsejax.errors import SparsejaxError

N = 24
CFG = SparseFoolConfig(lambda_=1.0, max_iter=10)
attack = jax.jit(sparsefool)


@pytest.fixture(scope="module")
def batch(digits_model, digits_test):
    x, y = jnp.asarray(digits_test.x[:N]), jnp.asarray(digits_test.y[:N])
    return digits_model, x, y


@pytest.fixture(scope="module")
def result(batch):
    model, x, y = batch
    return attack(model.logits_fn, x, y, CFG)


def test_fools_most_digits_and_reports_its_steps(result):
    assert np.asarray(result.success).mean() > 0.9
    ok = np.asarray(result.success)
    s = result.stats
    # Every outer iteration runs at least one DeepFool step and moves at least one element.
    assert np.all(np.asarray(s.deepfool_steps)[ok] >= np.asarray(result.iterations)[ok])
    assert np.all(np.asarray(s.solver_steps)[ok] >= 1)
    # Per DeepFool step 2 forwards + 9 VJP rows, per outer iteration 2 forwards + 1 row more,
    # plus the clean pass and the re-verification.
    steps, it = np.asarray(s.deepfool_steps), np.asarray(result.iterations)
    np.testing.assert_array_equal(np.asarray(result.forwards)[ok], (2 + 2 * steps + 2 * it)[ok])
    np.testing.assert_array_equal(np.asarray(result.backwards)[ok], (9 * steps + it)[ok])


def test_the_delta_box_holds_bit_for_bit(batch):
    model, x, y = batch
    for delta in (1.0, 25 / 255):
        r = attack(model.logits_fn, x, y, dataclasses.replace(CFG, delta=delta))
        lo, hi = jax.vmap(perceptibility_box, in_axes=(0, None))(x, delta)
        assert bool(jnp.all(r.x_adv >= lo)) and bool(jnp.all(r.x_adv <= hi))


def test_iteration_cap(batch):
    model, x, y = batch
    r = attack(model.logits_fn, x, y, dataclasses.replace(CFG, max_iter=1, lambda_=1.0))
    assert int(r.iterations.max()) <= 1
    assert set(np.unique(r.status)) <= {
        Status.SUCCESS,
        Status.MAX_ITER,
        Status.ALREADY_MISCLASSIFIED,
    }


def test_a_lambda_sweep_is_one_queue_and_matches_separate_runs(batch):
    """λ and δ swept together: every (value, example) pair is one item of the same refill
    queue; the same results as separate runs."""
    model, x, y = batch
    lambdas, deltas = [1.0, 3.0], [1.0, 30 / 255]
    swept = jax.jit(sparsejax.sweep, static_argnums=0)(
        sparsefool, model.logits_fn, x, y, CFG,
        values={"lambda_": jnp.asarray(lambdas), "delta": jnp.asarray(deltas)},
    )  # fmt: skip
    assert swept.x_adv.shape == (2, N, 8, 8, 1)
    for j in range(2):
        cfg = dataclasses.replace(CFG, lambda_=lambdas[j], delta=deltas[j])
        single = attack(model.logits_fn, x, y, cfg)
        np.testing.assert_allclose(swept.x_adv[j], single.x_adv, atol=1e-4)
        np.testing.assert_array_equal(swept.iterations[j], single.iterations)
        np.testing.assert_array_equal(swept.success[j], single.success)
    with pytest.raises(SparsejaxError, match="static"):
        sparsejax.sweep(sparsefool, model.logits_fn, x, y, CFG, values={"max_iter": [1, 2]})
    with pytest.raises(SparsejaxError, match="no field 'lamda'"):
        sparsejax.sweep(sparsefool, model.logits_fn, x, y, CFG, values={"lamda": [1.0]})


def test_targeted_variant_reaches_the_target(batch):
    model, x, y = batch
    t = (y + 3) % 10
    r = attack(model.logits_fn, x, y, dataclasses.replace(CFG, max_iter=20), targets=t)
    pred = np.asarray(r.adv_pred)
    np.testing.assert_array_equal(
        r.success, (pred == np.asarray(t)) & (np.asarray(r.clean_pred) == np.asarray(y))
    )
    assert np.asarray(r.success).mean() > 0.8


def test_config_validation():
    for bad, match in [
        (dict(lambda_=0.5), "lambda_ must be >= 1"),
        (dict(delta=0.0), "delta must be > 0"),
        (dict(delta=2.0), "delta must be <= 1"),
        (dict(max_iter=0), "max_iter must lie in"),
        (dict(max_iter=3_000_000_000), "max_iter must lie in"),
        (dict(overshoot=float("nan")), "overshoot must be finite"),
    ]:
        with pytest.raises(SparsejaxError, match=match):
            dataclasses.replace(SparseFoolConfig(), **bad).validate()
    with pytest.raises(SparsejaxError, match="max_iter must be a whole number"):
        SparseFoolConfig(max_iter=2.5)
