"""SAPF: Sparse Adversarial attack via Perturbation Factorization (Fan et al., ECCV 2020).

The perturbation is factorised as ε = δ ⊙ G (Eq. 2), δ ∈ R^N the magnitudes and
G ∈ {0, 1}^N the perturbed positions (N = H·W·C: positions are channel *elements*, so ℓ0
and k are in elements, as in the paper's Table 1 and the released code), and

  min_{δ,G} ‖w ⊙ δ ⊙ G‖² + λ1 L(f(clip(x + δ⊙G)), t) [+ λ2 Σ_i ‖G^i‖₂]  s.t. 1ᵀG = k, G binary

(Eq. 3; the weights w of SAPF-VI, Eq. 17; the group term of SAPF-GS, Eq. 16). One *atom*
(one λ1) runs Algorithm 1 from G = 1, δ = 0 (§4.1):

  repeat ``outer_iters`` times:
    ``delta_steps`` gradient steps on δ with G fixed                     (Step 1, Eq. 7)
    ``g_steps`` iterations of ℓp-box ADMM on G with δ fixed              (Step 2, Eqs. 11-15,
                                                    :mod:`sparsejax.attacks.lp_box_admm`)
  binarise G, then ``finetune_steps`` more steps on δ with G fixed       (released code)
  success ⇔ argmax f(clip(x + δ⊙G)) = t

and λ1 is searched over at most ``search_steps`` atoms (§4.1, "modified binary search").

Choices where the paper is silent follow the released code
(wubaoyuan/Sparse-Adversarial-Attack, see ``notes/reference-implementations.md`` §4):
  * Loss: the C&W margin max(max_{j≠t} Z_j − Z_t + κ, 0) on logits (``loss="cw"``, the
    code's default); the paper's Eq. (1) cross-entropy is ``loss="ce"``.
  * The adversarial image inside the loss is clip(x + δ⊙G, lower, upper) (paper §3.2: "the
    range constraint ... can be simply satisfied via clipping"), with torch.clamp's gradient
    convention (1 on the closed interval, 0 outside), so saturated pixels (0 or 255 in
    CIFAR-10) get a gradient at δ = 0, as in the released code. G itself is never clipped.
  * Step sizes 0.1 for δ and G, ×0.9 every 50 steps of a phase, floor 1e-3; the δ step size
    carries over from one δ phase to the next and into the fine-tuning, η_G and ρ carry over
    between G phases, the ADMM multipliers restart at 0 in every G phase, and every atom
    restarts from G = 1, δ = 0 with the initial step sizes and ρ.
  * After the last G phase G is binarised and δ fine-tuned with G fixed (``finetune_steps``,
    the code's maxIter_e / 2). Binarisation: ``cardinality="soft"`` keeps G > 0.5 as the
    code, so 1ᵀG = k holds only as far as the ADMM penalty enforced it;
    ``cardinality="exact"`` (default) keeps the k largest entries of G (ties: lowest index),
    the Euclidean projection of G onto {G binary, 1ᵀG = k}, so ℓ0 ≤ k is guaranteed.
    Both report 1ᵀG before binarisation and #(G > 0.5) in :class:`SAPFDetails`.
  * ρ: the paper's (ρ1, ρ2, ρ3) = box, sphere, cardinality, init (5e-3, 5e-3, 1e-4), caps
    (20, 10, 100), ×1.01 per ADMM iteration (§4.1). The code caps its cardinality ρ at 0.01
    instead; we follow the paper.
  * λ1 search (code's rule, paper's stopping rule): on failure lb = λ1 and λ1 ← 10·λ1 until
    a success has set ub < upper, then bisection (ub + lb)/2; on success ub = λ1 and
    λ1 ← (ub + lb)/2. ``search="paper"`` (default) stops at the first success (§4.1: "stops
    when generating a successful attack"); ``search="code"`` keeps searching for the full
    ``search_steps`` (stopping early only when λ1 < init/100, as the code) and returns the
    last success. We cap 10·λ1 at the upper bound 100 (the paper's bounds; the code can
    exceed them) and stop once λ1 = 100 has failed, since the next atom would repeat it.
    Under the paper's rule the search therefore tries λ1, 10λ1, 100λ1, ... until a success.

Deviations (each measured, see ``experiments/sapf_budget.py``):
  * Budget. The paper runs 10 outer iterations of 2000 δ + 2000 G steps per atom and up to
    6 atoms (≈ 240k gradient passes per (image, target) pair); the code runs 1 × (2000 +
    2000) + 1000 per atom (≤ 30k). A ResNet-20 gradient pass (forward + backward) costs
    ≈ 2.9 ms per item on one CPU core, flat in the batch width, so the defaults are 1 outer
    iteration of 200 + 200 steps and 100 fine-tuning steps per atom (500 gradient passes,
    ≈ 1.5 s); :data:`PAPER_BUDGET` and :data:`CODE_BUDGET` record the originals.
  * λ1 starts at 0.1, not the paper's 1e-3: with 500-pass atoms λ1 = 1e-3 never succeeded
    on ResNet-20 and 1e-2 rarely (measured below: ℓ2 0.374 vs 0.370, but 3.2 instead of 1.3
    atoms per pair).
  * Schedules. The step-size decay (×0.9 per 50 steps: 0.1 → 1.5e-3 over 2000 steps) and
    the ρ growth (×1.01 per step: the caps are reached after 834 / 1388 steps) are tuned to
    2000-step phases; in 200 steps the step size only falls to 0.066 and ρ grows ×7.3, so
    G is far from binary and, with the C&W loss, whose gradient does not fade near the
    target, large λ1 makes δ oscillate (|δ| up to 55 measured on the digits LeNet at
    λ1 = 100). ``schedule="budget"`` (default) compresses both into the phase lengths used:
    the decay period becomes 50·steps/2000 (δ and G phases) or 50·steps/1000 (fine-tuning,
    the code's 1000 steps), and ρ grows by 1.01^(2000/g_steps) per step, so at the paper's
    step counts the two schedules are the same. Measured below: ℓ2 0.370 instead of 0.784
    and 1ᵀG within 0.2 of k instead of 4.7. ``schedule="paper"`` keeps the constants.
  * Stability (``implicit=True``, default). The explicit steps of Eqs. (7) and (14) diverge
    when a quadratic term is stiff: η·2G² > 2 in the δ step, η_G·(2δ² + ρ1 + ρ2) > 2 or
    η_G·N·ρ3 > ~1 in the G step (measured: |δ| = 4.2 at λ1 = 10 on the digits LeNet
    amplifies G ×2.5 per step; the paper's ρ3 cap 100 diverges on N ≥ 512). This is the
    divergence of the released repository's issue #3 (G → 1e44 → NaN on ImageNet). We keep
    the loss linearised and take the quadratic terms at the new point (backward Euler):
      δ' = (δ − η_δ G⊙λ1∂L/∂ε) / (1 + 2η_δ w²⊙G²)                     (Eq. 7, implicit)
    and the G step of :func:`~sparsejax.attacks.lp_box_admm.g_step`. Same fixed points,
    first-order equal to Eqs. (7), (14), stable for every δ, G, ρ. ``implicit=False`` runs
    Eqs. (7) and (14) as printed: fine while ρ stays small (``schedule="paper"`` in 200
    steps), divergent on every pair once ρ reaches the paper's caps (measured below).
  * SAPF-GS follows the paper (the subgradient λ2·G^i/‖G^i‖₂ added to Eq. 14, 0 where
    ‖G^i‖ = 0), not the code's extra ADMM split with group soft-thresholding, and is off
    unless ``segments`` are given (in the code it is always on with λ2 = 1e-3).
  * Divergence or a degenerate model: an atom whose δ or G is not finite, or in which the
    loss gradient was exactly zero at every δ step (nothing to descend), ends the search
    with status FAILED and x_adv = x (or the last success, under ``search="code"``).

Measured (``experiments/sapf_budget.py --n 5``: ResNet-20, the first 5 CIFAR-10 test images
× their 9 other classes = 45 pairs, k = 200 elements, one core of a 2-core AMD EPYC; ASR
targeted, ℓ2 the mean over successes in [0, 1] pixel units, passes = forwards + backwards):

  configuration (defaults unless named)       ASR   ℓ2     ℓ0 el.  |1ᵀG−k|  s/pair  passes
  defaults (200/200/100, budget schedule)     100%  0.370  200     0.2      2.03    1292
  loss="ce"                                   100%  0.385  200     0.2      1.95    1225
  cardinality="soft"                          100%  0.370  189.7*  0.2      2.19    1314
  schedule="paper"                            100%  0.784  200     4.7      2.02    1225
  schedule="paper", implicit=False            100%  0.848  200     6.8      1.83    1203
  implicit=False (budget schedule)            0%: all 45 diverged, FAILED, no NaN
  lambda1=1e-3 (paper)                        100%  0.374  200     0.1      5.29    3205
  100/100/50 steps                            100%  0.522  199.9   0.0      1.25     781
  400/400/200 steps                           100%  0.343  200     0.3      4.14    2537
  100/100/50, search="code"                   100%  0.416  200     0.0      4.66    3008
  k=100                                       100%  0.538  100     0.1      2.65    1737
  * soft: ℓ0 up to 204 > k on 7% of the successes; #(G > 0.5) = 189.7 on average.

Execution: everything inside an atom is a ``lax.fori_loop`` of static length; the λ1 search
is a ``lax.while_loop`` with the static cap ``search_steps`` that ends as soon as the item is
done (under ``vmap``, as soon as every item of the batch is done; finished items are frozen,
so results equal those of a fixed-length loop). :func:`sapf_batch` runs ``slots`` items side
by side and the chunks one after another (``lax.map``). ``iterations`` counts atoms (λ1 values
tried); ``forwards``/``backwards`` count the item's own model passes: per atom
outer_iters·(delta_steps + g_steps) + finetune_steps gradient passes (1 forward + 1 backward
each) and 1 forward for the success check, plus the clean forward and the re-verification.
Lanes of a batch that wait in lockstep for slower items are not charged.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.attacks import lp_box_admm as admm
from sparsejax.attacks.common import (
    AttackResult,
    Status,
    check_number,
    default_slots,
    finalize,
    single_logits,
)
from sparsejax.errors import SparsejaxError

# The paper's budget (§4.1): 10 outer iterations of 2000 + 2000 steps, 6 λ1 searches; it does
# not state a fine-tuning length. λ1 starts at 1e-3 on CIFAR-10 and 1e-2 on ImageNet.
PAPER_BUDGET = dict(outer_iters=10, delta_steps=2000, g_steps=2000, search_steps=6)
PAPER_LAMBDA1 = {"cifar10": 1e-3, "imagenet": 1e-2}
# The released code (flags.py): maxIter_mm = 1, maxIter_e = maxIter_g = 2000, fine-tuning
# maxIter_e / 2, lambda1_search_times = 6.
CODE_BUDGET = dict(
    outer_iters=1, delta_steps=2000, g_steps=2000, finetune_steps=1000, search_steps=6
)
LOSSES = ("cw", "ce")
CARDINALITY_MODES = ("exact", "soft")
SEARCH_RULES = ("paper", "code")
SCHEDULES = ("paper", "budget")


def _static(default):
    return dataclasses.field(default=default, metadata=dict(static=True))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SAPFConfig:
    """SAPF settings. Numbers are traced (a sweep over k, λ1, λ2, ... is one ``vmap`` and
    does not recompile); loop lengths and modes are static.

    Attributes:
      k: cardinality 1ᵀG = k, in channel elements (released default 200 on CIFAR-10).
      lambda1: initial λ1 of the search. Paper: 1e-3 on CIFAR-10, 1e-2 on ImageNet
        (:data:`PAPER_LAMBDA1`), for its 20k-step atoms; here 0.1 (see the module doc).
      lambda1_lower, lambda1_upper: search bounds (paper: 0 and 100).
      lambda2: SAPF-GS weight (Eq. 16); used only when ``segments`` are passed.
      kappa: C&W confidence κ (released default 0).
      lr_delta, lr_g: initial step sizes η_δ, η_G (0.1).
      lr_decay, lr_min: ×0.9 every ``lr_decay_every`` steps, floor 1e-3.
      rho1, rho2, rho3: initial box, sphere and cardinality penalties (5e-3, 5e-3, 1e-4).
      rho1_max, rho2_max, rho3_max: their caps (20, 10, 100).
      rho_growth: ρ factor per ADMM iteration (1.01).
      outer_iters: iterations of Algorithm 1 per atom (paper 10, code 1; here 1).
      delta_steps, g_steps: gradient steps per δ phase / ADMM iterations per G phase
        (paper and code 2000; here 200).
      finetune_steps: δ steps after binarising G (code 1000; here 100).
      search_steps: maximal number of λ1 values tried (6).
      lr_decay_every: decay period of the step sizes (50).
      loss: ``"cw"`` (margin on logits, released code) or ``"ce"`` (paper Eq. 1).
      cardinality: ``"exact"`` (top-k of G, ℓ0 ≤ k) or ``"soft"`` (G > 0.5, released code).
      search: ``"paper"`` (stop at the first success) or ``"code"`` (keep searching, return
        the last success).
      schedule: ``"paper"`` (decay every ``lr_decay_every`` steps, ρ ×rho_growth per step)
        or ``"budget"`` (both compressed from the code's phase lengths into the configured
        ones, a deviation; see the module doc).
      implicit: semi-implicit δ and G steps (stable; see the module doc); False: the
        paper's explicit Eqs. (7), (14).
      max_segments: static bound on the number of superpixels of SAPF-GS.
    """

    k: float = 200.0
    lambda1: float = 0.1
    lambda1_lower: float = 0.0
    lambda1_upper: float = 100.0
    lambda2: float = 0.0
    kappa: float = 0.0
    lr_delta: float = 0.1
    lr_g: float = 0.1
    lr_decay: float = 0.9
    lr_min: float = 1e-3
    rho1: float = admm.PAPER_RHO[0]
    rho2: float = admm.PAPER_RHO[1]
    rho3: float = admm.PAPER_RHO[2]
    rho1_max: float = admm.PAPER_RHO_MAX[0]
    rho2_max: float = admm.PAPER_RHO_MAX[1]
    rho3_max: float = admm.PAPER_RHO_MAX[2]
    rho_growth: float = admm.PAPER_RHO_GROWTH
    outer_iters: int = _static(1)
    delta_steps: int = _static(200)
    g_steps: int = _static(200)
    finetune_steps: int = _static(100)
    search_steps: int = _static(6)
    lr_decay_every: int = _static(50)
    loss: str = _static("cw")
    cardinality: str = _static("exact")
    search: str = _static("paper")
    schedule: str = _static("budget")
    implicit: bool = _static(True)
    max_segments: int = _static(256)

    def validate(self) -> None:
        """Range checks on concrete values (one-line errors, before compilation)."""
        for name in ("outer_iters", "g_steps", "search_steps", "lr_decay_every", "max_segments"):
            if getattr(self, name) < 1:
                raise SparsejaxError(f"sapf {name} must be >= 1, got {getattr(self, name)}")
        for name in ("delta_steps", "finetune_steps"):
            if getattr(self, name) < 0:
                raise SparsejaxError(f"sapf {name} must be >= 0, got {getattr(self, name)}")
        for name, options in (
            ("loss", LOSSES),
            ("cardinality", CARDINALITY_MODES),
            ("search", SEARCH_RULES),
            ("schedule", SCHEDULES),
        ):
            if getattr(self, name) not in options:
                raise SparsejaxError(
                    f"sapf {name} must be one of {options}, got {getattr(self, name)!r}"
                )
        check_number("sapf k", self.k, lo=1.0)
        if not isinstance(self.k, jax.core.Tracer) and np.any(
            np.asarray(self.k) != np.round(np.asarray(self.k))
        ):
            raise SparsejaxError(f"sapf k must be a whole number of elements, got {self.k}")
        check_number("sapf lambda1", self.lambda1, lo=0.0, lo_open=True)
        check_number("sapf lambda1_lower", self.lambda1_lower, lo=0.0)
        check_number("sapf lambda1_upper", self.lambda1_upper, lo=0.0, lo_open=True)
        concrete = lambda *v: not any(isinstance(a, jax.core.Tracer) for a in v)
        if concrete(self.lambda1, self.lambda1_lower, self.lambda1_upper) and not np.all(
            (np.asarray(self.lambda1_lower) < np.asarray(self.lambda1))
            & (np.asarray(self.lambda1) <= np.asarray(self.lambda1_upper))
        ):
            raise SparsejaxError(
                f"sapf lambda1 must lie in (lambda1_lower, lambda1_upper], got {self.lambda1} "
                f"not in ({self.lambda1_lower}, {self.lambda1_upper}]"
            )
        check_number("sapf lambda2", self.lambda2, lo=0.0)
        check_number("sapf kappa", self.kappa, lo=0.0)
        for name in ("lr_delta", "lr_g", "lr_min", "rho1", "rho2", "rho3"):
            check_number(f"sapf {name}", getattr(self, name), lo=0.0, lo_open=True)
        for name in ("rho1_max", "rho2_max", "rho3_max"):
            check_number(f"sapf {name}", getattr(self, name), lo=0.0, lo_open=True)
        check_number("sapf lr_decay", self.lr_decay, lo=0.0, lo_open=True, hi=1.0)
        check_number("sapf rho_growth", self.rho_growth, lo=1.0)


class SAPFDetails(NamedTuple):
    """What SAPF knows beyond an :class:`AttackResult`, per item (of the returned atom).

    Attributes:
      lambda1: float32, λ1 of the atom whose image is returned (0 if none ran).
      g_sum: float32, 1ᵀG after the last G phase, before binarisation (the cardinality
        constraint 1ᵀG = k is met to |g_sum − k|).
      selected: int32, #(G > 0.5) after the last G phase: the positions the released code
        (``cardinality="soft"``) keeps; ``"exact"`` keeps exactly k.
      diverged: bool, an atom produced a non-finite δ or G.
      degenerate: bool, the loss gradient was zero at every δ step of an atom.
    """

    lambda1: jax.Array
    g_sum: jax.Array
    selected: jax.Array
    diverged: jax.Array
    degenerate: jax.Array


class SAPFOutput(NamedTuple):
    """Per-item output of :func:`sapf`, before re-verification."""

    x_adv: jax.Array  # float32[H, W, C] in [lower, upper]
    status: jax.Array  # int32 Status (SUCCESS as claimed by the search; re-checked later)
    iterations: jax.Array  # int32 atoms run (λ1 values tried)
    forwards: jax.Array  # int32 forward passes (the clean one included)
    backwards: jax.Array  # int32 backward passes
    clean_pred: jax.Array  # int32
    details: SAPFDetails


class _Item(NamedTuple):
    """One (image, target) pair and its per-item inputs."""

    x: jax.Array  # float32[H, W, C]
    target: jax.Array  # int32
    lo: jax.Array  # float32[H, W, C]
    hi: jax.Array  # float32[H, W, C]
    w2: jax.Array  # float32[H, W, C] squared SAPF-VI weights (ones when uniform)
    segments: jax.Array  # int32[H, W] superpixel ids (zeros when unused)
    attack: jax.Array  # bool: attack this item (not masked, not misclassified, t != label)


def clip_with_gradient(v, lo, hi):
    """clip(v, lo, hi) with torch.clamp's gradient: 1 on [lo, hi] (ends included), else 0."""
    return jnp.where((v >= lo) & (v <= hi), v, jnp.clip(v, lo, hi))


def attack_loss(logits: jax.Array, target, kappa, kind: str):
    """L(f(x'), t) of Eq. (3) on logits [K]: C&W margin or cross-entropy (static ``kind``)."""
    if kind == "ce":
        return -jax.nn.log_softmax(logits)[target]
    is_t = jnp.arange(logits.shape[-1]) == target
    other = jnp.max(jnp.where(is_t, -jnp.inf, logits))
    return jnp.maximum(other - logits[target] + kappa, 0.0)


def loss_gradient(logits_fn, item: _Item, eps, lambda1, kappa, kind: str):
    """λ1 ∂L(f(clip(x + ε)), t)/∂ε at ε = δ⊙G: one forward and one backward pass.

    ∂/∂δ of Eq. (7) is G ⊙ this, ∂/∂G of Eq. (14) is δ ⊙ this.
    """

    def objective(e):
        logits = single_logits(logits_fn, clip_with_gradient(item.x + e, item.lo, item.hi))
        return lambda1 * attack_loss(logits, item.target, kappa, kind)

    return jax.grad(objective)(eps)


def group_gradient(g: jax.Array, segments: jax.Array, max_segments: int) -> jax.Array:
    """∂/∂G Σ_i ‖G^i‖₂ (Eq. 16): G^i / ‖G^i‖₂ on group i, 0 where ‖G^i‖ = 0.

    Args:
      g: float32[H, W, C].
      segments: int32[H, W] superpixel id of each pixel; a group spans all channels of its
        pixels (as the released code's masks B_b). Ids outside [0, max_segments) belong to
        no group (zero gradient).
      max_segments: static number of group slots.

    Returns:
      float32[H, W, C] (a subgradient: 0 ∈ the unit ball is taken at ‖G^i‖ = 0).
    """
    sq = jnp.sum(g * g, axis=-1)  # [H, W]
    norm = jnp.sqrt(jax.ops.segment_sum(sq.ravel(), segments.ravel(), max_segments))  # [M]
    inv = jnp.where(norm > 0, 1.0 / jnp.where(norm > 0, norm, 1.0), 0.0)
    inside = (segments >= 0) & (segments < max_segments)
    per_pixel = jnp.where(inside, inv[jnp.clip(segments, 0, max_segments - 1)], 0.0)
    return g * per_pixel[..., None]


def delta_step(logits_fn, item: _Item, delta, g, lr, lambda1, kappa, kind: str, implicit: bool):
    """One step of Step 1 on δ with G fixed (Eq. 7; Eq. 17's weights w).

    Explicit (Eq. 7): δ − η(2w²⊙δ⊙G⊙G + G⊙λ1∂L/∂ε). Implicit: the quadratic term at the new
    point, (δ − η G⊙λ1∂L/∂ε) / (1 + 2η w²⊙G⊙G). One forward and one backward pass.

    Returns:
      (new δ, λ1∂L/∂ε at the current point).
    """
    gl = loss_gradient(logits_fn, item, delta * g, lambda1, kappa, kind)
    curv = 2.0 * item.w2 * g * g
    if implicit:
        return (delta - lr * g * gl) / (1.0 + lr * curv), gl
    return delta - lr * (curv * delta + g * gl), gl


def g_smooth_gradient(
    logits_fn, item: _Item, delta, g, lambda1, lambda2, kappa, kind, groups, max_segments
):
    """The smooth part of ∂L/∂G in Eq. (14), split as (∇_lin, c) with gradient ∇_lin + c⊙G:
    ∇_lin = δ⊙λ1∂L/∂ε (+ the SAPF-GS subgradient λ2 ∂Σ‖G^i‖/∂G of Eq. 16 when ``groups``,
    static), c = 2w²⊙δ⊙δ. One forward and one backward pass."""
    gl = loss_gradient(logits_fn, item, delta * g, lambda1, kappa, kind)
    grad_lin = delta * gl
    if groups:
        grad_lin = grad_lin + lambda2 * group_gradient(g, item.segments, max_segments)
    return grad_lin, 2.0 * item.w2 * delta * delta


def binarize(g: jax.Array, k, mode: str) -> jax.Array:
    """Binary G from the continuous one: G > 0.5 (``"soft"``, released code) or the k
    largest entries, ties to the lowest index (``"exact"``). float32, same shape."""
    if mode == "soft":
        return (g > 0.5).astype(g.dtype)
    flat = g.ravel()
    order = jnp.argsort(-flat, stable=True)
    rank = jnp.zeros(flat.shape, jnp.int32).at[order].set(jnp.arange(flat.size, dtype=jnp.int32))
    return (rank < k).astype(g.dtype).reshape(g.shape)


def _passes_per_atom(config: SAPFConfig) -> int:
    return config.outer_iters * (config.delta_steps + config.g_steps) + config.finetune_steps


def _decay_every(config: SAPFConfig, steps: int, reference: int) -> int:
    """The step-size decay period of a phase of ``steps`` steps (static)."""
    if config.schedule == "paper":
        return config.lr_decay_every
    return max(1, round(config.lr_decay_every * steps / reference))


def _delta_phase(logits_fn, item, config, delta, g, lr, lambda1, steps, reference):
    """``steps`` gradient steps on δ with G fixed (Step 1, Eq. 7). Returns (δ, η_δ, whether
    the loss gradient was ever non-zero). ``reference``: the code's length of this phase."""
    every = _decay_every(config, steps, reference)

    def body(t, carry):
        d, lr, moved = carry
        d, gl = delta_step(
            logits_fn, item, d, g, lr, lambda1, config.kappa, config.loss, config.implicit
        )
        lr = admm.decay_step_size(lr, t, config.lr_decay, every, config.lr_min)
        return d, lr, moved | jnp.any(gl != 0)

    return jax.lax.fori_loop(0, steps, body, (delta, lr, jnp.bool_(False)))


class _Atom(NamedTuple):
    x_adv: jax.Array
    success: jax.Array
    finite: jax.Array
    moved: jax.Array
    g_sum: jax.Array
    selected: jax.Array


def _atom(logits_fn, item: _Item, config: SAPFConfig, lambda1, groups: bool) -> _Atom:
    """Algorithm 1 for one λ1, binarisation, fine-tuning and the success check."""
    dtype = item.x.dtype
    num = lambda v: jnp.asarray(v, dtype)
    rho_max = jnp.stack([num(config.rho1_max), num(config.rho2_max), num(config.rho3_max)])
    growth = num(config.rho_growth)
    if config.schedule == "budget":
        growth = admm.budget_growth(growth, config.g_steps).astype(dtype)

    def outer(_, carry):
        delta, g, lr_d, lr_g, rho, moved = carry
        delta, lr_d, m = _delta_phase(
            logits_fn,
            item,
            config,
            delta,
            g,
            lr_d,
            lambda1,
            config.delta_steps,
            CODE_BUDGET["delta_steps"],
        )  # Step 1
        grad_fn = lambda gg: g_smooth_gradient(
            logits_fn,
            item,
            delta,
            gg,
            lambda1,
            config.lambda2,
            config.kappa,
            config.loss,
            groups,
            config.max_segments,
        )
        g, lr_g, rho, _ = admm.lp_box_admm(
            grad_fn,
            g,
            config.k,
            config.g_steps,
            lr_g,
            rho,
            rho_max,
            growth,
            config.lr_decay,
            _decay_every(config, config.g_steps, CODE_BUDGET["g_steps"]),
            config.lr_min,
            config.implicit,
        )  # Step 2
        return delta, g, lr_d, lr_g, rho, moved | m

    init = (
        jnp.zeros_like(item.x),  # δ = 0 (§4.1)
        jnp.ones_like(item.x),  # G = 1
        num(config.lr_delta),
        num(config.lr_g),
        jnp.stack([num(config.rho1), num(config.rho2), num(config.rho3)]),
        jnp.bool_(False),
    )
    delta, g, lr_d, _, _, moved = jax.lax.fori_loop(0, config.outer_iters, outer, init)
    g_sum = jnp.sum(g)
    selected = jnp.sum(g > 0.5, dtype=jnp.int32)
    gb = binarize(g, config.k, config.cardinality)
    delta, _, m = _delta_phase(
        logits_fn,
        item,
        config,
        delta,
        gb,
        lr_d,
        lambda1,
        config.finetune_steps,
        CODE_BUDGET["finetune_steps"],
    )  # fine-tuning (released code)
    finite = jnp.all(jnp.isfinite(delta)) & jnp.all(jnp.isfinite(g))
    x_adv = jnp.where(finite, clip_with_gradient(item.x + delta * gb, item.lo, item.hi), item.x)
    pred = jnp.argmax(single_logits(logits_fn, x_adv))
    return _Atom(
        x_adv=x_adv,
        success=finite & (pred == item.target),
        finite=finite,
        moved=moved | m,
        g_sum=jnp.where(finite, g_sum, 0.0),
        selected=selected,
    )


class _Search(NamedTuple):
    s: jax.Array  # int32 atoms run
    lam: jax.Array  # λ1 of the next atom
    lb: jax.Array
    ub: jax.Array
    stop: jax.Array
    found: jax.Array
    diverged: jax.Array
    degenerate: jax.Array
    x_adv: jax.Array
    lam_used: jax.Array
    g_sum: jax.Array
    selected: jax.Array


def _search(logits_fn, item: _Item, config: SAPFConfig, groups: bool) -> _Search:
    """The λ1 search of §4.1 over at most ``search_steps`` atoms (see the module doc)."""
    dtype = item.x.dtype
    num = lambda v: jnp.asarray(v, dtype)
    init_lam, upper = num(config.lambda1), num(config.lambda1_upper)

    def body(c: _Search) -> _Search:
        a = _atom(logits_fn, item, config, c.lam, groups)
        ok = a.success
        found = c.found | ok
        keep = ok | ~c.found  # the last success, else the last atom (released code)
        pick = lambda new, old: jnp.where(keep, new, old)
        # λ1 update of the released code (train_adptive), 10·λ1 capped at the upper bound.
        ub_s = jnp.minimum(c.ub, c.lam)
        lam_s = jnp.where(ub_s < upper, (ub_s + c.lb) / 2, c.lam)
        lb_f = jnp.maximum(c.lb, c.lam)
        lam_f = jnp.where(c.ub < upper, (c.ub + lb_f) / 2, jnp.minimum(10 * c.lam, upper))
        bad = ~a.finite | ~a.moved
        if config.search == "paper":
            done_ok = ok
        else:
            done_ok = ok & (c.lam < 0.01 * init_lam)
        exhausted = ~ok & (c.ub >= upper) & (c.lam >= upper)  # 10·λ1 would repeat λ1 = upper
        s = c.s + 1
        return _Search(
            s=s,
            lam=jnp.where(ok, lam_s, lam_f),
            lb=jnp.where(ok, c.lb, lb_f),
            ub=jnp.where(ok, ub_s, c.ub),
            stop=bad | done_ok | exhausted | (s >= config.search_steps),
            found=found,
            diverged=c.diverged | ~a.finite,
            degenerate=c.degenerate | (a.finite & ~a.moved),
            x_adv=pick(a.x_adv, c.x_adv),
            lam_used=pick(c.lam, c.lam_used),
            g_sum=pick(a.g_sum, c.g_sum),
            selected=pick(a.selected, c.selected),
        )

    init = _Search(
        s=jnp.int32(0),
        lam=init_lam,
        lb=num(config.lambda1_lower),
        ub=upper,
        stop=~item.attack,
        found=jnp.bool_(False),
        diverged=jnp.bool_(False),
        degenerate=jnp.bool_(False),
        x_adv=item.x,
        lam_used=num(0.0),
        g_sum=num(0.0),
        selected=jnp.int32(0),
    )
    return jax.lax.while_loop(lambda c: ~c.stop, body, init)


def _attack_item(logits_fn, item: _Item, config, clean_pred, already, skipped, groups):
    s = _search(logits_fn, item, config, groups)
    status = jnp.select(
        [skipped, already, s.found, s.diverged | s.degenerate],
        [Status.SKIPPED, Status.ALREADY_MISCLASSIFIED, Status.SUCCESS, Status.FAILED],
        Status.MAX_ITER,
    ).astype(jnp.int32)
    passes = _passes_per_atom(config)
    return SAPFOutput(
        x_adv=jnp.where(item.attack, s.x_adv, item.x),
        status=status,
        iterations=s.s,
        forwards=1 + s.s * (passes + 1),  # clean pass; per atom: gradient passes + the check
        backwards=s.s * passes,
        clean_pred=clean_pred,
        details=SAPFDetails(
            lambda1=s.lam_used,
            g_sum=s.g_sum,
            selected=s.selected,
            diverged=s.diverged,
            degenerate=s.degenerate,
        ),
    )


def _check_inputs(x, config: SAPFConfig, segments, weights, batched: bool) -> None:
    """Shape (always static) and value (when concrete) checks with one-line errors."""
    config.validate()
    lead = "N, " if batched else ""
    if x.ndim != (4 if batched else 3):
        raise SparsejaxError(f"sapf: x must be [{lead}H, W, C], got shape {tuple(x.shape)}")
    if segments is not None:
        if tuple(segments.shape) != tuple(x.shape[:-1]):
            raise SparsejaxError(
                f"sapf: segments must be int [{lead}H, W] = {tuple(x.shape[:-1])}, "
                f"got {tuple(segments.shape)}"
            )
        if not isinstance(segments, jax.core.Tracer):
            seg = np.asarray(segments)
            if not np.issubdtype(seg.dtype, np.integer):
                raise SparsejaxError(f"sapf: segments must be integer ids, got {seg.dtype}")
            if seg.size and (seg.min() < 0 or seg.max() >= config.max_segments):
                raise SparsejaxError(
                    f"sapf: segment ids must lie in [0, max_segments={config.max_segments}), "
                    f"got [{seg.min()}, {seg.max()}]"
                )
    if weights is not None:
        if tuple(weights.shape) != tuple(x.shape):
            raise SparsejaxError(
                f"sapf: weights must have the shape of x {tuple(x.shape)}, "
                f"got {tuple(weights.shape)}"
            )
        if not isinstance(weights, jax.core.Tracer):
            w = np.asarray(weights)
            if not (np.all(np.isfinite(w)) and w.min(initial=0) >= 0 and w.max(initial=0) <= 1):
                raise SparsejaxError("sapf: weights must be finite and lie in [0, 1] (Eq. 17)")


def _make_item(x, target, lo, hi, weights, segments, attack) -> _Item:
    w2 = jnp.ones_like(x) if weights is None else jnp.square(jnp.asarray(weights, x.dtype))
    seg = (
        jnp.zeros(x.shape[:-1], jnp.int32) if segments is None else jnp.asarray(segments, jnp.int32)
    )
    return _Item(x, jnp.asarray(target, jnp.int32), lo, hi, w2, seg, attack)


def sapf(
    logits_fn,
    x: jax.Array,
    target: jax.Array,
    config: SAPFConfig = SAPFConfig(),
    label: jax.Array | None = None,
    lower: jax.Array | float = 0.0,
    upper: jax.Array | float = 1.0,
    segments: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> SAPFOutput:
    """SAPF on one (image, target) pair.

    Args:
      logits_fn: ``float32[B, H, W, C] -> float32[B, K]`` with normalization inside.
      x: float32[H, W, C] in [lower, upper].
      target: int32 target class t.
      config: SAPFConfig.
      label: int32 true label; an input the model misclassifies is returned unchanged
        (ALREADY_MISCLASSIFIED), and t = label is not attacked (SKIPPED). None: the clean
        prediction is the label (as the released code).
      lower, upper: bounds broadcastable to x.
      segments: int32[H, W] superpixel ids for SAPF-GS (:mod:`sparsejax.attacks.sapf_weights`).
      weights: float32[H, W, C] in [0, 1], the SAPF-VI weights w of Eq. (17).

    Returns:
      SAPFOutput (success as claimed by the search; :func:`sapf_batch` re-verifies it).
    """
    _check_inputs(x, config, segments, weights, batched=False)
    lo = jnp.broadcast_to(jnp.asarray(lower, x.dtype), x.shape)
    hi = jnp.broadcast_to(jnp.asarray(upper, x.dtype), x.shape)
    clean_pred = jnp.argmax(single_logits(logits_fn, x)).astype(jnp.int32)
    label = clean_pred if label is None else jnp.asarray(label, jnp.int32)
    already = clean_pred != label
    skipped = jnp.asarray(target, jnp.int32) == label
    item = _make_item(x, target, lo, hi, weights, segments, ~already & ~skipped)
    return _attack_item(logits_fn, item, config, clean_pred, already, skipped, segments is not None)


def sapf_batch_details(
    logits_fn,
    x: jax.Array,
    labels: jax.Array,
    config: SAPFConfig = SAPFConfig(),
    targets: jax.Array | None = None,
    lower: jax.Array | float = 0.0,
    upper: jax.Array | float = 1.0,
    mask: jax.Array | None = None,
    slots: int | None = None,
    segments: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> tuple[AttackResult, SAPFDetails]:
    """:func:`sapf_batch` and the per-item :class:`SAPFDetails` (λ1 used, 1ᵀG, ...)."""
    if targets is None:
        raise SparsejaxError("sapf is a targeted attack: pass targets (e.g. --targeted all)")
    _check_inputs(x, config, segments, weights, batched=True)
    n = x.shape[0]
    lo = jnp.broadcast_to(jnp.asarray(lower, x.dtype), x.shape)
    hi = jnp.broadcast_to(jnp.asarray(upper, x.dtype), x.shape)
    mask = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask, bool)
    labels = jnp.asarray(labels, jnp.int32)
    targets = jnp.asarray(targets, jnp.int32)
    clean_pred = jnp.argmax(logits_fn(x), axis=-1).astype(jnp.int32)
    already = (clean_pred != labels) & mask
    # An item whose target is its label is no targeted attack: not attacked, like padding.
    skipped = ~mask | ((targets == labels) & ~already)
    groups = segments is not None

    slots = default_slots(n) if slots is None else max(1, min(n, slots))
    w = jnp.ones((n, 1, 1, 1), x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
    seg = jnp.zeros((n, 1, 1), jnp.int32) if segments is None else jnp.asarray(segments)

    def one(args):
        xi, ti, loi, hii, wi, si, cp, al, sk = args
        item = _make_item(
            xi, ti, loi, hii, None if weights is None else wi, si if groups else None, ~al & ~sk
        )
        return _attack_item(logits_fn, item, config, cp, al, sk, groups)

    # ``slots`` items side by side (vmap), the chunks one after another: a vmapped λ1
    # search runs until its slowest item is done, so narrow chunks waste nothing on CPU.
    out = jax.lax.map(
        one,
        (x, targets, lo, hi, w, seg, clean_pred, already, skipped),
        batch_size=slots,
    )
    result = finalize(logits_fn, x, labels, out, targets)
    return result, out.details


def sapf_batch(
    logits_fn,
    x: jax.Array,
    labels: jax.Array,
    config: SAPFConfig = SAPFConfig(),
    targets: jax.Array | None = None,
    lower: jax.Array | float = 0.0,
    upper: jax.Array | float = 1.0,
    mask: jax.Array | None = None,
    slots: int | None = None,
    segments: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> AttackResult:
    """SAPF on a batch of (image, target) pairs, success re-verified on the returned images.

    An item is one pair: to attack an image towards all 9 other classes, repeat it 9 times
    in ``x`` with the 9 targets. Jit it at the call site, e.g. ``jax.jit(sapf_batch)``;
    changing numbers in ``config`` (k, λ1, λ2, κ, step sizes, ρ) or the model weights does
    not recompile.

    Args:
      logits_fn: ``float32[B, H, W, C] -> float32[B, K]``.
      x: float32[N, H, W, C] in [lower, upper]; labels: int32[N] true labels.
      config: SAPFConfig.
      targets: int32[N] target classes (required: SAPF is targeted).
      lower, upper: bounds broadcastable to x.
      mask: bool[N]; False items are not attacked (status SKIPPED), e.g. batch padding.
      slots: items attacked side by side (vmap width, static); chunks of ``slots`` items run
        one after another in the same compiled call (``lax.map``). A vmapped λ1 search
        runs until its slowest item is done, so on CPU, where the cost per item does not
        fall with the width, 1 wastes nothing. Default:
        :func:`~sparsejax.attacks.common.default_slots` (1 on CPU, 64 on accelerators).
      segments: int32[N, H, W] superpixel ids (SAPF-GS, Eq. 16); None: plain SAPF.
      weights: float32[N, H, W, C] in [0, 1] (SAPF-VI, Eq. 17); None: uniform.

    Returns:
      AttackResult with ``iterations`` = λ1 values tried, ``model_evals`` = forwards +
      backwards of the item (see the module doc). ℓ0 ≤ k when ``cardinality="exact"``.
    """
    return sapf_batch_details(
        logits_fn, x, labels, config, targets, lower, upper, mask, slots, segments, weights
    )[0]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SAPFGSConfig(SAPFConfig):
    """SAPF-GS (Eq. 16): SAPF plus λ2 Σ_i ‖G^i‖₂ over SLIC superpixels of the image.

    Attributes (beyond :class:`SAPFConfig`):
      lambda2: weight of the group-sparsity term (traced). Default 10, the paper's Fig. 3
        (the released code's 1e-3 does nothing at this objective's scale). On ResNet-20 /
        CIFAR-10 (``experiments/sapf_figures.py``) λ2 = 0 / 1 / 10 touch 52 / 16 / 7 of the
        ~150 superpixels on average, at 1 / 1.8 / 3.0 times the ℓ2 and 100% ASR.
      n_segments, compactness: SLIC settings for :func:`prepare_gs` (static; released code
        150 and 10 on CIFAR-10, the paper 350 regions on ImageNet).
    """

    lambda2: float = 10.0
    n_segments: int = _static(150)
    compactness: float = _static(10.0)

    def validate(self) -> None:
        super().validate()
        if self.n_segments < 1 or self.n_segments >= self.max_segments:
            raise SparsejaxError(
                f"sapf-gs n_segments must lie in [1, max_segments={self.max_segments}), "
                f"got {self.n_segments}"
            )
        check_number("sapf-gs compactness", self.compactness, lo=0.0, lo_open=True)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SAPFVIConfig(SAPFConfig):
    """SAPF-VI (Eq. 17): SAPF with per-element weights w in the ℓ2 term.

    Attributes (beyond :class:`SAPFConfig`):
      weighting: "uniform", "variance" or "variance_mean" (§4.3; static).
      normalize: "max" (default) or "minmax" (released code), see
        :func:`~sparsejax.attacks.sapf_weights.visual_weights` (static).
    """

    weighting: str = _static("variance")
    normalize: str = _static("max")

    def validate(self) -> None:
        from sparsejax.attacks.sapf_weights import NORMALIZATIONS, WEIGHT_KINDS

        super().validate()
        if self.weighting not in WEIGHT_KINDS:
            raise SparsejaxError(
                f"sapf-vi weighting must be one of {WEIGHT_KINDS}, got {self.weighting!r}"
            )
        if self.normalize not in NORMALIZATIONS:
            raise SparsejaxError(
                f"sapf-vi normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}"
            )


def prepare_gs(x: np.ndarray, config: SAPFGSConfig) -> dict:
    """Host-side inputs of SAPF-GS for a batch: ``segments`` int32[N, H, W] (SLIC)."""
    from sparsejax.attacks.sapf_weights import slic_segments

    seg = slic_segments(np.asarray(x), config.n_segments, config.compactness)
    if seg.size and seg.max() >= config.max_segments:
        raise SparsejaxError(
            f"sapf-gs: SLIC made {seg.max() + 1} segments, more than max_segments="
            f"{config.max_segments}; raise max_segments or lower n_segments"
        )
    return {"segments": seg}


def prepare_vi(x: np.ndarray, config: SAPFVIConfig) -> dict:
    """Host-side inputs of SAPF-VI for a batch: ``weights`` float32[N, H, W, C] in [0, 1]."""
    from sparsejax.attacks.sapf_weights import visual_weights

    return {"weights": visual_weights(np.asarray(x), config.weighting, normalize=config.normalize)}
