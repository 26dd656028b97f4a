"""σ-zero: the whole attack against a NumPy port on affine models (float64), the adv_lib
defaults, and the budget's early stop. The generic properties are in test_conformance.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import SigmaZeroConfig, sigma_zero
from sparsejax.errors import SparsejaxError
from tests.reference import sigma_zero_np as ref
from tests.test_sparse_l0 import affine_logits_fn, affine_problem


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_attack_matches_the_numpy_port_on_affine_models(x64, targeted):
    cfg = SigmaZeroConfig(steps=60)
    found = 0
    for seed in range(6):
        W, b, x, label = affine_problem(seed)
        cls = (label + 2) % 5 if targeted else label
        targets = jnp.asarray([cls]) if targeted else None
        out = sigma_zero(
            affine_logits_fn(W, b), jnp.asarray(x)[None], jnp.asarray([label]), cfg,
            targets=targets,
        )  # fmt: skip
        best, best_l0, best_step = ref.sigma_zero_np(W, b, x, cls, steps=60, targeted=targeted)
        np.testing.assert_allclose(np.asarray(out.x_adv[0]), best, atol=1e-10)
        assert int(out.stats.best_step[0]) == best_step
        found += int(best_step >= 0 and best_l0 < x.size)
    assert found >= 4  # most problems end with an adversarial point, not the clean image


def test_the_defaults_are_adv_libs():
    c = SigmaZeroConfig()
    assert (c.steps, c.eta0, c.sigma, c.tau0, c.tau_factor, c.grad_norm) == (
        1000,
        1.0,
        1e-3,
        0.3,
        0.01,
        "linf",
    )


def test_a_budget_stops_each_example_once_it_is_met(digits_model, digits_test):
    x, y = jnp.asarray(digits_test.x[:8]), jnp.asarray(digits_test.y[:8])
    full = sigma_zero(digits_model.logits_fn, x, y, SigmaZeroConfig(steps=100))
    early = sigma_zero(digits_model.logits_fn, x, y, SigmaZeroConfig(steps=100, budget=30))
    ok = np.asarray(early.success)
    assert ok.any()
    assert np.all(np.asarray(early.l0_elements)[ok] <= 30)
    assert np.all(np.asarray(early.iterations) <= np.asarray(full.iterations))
    assert np.any(np.asarray(early.iterations)[ok] < 100)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(steps=0), "steps must lie in"),
        (dict(eta0=0.0), "eta0 must be > 0"),
        (dict(tau0=2.0), "tau0 must be <= 1"),
        (dict(budget=1.5), "budget must be a whole number"),
        (dict(grad_norm="l1"), "grad_norm must be one of linf, l2"),
    ],
)
def test_bad_settings_are_refused(kwargs, needle):
    with pytest.raises(SparsejaxError, match=needle):
        SigmaZeroConfig(**kwargs).validate()
