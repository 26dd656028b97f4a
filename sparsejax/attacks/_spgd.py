"""sPGD (Zhong, Huang, Liu, "Towards Efficient Training and Evaluation of Robust Models
against l0 Bounded Adversarial Perturbations", ICML 2024), fixed k pixels (or elements).

The perturbation is factorised as δ = p ⊙ M(m): p ∈ [-ε, ε]^d a dense magnitude, m ∈ R^U a
mask score per unit (``_units``) and M(m) ∈ {0, 1}^U the indicator of its k largest
entries, spread over the unit's values. For one example, as the official code
(CityU-MLO/sPGD, ``autoattack/spgd.py``):

  init: p ~ U(-ε, ε) clipped to the box, m ~ N(0, 1); the best point is x with the clean
        cross-entropy as its loss (1 forward), and the first gradient is taken at
        x + p ⊙ M(m) (1 forward + 1 backward);
  step: 1. m ← m + β√U · g_m / ‖g_m‖₂ (no step when ‖g_m‖ < 2e-10);
        2. p ← clip(p + α ε sign(g_p), -ε, ε), clipped to the box;
        3. L = CE(Z(x + p ⊙ M(m)), y) and g = ∇_δ L (1 forward + 1 backward);
           g_m = Σ_values (g ⊙ p) · σ'(m) (the gradient reaches every unit, not only the
           top k); g_p = g ⊙ σ(m) with the *unprojected* rule, g ⊙ M(m) with the
           *projected* one (the two backward rules ``MaskingA`` / ``MaskingB``);
        4. the point is kept if it is adversarial (and the example stops), or if L is at
           least the best loss so far;
        5. when the top-k set of m was unchanged on ``patience`` steps since m was last
           drawn, m is drawn again (p is kept).

The count in 5 is the reference's ``reinitial_count``. There it grows by one for each
example whose set is unchanged and is reset for every example only on a step at which no
example of the batch is unchanged, which at the batch sizes it runs (100 and more) hardly
ever happens: the steps counted are those since the last draw, not consecutive ones. That
is ``unchanged_count="since-redraw"``, the default; the per-example reading of "3 steps
in a row", ``"consecutive"``, draws m less often and fools fewer examples (RESULTS.md).

Departures, each a choice the reference leaves to its batch: the count above is per
example; the top k are ranked by m (the reference ranks σ(m), whose float32 value
saturates at 1 for m > 17 and then ties, broken in its unstable sort's order: RESULTS.md
measures no difference in success); a non-finite loss or gradient is contained (the
gradient is zeroed, the point not kept). Untargeted only, as the reference's attack.

``iterations`` is the number of steps run; ``stats.reinits`` how often m was drawn again.
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.attacks import _config, _units, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.attacks.losses import cross_entropy


@_config.config
class SPGDConfig:
    """sPGD settings (the official evaluation's: k = 20 pixels, ε = 1, α = β = 0.25, 10,000
    iterations, patience 3). Numbers are traced; ``steps``, ``unit`` and the modes static."""

    attack_name: ClassVar[str] = "spgd"

    k: float = param(20.0, doc="units changed at most (the budget)", unit="`unit`", paper="k")
    unit: _units.Unit = param(
        "pixels", static=True, doc="what k counts: (h, w) positions or channel values"
    )
    steps: int = param(
        10_000,
        static=True,
        doc="iterations (1 forward + 1 backward each) at most; an example stops when fooled",
        unit="steps",
        paper="n_iters (README: 10,000)",
    )
    gradient: Literal["unprojected", "projected"] = param(
        "unprojected",
        static=True,
        doc="backward rule for p: through σ(m) or through the binary top-k mask",
        paper="unprojected_gradient",
    )
    epsilon: float = param(
        1.0, doc="ℓ∞ bound of the magnitude p (1: only the box binds)", unit="[0, 1] pixel units",
        paper="ε",
    )  # fmt: skip
    alpha: float = param(0.25, doc="magnitude step, times ε", paper="α")
    beta: float = param(0.25, doc="mask step, times √U", paper="β")
    patience: int = param(
        3, doc="unchanged top-k steps before m is drawn again", unit="steps", paper="patience"
    )
    unchanged_count: Literal["since-redraw", "consecutive"] = param(
        "since-redraw",
        static=True,
        doc="which unchanged top-k steps count toward patience: all since m was last drawn "
        "(the released code's), or only consecutive ones",
        paper="reinitial_count",
    )
    random_start: bool = param(
        True, static=True, doc="p starts uniform in [-ε, ε] (else 0)", paper="random_start"
    )

    def validate(self) -> None:
        _config.check_count(self, "steps", lo=1, hi=10_000_000)
        _config.check_number(self, "k", lo=1.0, integer=True)
        _config.check_number(self, "epsilon", lo=0.0, lo_open=True)
        _config.check_number(self, "alpha", lo=0.0, lo_open=True)
        _config.check_number(self, "beta", lo=0.0, lo_open=True)
        _config.check_number(self, "patience", lo=1.0, integer=True)


class SPGDStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    reinits: jax.Array  # int32 times the mask score m was drawn again
    best_loss: jax.Array  # float32 cross-entropy of the returned point


class State(NamedTuple):
    p: jax.Array  # float32[H, W, C] magnitude
    m: jax.Array  # float32[U] mask score
    grad_p: jax.Array  # float32[H, W, C] gradients of the last forward
    grad_m: jax.Array  # float32[U]
    top: jax.Array  # bool[U] the top-k set of m
    unchanged: jax.Array  # int32 steps with the same top-k set (``unchanged_count``)
    reinits: jax.Array  # int32
    t: jax.Array  # int32 steps taken
    best: jax.Array  # float32[H, W, C]
    best_loss: jax.Array  # float32
    fooled: jax.Array  # bool: best is adversarial
    flat: jax.Array  # bool: every gradient so far was exactly 0 (a constant model)
    nonfinite: jax.Array  # bool


def _spread(mask_u, like, unit):
    """bool/float[U] -> [H, W, C]: a unit's value on each of its elements."""
    u, v = _units.unit_shape(like.shape, unit)
    return jnp.broadcast_to(mask_u[:, None], (u, v)).reshape(like.shape).astype(like.dtype)


def _forward_backward(f: Classifier, p: Problem, c: SPGDConfig, pert, m, projected):
    """L = CE at x + p ⊙ M(m), and the gradients (g_p, g_m) of the rule ``projected`` (a
    bool, traced in sAA's cascade) (1 forward + 1 backward)."""
    top = _units.top_k(m, c.k)
    delta = pert * _spread(top, pert, c.unit)

    def loss(delta):
        logits = f.logits(p.x + delta)
        return cross_entropy(logits, p.label), logits

    (value, logits), g = jax.value_and_grad(loss, has_aux=True)(delta)
    soft = jax.nn.sigmoid(m)
    gate = jnp.where(projected, top.astype(soft.dtype), soft)
    grad_p = g * _spread(gate, g, c.unit)
    grad_m = jnp.sum(_units.as_units(g * pert, c.unit), axis=1) * soft * (1 - soft)
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(g))
    zero_unless = lambda a: jnp.where(finite, a, 0.0)
    return value, logits, delta, zero_unless(grad_p), zero_unless(grad_m), finite, top


def _init(f: Classifier, p: Problem, c: SPGDConfig):
    return init_with_rule(f, p, c, c.gradient == "projected")


def _step(f: Classifier, p: Problem, c: SPGDConfig, s: State):
    """One sPGD iteration: 1 forward + 1 backward."""
    return step_with_rule(f, p, c, s, c.gradient == "projected")


def init_with_rule(f: Classifier, p: Problem, c: SPGDConfig, projected):
    """``init`` with the gradient rule given apart from the config (for sAA)."""
    key_p, key_m = jax.random.split(jax.random.fold_in(p.key, 0))
    u, _ = _units.unit_shape(p.x.shape, c.unit)
    pert = jnp.zeros_like(p.x)
    if c.random_start:
        pert = jax.random.uniform(key_p, p.x.shape, p.x.dtype, -c.epsilon, c.epsilon)
    pert = jnp.clip(pert, p.lower - p.x, p.upper - p.x)
    m = jax.random.normal(key_m, (u,), p.x.dtype)
    clean_loss = cross_entropy(f.logits(p.x), p.label)
    _, _, _, grad_p, grad_m, finite, top = _forward_backward(f, p, c, pert, m, projected)
    state = State(
        p=pert, m=m, grad_p=grad_p, grad_m=grad_m, top=top, unchanged=jnp.int32(0),
        reinits=jnp.int32(0), t=jnp.int32(0), best=p.x, best_loss=clean_loss,
        fooled=jnp.bool_(False), flat=~(jnp.any(grad_p != 0) | jnp.any(grad_m != 0)),
        nonfinite=~finite,
    )  # fmt: skip
    return state, Passes(2, 1)


def _redraw(p: Problem, c: SPGDConfig, t, m, top):
    """A fresh m ~ N(0, 1) and its top-k set (the keys of step t + 1)."""
    fresh = jax.random.normal(jax.random.fold_in(p.key, t + 1), m.shape, m.dtype)
    return fresh, _units.top_k(fresh, c.k)


def step_with_rule(f: Classifier, p: Problem, c: SPGDConfig, s: State, projected):
    """``step`` with the gradient rule given apart from the config (for sAA)."""
    u = s.m.size
    norm = jnp.linalg.norm(s.grad_m)
    m = s.m + jnp.where(norm < 2e-10, 0.0, c.beta * jnp.sqrt(u) / (norm + 1e-10)) * s.grad_m
    pert = jnp.clip(s.p + c.alpha * c.epsilon * jnp.sign(s.grad_p), -c.epsilon, c.epsilon)
    pert = jnp.clip(pert, p.lower - p.x, p.upper - p.x)
    value, logits, delta, grad_p, grad_m, finite, top = _forward_backward(
        f, p, c, pert, m, projected
    )
    fooled = p.fooled_by(logits)
    keep = fooled | (value >= s.best_loss)  # NaN >= anything is False
    same_set = jnp.all(top == s.top)
    unchanged = s.unchanged + same_set  # "since-redraw": the reference's reinitial_count
    if c.unchanged_count == "consecutive":
        unchanged = jnp.where(same_set, unchanged, 0)
    redraw = ~fooled & (unchanged >= c.patience)
    # A branch, not a select: the draw and its top-k cost only on the steps some lane redraws.
    # The config and the key go in as operands (lane_cond hoists only floating-point
    # closures, and a swept k is batched).
    m, top = engine.lane_cond(redraw, _redraw, lambda p, c, t, m, top: (m, top), p, c, s.t, m, top)
    s = s._replace(
        p=pert,
        m=m,
        grad_p=grad_p,
        grad_m=grad_m,
        top=top,
        unchanged=jnp.where(redraw, 0, unchanged),
        reinits=s.reinits + redraw,
        t=s.t + 1,
        best=jnp.where(keep, p.x + delta, s.best),
        best_loss=jnp.where(keep & finite, value, s.best_loss),
        fooled=fooled,
        flat=s.flat & ~(jnp.any(grad_p != 0) | jnp.any(grad_m != 0)),
        nonfinite=s.nonfinite | ~finite,
    )
    return s, Passes(1, 1)


def _done(f, p, c, s: State):
    return s.fooled


def _finish(f, p: Problem, c: SPGDConfig, s: State, steps):
    return Outcome(
        x_adv=s.best,
        claimed=s.fooled,
        degenerate=~s.fooled & s.flat,  # no gradient ever: nothing to follow
        nonfinite=s.nonfinite,
        iterations=s.t,
        stats=SPGDStats(reinits=s.reinits, best_loss=s.best_loss),
    )


ALGORITHM = engine.Algorithm(
    name="spgd",
    config_cls=SPGDConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    max_steps=lambda c: c.steps,
    targeted="no",
    needs_key=True,
    check_shape=_units.check_k,
)

spgd = engine.attack_function(
    ALGORITHM,
    """sPGD (Zhong et al., ICML 2024) on a batch: at most k changed pixels (or elements,
    ``config.unit``) by projected gradient ascent on the cross-entropy over a dense
    magnitude and a top-k mask score. Untargeted; ``key`` is required.

    ``iterations`` is the number of steps run; ``stats`` is an :class:`SPGDStats`.
    """,
)
