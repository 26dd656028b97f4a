"""FMN-ℓ0 (Pintor, Roli, Brendel, Biggio, "Fast Minimum-norm Adversarial Attacks through
Adaptive Norm Constraints", NeurIPS 2021), minimum-ℓ0 in elements.

For one example x with label y (or target t), every step i = 0 … steps-1, as adv_lib 0.2.8's
``fmn(norm=0)`` (the paper's Algorithm 1 with the ℓ0 rules of its released code; no starting
point, so δ starts at 0 and ε at 1):

  1. α_i, γ_i decay from α_init, γ_init to α_final, γ_final by a cosine;
  2. L = max_{j≠y} Z_j - Z_y (untargeted) or Z_t - max_{j≠t} Z_j (targeted) at x + δ, and
     its gradient g (1 forward + 1 backward);
  3. the current point is kept if it is adversarial and changes fewer elements than the
     best so far;
  4. ε ← min(ε - 1, ⌊ε(1 - γ)⌋, best ℓ0) when the current point is adversarial, else
     max(ε + 1, ⌊ε(1 + γ)⌋); then 0 ≤ ε ≤ d (the adaptive norm constraint);
  5. δ ← δ + α g / ‖g‖₂, then the projection on the ℓ0 ball: every |δ_i| below the ε-th
     largest is set to 0 (ties kept, as the reference; ε = 0 keeps the largest), then δ is
     clipped to the box.

``iterations`` is the number of steps run; ``stats.best_step`` the step of the returned
point (-1: none found, the clean image is returned).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.attacks import _config, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.attacks.losses import logit_margin


@_config.config
class FMNConfig:
    """FMN-ℓ0 settings (adv_lib's ``fmn`` defaults). Numbers are traced; ``steps`` is
    static."""

    attack_name: ClassVar[str] = "fmn-l0"

    steps: int = param(
        10,
        static=True,
        doc="optimisation steps (1 forward + 1 backward each); adv_lib's default is 10, "
        "AttackBench runs 1000",
        unit="steps",
    )
    alpha_init: float = param(1.0, doc="initial step size (cosine decay)", paper="α_init")
    alpha_final: float = param(0.01, doc="final step size (adv_lib: α_init / 100)", paper="α_final")
    gamma_init: float = param(0.05, doc="initial factor of the ε update ε(1 ± γ)", paper="γ_init")
    gamma_final: float = param(0.001, doc="final factor of the ε update", paper="γ_final")

    def validate(self) -> None:
        _config.check_count(self, "steps", lo=1, hi=1_000_000)
        for name in ("alpha_init", "alpha_final"):
            _config.check_number(self, name, lo=0.0, lo_open=True)
        for name in ("gamma_init", "gamma_final"):
            _config.check_number(self, name, lo=0.0, hi=1.0)


class FMNStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    best_step: jax.Array  # int32 step of the returned point (-1: none)
    epsilon: jax.Array  # float32 the ℓ0 constraint ε at the end (elements)


class _State(NamedTuple):
    delta: jax.Array  # float32[H, W, C]
    epsilon: jax.Array  # float32, a whole number of elements
    t: jax.Array  # int32 steps taken
    best: jax.Array  # float32[H, W, C] the best adversarial point (x while none)
    best_l0: jax.Array  # float32 (d while none: the reference's "worst norm")
    best_step: jax.Array  # int32
    moved: jax.Array  # bool: δ was ever nonzero
    nonfinite: jax.Array  # bool: a non-finite loss or gradient was met (and skipped)


def _cosine(start, end, i, steps):
    return end + (start - end) * (1 + jnp.cos(jnp.pi * i / steps)) / 2


def _project_l0(delta, epsilon):
    """Zeroes every |δ_i| below the ε-th largest (the reference's ``l0_projection_``)."""
    mags = jnp.abs(delta).ravel()
    # Non-negative floats order as their bits read as unsigned integers (a NaN counts as 0
    # and is never zeroed, as in the reference). The ε-th largest is found bit by bit, most
    # significant first: the largest t with #{i : bits_i >= t} >= ε (a count per bit, no
    # sort; benchmarks/README.md, "σ-zero and FMN-ℓ0 on ResNet-20, paired").
    bits = jnp.uint32 if mags.dtype == jnp.float32 else jnp.uint64
    as_bits = jax.lax.bitcast_convert_type(jnp.where(jnp.isnan(mags), 0.0, mags), bits)
    rank = jnp.clip(epsilon.astype(jnp.int32), 1, mags.size)
    width = 8 * jnp.dtype(bits).itemsize

    def settle(i, t):
        candidate = t | jnp.left_shift(jnp.asarray(1, bits), (width - 1 - i).astype(bits))
        return jnp.where(jnp.sum(as_bits >= candidate, dtype=jnp.int32) >= rank, candidate, t)

    threshold = jax.lax.fori_loop(0, width, settle, jnp.asarray(0, bits))
    kept = (as_bits >= threshold) | jnp.isnan(mags)  # as the comparison with the ε-th value
    return jnp.where(kept.reshape(delta.shape), delta, 0.0)


def _init(f: Classifier, p: Problem, c: FMNConfig):
    d = jnp.asarray(p.x.size, jnp.float32)
    state = _State(
        delta=jnp.zeros_like(p.x),
        epsilon=jnp.float32(1.0),
        t=jnp.int32(0),
        best=p.x,
        best_l0=d,
        best_step=jnp.int32(-1),
        moved=jnp.bool_(False),
        nonfinite=jnp.bool_(False),
    )
    return state, Passes()


def _loss(f: Classifier, p: Problem, delta):
    """The difference of logits the attack ascends (positive once adversarial)."""
    logits = f.logits(p.x + delta)
    if p.targeted:
        return logit_margin(logits, p.target), logits
    return -logit_margin(logits, p.label), logits


def _step(f: Classifier, p: Problem, c: FMNConfig, s: _State):
    """One FMN step: 1 forward + 1 backward."""
    alpha = _cosine(c.alpha_init, c.alpha_final, s.t, c.steps)
    gamma = _cosine(c.gamma_init, c.gamma_final, s.t, c.steps)
    (value, logits), grad = jax.value_and_grad(_loss, argnums=2, has_aux=True)(f, p, s.delta)
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
    adversarial = p.fooled_by(logits)
    l0 = jnp.sum(s.delta != 0).astype(jnp.float32)
    better = adversarial & (l0 < s.best_l0)
    best_l0 = jnp.where(better, l0, s.best_l0)
    s = s._replace(
        best=jnp.where(better, p.x + s.delta, s.best),
        best_l0=best_l0,
        best_step=jnp.where(better, s.t, s.best_step),
    )
    eps = s.epsilon
    eps = jnp.where(
        adversarial,
        jnp.minimum(jnp.minimum(eps - 1, jnp.floor(eps * (1 - gamma))), best_l0),
        jnp.maximum(eps + 1, jnp.floor(eps * (1 + gamma))),
    )
    eps = jnp.clip(eps, 0.0, p.x.size)
    grad = jnp.where(finite, grad, 0.0)
    delta = s.delta + alpha * grad / jnp.maximum(jnp.linalg.norm(grad), 1e-12)
    delta = _project_l0(delta, eps)
    delta = jnp.clip(p.x + delta, p.lower, p.upper) - p.x
    keep = lambda new, old: jnp.where(finite, new, old)  # a non-finite step is not taken
    s = s._replace(
        delta=keep(delta, s.delta),
        epsilon=keep(eps, s.epsilon),
        t=s.t + 1,
        moved=s.moved | jnp.any(delta != 0),
        nonfinite=s.nonfinite | ~finite,
    )
    return s, Passes(1, 1)


def _done(f, p, c, s):
    return jnp.bool_(False)


def _finish(f, p: Problem, c: FMNConfig, s: _State, steps):
    found = s.best_step >= 0
    return Outcome(
        x_adv=s.best,
        claimed=found,
        degenerate=~found & ~s.moved,  # δ never left 0: a flat loss (a constant model, say)
        nonfinite=s.nonfinite,
        iterations=s.t,
        stats=FMNStats(best_step=s.best_step, epsilon=s.epsilon),
    )


ALGORITHM = engine.Algorithm(
    name="fmn-l0",
    config_cls=FMNConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    max_steps=lambda c: c.steps,
    early_stop=False,  # every example runs all steps, as the reference
)

fmn_l0 = engine.attack_function(
    ALGORITHM,
    """FMN-ℓ0 (Pintor et al., NeurIPS 2021) on a batch: minimum-ℓ0 (elements) adversarial
    examples by normalised gradient steps on the difference of logits, projected on an ℓ0
    ball whose size ε adapts. Targeted (towards ``targets``) when they are given.

    ``iterations`` is the number of steps run; ``stats`` is an :class:`FMNStats`.
    """,
)
