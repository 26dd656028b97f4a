"""The sparse ℓ0 attack of Lin et al.: independent references (a NumPy port on an affine
model, analytic gradients), Propositions 1 and 2, and the properties every attack owes."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsejax
from sparsejax.attacks import Schedule, SparseL0Config, Status, sparse_l0
from sparsejax.attacks._sparse_l0 import attack_objective, box_step, ifgsm, shifted_relu
from sparsejax.attacks.engine import Classifier
from sparsejax.errors import SparsejaxError
from tests.reference import sparse_l0_np as ref

N = 24
CFG = SparseL0Config(steps=60)
DIRECTIONAL = dataclasses.replace(CFG, box="directional")
attack = jax.jit(sparse_l0)


# --- an affine softmax model, where every gradient is known in closed form ----------------


def affine_problem(seed, shape=(4, 4, 2), k=5):
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    W = rng.normal(size=(k, d)) * 3.0
    b = rng.normal(size=k)
    x = rng.uniform(0.05, 0.95, size=shape)
    x[0, 0, 0], x[1, 1, 1] = 0.0, 1.0  # pixels at the edges of the range
    label = int(np.argmax(W @ x.ravel() + b))
    return W, b, x, label


def _affine_apply(w_, b_, z):
    return z.reshape(z.shape[0], -1) @ w_.T + b_[None]


def affine_logits_fn(W, b):
    """Z = W z + b as a Partial of one module-level function: a jitted attack that takes it
    as an argument traces once for every (W, b) of the same shapes."""
    return jax.tree_util.Partial(_affine_apply, jnp.asarray(W), jnp.asarray(b))


@pytest.mark.parametrize("targeted", [False, True])
def test_ifgsm_matches_numpy_on_an_affine_model(x64, targeted):
    for seed in range(5):
        W, b, x, label = affine_problem(seed)
        y = (label + 2) % 5 if targeted else label
        f = Classifier(affine_logits_fn(W, b), x.shape, jnp.float64)
        got = ifgsm(f, jnp.asarray(x), y, 4 / 255, 1 / 255, 10, 0.0, 1.0, targeted)
        want = ref.ifgsm_np(W, b, x, y, 4 / 255, 1 / 255, 10, targeted=targeted)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-12)
        assert np.all(np.abs(want) <= 4 / 255 + 1e-15)
        assert np.all((x + want >= 0) & (x + want <= 1))


def test_eq20_gradient_matches_the_hand_derived_one(x64):
    """∂J/∂w of Eq. (20) with the surrogate, against the closed form on an affine model."""
    cfg = SparseL0Config(lambda_=0.05, update="eq20", loss_scale="paper")
    for seed in range(5):
        W, b, x, label = affine_problem(seed)
        rng = np.random.default_rng(100 + seed)
        delta = rng.choice([-1.0, 0.0, 1.0], size=x.shape) * 4 / 255
        # weights on both sides of the threshold τ/ε, some within a of it
        w = 0.3 / (4 / 255) + rng.uniform(-0.3, 0.3, size=x.shape)
        f = Classifier(affine_logits_fn(W, b), x.shape, jnp.float64)
        xj, dj = jnp.asarray(x), jnp.asarray(delta)
        for y, sign in ((label, -1.0), ((label + 1) % 5, 1.0)):
            objective = lambda v, f=f, xj=xj, dj=dj, y=y, sign=sign: attack_objective(
                f, xj, dj, v, y, sign, cfg
            )
            got = jax.grad(objective)(jnp.asarray(w))
            want = ref.eq20_grad(W, b, x, delta, w, y, sign, 4 / 255, 0.3, 0.05, 0.1)
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-14)


def test_algorithm1_gradient_matches_the_hand_derived_one(x64):
    """∂J/∂w' of Algorithm 1 (the surrogate through the ReLU, the released loss scale)
    against the closed form: zero ℓ0 push at a zeroed weight, q_a elsewhere."""
    cfg = SparseL0Config(lambda_=0.05)
    for seed in range(5):
        W, b, x, label = affine_problem(seed)
        rng = np.random.default_rng(200 + seed)
        delta = rng.choice([-1.0, 0.0, 1.0], size=x.shape) * 4 / 255
        w_thr = np.maximum(rng.uniform(-0.3, 0.3, size=x.shape), 0.0)  # zeros and small ones
        f = Classifier(affine_logits_fn(W, b), x.shape, jnp.float64)
        y = (label + 1) % 5
        objective = lambda v, f=f, x=x, delta=delta, y=y: attack_objective(
            f, jnp.asarray(x), jnp.asarray(delta), v, y, 1.0, cfg
        )
        got = jax.grad(objective)(jnp.asarray(w_thr))
        want = ref.algorithm1_grad(W, b, x, delta, w_thr, y, 1.0, 0.05, 0.1, 100.0 / 0.05)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)
        assert np.any(w_thr == 0) and np.any(w_thr > 0)


@pytest.mark.parametrize(
    "update,loss_scale,scale",
    [("algorithm1", "released", 100.0 / 0.05), ("eq20", "paper", 1.0)],
    ids=["algorithm1-released-scale (default)", "eq20-scale-1"],
)
def test_attack_matches_the_numpy_port_on_affine_models(x64, update, loss_scale, scale):
    """The whole attack (I-FGSM, SGD with momentum on Algorithm 1 or Eq. 20, the loss scale,
    sparsest adversarial iterate, Eq. 22) against the NumPy port: the same mask, step and
    output."""
    cfg = SparseL0Config(lambda_=0.05, w_init=0.05, steps=80, update=update, loss_scale=loss_scale)
    matched = 0
    for seed in range(8):
        W, b, x, label = affine_problem(seed)
        out = sparse_l0(affine_logits_fn(W, b), jnp.asarray(x)[None], jnp.asarray([label]), cfg)
        x_ref, mask_ref, it_ref, _ = ref.sparse_l0_np(
            W, b, x, label, lam=0.05, w_init=0.05, steps=80, update=update, scale=scale
        )
        np.testing.assert_allclose(np.asarray(out.x_adv[0]), x_ref, atol=1e-12)
        assert int(out.iterations[0]) == it_ref
        matched += int(np.any(mask_ref)) * int(it_ref < 80)
    assert matched >= 4  # most problems end with a sparse adversarial mask, not a trivial one


# --- Propositions 1 and 2 ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    tau=st.floats(0.0, 1.0),
    eps=st.floats(1e-3, 0.5),
)
def test_proposition_1_the_shifted_relu_never_increases_l0(seed, tau, eps):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.normal(size=(6, 6, 3)) * rng.uniform(0.1, 3 / eps), jnp.float32)
    delta = jnp.asarray(rng.choice([-eps, 0.0, eps], size=(6, 6, 3)), jnp.float32)
    l0 = lambda v: int(jnp.sum(v * delta != 0))
    assert l0(shifted_relu(w, tau, eps)) <= l0(jax.nn.relu(w)) <= l0(w)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    eps=st.floats(1e-3, 0.5),
    box=st.sampled_from(["symmetric", "directional"]),
)
def test_proposition_2_no_clipping_is_ever_needed(seed, eps, box):
    """x + mask ⊙ Ω ⊙ δ is inside [0, 1] in float32 for every mask, without any clip,
    including pixels at 0, at 1 and δ at ±ε exactly."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(8, 8, 3)).astype(np.float32)
    x.flat[rng.integers(0, x.size, 20)] = rng.choice([0.0, 1.0, 0.5, 1 - 2**-24], 20)
    delta = np.clip(rng.uniform(-1.5, 1.5, size=x.shape) * eps, -eps, eps).astype(np.float32)
    delta.flat[rng.integers(0, x.size, 20)] = rng.choice([-eps, eps], 20)
    out = jnp.asarray(x) + box_step(jnp.asarray(x), jnp.asarray(delta), eps, 0.0, 1.0, box)
    assert bool(jnp.all(out >= 0)) and bool(jnp.all(out <= 1))
    if box == "symmetric":  # Eq. (22): Ω = 0 at 0 and 1, so those pixels never move
        edge = (x == 0) | (x == 1)
        np.testing.assert_array_equal(np.asarray(out)[edge], x[edge])


# --- the attack on a real (small) trained model (the generic properties are in
# --- tests/test_conformance.py) -----------------------------------------------------------


@pytest.fixture(scope="module")
def batch(digits_model, digits_test):
    x, y = jnp.asarray(digits_test.x[:N]), jnp.asarray(digits_test.y[:N])
    return digits_model, x, y


@pytest.fixture(scope="module")
def result(batch):
    model, x, y = batch
    return attack(model.logits_fn, x, y, CFG)


def test_success_and_the_cost_of_every_step(batch, result):
    # Eq. (22)'s box gives no room to the 8x8 digits' many pixels at 0 and 1, and the default
    # keeps only a few elements: few images are fooled (the directional box test below).
    assert np.asarray(result.success).mean() > 0.05
    attacked = np.asarray(result.status) != Status.ALREADY_MISCLASSIFIED
    # I-FGSM (10 fwd+bwd), one more forward for y_adv, 60 steps (fwd+bwd + a check), clean
    # and re-verification forwards.
    np.testing.assert_array_equal(np.asarray(result.forwards)[attacked], 1 + 10 + 1 + 60 + 60 + 1)
    np.testing.assert_array_equal(np.asarray(result.backwards)[attacked], 10 + 60)
    s = result.stats
    assert np.all(np.asarray(s.mask_l0) >= np.asarray(result.l0_elements) * attacked)
    assert np.all(np.asarray(s.delta_l0)[attacked] > 0)


def test_output_is_the_eq22_example_and_stays_in_the_box(batch, result):
    """Every changed element moved by Ω |δ| = min(x, 1 - x) |δ|/ε: the full room where
    I-FGSM saturated δ at ±ε, less where it did not. Pixels at 0 or 1 have no room under
    Eq. (22) and never move."""
    _, x, _ = batch
    xa, xn = np.asarray(result.x_adv), np.asarray(x)
    assert np.all((xa >= 0) & (xa <= 1))
    changed = xa != xn
    room = np.minimum(xn, 1 - xn)[changed]
    moved = np.abs(xa - xn)[changed]
    assert np.all(moved <= room * (1 + 1e-6))
    assert np.mean(np.isclose(moved, room, rtol=1e-6)) > 0.9
    edge = (xn == 0) | (xn == 1)
    assert not np.any(changed & edge)


def test_directional_box_moves_background_pixels_and_succeeds(batch):
    model, x, y = batch
    r = attack(model.logits_fn, x, y, DIRECTIONAL)
    ok = np.asarray(r.clean_pred) == np.asarray(y)
    assert np.asarray(r.success)[ok].mean() >= 0.95
    changed = np.asarray(r.x_adv) != np.asarray(x)
    assert np.any(changed & (np.asarray(x) == 0))
    assert np.all((np.asarray(r.x_adv) >= 0) & (np.asarray(r.x_adv) <= 1))


def test_a_lambda_sweep_matches_separate_runs_and_tau_only_shifts_w(batch):
    model, x, y = batch
    lambdas = [0.005, 0.01, 0.05]
    swept = sparsejax.sweep(sparse_l0, model.logits_fn, x, y, CFG, values={"lambda_": lambdas})
    assert swept.x_adv.shape == (3, N, 8, 8, 1)
    for j, lam in enumerate(lambdas):
        single = attack(model.logits_fn, x, y, dataclasses.replace(CFG, lambda_=lam))
        np.testing.assert_allclose(swept.x_adv[j], single.x_adv, atol=1e-6)
        np.testing.assert_array_equal(swept.iterations[j], single.iterations)
    # In Eq. (20) with w_0 = τ/ε + w_init, τ only shifts the origin of w: a τ sweep is flat
    # up to the float32 rounding of τ/ε + w_init - τ/ε. Algorithm 1 thresholds w by τ/ε
    # every step, so there τ matters.
    eq20 = dataclasses.replace(CFG, update="eq20", loss_scale="paper")
    taus = sparsejax.sweep(sparse_l0, model.logits_fn, x, y, eq20, values={"tau": [0.2, 0.4]})
    assert np.mean(np.asarray(taus.l0_elements[0]) == np.asarray(taus.l0_elements[1])) >= 0.9
    taus = sparsejax.sweep(
        sparse_l0, model.logits_fn, x, y, DIRECTIONAL, values={"tau": [0.2, 0.4]}
    )
    assert np.any(np.asarray(taus.x_adv[0]) != np.asarray(taus.x_adv[1]))


def test_targeted_least_likely_reaches_the_target(batch):
    model, x, y = batch
    t = jnp.argmin(model.logits_fn(x), axis=1)
    r = attack(model.logits_fn, x, y, DIRECTIONAL, targets=t)
    pred = np.asarray(r.adv_pred)
    ok = np.asarray(r.clean_pred) == np.asarray(y)
    np.testing.assert_array_equal(r.success, (pred == np.asarray(t)) & ok)
    assert np.asarray(r.success)[ok].mean() > 0.7
    np.testing.assert_array_equal(np.asarray(r.stats.y_adv)[ok], np.asarray(t)[ok])


def test_keep_last_and_algorithm_1_variants(batch, result):
    model, x, y = batch
    last = attack(model.logits_fn, x, y, dataclasses.replace(CFG, keep="last"))
    attacked = np.asarray(last.status) != Status.ALREADY_MISCLASSIFIED
    np.testing.assert_array_equal(np.asarray(last.iterations)[attacked], CFG.steps)
    # The last iterate is never sparser than the sparsest adversarial one, where one exists.
    both = np.asarray(last.success) & np.asarray(result.success)
    assert np.all(np.asarray(result.l0_elements)[both] <= np.asarray(last.l0_elements)[both])
    np.testing.assert_array_equal(np.asarray(last.forwards)[attacked], 1 + 10 + 1 + 60 + 1)
    # Algorithm 1 at the paper's loss scale 1: no cross-entropy step clears τ/ε ≈ 19, so
    # every weight is gone after the first threshold and the output is the clean image.
    printed = dataclasses.replace(CFG, loss_scale="paper")
    for update in ("algorithm1", "algorithm1_post_relu"):
        alg1 = attack(model.logits_fn, x, y, dataclasses.replace(printed, update=update))
        np.testing.assert_array_equal(alg1.x_adv, x)


def test_the_default_schedule_is_lockstep(batch):
    from sparsejax.attacks.engine import default_schedule

    assert default_schedule(sparse_l0.algorithm, 100) == Schedule("lockstep")


def test_config_validation():
    for bad, match in [
        (dict(epsilon=0.0), "epsilon must be > 0"),
        (dict(a=0.0), "a must be > 0"),
        (dict(momentum=1.5), "momentum must be <= 1"),
        (dict(lambda_=float("nan")), "lambda_ must be finite"),
        (dict(steps=0), "steps must lie in"),
        (dict(steps=3_000_000_000), "steps must lie in"),
    ]:
        with pytest.raises(SparsejaxError, match=match):
            dataclasses.replace(SparseL0Config(), **bad).validate()
    for bad, match in [
        (dict(update="alg2"), "update must be one of algorithm1, eq20, algorithm1_post_relu"),
        (dict(update="eq-20"), "update must be one of algorithm1, eq20, algorithm1_post_relu"),
        (dict(box="round"), "box must be one of symmetric, directional"),
        (dict(steps=2.5), "steps must be a whole number"),
    ]:
        with pytest.raises(SparsejaxError, match=match):
            dataclasses.replace(SparseL0Config(), **bad)  # at construction
