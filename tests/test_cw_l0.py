"""C&W-ℓ0: every run against a NumPy port of Carlini & Wagner's ``l0_attack.py`` on small tanh
networks with hand-derived Jacobians (float64): the same rounds, the same units fixed, the
same steps and the same image; the fixing rule against the reference's loop; the public
function against the per-example loop. The generic properties are in test_conformance.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import CWL0Config, Status, cw_l0
from sparsejax.attacks._cw_l0 import ALGORITHM, units_to_fix
from sparsejax.attacks.engine import Classifier
from sparsejax.errors import SparsejaxError
from tests.reference import cw_l0_np as ref
from tests.reference import jsma_np
from tests.test_jsma import SHAPE, K, _mlp, _problem

# Small budgets keep the NumPy loop short: 6 constants (0.5 … 16) of 100 steps.
SETTINGS = dict(steps=100, learning_rate=0.05, initial_const=0.5, largest_const=20.0)


def _reference(seed, targeted, unit):
    weights, fn, x = _mlp(seed)
    logits, jacobian = jsma_np.mlp(*weights)
    y = int(np.argmax(logits(x.ravel())))
    t = (y + 1) % K
    # The reference's box is [-0.5, 0.5]: the same network on x + 0.5.
    solution, trace = ref.cw_l0_np(
        lambda z: logits(z + 0.5), lambda z: jacobian(z + 0.5), x - 0.5, t if targeted else y,
        targeted, max_iterations=SETTINGS["steps"], learning_rate=SETTINGS["learning_rate"],
        initial_const=SETTINGS["initial_const"], largest_const=SETTINGS["largest_const"],
        independent_channels=unit == "elements",
    )  # fmt: skip
    return fn, x, y, t, (None if solution is None else solution + 0.5), trace


@jax.jit  # one trace per Problem structure: weights and config are arguments
def _run(fn, p, cfg):
    f = Classifier(fn, SHAPE, jnp.float64)
    s, _ = ALGORITHM.init(f, p, cfg)
    done = lambda s: ~ALGORITHM.done(f, p, cfg, s)
    return jax.lax.while_loop(done, lambda s: ALGORITHM.step(f, p, cfg, s)[0], s)


def _changed(a, x, unit, tol=0.0):
    moved = np.abs(a - x) > tol
    return int(np.sum(np.any(moved, axis=-1) if unit == "pixels" else moved))


@pytest.mark.parametrize("unit", ["pixels", "elements"])
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_every_round_matches_the_reference(x64, unit, targeted):
    cfg = CWL0Config(**SETTINGS, unit=unit)
    found = 0
    for seed in range(8):
        fn, x, y, t, solution, trace = _reference(seed, targeted, unit)
        s = _run(fn, _problem(x, y, t, targeted), cfg)
        assert int(s.rounds) == trace["rounds"], seed
        if solution is None:
            assert int(s.rounds) == 0
            continue
        found += 1
        last_free = np.asarray(s.free).reshape(trace["valids"][-1].shape[:2] + (-1,))
        np.testing.assert_array_equal(last_free[..., 0], trace["valids"][-1][..., 0] > 0)
        best = np.asarray(s.best)
        # The same image: the reference's, with values within 1e-4 of x set back to x.
        np.testing.assert_allclose(best, solution, atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.where(best != x, best, solution), solution, atol=1e-9, rtol=0)
        assert _changed(best, x, unit) == _changed(solution, x, unit, tol=1e-4 - 1e-12)
        if trace["valids"][-1].sum() == 0:
            # No unit left: the reference still runs every constant; here it stops.
            assert int(s.t) == trace["ends"][-1]
        else:
            assert int(s.t) == trace["steps"]
            assert float(s.const) == trace["const"]
    assert found >= 6  # most problems are solved: the comparison is not vacuous


def test_the_fixing_rule_is_the_reference_loop(rng):
    """Ties, the 0.01 stop (the large unit itself fixed), the ⌈0.3·√n⌉ cap, at least one."""
    fix = jax.jit(units_to_fix)
    n = 30
    for trial in range(300):
        change = rng.choice([0.0, 1e-3, 5e-3, 0.02, 0.5], size=n) * rng.uniform(0.5, 1.5, n)
        change[rng.random(n) < 0.2] = 0.0
        free = rng.random(n) < rng.uniform(0.05, 1.0)
        free[rng.integers(n)] = True
        changed = int(rng.integers(0, 400))
        valid = free.copy()
        did = 0
        for e in np.argsort(change, kind="stable"):
            if valid[e]:
                did += 1
                valid[e] = False
                if change[e] > 0.01 or did >= 0.3 * changed**0.5:
                    break
        got = fix(jnp.asarray(change, jnp.float32), jnp.asarray(free), changed)
        np.testing.assert_array_equal(np.asarray(got), free & ~valid, err_msg=str(trial))


def test_the_public_function_is_the_per_example_loop(x64):
    cfg = CWL0Config(**SETTINGS)
    fn, x, y, t, _, _ = _reference(3, True, "pixels")
    s = _run(fn, _problem(x, y, t, True), cfg)
    r = cw_l0(fn, jnp.asarray(x[None]), jnp.asarray([y]), cfg, targets=jnp.asarray([t]))
    assert int(r.status[0]) == Status.SUCCESS
    np.testing.assert_array_equal(np.asarray(r.x_adv[0]), np.asarray(s.best))
    assert int(r.iterations[0]) == int(s.t) and int(r.stats.rounds[0]) == int(s.rounds)
    # 1 forward + 1 backward per step, 1 more forward per round; the engine's clean check
    # and re-verification.
    assert int(r.forwards[0]) == 1 + int(s.t) + int(s.rounds) + 1
    assert int(r.backwards[0]) == int(s.t)


def test_no_constant_left_means_no_step(x64):
    fn, x, y, _, _, _ = _reference(0, False, "pixels")
    cfg = CWL0Config(**{**SETTINGS, "largest_const": SETTINGS["initial_const"]})
    r = cw_l0(fn, jnp.asarray(x[None]), jnp.asarray([y]), cfg)
    assert int(r.iterations[0]) == 0 and int(r.status[0]) != Status.SUCCESS
    np.testing.assert_array_equal(np.asarray(r.x_adv), x[None])


@pytest.mark.parametrize(
    "field, value", [("steps", 0), ("const_factor", 1.0), ("initial_const", -1.0)]
)
def test_bad_settings_are_rejected_before_compilation(field, value):
    fn, x, y, _, _, _ = _reference(0, False, "pixels")
    with pytest.raises(SparsejaxError, match=field):
        cw_l0(fn, jnp.asarray(x[None]), jnp.asarray([y]), CWL0Config(**{field: value}))
