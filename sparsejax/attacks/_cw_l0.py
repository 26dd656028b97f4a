"""The ℓ0 attack of Carlini & Wagner ("Towards Evaluating the Robustness of Neural Networks",
IEEE S&P 2017, §VI-A), as their released ``l0_attack.py`` (carlini/nn_robust_attacks): the
ℓ2 attack run again and again on a shrinking set of units it may change, each round fixing
the units that matter least to their clean values. Pixels by default (the reference's
``independent_channels=False``), or elements.

For one example x (box [lower, upper], mid-point m, half-width h; the reference's box is
[-0.5, 0.5]) and a set V of units it may still change (at first every unit):

  ℓ2 solve (one *round*): over w, with the start s = artanh(0.9999995·(z_prev - m)/h),
        z(w) = V ⊙ (m + h·tanh(w + s)) + (1 - V) ⊙ x,
        loss(w) = c·f(z) + ‖z - x'‖²₂,     x' = m + 0.9999995·(x - m)   (§V, Eq. for C&W-ℓ2)
        f(z) = max(Z_y - max_{j≠y} Z_j + κ, 0)   untargeted,
               max(max_{j≠t} Z_j - Z_t + κ, 0)   targeted (the paper's f₆ with κ = 0.01);
      Adam from w = 0 (fresh moments each round); at each step, if f(z(w)) < 1e-4 the
      round succeeds at that w; after ``steps`` steps without success c ← c·const_factor
      (w and the moments carry on) until c ≥ largest_const, when the attack stops. c is
      carried from round to round (halved first with ``reduce_const``).
  fixing (after a successful round, at its z and g = ∇_w loss): per unit still in V,
      the total change Δ = |Σ_values (z - x)| · Σ_values |g| (pixels; |z - x|·|g| for
      elements); the units are taken in increasing Δ and removed from V, at least one,
      stopping after the first with Δ > 0.01 or after ⌈0.3·√n⌉ units, n the pixels of z
      that differ from x (some channel by ≥ 1e-4). z_prev ← z.

The returned image is the last successful round's z (the reference's ``last_solution``),
with every element within 1e-4 of x set back to x when that is still adversarial (1 more
forward per round): the reference's own equality test, so that the exact count of changed
units is not inflated by the 5e-7 shrink of the tanh change of variables.

Adam is TensorFlow 1's, as the reference's (ε added to √v, the bias corrections in the step
size), not optax's (ε added to √v̂): at the box's edges tanh' ≈ 1e-6 makes gradients as
small as ε, and there the two move w differently (by up to 0.04 in a value, on 2 of the 32
test problems). The derivative of tanh is computed as 1/cosh²: autodiff's 1 - tanh² loses
4.6% to cancellation in float32 at the edges, and Adam, which divides out the gradient's
scale, turns that rounding into steps of other sizes (the same example then took another
path at each batch shape).

Departures from the reference: ties in Δ are taken in unit order (its unstable
``argsort`` leaves them to NumPy); ``abort_early=False`` is not offered (the reference then
never accepts a solution); the attack stops as soon as no unit is left to change (the
reference runs every remaining constant first and returns the same image).

``iterations`` is the number of Adam steps; ``stats.rounds`` the successful ℓ2 solves,
``stats.const`` the constant at the end, ``stats.fixed`` the units fixed to x.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.attacks import _config, _units, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.attacks.losses import cw_margin, logit_margin

_SHRINK = 0.9999995  # the reference's artanh(x·1.999999) on [-0.5, 0.5], x/0.5 shrunk: |tanh| < 1
_SOLVED = 1e-4  # f below this: the round succeeded (the reference's ``works < .0001``)
_EQUAL = 1e-4  # a value within this of x counts as unchanged
_LARGE = 0.01  # a fixed unit whose total change exceeds this ends the fixing
_FRACTION = 0.3  # at most ⌈0.3·√n⌉ units fixed per round


class _Adam(NamedTuple):
    """TensorFlow 1's ``AdamOptimizer`` state (β = 0.9, 0.999, ε = 1e-8)."""

    m: jax.Array
    v: jax.Array
    t: jax.Array  # int32 updates made


def _adam_init(w) -> _Adam:
    return _Adam(jnp.zeros_like(w), jnp.zeros_like(w), jnp.int32(0))


def _adam_update(w, g, a: _Adam, lr, b1=0.9, b2=0.999, eps=1e-8):
    """w - lr·√(1-β2^t)/(1-β1^t) · m/(√v + ε), TensorFlow 1's update."""
    t = a.t + 1
    m = b1 * a.m + (1 - b1) * g
    v = b2 * a.v + (1 - b2) * g * g
    lr_t = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
    return w - lr_t * m / (jnp.sqrt(v) + eps), _Adam(m, v, t)


@_config.config
class CWL0Config:
    """C&W-ℓ0 settings (the reference's defaults). Numbers are traced; ``unit`` and
    ``reduce_const`` are static."""

    attack_name: ClassVar[str] = "cw-l0"

    steps: int = param(
        1000, doc="Adam steps at one constant before it grows (1 forward + 1 backward each)",
        unit="steps", paper="MAX_ITERATIONS",
    )  # fmt: skip
    learning_rate: float = param(1e-2, doc="Adam's step size", paper="LEARNING_RATE")
    initial_const: float = param(1e-3, doc="the first constant c", paper="INITIAL_CONST")
    largest_const: float = param(
        2e6, doc="the attack stops once c reaches this", paper="LARGEST_CONST"
    )
    const_factor: float = param(
        2.0, doc="c grows by this factor after a failed constant", paper="CONST_FACTOR"
    )
    confidence: float = param(
        0.01, doc="logit margin κ the ℓ2 solves ask for", unit="logits", paper="κ (.01 in code)"
    )
    unit: _units.Unit = param(
        "pixels", static=True, doc="what is counted and fixed: pixels (all channels) or "
        "elements", paper="independent_channels",
    )  # fmt: skip
    reduce_const: bool = param(
        False, static=True, doc="halve c after each successful round", paper="REDUCE_CONST"
    )

    def validate(self) -> None:
        _config.check_number(self, "steps", lo=1.0, integer=True)
        _config.check_number(self, "learning_rate", lo=0.0, lo_open=True)
        _config.check_number(self, "initial_const", lo=0.0, lo_open=True)
        _config.check_number(self, "largest_const", lo=0.0, lo_open=True)
        _config.check_number(self, "const_factor", lo=1.0, lo_open=True)
        _config.check_number(self, "confidence", lo=0.0)


class CWL0Stats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    rounds: jax.Array  # int32 successful ℓ2 solves
    const: jax.Array  # float32 the constant c at the end
    fixed: jax.Array  # int32 units fixed to their clean values


class _State(NamedTuple):
    w: jax.Array  # float32[H, W, C] the variable of the current ℓ2 solve (0 at its start)
    start: jax.Array  # float32[H, W, C] s, the start in tanh space
    adam: _Adam
    free: jax.Array  # bool[U] V, the units that may change
    const: jax.Array  # float32 c
    t_const: jax.Array  # int32 steps at the current constant
    t: jax.Array  # int32 Adam steps in all
    best: jax.Array  # float32[H, W, C] the last successful round's image (x while none)
    rounds: jax.Array  # int32
    f_first: jax.Array  # float32 f at the first step
    varied: jax.Array  # bool: f has differed from its first value
    nonfinite: jax.Array  # bool: a non-finite loss or gradient was met (and skipped)


@jax.custom_jvp
def _tanh(a):
    """tanh with the derivative 1/cosh²(a): autodiff's 1 - tanh²(a) cancels catastrophically
    in float32 near the box's edges (|a| ≈ 7.6 at x = lower or upper: 4.6% error), where Adam,
    which divides out the gradient's scale, turns that error into steps of another size."""
    return jnp.tanh(a)


@_tanh.defjvp
def _tanh_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    return jnp.tanh(a), da / jnp.square(jnp.cosh(a))


def _box(p: Problem):
    mid, half = (p.upper + p.lower) / 2, (p.upper - p.lower) / 2
    return mid, half


def _to_tanh(z, p: Problem):
    """artanh(0.9999995·(z - m)/h), 0 where the box is flat."""
    mid, half = _box(p)
    u = jnp.where(half > 0, (z - mid) / jnp.where(half > 0, half, 1.0), 0.0)
    return jnp.arctanh(_SHRINK * u)


def _spread(units, like, unit):
    u, v = _units.unit_shape(like.shape, unit)
    return jnp.broadcast_to(units[:, None], (u, v)).reshape(like.shape)


def _margin_loss(logits, p: Problem, c: CWL0Config):
    if p.targeted:
        return cw_margin(logits, p.target, c.confidence)
    return jnp.maximum(logit_margin(logits, p.label) + c.confidence, 0.0)


def units_to_fix(change, free, changed_pixels):
    """bool[U]: the units of ``free`` taken in increasing ``change`` (ties in unit order),
    at least one, up to and including the first with change > 0.01, at most
    ⌈0.3·√changed_pixels⌉ (the reference's loop over ``np.argsort(totalchange)``)."""
    n_units = change.size
    order = jnp.argsort(jnp.where(free, change, jnp.inf), stable=True)
    position = jnp.arange(1, n_units + 1)  # the reference's ``did`` after fixing each
    n_free = jnp.sum(free)
    large = (change[order] > _LARGE) & (position <= n_free)
    first_large = jnp.min(jnp.where(large, position, n_units + 1))
    threshold = _FRACTION * jnp.sqrt(changed_pixels)
    at_most = 1 + jnp.sum(position < threshold)  # the first ``did`` with did >= threshold
    n_fix = jnp.minimum(jnp.minimum(at_most, first_large), n_free)
    return jnp.zeros(n_units, bool).at[order].set(position <= n_fix)


def _init(f: Classifier, p: Problem, c: CWL0Config):
    w = jnp.zeros_like(p.x)
    n_units = _units.unit_shape(p.x.shape, c.unit)[0]
    state = _State(
        w=w,
        start=_to_tanh(p.x, p),
        adam=_adam_init(w),
        free=jnp.ones(n_units, bool),
        const=jnp.asarray(c.initial_const, p.x.dtype),
        t_const=jnp.int32(0),
        t=jnp.int32(0),
        best=p.x,
        rounds=jnp.int32(0),
        f_first=jnp.zeros((), p.x.dtype),
        varied=jnp.bool_(False),
        nonfinite=jnp.bool_(False),
    )
    return state, Passes()


def _step(f: Classifier, p: Problem, c: CWL0Config, s: _State):
    """One Adam step of the current ℓ2 solve, or, when f < 1e-4 at w, the end of the round
    (the fixing and the next round's start): 1 forward + 1 backward, + 1 forward when the
    round ends."""
    mid, half = _box(p)
    free = _spread(s.free, p.x, c.unit)
    x_ref = mid + _SHRINK * (p.x - mid)

    def loss(w):
        z = jnp.where(free, mid + half * _tanh(w + s.start), p.x)
        logits = f.logits(z)
        margin = _margin_loss(logits, p, c)
        return s.const * margin + jnp.sum(jnp.square(z - x_ref)), (margin, z)

    (value, (margin, z)), grad = jax.value_and_grad(loss, has_aux=True)(s.w)
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
    solved = finite & (margin < _SOLVED)
    f_first = jnp.where(s.t == 0, margin, s.f_first)
    varied = s.varied | (finite & (s.t > 0) & (margin != s.f_first))

    # The round's end: fix the units that changed least (weighted by the gradient).
    diff = z - p.x
    changed_pixels = jnp.sum(jnp.any(jnp.abs(diff) >= _EQUAL, axis=-1))
    if c.unit == "pixels":
        change = jnp.abs(jnp.sum(diff, axis=-1)) * jnp.sum(jnp.abs(grad), axis=-1)
    else:
        change = jnp.abs(diff) * jnp.abs(grad)
    fix = units_to_fix(change.ravel(), s.free, changed_pixels)
    snapped = jnp.where(jnp.abs(diff) < _EQUAL, p.x, z)
    # One more forward, needed only when the round ends (skipped otherwise).
    snapped_fools = engine.lane_cond(
        solved,
        lambda z, p: p.fooled_by(f.logits(z)),
        lambda z, p: jnp.bool_(False),
        snapped,
        p,
    )
    best = jnp.where(snapped_fools, snapped, z)
    w0 = jnp.zeros_like(s.w)
    ended = _State(
        w=w0,
        start=_to_tanh(z, p),
        adam=_adam_init(w0),
        free=s.free & ~fix,
        const=s.const / 2 if c.reduce_const else s.const,
        t_const=jnp.int32(0),
        t=s.t + 1,
        best=best,
        rounds=s.rounds + 1,
        f_first=f_first,
        varied=varied,
        nonfinite=s.nonfinite,
    )

    # An ordinary step; a non-finite one is not taken (the counters still advance).
    w, adam = _adam_update(s.w, grad, s.adam, c.learning_rate)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    grown = s.t_const + 1 >= c.steps
    stepped = s._replace(
        w=keep(w, s.w),
        adam=jax.tree.map(keep, adam, s.adam),
        const=jnp.where(grown, s.const * c.const_factor, s.const),
        t_const=jnp.where(grown, 0, s.t_const + 1),
        t=s.t + 1,
        f_first=f_first,
        varied=varied,
        nonfinite=s.nonfinite | ~finite,
    )
    s = jax.tree.map(lambda a, b: jnp.where(solved, a, b), ended, stepped)
    return s, Passes(1 + solved.astype(jnp.int32), 1)


def _done(f, p, c: CWL0Config, s: _State):
    # The reference runs the remaining constants even with no unit left, and returns the
    # same image: stopping at once changes nothing but the time.
    return (s.const >= c.largest_const) | ~jnp.any(s.free)


def _finish(f, p: Problem, c: CWL0Config, s: _State, steps):
    found = s.rounds > 0
    return Outcome(
        x_adv=s.best,
        claimed=found,
        degenerate=~found & ~s.varied,  # f never moved: a flat model
        nonfinite=s.nonfinite,
        iterations=s.t,
        stats=CWL0Stats(rounds=s.rounds, const=s.const, fixed=jnp.sum(~s.free, dtype=jnp.int32)),
    )


ALGORITHM = engine.Algorithm(
    name="cw-l0",
    config_cls=CWL0Config,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    # The engine's cap; the attack's own (the constant reaching largest_const, or no unit
    # left) is in ``_done``.
    max_steps=lambda c: 2**30,
)

cw_l0 = engine.attack_function(
    ALGORITHM,
    """C&W-ℓ0 (Carlini & Wagner, S&P 2017; their ``l0_attack.py``) on a batch: the ℓ2
    attack in tanh space on the units still allowed to change, then the units that changed
    least fixed to x, until an ℓ2 solve fails at every constant. Pixels by default
    (``unit``). Targeted (towards ``targets``) when they are given.

    ``iterations`` is the number of Adam steps; ``stats`` is a :class:`CWL0Stats`.
    """,
)
