"""σ-zero (Cinà, Villani, Pintor, Schönherr, Biggio, Pelillo, "σ-zero: Gradient-based
Optimization of ℓ0-norm Adversarial Examples", ICLR 2025), minimum-ℓ0 in elements.

For one example x with label y, every step t = 0 … steps-1 (the reference: adv_lib 0.2.8's
``sigma_zero``, adapted there from the authors' code; the paper was not at hand, so no
equation numbers are cited):

  1. L(δ) = max(Z_y - max_{j≠y} Z_j, 0) + (1/d) Σ_i δ_i² / (δ_i² + σ) at x + δ: the clamped
     difference of logits and the smooth ℓ0 approximation, d elements;
  2. the current point is kept if it is adversarial and has fewer nonzero elements than the
     best so far (the returned image is the best one);
  3. g = ∇L / ‖∇L‖_∞; δ ← δ - η_t Adam(g) (β = 0.9, 0.999; optax's ``scale_by_adam``);
     δ ← clip(x + δ, lower, upper) - x;
  4. η_t follows a cosine from η0 down to 0.1·η0 (the reference computes it after the step
     and uses it from the next one on);
  5. τ ← clip(τ ± τ_factor · η, 0, 1): up when the current point was adversarial, down
     otherwise (the adaptive threshold); every |δ_i| < τ is set to 0.

Targeted (adv_lib has none): the loss term is max(max_{j≠t} Z_j - Z_t, 0), the same
difference of logits towards the target t, and "adversarial" means argmax = t.
``budget`` > 0 adds the 2025 reference's early stop (its ``epsilon_budget``): an example
stops as soon as its best adversarial point changes at most ``budget`` elements.

``iterations`` is the number of steps run; ``stats.best_step`` the step of the returned
point (-1: none found).
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax.attacks import _config, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.attacks.losses import logit_margin


@_config.config
class SigmaZeroConfig:
    """σ-zero settings (adv_lib's defaults). Numbers are traced; ``steps`` and the modes are
    static."""

    attack_name: ClassVar[str] = "sigma-zero"

    steps: int = param(
        1000, static=True, doc="optimisation steps (1 forward + 1 backward each)", unit="steps"
    )
    eta0: float = param(
        1.0, doc="initial step size (cosine decay to 0.1·eta0)", paper="η0 (adv_lib: 1.0)"
    )
    sigma: float = param(
        1e-3,
        doc="sharpness of the ℓ0 approximation δ²/(δ² + σ)",
        unit="[0, 1] pixel units squared",
        paper="σ",
    )
    tau0: float = param(
        0.3, doc="initial threshold below which |δ_i| is set to 0", unit="[0, 1] pixel units",
        paper="τ0",
    )  # fmt: skip
    tau_factor: float = param(
        0.01, doc="threshold change per step, times the step size", paper="τ_factor"
    )
    budget: int = param(
        0,
        doc="stop an example once its best adversarial point changes at most this many "
        "elements (0: run every step)",
        unit="elements",
        paper="epsilon_budget (2025 reference)",
    )
    grad_norm: Literal["linf", "l2"] = param(
        "linf", static=True, doc="norm that normalises the gradient", paper="grad_norm"
    )

    def validate(self) -> None:
        _config.check_count(self, "steps", lo=1, hi=1_000_000)
        _config.check_number(self, "eta0", lo=0.0, lo_open=True)
        _config.check_number(self, "sigma", lo=0.0, lo_open=True)
        _config.check_number(self, "tau0", lo=0.0, hi=1.0)
        _config.check_number(self, "tau_factor", lo=0.0)
        _config.check_number(self, "budget", lo=0.0, integer=True)


class SigmaZeroStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    best_step: jax.Array  # int32 step of the returned point (-1: none)
    tau: jax.Array  # float32 the threshold at the end


class _State(NamedTuple):
    delta: jax.Array  # float32[H, W, C]
    adam: optax.OptState
    tau: jax.Array
    eta: jax.Array  # the step size of the next step
    t: jax.Array  # int32 steps taken
    best: jax.Array  # float32[H, W, C] the best adversarial point (x while none)
    best_l0: jax.Array  # int32 (d + 1 while none)
    best_step: jax.Array  # int32
    moved: jax.Array  # bool: δ was ever nonzero
    nonfinite: jax.Array  # bool: a non-finite loss or gradient was met (and skipped)


_ADAM = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)


def _logit_difference(logits, p: Problem):
    """max(Z_y - max_{j≠y} Z_j, 0) untargeted, max(max_{j≠t} Z_j - Z_t, 0) targeted."""
    if p.targeted:
        return jnp.maximum(-logit_margin(logits, p.target), 0.0)
    return jnp.maximum(logit_margin(logits, p.label), 0.0)


def _init(f: Classifier, p: Problem, c: SigmaZeroConfig):
    delta = jnp.zeros_like(p.x)
    state = _State(
        delta=delta,
        adam=_ADAM.init(delta),
        tau=jnp.asarray(c.tau0, p.x.dtype),
        eta=jnp.asarray(c.eta0, p.x.dtype),
        t=jnp.int32(0),
        best=p.x,
        best_l0=jnp.int32(p.x.size + 1),
        best_step=jnp.int32(-1),
        moved=jnp.bool_(False),
        nonfinite=jnp.bool_(False),
    )
    return state, Passes()


def _step(f: Classifier, p: Problem, c: SigmaZeroConfig, s: _State):
    """One σ-zero step: 1 forward + 1 backward."""

    def loss(delta):
        logits = f.logits(p.x + delta)
        sq = jnp.square(delta)
        l0_approx = jnp.mean(sq / (sq + c.sigma))  # the smooth ℓ0, normalised by d
        return _logit_difference(logits, p) + l0_approx, logits

    (value, logits), grad = jax.value_and_grad(loss, has_aux=True)(s.delta)
    # Keep the current point if it is adversarial and sparser than the best (before the step).
    adversarial = p.fooled_by(logits)
    l0 = jnp.sum(s.delta != 0, dtype=jnp.int32)
    better = adversarial & (l0 < s.best_l0)
    s = s._replace(
        best=jnp.where(better, p.x + s.delta, s.best),
        best_l0=jnp.where(better, l0, s.best_l0),
        best_step=jnp.where(better, s.t, s.best_step),
    )
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
    norm = jnp.max(jnp.abs(grad)) if c.grad_norm == "linf" else jnp.linalg.norm(grad)
    grad = jnp.where(finite, grad / jnp.maximum(norm, 1e-12), 0.0)
    direction, adam = _ADAM.update(grad, s.adam)
    delta = jnp.clip(p.x + s.delta - s.eta * direction, p.lower, p.upper) - p.x
    # Cosine annealing, evaluated after the step as in the reference.
    eta = c.eta0 * (0.1 + 0.9 * (1 + jnp.cos(jnp.pi * s.t / c.steps)) / 2)
    tau = jnp.clip(s.tau + jnp.where(adversarial, 1.0, -1.0) * c.tau_factor * eta, 0.0, 1.0)
    delta = jnp.where(jnp.abs(delta) < tau, 0.0, delta)
    keep = lambda new, old: jnp.where(finite, new, old)  # a non-finite step is not taken
    s = s._replace(
        delta=keep(delta, s.delta),
        adam=jax.tree.map(keep, adam, s.adam),
        tau=keep(tau, s.tau),
        eta=eta.astype(s.eta.dtype),
        t=s.t + 1,
        moved=s.moved | jnp.any(delta != 0),
        nonfinite=s.nonfinite | ~finite,
    )
    return s, Passes(1, 1)


def _done(f, p: Problem, c: SigmaZeroConfig, s: _State):
    return (c.budget > 0) & (s.best_l0 <= c.budget)


def _finish(f, p: Problem, c: SigmaZeroConfig, s: _State, steps):
    found = s.best_step >= 0
    return Outcome(
        x_adv=s.best,
        claimed=found,
        degenerate=~found & ~s.moved,  # δ never left 0: a flat loss (a constant model, say)
        nonfinite=s.nonfinite,
        iterations=s.t,
        stats=SigmaZeroStats(best_step=s.best_step, tau=s.tau),
    )


ALGORITHM = engine.Algorithm(
    name="sigma-zero",
    config_cls=SigmaZeroConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    max_steps=lambda c: c.steps,
    early_stop=False,  # every example runs all steps unless a budget is set
)

sigma_zero = engine.attack_function(
    ALGORITHM,
    """σ-zero (Cinà et al., ICLR 2025) on a batch: minimum-ℓ0 (elements) adversarial
    examples by Adam on the clamped difference of logits plus a smooth ℓ0 term, with an
    adaptive threshold. Targeted (towards ``targets``) when they are given.

    ``iterations`` is the number of steps run; ``stats`` is a :class:`SigmaZeroStats`.
    """,
)
