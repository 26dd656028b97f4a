"""FMN-ℓ0: every iterate and the returned point against a NumPy port of adv_lib's loop on
affine models (float64), and the adv_lib defaults. The generic properties are in
test_conformance.py; the side-by-side run with adv_lib itself is benchmarks/bench_l0_attacks.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import FMNConfig, fmn_l0
from sparsejax.attacks._fmn import ALGORITHM
from sparsejax.attacks.engine import Classifier, Problem
from sparsejax.errors import SparsejaxError
from tests.reference import fmn_np as ref
from tests.test_sparse_l0 import affine_logits_fn, affine_problem


def _problem(x, label, target):
    return Problem(
        x=jnp.asarray(x), label=jnp.int32(label), target=jnp.int32(target),
        lower=jnp.zeros(x.shape), upper=jnp.ones(x.shape), key=jax.random.key(0),
        extras={}, targeted=target >= 0,
    )  # fmt: skip


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_every_iterate_matches_the_numpy_port_on_affine_models(x64, targeted):
    cfg = FMNConfig(steps=40)

    @jax.jit  # one trace: the affine weights are arguments (a Partial)
    def step(logits_fn, p, s):
        return ALGORITHM.step(Classifier(logits_fn, p.x.shape, jnp.float64), p, cfg, s)[0]

    for seed in range(6):
        W, b, x, label = affine_problem(seed)
        cls = (label + 2) % 5 if targeted else label
        want = ref.fmn_l0_np(W, b, x, cls, steps=40, targeted=targeted)
        fn = affine_logits_fn(W, b)
        p = _problem(x, label, cls if targeted else -1)
        s, _ = ALGORITHM.init(Classifier(fn, x.shape, jnp.float64), p, cfg)
        for i in range(40):
            s = step(fn, p, s)
            np.testing.assert_allclose(np.asarray(s.delta), want[3][i], atol=1e-12, err_msg=i)
        np.testing.assert_allclose(np.asarray(s.best), want[0], atol=1e-12)
        assert int(s.best_step) == want[2]


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_the_attack_returns_the_ports_best_point(x64, targeted):
    cfg = FMNConfig(steps=60)
    found = 0
    attack = jax.jit(fmn_l0)  # one trace for every problem
    for seed in range(6):
        W, b, x, label = affine_problem(seed)
        cls = (label + 2) % 5 if targeted else label
        out = attack(
            affine_logits_fn(W, b), jnp.asarray(x)[None], jnp.asarray([label]), cfg,
            targets=jnp.asarray([cls]) if targeted else None,
        )  # fmt: skip
        best, best_l0, best_step, _ = ref.fmn_l0_np(W, b, x, cls, steps=60, targeted=targeted)
        np.testing.assert_allclose(np.asarray(out.x_adv[0]), best, atol=1e-12)
        assert int(out.stats.best_step[0]) == best_step
        assert bool(out.success[0]) == (best_step >= 0)
        found += int(best_step >= 0)
    assert found >= 4  # most problems end with an adversarial point, not the clean image


def test_the_projection_keeps_the_epsilon_largest_magnitudes_and_their_ties():
    """The ℓ0 projection (a count per bit, no sort) against its definition by a sort: every
    |δ_i| below the ε-th largest is zeroed, ties with it kept; ε < 1 keeps the largest, ε ≥ d
    everything; signs, zeros and -0.0 as they were."""
    from sparsejax.attacks._fmn import _project_l0

    rng = np.random.default_rng(3)
    delta = rng.normal(size=(4, 5, 3)).astype(np.float32)
    delta[rng.random(delta.shape) < 0.4] = 0.0
    delta[0, :2] = 0.25  # six equal magnitudes
    delta[1, 0] = -0.25
    delta[2, 1, 1] = -0.0
    project = jax.jit(_project_l0)
    for eps in (0.0, 1.0, 3.0, 7.0, 7.9, 30.0, 60.0, 61.0):
        mags = np.sort(np.abs(delta).ravel())[::-1]
        kth = mags[int(np.clip(int(eps) - 1, 0, mags.size - 1))]
        want = np.where(np.abs(delta) < kth, 0.0, delta)
        got = np.asarray(project(jnp.asarray(delta), jnp.float32(eps)))
        np.testing.assert_array_equal(got, want, err_msg=str(eps))
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=str(eps))


def test_the_defaults_are_adv_libs():
    c = FMNConfig()
    assert (c.steps, c.alpha_init, c.alpha_final, c.gamma_init, c.gamma_final) == (
        10, 1.0, 0.01, 0.05, 0.001,
    )  # fmt: skip


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(steps=0), "steps"),
        (dict(alpha_init=0.0), "alpha_init"),
        (dict(gamma_init=2.0), "gamma_init"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, needle):
    x = jnp.full((1, 4, 4, 1), 0.5)
    with pytest.raises(SparsejaxError, match=needle):
        fmn_l0(lambda z: z.reshape(1, -1)[:, :3], x, jnp.asarray([0]), FMNConfig(**kwargs))
