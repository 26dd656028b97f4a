"""ℓp-box ADMM for binary variables under a cardinality constraint, as SAPF uses it.

SAPF (Fan et al., ECCV 2020, §3.3) replaces the binary constraint G ∈ {0, 1}^N by the
intersection of the box S_b = [0, 1]^N and the ℓ2-sphere S_p = {G : ‖G − ½‖² = N/4}
(Eq. 4, after Wu & Ghanem's ℓp-box ADMM [36]), splits G = Y1 ∈ S_b, G = Y2 ∈ S_p, and keeps
1ᵀG = k as an equality constraint with its own multiplier (Eq. 5, 8, 9). One iteration
(Steps 2.1-2.4, in the released code's order):

  Y1 = P_Sb(G + Z1/ρ1)                                               (Eq. 11)
  Y2 = P_Sp(G + Z2/ρ2)                                               (Eq. 13)
  G ← G − η_G [∇f(G) + ρ1(G − Y1) + ρ2(G − Y2)
               + (z3 + ρ3(1ᵀG − k))·1 + Z1 + Z2]                       (Eq. 14)
  Z1 ← Z1 + ρ1(G − Y1), Z2 ← Z2 + ρ2(G − Y2), z3 ← z3 + ρ3(1ᵀG − k)   (Eq. 15)
  ρi ← min(growth·ρi, ρi_max)                                        (§4.1)

with ∇f(G) = ∇_lin + c⊙G the gradient of the smooth part of the objective at the current G
(the caller's; for SAPF ∇_lin = δ⊙λ1∂L/∂ε and c = 2δ⊙δ, the first two terms of Eq. 14).
Everything here is a pure function of arrays of any shape (G is treated as one vector of
N = G.size entries); nothing calls a model.

Notes on the paper's text:
  * Eq. (15) is printed as Z1 ← Z1 + ρ1(G − Z1); the residual of the constraint G = Y1 is
    G − Y1, which is what [36] and the released code use. We use G − Y1 (and G − Y2).
  * The paper's (ρ1, ρ2, ρ3) are the box, sphere and cardinality penalties, initialised at
    (5e-3, 5e-3, 1e-4) with caps (20, 10, 100) (§4.1). The released code has a fourth ρ:
    (ρ1, ρ2, ρ3) for box, sphere and its group-sparsity split, all starting at 5e-3 with caps
    (20, 20, 100), and ρ4 = 1e-4 capped at 0.01 for the cardinality. We follow the paper
    (:data:`PAPER_RHO`, :data:`PAPER_RHO_MAX`); :data:`CODE_CARDINALITY_RHO_MAX` records
    the code's cap.

Stability (our addition; ``implicit=True``). Eq. (14) is an explicit gradient step on a
function whose quadratic parts are stiff: the curvature is c_i + ρ1 + ρ2 per entry (c_i the
separable curvature of the smooth part, 2w_i²δ_i² for SAPF) and N·ρ3 along 1. The explicit
step diverges as soon as η_G·(c_i + ρ1 + ρ2) > 2 or η_G·N·ρ3 > ~1, e.g. |δ_i| > √10 at
η_G = 0.1 (we measured ×2.5 per iteration on a real model at λ1 = 10), or ρ3 grown towards
the paper's cap 100 on N = 3072: G oscillates with growing amplitude and overflows, which is
the divergence reported in the released repository's issue #3 (ImageNet, N = 268203).
``implicit=True`` keeps the loss linearised (as the paper does) but takes the quadratic
parts at the new point (backward Euler, i.e. a proximal step):

  (1/η_G + c + ρ1 + ρ2)⊙G' + ρ3·1(1ᵀG') = G/η_G − (∇_lin + Z1 + Z2 + z3·1 − ρ1Y1 − ρ2Y2)
                                           + ρ3·k·1,

solved exactly with the Sherman-Morrison formula (a diagonal plus rank one). It agrees with
Eq. (14) to first order in η_G, has the same fixed points (G' = G ⇔ ∂L/∂G = 0 in Eq. 14),
and is stable for every ρ and δ. ``implicit=False`` is Eq. (14) as printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

# Paper §4.1: (ρ1, ρ2, ρ3) = (box, sphere, cardinality), same on CIFAR-10 and ImageNet.
PAPER_RHO = (5e-3, 5e-3, 1e-4)
PAPER_RHO_MAX = (20.0, 10.0, 100.0)
PAPER_RHO_GROWTH = 1.01  # ρi ← 1.01 ρi after each iteration
PAPER_G_STEPS = 2000  # G gradient steps per outer iteration (§4.1)
# Released code (flags.py): the cardinality penalty ρ4 starts at 1e-4 and is capped at 0.01.
CODE_CARDINALITY_RHO_MAX = 0.01


class ADMMState(NamedTuple):
    """Multipliers and penalties of one ℓp-box ADMM run (Eq. 9).

    Attributes:
      z1: float32[*G.shape], multiplier of G = Y1 (box).
      z2: float32[*G.shape], multiplier of G = Y2 (sphere).
      z3: float32[], multiplier of 1ᵀG = k.
      rho: float32[3], the penalties (ρ1, ρ2, ρ3).
    """

    z1: jax.Array
    z2: jax.Array
    z3: jax.Array
    rho: jax.Array


def admm_init(g: jax.Array, rho) -> ADMMState:
    """Zero multipliers (the released code re-initialises them at every G phase)."""
    return ADMMState(
        z1=jnp.zeros_like(g),
        z2=jnp.zeros_like(g),
        z3=jnp.zeros((), g.dtype),
        rho=jnp.asarray(rho, g.dtype).reshape(3),
    )


def project_box(v: jax.Array) -> jax.Array:
    """P_Sb(v) = min(1, max(0, v)), the projection onto S_b = [0, 1]^N (Eq. 11)."""
    return optax.projections.projection_box(v, 0.0, 1.0)


def project_sphere(v: jax.Array) -> jax.Array:
    """P_Sp(v) = ½ + (√N/2)·v̄/‖v̄‖, v̄ = v − ½, onto S_p = {‖G − ½‖² = N/4} (Eq. 13).

    Every point of S_p is equally near to v = ½·1 (v̄ = 0); there we return the all-ones
    vertex (SAPF's initial G, paper §4.1), so the projection is finite for every finite
    input. The norm is taken of v̄ / max|v̄| so that it neither overflows (|v̄| ~ 1e30) nor
    underflows (|v̄| ~ 1e-30) in float32; finite inputs up to float32's maximum give finite
    outputs.

    Args:
      v: float[...] any shape; N = v.size.

    Returns:
      float[...] on S_p (to rounding), same shape and dtype.
    """
    n = v.size
    a = v - 0.5
    scale = jnp.max(jnp.abs(a))
    zero = scale == 0
    # a / scale, as two divisions by √scale: XLA divides by multiplying with the reciprocal,
    # and 1/scale is a denormal (flushed to 0) for scale > 2^126 ≈ 8.5e37.
    root = jnp.sqrt(jnp.where(zero, 1.0, scale))
    unit = (a / root) / root  # entries in [-1, 1], max |entry| = 1
    norm = jnp.sqrt(jnp.sum(unit * unit))  # >= 1 unless zero
    root_n = jnp.sqrt(jnp.asarray(n, v.dtype))
    direction = jnp.where(zero, 1.0 / root_n, unit / jnp.where(zero, 1.0, norm))
    return (0.5 + 0.5 * root_n * direction).astype(v.dtype)


def rho_update(rho: jax.Array, rho_max: jax.Array, growth) -> jax.Array:
    """ρi ← min(growth·ρi, ρi_max), once per ADMM iteration (paper §4.1: growth 1.01)."""
    return jnp.minimum(growth * rho, rho_max)


def budget_growth(growth, steps: int, reference_steps: int = PAPER_G_STEPS):
    """growth^(reference_steps / steps): the per-step factor that takes ρ as far in ``steps``
    iterations as ``growth`` does in ``reference_steps`` (the paper's 2000). A deviation:
    the paper grows ρ by 1.01 per step, which in 200 steps is only a factor 7.3."""
    return jnp.asarray(growth, jnp.float32) ** (reference_steps / steps)


def decay_step_size(lr, t, decay, every: int, floor):
    """The step size after iteration ``t`` (0-based) of a phase: ×decay every ``every``
    iterations, never below ``floor`` (released code: 0.1, ×0.9 per 50 steps, floor 1e-3)."""
    return jnp.where((t + 1) % every == 0, jnp.maximum(decay * lr, floor), lr)


def g_step(g, grad_lin, curv, y1, y2, state: ADMMState, k, lr, implicit: bool = False):
    """Step 2.3: one gradient step on G of the augmented Lagrangian (Eq. 14).

    Args:
      g: float32[*S] the current G.
      grad_lin: float32[*S] the part of ∂L/∂G that is linearised (SAPF: δ⊙λ1∂L/∂ε, plus
        the SAPF-GS subgradient).
      curv: float32[*S] or scalar, the separable curvature c of the smooth part, whose
        gradient is c⊙G (SAPF: 2w²⊙δ⊙δ).
      y1, y2: Y1, Y2 of this iteration.
      state: multipliers and penalties.
      k: cardinality target.
      lr: η_G.
      implicit: the semi-implicit step of the module doc (static); False: Eq. (14).

    Returns:
      float32[*S] the new G.
    """
    r1, r2, r3 = state.rho[0], state.rho[1], state.rho[2]
    if not implicit:
        grad = (
            grad_lin
            + curv * g
            + r1 * (g - y1)
            + r2 * (g - y2)
            + (state.z3 + r3 * (jnp.sum(g) - k))  # scalar, times 1
            + state.z1
            + state.z2
        )  # Eq. (14)
        return g - lr * grad
    diag = 1.0 / lr + curv + r1 + r2  # [*S] (broadcast)
    rhs = g / lr - (grad_lin + state.z1 + state.z2 + state.z3 - r1 * y1 - r2 * y2) + r3 * k
    inv = 1.0 / diag
    total = jnp.sum(rhs * inv) / (1.0 + r3 * jnp.sum(jnp.broadcast_to(inv, g.shape)))  # 1ᵀG'
    return (rhs - r3 * total) * inv


def dual_update(g, y1, y2, state: ADMMState, k, rho_max, growth) -> ADMMState:
    """Step 2.4 (Eq. 15) with the new G, then ρi ← min(growth·ρi, ρi_max) (§4.1).

    Eq. (15) is printed as Z1 ← Z1 + ρ1(G − Z1); the residual of G = Y1 is G − Y1, as in
    [36] and the released code.
    """
    r1, r2, r3 = state.rho[0], state.rho[1], state.rho[2]
    return ADMMState(
        z1=state.z1 + r1 * (g - y1),
        z2=state.z2 + r2 * (g - y2),
        z3=state.z3 + r3 * (jnp.sum(g) - k),
        rho=rho_update(state.rho, rho_max, growth),
    )


def admm_iteration(
    g: jax.Array,
    grad_lin: jax.Array,
    curv,
    state: ADMMState,
    k,
    lr,
    rho_max,
    growth,
    implicit: bool = False,
) -> tuple[jax.Array, ADMMState, jax.Array, jax.Array]:
    """One iteration of Steps 2.1-2.4 (Eqs. 11, 13, 14, 15) and the ρ update.

    Args:
      g: float32[*S] the current G (N = g.size entries).
      grad_lin, curv: the smooth part's gradient at ``g`` is grad_lin + curv⊙g
        (see :func:`g_step`).
      state: the multipliers and penalties.
      k: the cardinality target of 1ᵀG = k.
      lr: η_G.
      rho_max: float32[3] caps of (ρ1, ρ2, ρ3).
      growth: the per-iteration ρ factor.
      implicit: semi-implicit G step (static).

    Returns:
      (new G, new state, Y1, Y2).
    """
    # Steps 2.1, 2.2: project the unconstrained minimisers G + Z/ρ of Eqs. (10), (12).
    y1 = project_box(g + state.z1 / state.rho[0])  # Eq. (11)
    y2 = project_sphere(g + state.z2 / state.rho[1])  # Eq. (13)
    g_new = g_step(g, grad_lin, curv, y1, y2, state, k, lr, implicit)  # Eq. (14)
    return g_new, dual_update(g_new, y1, y2, state, k, rho_max, growth), y1, y2


def lp_box_admm(
    grad_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    g: jax.Array,
    k,
    steps: int,
    lr,
    rho,
    rho_max,
    growth,
    lr_decay=0.9,
    lr_decay_every: int = 50,
    lr_min=1e-3,
    implicit: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, ADMMState]:
    """``steps`` ADMM iterations from ``g`` with fresh multipliers (one SAPF G phase).

    Args:
      grad_fn: G -> (grad_lin, curv) of the smooth part at G (called once per iteration).
      g: float32[*S] the starting G.
      k: cardinality target.
      steps: number of iterations (static).
      lr: η_G at the start; decays as :func:`decay_step_size`.
      rho: float32[3] (ρ1, ρ2, ρ3) at the start.
      rho_max: float32[3] their caps.
      growth: ρ factor per iteration.
      lr_decay, lr_decay_every, lr_min: the step-size schedule.
      implicit: semi-implicit G steps (static, see the module doc).

    Returns:
      (G, η_G, ρ after the run, final state): the step size and ρ carry over to the next
      G phase (the released code re-initialises only the multipliers).
    """
    rho_max = jnp.asarray(rho_max, g.dtype).reshape(3)

    def body(t, carry):
        g, lr, st = carry
        grad_lin, curv = grad_fn(g)
        g, st, _, _ = admm_iteration(g, grad_lin, curv, st, k, lr, rho_max, growth, implicit)
        return g, decay_step_size(lr, t, lr_decay, lr_decay_every, lr_min), st

    lr = jnp.asarray(lr, g.dtype)
    g, lr, st = jax.lax.fori_loop(0, steps, body, (g, lr, admm_init(g, rho)))
    return g, lr, st.rho, st
