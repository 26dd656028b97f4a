"""The conformance table: every property every attack owes its users, asserted once for
every row (attack × untargeted/targeted × variant). A new attack is one more row.

Rows run on the LeNet-5 trained on the real 8x8 digits (``digits_model``), with budgets
small enough for CI; the reference-parity tests (NumPy ports, PyTorch, closed forms) stay in
each attack's own test file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax
from sparsejax import attacks
from sparsejax.attacks import Schedule, Status, engine
from sparsejax.attacks.engine import Classifier
from sparsejax.errors import SparsejaxError
from tests.helpers import count_compilations

N = 8
jit = jax.jit  # at LLVM's cheapest level, as the whole suite (conftest.py)
BLACK_BOX = {"sparse-rs", "random-subset", "one-pixel"}  # score-based: no backward pass at all


class Row(NamedTuple):
    id: str
    attack: str
    config: object
    targeted: bool
    sweep: tuple[str, tuple]  # a traced field and two values for the sweep property
    mode: tuple[str, str] | None  # a static mode field and a typo for it (None: it has none)
    min_success: float = 0.5  # a sanity floor for the success rate of the bounded run
    # How far x_adv may drift between batch shapes (float32 rounding, see the schedule test).
    value_atol: float = 1e-4
    # The sweep property in float64: where float32 rounding of another batch shape can move
    # the path itself (the sweep's V·N items run on the CPU queue's 8 lanes, N alone on 1).
    sweep_in_float64: bool = False


ROWS = [
    Row(
        "sparsefool",
        "sparsefool",
        attacks.SparseFoolConfig(lambda_=1.0, max_iter=10),
        False,
        ("lambda_", (1.0, 2.0)),
        ("max_iter", "ten"),
    ),
    Row(
        "sparsefool-targeted-delta",
        "sparsefool",
        attacks.SparseFoolConfig(lambda_=1.0, max_iter=10, delta=0.5),
        True,
        ("deepfool.overshoot", (0.02, 0.05)),
        ("max_iter", "ten"),
    ),
    Row(
        # The default reading (Algorithm 1, released loss scale) keeps a few elements; Eq.
        # (22)'s box gives no room to the many digits pixels at 0, so the directional box.
        "sparse-l0-directional",
        "sparse-l0",
        attacks.SparseL0Config(steps=60, box="directional"),
        False,
        ("lambda_", (1e-2, 3e-2)),
        ("update", "eq-20"),
    ),
    Row(
        "sparse-l0-targeted-eq20",
        "sparse-l0",
        attacks.SparseL0Config(steps=60, box="directional", update="eq20", loss_scale="paper"),
        True,
        ("tau", (0.3, 0.2)),
        ("box", "directonal"),
    ),
    Row(
        "sigma-zero",
        "sigma-zero",
        # Targeted and the budget's early stop: tests/test_sigma_zero.py (the NumPy port).
        attacks.SigmaZeroConfig(steps=100),
        False,
        ("tau0", (0.3, 0.1)),
        ("grad_norm", "l-inf"),
        # 100 Adam steps on an ℓ∞-normalised gradient carry the rounding of the batch
        # shape into the values (measured up to 2.4e-4); the support stays the same.
        value_atol=1e-3,
    ),
    Row(
        "fmn-l0-targeted",
        "fmn-l0",
        attacks.FMNConfig(steps=60),
        True,
        ("alpha_init", (1.0, 0.5)),
        ("steps", "ten"),
    ),
    Row(
        # SparseFool's untargeted variant (a random target from the key); targeted runs
        # and the pair-by-pair parity with CleverHans: tests/test_jsma.py.
        "jsma",
        "jsma",
        attacks.JSMAConfig(gamma=0.5),
        False,
        ("theta", (1.0, 0.5)),
        None,  # no static mode: θ and γ are numbers
    ),
    Row(
        # Smaller than the reference's budget (1000 steps, c from 1e-3 to 2e6): 3 constants
        # of 30 steps. Targeted runs and the round-by-round parity: tests/test_cw_l0.py.
        "cw-l0",
        "cw-l0",
        attacks.CWL0Config(steps=30, learning_rate=0.1, initial_const=1.0, largest_const=8.0),
        False,
        ("initial_const", (1.0, 2.0)),
        ("unit", "pixel"),
        # Hundreds of Adam steps carry the rounding of the batch shape into the values
        # (up to 1.8e-3 between a 1-lane queue and a lone lockstep call since the
        # input-gradient's col2im route), as for σ-zero; the path and the support stay.
        value_atol=5e-3,
        # A sweep of 16 items on 8 lanes against runs of 8 on 1: one constant's bisection
        # fixed another pixel in float32 (0.058 in one element), not in float64 (6e-15).
        sweep_in_float64=True,
    ),
    Row(
        "spgd",
        "spgd",
        attacks.SPGDConfig(k=4.0, steps=40),
        False,
        ("k", (4.0, 6.0)),
        ("gradient", "projectd"),
    ),
    Row(
        "sparse-rs-targeted",
        "sparse-rs",
        attacks.SparseRSConfig(k=8.0, queries_targeted=300),
        True,
        ("p_init_targeted", (0.1, 0.3)),
        ("loss", "cee"),
    ),
    Row(
        "saa",
        "saa",
        attacks.SAAConfig(k=2.0, spgd_steps=15, rs_queries=60),
        False,
        ("k", (2.0, 3.0)),
        ("unit", "pixel"),
    ),
    Row(
        # SparseFool's protocol: k = 1, then 2, 3, 4 after failed rounds. (Targeted runs:
        # tests/test_one_pixel.py; a few pixels rarely reach a chosen digit here.)
        "one-pixel",
        "one-pixel",
        attacks.OnePixelConfig(pixels=1, max_pixels=4, population=40, generations=15),
        False,
        ("mutation", (0.5, 0.7)),
        ("generations", "ten"),
        min_success=0.25,
    ),
    Row(
        "random-subset",
        "random-subset",
        attacks.RandomSubsetConfig(k=12.0, draws=20),
        False,
        ("k", (12.0, 16.0)),
        ("draws", "twenty"),
    ),
    Row(
        "sapf",
        "sapf",
        attacks.SAPFConfig(k=10.0, lambda1=1.0, delta_steps=20, g_steps=20, finetune_steps=10),
        True,
        ("k", (10.0, 20.0)),
        ("cardinality", "exakt"),
    ),
    Row(
        "sapf-gs",
        "sapf-gs",
        attacks.SAPFGSConfig(
            k=10.0, lambda1=1.0, delta_steps=20, g_steps=20, finetune_steps=10, n_segments=10
        ),
        True,
        ("lambda2", (1.0, 10.0)),
        ("search", "papper"),
    ),
    Row(
        "sapf-vi",
        "sapf-vi",
        attacks.SAPFVIConfig(k=10.0, lambda1=1.0, delta_steps=20, g_steps=20, finetune_steps=10),
        True,
        ("lambda1", (1.0, 2.0)),
        ("weighting", "varaince"),
    ),
]


def test_every_registered_attack_has_a_row():
    assert {r.attack for r in ROWS} == set(attacks.names())


# One xdist group per row: its module-scoped case (the row's compilations) is built on one
# worker only (`pytest -n 2 --dist loadgroup`, the Makefile's).
@pytest.fixture(
    scope="module",
    params=[pytest.param(r, marks=pytest.mark.xdist_group(r.id)) for r in ROWS],
    ids=[r.id for r in ROWS],
)
def row(request):
    return request.param


class Case(NamedTuple):
    row: Row
    fn: object  # the jitted attack, every argument an array (one trace per row)
    model: object
    x: jax.Array
    y: jax.Array
    t: jax.Array | None
    lower: jax.Array
    upper: jax.Array
    key: jax.Array
    result: attacks.AttackResult


def _bounds(x):
    """A frozen region (rows 0-1) and a tighter box elsewhere; x lies inside."""
    lower = jnp.zeros_like(x).at[:, :2].set(x[:, :2])
    upper = jnp.ones_like(x).at[:, :2].set(x[:, :2])
    upper = upper.at[:, 2:].set(jnp.maximum(x[:, 2:], 0.8))
    return lower, upper


@pytest.fixture(scope="module")
def case(row, digits_model, digits_test):
    spec = attacks.get(row.attack)
    x, y = jnp.asarray(digits_test.x[:N]), jnp.asarray(digits_test.y[:N])
    t = (y + 3) % 10 if row.targeted else None
    lower, upper = _bounds(x)
    key = jax.random.key(0)
    chex.clear_trace_counter()  # the counter is keyed by the code, shared by the rows

    @jit
    @chex.assert_max_traces(n=1)  # every later call with new numbers must reuse this trace
    def fn(logits_fn, x, y, config, t, lower, upper, key, mask):
        return spec.fn(
            logits_fn, x, y, config, targets=t, lower=lower, upper=upper, key=key, mask=mask
        )

    mask = jnp.ones((N,), bool)
    r = fn(digits_model.logits_fn, x, y, row.config, t, lower, upper, key, mask)
    return Case(row, fn, digits_model, x, y, t, lower, upper, key, r)


def _call(c: Case, logits_fn=None, y=None, config=None, mask=None, t="same"):
    return c.fn(
        c.model.logits_fn if logits_fn is None else logits_fn,
        c.x,
        c.y if y is None else y,
        c.row.config if config is None else config,
        c.t if t == "same" else t,
        c.lower,
        c.upper,
        c.key,
        jnp.ones((N,), bool) if mask is None else mask,
    )


# --------------------------------------------------------------------------- the properties


def test_result_type_shapes_and_dtypes(case):
    r = case.result
    assert isinstance(r, attacks.AttackResult)
    chex.assert_shape(r.x_adv, case.x.shape)
    chex.assert_type(r.x_adv, jnp.float32)
    ints = ("l0_pixels", "l0_elements", "iterations", "status", "model_evals", "forwards")
    for name in (*ints, "backwards", "clean_pred", "adv_pred"):
        chex.assert_shape(getattr(r, name), (N,))
        chex.assert_type(getattr(r, name), jnp.int32)
    chex.assert_type(r.success, jnp.bool_)
    for leaf in jax.tree.leaves(r.stats):
        assert leaf.shape[0] == N


def test_x_adv_within_bounds_bit_for_bit(case):
    r = case.result
    assert bool(jnp.all(r.x_adv >= case.lower)) and bool(jnp.all(r.x_adv <= case.upper))
    np.testing.assert_array_equal(r.x_adv[:, :2], case.x[:, :2])  # the frozen region


def test_success_is_reverified(case):
    r, y = case.result, np.asarray(case.y)
    logits = case.model.logits_fn(r.x_adv)
    pred = np.asarray(jnp.argmax(logits, axis=1))
    clean = np.asarray(jnp.argmax(case.model.logits_fn(case.x), axis=1))
    np.testing.assert_array_equal(r.adv_pred, pred)
    np.testing.assert_array_equal(r.clean_pred, clean)
    adversarial = pred == np.asarray(case.t) if case.row.targeted else pred != y
    np.testing.assert_array_equal(r.success, adversarial & (clean == y))
    assert np.asarray(r.success).mean() >= case.row.min_success, "the attack should work"


def test_l0_is_recounted_in_both_units(case):
    r = case.result
    changed = np.asarray(r.x_adv) != np.asarray(case.x)
    np.testing.assert_array_equal(r.l0_elements, changed.sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(r.l0_pixels, changed.any(-1).sum(axis=(1, 2)))


def test_a_fixed_k_attack_never_exceeds_k_in_its_unit(case):
    spec = attacks.get(case.row.attack)
    if spec.budget != "fixed-k":
        pytest.skip("a min-norm attack has no budget")
    unit = getattr(case.row.config, "unit", spec.unit)
    changed = np.asarray(case.result.x_adv) != np.asarray(case.x)
    counts = changed.any(-1).sum(axis=(1, 2)) if unit == "pixels" else changed.sum((1, 2, 3))
    assert counts.max() <= spec.max_changed(case.row.config, case.x.shape[1:])


def test_status_invariants(case):
    r = case.result
    status = np.asarray(r.status)
    assert set(status) <= {int(s) for s in Status}
    np.testing.assert_array_equal(status == Status.SUCCESS, np.asarray(r.success))
    np.testing.assert_array_equal(r.model_evals, np.asarray(r.forwards) + np.asarray(r.backwards))
    cap = attacks.get(case.row.attack).algorithm.max_steps(case.row.config)
    assert int(r.iterations.max()) <= cap
    for s in Status:
        assert s.message and isinstance(s.message, str)


def test_already_misclassified_inputs_are_untouched(case):
    clean = jnp.argmax(case.model.logits_fn(case.x), axis=1)
    wrong = (clean + 1) % 10  # a label the model does not predict
    t = None if case.t is None else (wrong + 1) % 10
    r = _call(case, y=wrong, t=t)
    np.testing.assert_array_equal(r.x_adv, case.x)
    assert set(np.asarray(r.status)) == {Status.ALREADY_MISCLASSIFIED}
    assert not bool(r.success.any())
    np.testing.assert_array_equal(r.forwards, 2)  # the clean pass and the re-verification
    np.testing.assert_array_equal(r.backwards, 0)
    np.testing.assert_array_equal(r.iterations, 0)


def test_masked_inputs_are_untouched_and_the_others_unchanged(case):
    mask = jnp.arange(N) % 3 != 0
    r = _call(case, mask=mask)
    skipped = ~np.asarray(mask)
    np.testing.assert_array_equal(np.asarray(r.x_adv)[skipped], np.asarray(case.x)[skipped])
    assert set(np.asarray(r.status)[skipped]) == {Status.SKIPPED}
    kept = ~skipped
    np.testing.assert_array_equal(np.asarray(r.x_adv)[kept], np.asarray(case.result.x_adv)[kept])


def test_deterministic_with_a_key(case):
    chex.assert_trees_all_equal(_call(case), case.result)


def test_changing_traced_fields_or_weights_does_not_retrace(case):
    """``case.fn`` allows one trace (chex.assert_max_traces): new weights and a new value
    of a traced field reuse it."""
    path, values = case.row.sweep
    scaled = jax.tree.map(lambda a: a * 1.01, case.model.variables)
    other_model = type(case.model)(case.model.spec, scaled, "scaled")
    r = _call(
        case,
        logits_fn=other_model.logits_fn,
        config=_replace_path(case.row.config, path, values[1]),
    )
    assert r.x_adv.shape == case.x.shape


def _replace_path(cfg, path, value):
    head, *rest = path.split(".")
    if rest:
        return dataclasses.replace(
            cfg, **{head: _replace_path(getattr(cfg, head), ".".join(rest), value)}
        )
    return dataclasses.replace(cfg, **{head: value})


def test_sweep_equals_separate_runs(case):
    """A sweep computes, for every value, what a separate run with that value computes,
    although its V·N items share one schedule (on CPU, 8 lanes for the 16 items here and 1
    for the 8 of a separate run): no state crosses lanes or values."""
    path, values = case.row.sweep
    spec = attacks.get(case.row.attack)
    if case.row.sweep_in_float64:
        with jax.enable_x64(True):
            f64 = lambda a: jnp.asarray(a, jnp.float64)
            model = jax.tree.map(f64, case.model.variables)
            logits_fn = jax.tree_util.Partial(case.model.spec.module.apply, model)
            x, lower, upper = f64(case.x), f64(case.lower), f64(case.upper)
            kw = dict(targets=case.t, lower=lower, upper=upper, key=case.key)
            swept = jit(sparsejax.sweep, static_argnums=0)(
                spec.fn, logits_fn, x, case.y, case.row.config, values={path: values}, **kw
            )
            chex.assert_type(swept.x_adv, jnp.float64)
            singles = [
                jit(spec.fn)(logits_fn, x, case.y, _replace_path(case.row.config, path, v), **kw)
                for v in values
            ]
        atol = 1e-12
    else:
        x = case.x
        kw = dict(targets=case.t, lower=case.lower, upper=case.upper, key=case.key)
        swept = jit(sparsejax.sweep, static_argnums=0)(
            spec.fn, case.model.logits_fn, x, case.y, case.row.config, values={path: values},
            **kw,
        )  # fmt: skip
        singles = [_call(case, config=_replace_path(case.row.config, path, v)) for v in values]
        # The swept call batches the model over V·N items, not N: float32 rounding may
        # differ in the last bits, the path (which elements moved, status) does not.
        atol = 1e-4
    chex.assert_shape(swept.x_adv, (len(values), *x.shape))
    for j, single in enumerate(singles):
        np.testing.assert_allclose(swept.x_adv[j], single.x_adv, atol=atol)
        np.testing.assert_array_equal(swept.x_adv[j] != x, single.x_adv != x)
        np.testing.assert_array_equal(swept.status[j], single.status)
        np.testing.assert_array_equal(swept.iterations[j], single.iterations)


def _counting(logits_fn):
    """``logits_fn`` that counts, through callbacks, every example it evaluates forward
    and every cotangent row it differentiates: an independent count of model passes."""
    counts = {"f": 0, "b": 0}

    def bump(key):
        def cb(v):
            counts[key] += int(np.shape(v)[0])

        return cb

    @jax.custom_vjp
    def fn(z):
        jax.debug.callback(bump("f"), z)
        return logits_fn(z)

    def fwd(z):
        jax.debug.callback(bump("f"), z)
        return logits_fn(z), z

    def bwd(z, ct):
        jax.debug.callback(bump("b"), ct)
        return jax.vjp(logits_fn, z)[1](ct)

    fn.defvjp(fwd, bwd)
    return fn, counts


@pytest.fixture(scope="module")
def singles(case):
    """Every example attacked alone (one call each, one program; lockstep, so that no lane
    computes for anyone else), through a model that counts its own passes:
    [(result, (forwards, backwards) counted)] per example."""
    spec = attacks.get(case.row.attack)
    fn, counts = _counting(case.model.logits_fn)
    one = jit(
        lambda x, y, t, lo, hi, k: spec.fn(
            fn,
            x,
            y,
            case.row.config,
            targets=t,
            lower=lo,
            upper=hi,
            key=k,
            schedule=Schedule("lockstep"),
        )  # fmt: skip
    )
    keys = jax.random.split(case.key, N)  # what the batched call gives example i
    out = []
    for i in range(N):
        counts.update(f=0, b=0)
        t_i = None if case.t is None else case.t[i : i + 1]
        r = one(
            case.x[i : i + 1], case.y[i : i + 1], t_i, case.lower[i : i + 1],
            case.upper[i : i + 1], keys[i : i + 1],
        )  # fmt: skip
        jax.block_until_ready(r)
        jax.effects_barrier()
        out.append((r, (counts["f"], counts["b"])))
    return out


def test_lockstep_queue_and_a_python_loop_agree(case, singles):
    """Every schedule computes the same attack on every example: lockstep vmap, the refill
    queue with 1 and 3 lanes, and one call per example."""
    spec = attacks.get(case.row.attack)
    kw = dict(targets=case.t, lower=case.lower, upper=case.upper, key=case.key)
    # The default schedule ran in case.result (a 1-lane queue on CPU, or lockstep); a queue
    # of 3 lanes (refills, lane_cond over lanes) for every row, lockstep in chunks (lax.map)
    # once, on the first row: one compilation less per row.
    other = {"queue (3 lanes)": Schedule("queue", 3)}
    if case.row is ROWS[0]:
        other["lockstep (chunks of 3)"] = Schedule("lockstep", 3)
    runs = {"default": case.result}
    for name, schedule in other.items():
        runs[name] = jit(spec.fn, static_argnames="schedule")(
            case.model.logits_fn, case.x, case.y, case.row.config, schedule=schedule, **kw
        )
    if case.row is ROWS[0] or case.row.attack == "spgd":
        # The accelerators' queue (every lane initialised at each refill, the finished ones
        # selected; no one-lane drain at the end).
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(engine, "_lanes_one_at_a_time", lambda: False)
            fresh = lambda *a, **k: spec.fn(*a, **k)  # a new function: traced anew
            runs["queue (3 lanes, as on accelerators)"] = jit(fresh, static_argnames="schedule")(
                case.model.logits_fn,
                case.x,
                case.y,
                case.row.config,
                schedule=Schedule("queue", 3),
                **kw,
            )
    for i, (single, _) in enumerate(singles):
        for name, r in runs.items():
            assert int(r.status[i]) == int(single.status[0]), name
            assert int(r.iterations[i]) == int(single.iterations[0]), name
            assert int(r.forwards[i]) == int(single.forwards[0]), name
            assert int(r.backwards[i]) == int(single.backwards[0]), name
            if int(single.status[0]) != Status.SUCCESS and case.row.attack.startswith("sapf"):
                # A failed SAPF search ends at λ1 = 100, where δ oscillates (its module
                # doc): the float32 rounding of another batch shape decides that last
                # atom's pixels. The path up to it (status, atoms, passes) is the same.
                continue
            # XLA's convolutions round differently at different batch sizes, and a
            # LinearSolver step |f + β| / |w_d| divides that rounding by a small |w_d|: values
            # agree to 1e-4, the path (elements moved, iterations, status) exactly.
            np.testing.assert_allclose(
                r.x_adv[i], single.x_adv[0], atol=case.row.value_atol, err_msg=name
            )
            np.testing.assert_array_equal(r.x_adv[i] != case.x[i], single.x_adv[0] != case.x[i])


def test_model_passes_are_counted_exactly(case, singles):
    """forwards/backwards agree with a logits function that counts its own evaluations
    (one example per call, lockstep: no lane computes for anyone else)."""
    for r, counted in singles:
        assert counted == (int(r.forwards[0]), int(r.backwards[0]))
        if case.row.attack in BLACK_BOX:
            assert int(r.backwards[0]) == 0  # the logits only, never a gradient
        elif int(r.status[0]) not in (Status.ALREADY_MISCLASSIFIED, Status.SKIPPED):
            assert int(r.backwards[0]) > 0


CONSTANT, NAN_OFF_CLEAN, NAN_EVERYWHERE = 0, 1, 2


def _broken(base, kind, clean, z):
    """A broken model (one pytree structure for all kinds, so one trace serves them all;
    ``lax.switch``, so only the chosen kind is differentiated): constant logits (argmax 9);
    NaN logits wherever the input is not one of the ``clean`` images (every perturbation is
    NaN to the model, box corners included); NaN logits everywhere."""

    def constant(z):
        return jnp.zeros((z.shape[0], 10)) + jnp.arange(10.0)[None]

    def nan_off_clean(z):
        same = jnp.all(z[:, None] == clean[None], axis=(2, 3, 4))  # [B, N]
        return base(z) + jnp.where(jnp.any(same, axis=1), 0.0, jnp.nan)[:, None]

    def nan_everywhere(z):
        return base(z) * jnp.nan

    return jax.lax.switch(kind, [constant, nan_off_clean, nan_everywhere], z)


@pytest.fixture(scope="module")
def broken(case):
    spec = attacks.get(case.row.attack)
    fn = jit(
        lambda kind, y, t: spec.fn(
            jax.tree_util.Partial(_broken, case.model.logits_fn, kind, case.x), case.x, y,
            case.row.config, targets=t, lower=case.lower, upper=case.upper, key=case.key,
        )
    )  # fmt: skip
    return lambda kind, y=case.y, t=case.t: fn(jnp.int32(kind), y, t)


def _all_finite(r):
    for leaf in jax.tree.leaves(r):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


def test_a_constant_model_is_degenerate_and_nothing_is_nan(case, broken):
    y = jnp.full((N,), 9, jnp.int32)  # the constant prediction: every item is attacked
    t = None if case.t is None else jnp.full((N,), 3, jnp.int32)
    r = broken(CONSTANT, y, t)
    _all_finite(r)
    assert set(np.asarray(r.status)) == {Status.DEGENERATE}
    assert not bool(r.success.any())


def test_a_model_with_nan_logits_is_nonfinite_and_nothing_is_nan(case, broken):
    """Never a success, never a NaN in the result, the contained NaN reported."""
    r = broken(NAN_OFF_CLEAN)
    _all_finite(r)
    status = np.asarray(r.status)
    attacked = np.asarray(case.result.status) != Status.ALREADY_MISCLASSIFIED
    assert not bool(r.success.any())
    assert set(status[attacked]) <= {Status.NONFINITE, Status.DEGENERATE}
    assert Status.NONFINITE in set(status[attacked])
    # A clean input with NaN logits is NONFINITE too, not "already misclassified".
    r = broken(NAN_EVERYWHERE)
    _all_finite(r)
    assert set(np.asarray(r.status)) == {Status.NONFINITE}
    np.testing.assert_array_equal(r.x_adv, case.x)


def test_a_mode_typo_is_rejected_before_compilation(case):
    if case.row.mode is None:
        pytest.skip(f"{case.row.attack} has no static mode to mistype (its settings are numbers)")
    field, typo = case.row.mode
    with count_compilations() as c, pytest.raises(SparsejaxError, match=field):
        dataclasses.replace(case.row.config, **{field: typo})
    assert c["n"] == 0


def test_bad_inputs_are_rejected_before_compilation(case):
    spec = attacks.get(case.row.attack)
    f = case.model.logits_fn
    kw = dict(targets=case.t, key=case.key)
    x_out, y_short, y_big = case.x + 2.0, case.y[:3], case.y + 10  # made before counting
    with count_compilations() as c:
        with pytest.raises(SparsejaxError, match="outside its bounds"):
            spec.fn(f, x_out, case.y, case.row.config, **kw)
        with pytest.raises(SparsejaxError, match="y must have shape"):
            spec.fn(f, case.x, y_short, case.row.config, **kw)
        with pytest.raises(SparsejaxError, match="must lie in"):
            spec.fn(f, case.x, y_big, case.row.config, **kw)
        if spec.targeted == "required":
            with pytest.raises(SparsejaxError, match="targeted attack"):
                spec.fn(f, case.x, case.y, case.row.config, key=case.key)
    assert c["n"] == 0


def test_results_json_round_trips_with_nothing_to_attack(case, tmp_path):
    """A batch where every input is misclassified: valid JSON, null where nothing exists."""
    from sparsejax import data, runner

    clean = np.asarray(jnp.argmax(case.model.logits_fn(case.x), axis=1))
    ds = data.Dataset(
        name="digits-wrong",
        split="test",
        x=np.asarray(case.x),
        y=((clean + 1) % 10).astype(np.int32),
        indices=np.arange(N),
        num_classes=10,
        source="test",
        class_names=None,
    )
    spec = attacks.get(case.row.attack)
    mode = "random" if case.row.targeted else None
    res = runner.run_attack(
        spec, case.row.config, case.model, ds, tmp_path, batch_size=N, target_mode=mode,
        progress=False,
    )  # fmt: skip
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert loaded == json.loads(json.dumps(res))
    assert loaded["summary"]["success_rate"] is None
    assert loaded["summary"]["n_attacked"] == 0
    assert {e["status"] for e in loaded["examples"]} == {"ALREADY_MISCLASSIFIED"}


def test_the_classifier_reads_the_number_of_classes_from_the_shape(case):
    f = Classifier(case.model.logits_fn, case.x.shape[1:])
    assert f.num_classes == 10
