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
                                                    :mod:`._lp_box_admm`)
  binarise G, then ``finetune_steps`` more steps on δ with G fixed       (released code)
  success ⇔ argmax f(clip(x + δ⊙G)) = t

and λ1 is searched over at most ``max_iter`` atoms (§4.1, "modified binary search").

Choices where the paper is silent follow the released code
(wubaoyuan/Sparse-Adversarial-Attack, see ``notes/reference-implementations.md`` §4):
  * Loss: the C&W margin max(max_{j≠t} Z_j − Z_t + κ, 0) on logits, κ = ``confidence``
    (``loss="cw"``, the code's default); the paper's Eq. (1) cross-entropy is
    ``loss="ce"``.
  * The adversarial image inside the loss is clip(x + δ⊙G, lower, upper) (paper §3.2: "the
    range constraint ... can be simply satisfied via clipping"), with torch.clamp's gradient
    convention (1 on the closed interval, 0 outside), so saturated pixels (0 or 255 in
    CIFAR-10) get a gradient at δ = 0, as in the released code. G itself is never clipped.
  * Step sizes (``learning_rate_delta``, ``learning_rate_g``) 0.1 for δ and G, ×0.9 every
    50 steps of a phase, floor 1e-3; the δ step size carries over from one δ phase to the
    next and into the fine-tuning, η_G and ρ carry over between G phases, the ADMM
    multipliers restart at 0 in every G phase, and every atom restarts from G = 1, δ = 0
    with the initial step sizes and ρ.
  * After the last G phase G is binarised and δ fine-tuned with G fixed (``finetune_steps``,
    the code's maxIter_e / 2). Binarisation: ``cardinality="soft"`` keeps G > 0.5 as the
    code, so 1ᵀG = k holds only as far as the ADMM penalty enforced it;
    ``cardinality="exact"`` (default) keeps the k largest entries of G (ties: lowest index),
    the Euclidean projection of G onto {G binary, 1ᵀG = k}, so ℓ0 ≤ k is guaranteed.
    Both report 1ᵀG before binarisation and #(G > 0.5) in :class:`SAPFStats`.
  * ρ: the paper's (ρ1, ρ2, ρ3) = box, sphere, cardinality, init (5e-3, 5e-3, 1e-4), caps
    (20, 10, 100), ×1.01 per ADMM iteration (§4.1). The code caps its cardinality ρ at 0.01
    instead; we follow the paper.
  * λ1 search (code's rule, paper's stopping rule): on failure lb = λ1 and λ1 ← 10·λ1 until
    a success has set ub < upper, then bisection (ub + lb)/2; on success ub = λ1 and
    λ1 ← (ub + lb)/2. ``search="paper"`` (default) stops at the first success (§4.1: "stops
    when generating a successful attack"); ``search="code"`` keeps searching for the full
    ``max_iter`` (stopping early only when λ1 < init/100, as the code) and returns the
    last success. We cap 10·λ1 at the upper bound 100 (the paper's bounds; the code can
    exceed them) and stop once λ1 = 100 has failed, since the next atom would repeat it.
    Under the paper's rule the search therefore tries λ1, 10λ1, 100λ1, ... until a success.

Deviations:
  * Budget. The paper runs 10 outer iterations of 2000 δ + 2000 G steps per atom and up to
    6 atoms (≈ 240k gradient passes per (image, target) pair); the code runs 1 × (2000 +
    2000) + 1000 per atom (≤ 30k). The defaults, sized for a CPU, are 1 outer iteration of
    200 + 200 steps and 100 fine-tuning steps per atom (500 gradient passes);
    :data:`PAPER_BUDGET` and :data:`CODE_BUDGET` record the originals.
  * λ1 starts at 0.1, not the paper's 1e-3: with 500-pass atoms λ1 = 1e-3 and 1e-2 rarely
    succeed, and the search spends atoms multiplying λ1 by 10 (same ℓ2, more atoms).
  * Schedules. The step-size decay (×0.9 per 50 steps: 0.1 → 1.5e-3 over 2000 steps) and
    the ρ growth (×1.01 per step: the caps are reached after 834 / 1388 steps) are tuned to
    2000-step phases; in 200 steps the step size only falls to 0.066 and ρ grows ×7.3, so
    G is far from binary and, with the C&W loss, whose gradient does not fade near the
    target, large λ1 makes δ oscillate. ``schedule="budget"`` (default) compresses both into
    the phase lengths used: the decay period becomes 50·steps/2000 (δ and G phases) or
    50·steps/1000 (fine-tuning, the code's 1000 steps), and ρ grows by 1.01^(2000/g_steps)
    per step, so at the paper's step counts the two schedules are the same.
    ``schedule="paper"`` keeps the constants.
  * Stability (``implicit=True``, default). The explicit steps of Eqs. (7) and (14) diverge
    when a quadratic term is stiff: η·2G² > 2 in the δ step, η_G·(2δ² + ρ1 + ρ2) > 2 or
    η_G·N·ρ3 > ~1 in the G step (the paper's ρ3 cap 100 is far past that for N ≥ 512).
    This is the divergence of the released repository's issue #3 (G → 1e44 → NaN on
    ImageNet). We keep the loss linearised and take the quadratic terms at the new point
    (backward Euler):
      δ' = (δ − η_δ G⊙λ1∂L/∂ε) / (1 + 2η_δ w²⊙G²)                     (Eq. 7, implicit)
    and the G step of :func:`~sparsejax.attacks._lp_box_admm.g_step`. Same fixed points,
    first-order equal to Eqs. (7), (14), stable for every δ, G, ρ. ``implicit=False`` runs
    Eqs. (7) and (14) as printed: fine while ρ stays small (``schedule="paper"`` in 200
    steps), divergent once ρ reaches the paper's caps.
  * SAPF-GS follows the paper (the subgradient λ2·G^i/‖G^i‖₂ added to Eq. 14, 0 where
    ‖G^i‖ = 0), not the code's extra ADMM split with group soft-thresholding; it is its
    own attack, ``sapf_gs`` (in the code it is always on with λ2 = 1e-3).
  * Divergence or a degenerate model: an atom whose δ or G is not finite, or in which the
    loss gradient was exactly zero at every δ step (nothing to descend), ends the search
    with status NONFINITE (δ or G not finite) or DEGENERATE (zero gradient) and x_adv = x (or
    the last success, under ``search="code"``).

Each deviation is measured against the paper's and the code's choices in
``experiments/RESULTS.md`` (SAPF, "Budget, cardinality and the deviations";
``experiments/sapf_budget.py``).

Execution: one engine step is one atom (one λ1 value); everything inside it is a
``lax.fori_loop`` of static length. The λ1 search stops at a different atom for every item,
so the default schedule is the engine's refill queue. ``iterations`` counts atoms (λ1
values tried, at most ``max_iter``); ``forwards``/``backwards`` count the item's own model
passes: per atom outer_iters·(delta_steps + g_steps) + finetune_steps gradient passes
(1 forward + 1 backward each) and 1 forward for the success check, plus the clean forward
and the re-verification.

Schedules. The step sizes decay ×decay every ``decay_every`` steps with a floor, and ρ grows
×growth per step with caps: ``optax.exponential_decay`` computes the same curves, but it
branches in Python on its rate, so it cannot take the traced (sweepable) rates here, and it
computes decay^n as a power rather than by repeated multiplication, which changes the
float32 path; they stay the two one-line functions of :mod:`._lp_box_admm`.
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.attacks import _config, _units, engine
from sparsejax.attacks import _lp_box_admm as admm
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.attacks.losses import cross_entropy, cw_margin
from sparsejax.errors import SparsejaxError

# The paper's budget (§4.1): 10 outer iterations of 2000 + 2000 steps, 6 λ1 searches; it does
# not state a fine-tuning length. λ1 starts at 1e-3 on CIFAR-10 and 1e-2 on ImageNet.
PAPER_BUDGET = dict(outer_iters=10, delta_steps=2000, g_steps=2000, max_iter=6)
PAPER_LAMBDA1 = {"cifar10": 1e-3, "imagenet": 1e-2}
# The released code (flags.py): maxIter_mm = 1, maxIter_e = maxIter_g = 2000, fine-tuning
# maxIter_e / 2, lambda1_search_times = 6.
CODE_BUDGET = dict(outer_iters=1, delta_steps=2000, g_steps=2000, finetune_steps=1000, max_iter=6)


@_config.config
class SAPFConfig:
    """SAPF settings. Numbers are traced (a sweep over k, λ1, ... does not recompile); loop
    lengths and modes are static."""

    attack_name: ClassVar[str] = "sapf"

    k: float = param(
        200.0,
        doc="cardinality 1ᵀG = k (released default 200 on CIFAR-10)",
        unit="elements",
        paper="k (Eq. 3)",
    )
    lambda1: float = param(
        0.1,
        doc="initial λ1 of the search (paper: 1e-3 on CIFAR-10, 1e-2 on ImageNet, for its "
        "20k-step atoms)",
        paper="λ1 (Eq. 3, §4.1)",
    )
    lambda1_lower: float = param(0.0, doc="lower bound of the λ1 search", paper="§4.1: 0")
    lambda1_upper: float = param(100.0, doc="upper bound of the λ1 search", paper="§4.1: 100")
    confidence: float = param(
        0.0, doc="C&W margin κ of the loss", unit="logits", paper="κ (released code: 0)"
    )
    learning_rate_delta: float = param(0.1, doc="initial step size of δ", paper="η_δ (0.1)")
    learning_rate_g: float = param(0.1, doc="initial step size of G", paper="η_G (0.1)")
    learning_rate_decay: float = param(
        0.9, doc="step-size factor every decay_every steps", paper="×0.9 (released code)"
    )
    learning_rate_min: float = param(1e-3, doc="floor of both step sizes", paper="1e-3 (code)")
    rho1: float = param(admm.PAPER_RHO[0], doc="initial box penalty", paper="ρ1 (§4.1)")
    rho2: float = param(admm.PAPER_RHO[1], doc="initial sphere penalty", paper="ρ2 (§4.1)")
    rho3: float = param(admm.PAPER_RHO[2], doc="initial cardinality penalty", paper="ρ3 (§4.1)")
    rho1_max: float = param(admm.PAPER_RHO_MAX[0], doc="cap of ρ1", paper="§4.1: 20")
    rho2_max: float = param(admm.PAPER_RHO_MAX[1], doc="cap of ρ2", paper="§4.1: 10")
    rho3_max: float = param(admm.PAPER_RHO_MAX[2], doc="cap of ρ3", paper="§4.1: 100")
    rho_growth: float = param(
        admm.PAPER_RHO_GROWTH, doc="ρ factor per ADMM iteration", paper="§4.1: 1.01"
    )
    outer_iters: int = param(
        1, static=True, doc="iterations of Algorithm 1 per atom", unit="iterations",
        paper="paper 10, code 1",
    )  # fmt: skip
    delta_steps: int = param(
        200, static=True, doc="gradient steps per δ phase", unit="steps",
        paper="paper and code 2000",
    )  # fmt: skip
    g_steps: int = param(
        200, static=True, doc="ADMM iterations per G phase", unit="steps",
        paper="paper and code 2000",
    )  # fmt: skip
    finetune_steps: int = param(
        100, static=True, doc="δ steps after binarising G", unit="steps", paper="code 1000"
    )
    max_iter: int = param(
        6, static=True, doc="cap on the λ1 values tried (atoms)", unit="atoms",
        paper="lambda1_search_times = 6",
    )  # fmt: skip
    decay_every: int = param(
        50, static=True, doc="decay period of the step sizes", unit="steps", paper="code: 50"
    )
    loss: Literal["cw", "ce"] = param(
        "cw", static=True, doc="cw: C&W margin on logits (released code); ce: Eq. (1)"
    )
    cardinality: Literal["exact", "soft"] = param(
        "exact", static=True, doc="exact: top-k of G (ℓ0 <= k); soft: G > 0.5 (released code)"
    )
    search: Literal["paper", "code"] = param(
        "paper",
        static=True,
        doc="paper: stop at the first success; code: keep searching, return the last success",
    )
    schedule: Literal["paper", "budget"] = param(
        "budget",
        static=True,
        doc="budget: decay and ρ growth compressed into the configured phase lengths; "
        "paper: the constants as printed",
    )
    implicit: bool = param(
        True, static=True, doc="semi-implicit δ and G steps (stable); False: Eqs. (7), (14)"
    )

    def validate(self) -> None:
        for name in ("outer_iters", "g_steps", "max_iter", "decay_every"):
            _config.check_count(self, name, hi=1_000_000)
        for name in ("delta_steps", "finetune_steps"):
            _config.check_count(self, name, lo=0, hi=1_000_000)
        _config.check_number(self, "k", lo=1.0, integer=True)
        _config.check_number(self, "lambda1", lo=0.0, lo_open=True)
        _config.check_number(self, "lambda1_lower", lo=0.0)
        _config.check_number(self, "lambda1_upper", lo=0.0, lo_open=True)
        if _config.is_concrete(self.lambda1, self.lambda1_lower, self.lambda1_upper) and not (
            np.all(np.asarray(self.lambda1_lower) < np.asarray(self.lambda1))
            and np.all(np.asarray(self.lambda1) <= np.asarray(self.lambda1_upper))
        ):
            raise SparsejaxError(
                f"sapf lambda1 must lie in (lambda1_lower, lambda1_upper], got {self.lambda1} "
                f"not in ({self.lambda1_lower}, {self.lambda1_upper}]"
            )
        _config.check_number(self, "confidence", lo=0.0)
        for name in ("learning_rate_delta", "learning_rate_g", "learning_rate_min"):
            _config.check_number(self, name, lo=0.0, lo_open=True)
        for name in ("rho1", "rho2", "rho3", "rho1_max", "rho2_max", "rho3_max"):
            _config.check_number(self, name, lo=0.0, lo_open=True)
        _config.check_number(self, "learning_rate_decay", lo=0.0, lo_open=True, hi=1.0)
        _config.check_number(self, "rho_growth", lo=1.0)


@_config.config
class SAPFGSConfig(SAPFConfig):
    """SAPF-GS (Eq. 16): SAPF plus λ2 Σ_i ‖G^i‖₂ over SLIC superpixels of the image."""

    attack_name: ClassVar[str] = "sapf-gs"

    lambda2: float = param(
        10.0,
        doc="weight of the group-sparsity term (the released code's 1e-3 does nothing at "
        "this objective's scale)",
        paper="λ2 (Eq. 16, Fig. 3: 10)",
    )
    n_segments: int = param(
        150, static=True, doc="SLIC superpixels asked for", unit="segments",
        paper="code: 150 on CIFAR-10; paper: 350 regions on ImageNet",
    )  # fmt: skip
    compactness: float = param(10.0, static=True, doc="SLIC compactness", paper="code: 10")
    max_segments: int = param(
        256, static=True, doc="static bound on the number of superpixels", unit="segments"
    )

    def validate(self) -> None:
        super().validate()
        _config.check_number(self, "lambda2", lo=0.0)
        _config.check_count(self, "max_segments", hi=1_000_000)
        _config.check_count(self, "n_segments", hi=self.max_segments - 1)
        if not self.compactness > 0:
            raise SparsejaxError(f"sapf-gs compactness must be > 0, got {self.compactness}")


@_config.config
class SAPFVIConfig(SAPFConfig):
    """SAPF-VI (Eq. 17): SAPF with per-element weights w in the ℓ2 term."""

    attack_name: ClassVar[str] = "sapf-vi"

    weighting: Literal["uniform", "variance", "variance_mean"] = param(
        "variance", static=True, doc="how the weights are computed from the image", paper="§4.3"
    )
    normalize: Literal["max", "minmax"] = param(
        "max",
        static=True,
        doc="max: divide by the largest weight of the image; minmax: per channel (code)",
    )


class SAPFStats(NamedTuple):
    """Per-item diagnostics in ``AttackResult.stats`` (of the atom whose image is returned).

    Attributes:
      lambda1: float32, λ1 of the returned atom (0 if none ran).
      g_sum: float32, 1ᵀG after the last G phase, before binarisation (the cardinality
        constraint 1ᵀG = k is met to |g_sum − k|).
      selected: int32, #(G > 0.5) after the last G phase: the positions the released code
        (``cardinality="soft"``) keeps; ``"exact"`` keeps exactly k.
    """

    lambda1: jax.Array
    g_sum: jax.Array
    selected: jax.Array


def clip_with_gradient(v, lo, hi):
    """clip(v, lo, hi) with torch.clamp's gradient: 1 on [lo, hi] (ends included), else 0."""
    return jnp.where((v >= lo) & (v <= hi), v, jnp.clip(v, lo, hi))


def attack_loss(logits: jax.Array, target, confidence, kind: str):
    """L(f(x'), t) of Eq. (3) on logits [K]: C&W margin or cross-entropy (static ``kind``)."""
    if kind == "ce":
        return cross_entropy(logits, target)
    return cw_margin(logits, target, confidence)


def _weights2(p: Problem):
    """w² of Eq. (17): the squared SAPF-VI weights, or 1."""
    w = p.extras.get("weights")
    return 1.0 if w is None else jnp.square(w.astype(p.x.dtype))


def loss_gradient(f: Classifier, p: Problem, eps, lambda1, confidence, kind: str):
    """λ1 ∂L(f(clip(x + ε)), t)/∂ε at ε = δ⊙G: one forward and one backward pass.

    ∂/∂δ of Eq. (7) is G ⊙ this, ∂/∂G of Eq. (14) is δ ⊙ this.
    """

    def objective(e):
        logits = f.logits(clip_with_gradient(p.x + e, p.lower, p.upper))
        return lambda1 * attack_loss(logits, p.target, confidence, kind)

    loss, grad = jax.value_and_grad(objective)(eps)
    # NaN logits can still have a finite gradient (through max or a select): a non-finite
    # loss poisons the gradient, so that the atom ends as diverged (NONFINITE).
    return jnp.where(jnp.isfinite(loss), grad, jnp.nan)


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


def delta_step(f: Classifier, p: Problem, c: SAPFConfig, delta, g, lr, lambda1):
    """One step of Step 1 on δ with G fixed (Eq. 7; Eq. 17's weights w).

    Explicit (Eq. 7): δ − η(2w²⊙δ⊙G⊙G + G⊙λ1∂L/∂ε). Implicit: the quadratic term at the new
    point, (δ − η G⊙λ1∂L/∂ε) / (1 + 2η w²⊙G⊙G). One forward and one backward pass.

    Returns:
      (new δ, λ1∂L/∂ε at the current point).
    """
    gl = loss_gradient(f, p, delta * g, lambda1, c.confidence, c.loss)
    curv = 2.0 * _weights2(p) * g * g
    if c.implicit:
        return (delta - lr * g * gl) / (1.0 + lr * curv), gl
    return delta - lr * (curv * delta + g * gl), gl


def g_smooth_gradient(f: Classifier, p: Problem, c: SAPFConfig, delta, g, lambda1):
    """The smooth part of ∂L/∂G in Eq. (14), split as (∇_lin, c) with gradient ∇_lin + c⊙G:
    ∇_lin = δ⊙λ1∂L/∂ε (+ the SAPF-GS subgradient λ2 ∂Σ‖G^i‖/∂G of Eq. 16), c = 2w²⊙δ⊙δ.
    One forward and one backward pass."""
    gl = loss_gradient(f, p, delta * g, lambda1, c.confidence, c.loss)
    grad_lin = delta * gl
    if "segments" in p.extras:
        grad_lin = grad_lin + c.lambda2 * group_gradient(g, p.extras["segments"], c.max_segments)
    return grad_lin, 2.0 * _weights2(p) * delta * delta


def binarize(g: jax.Array, k, mode: str) -> jax.Array:
    """Binary G from the continuous one: G > 0.5 (``"soft"``, released code) or the k
    largest entries, ties to the lowest index (``"exact"``). float32, same shape."""
    if mode == "soft":
        return (g > 0.5).astype(g.dtype)
    return _units.top_k(g.ravel(), k).astype(g.dtype).reshape(g.shape)


def passes_per_atom(c: SAPFConfig) -> int:
    """Gradient passes (1 forward + 1 backward each) of one atom, the success check aside."""
    return c.outer_iters * (c.delta_steps + c.g_steps) + c.finetune_steps


def _decay_every(c: SAPFConfig, steps: int, reference: int) -> int:
    """The step-size decay period of a phase of ``steps`` steps (static)."""
    if c.schedule == "paper":
        return c.decay_every
    return max(1, round(c.decay_every * steps / reference))


def _delta_phase(f, p, c: SAPFConfig, delta, g, lr, lambda1, steps, reference):
    """``steps`` gradient steps on δ with G fixed (Step 1, Eq. 7). Returns (δ, η_δ, whether
    the loss gradient was ever non-zero). ``reference``: the code's length of this phase."""
    every = _decay_every(c, steps, reference)

    def body(t, carry):
        d, lr, moved = carry
        d, gl = delta_step(f, p, c, d, g, lr, lambda1)
        lr = admm.decay_step_size(lr, t, c.learning_rate_decay, every, c.learning_rate_min)
        return d, lr, moved | jnp.any(gl != 0)

    return jax.lax.fori_loop(0, steps, body, (delta, lr, jnp.bool_(False)))


class _Atom(NamedTuple):
    x_adv: jax.Array
    success: jax.Array
    finite: jax.Array
    moved: jax.Array
    g_sum: jax.Array
    selected: jax.Array


def _atom(f: Classifier, p: Problem, c: SAPFConfig, lambda1) -> _Atom:
    """Algorithm 1 for one λ1, binarisation, fine-tuning and the success check."""
    dtype = p.x.dtype
    num = lambda v: jnp.asarray(v, dtype)
    rho_max = jnp.stack([num(c.rho1_max), num(c.rho2_max), num(c.rho3_max)])
    growth = num(c.rho_growth)
    if c.schedule == "budget":
        growth = admm.budget_growth(growth, c.g_steps).astype(dtype)

    def outer(_, carry):
        delta, g, lr_d, lr_g, rho, moved = carry
        delta, lr_d, m = _delta_phase(
            f, p, c, delta, g, lr_d, lambda1, c.delta_steps, CODE_BUDGET["delta_steps"]
        )  # Step 1
        g, lr_g, rho, _ = admm.lp_box_admm(
            lambda gg: g_smooth_gradient(f, p, c, delta, gg, lambda1),
            g,
            c.k,
            c.g_steps,
            lr_g,
            rho,
            rho_max,
            growth,
            c.learning_rate_decay,
            _decay_every(c, c.g_steps, CODE_BUDGET["g_steps"]),
            c.learning_rate_min,
            c.implicit,
        )  # Step 2
        return delta, g, lr_d, lr_g, rho, moved | m

    init = (
        jnp.zeros_like(p.x),  # δ = 0 (§4.1)
        jnp.ones_like(p.x),  # G = 1
        num(c.learning_rate_delta),
        num(c.learning_rate_g),
        jnp.stack([num(c.rho1), num(c.rho2), num(c.rho3)]),
        jnp.bool_(False),
    )
    delta, g, lr_d, _, _, moved = jax.lax.fori_loop(0, c.outer_iters, outer, init)
    g_sum = jnp.sum(g)
    selected = jnp.sum(g > 0.5, dtype=jnp.int32)
    gb = binarize(g, c.k, c.cardinality)
    delta, _, m = _delta_phase(
        f, p, c, delta, gb, lr_d, lambda1, c.finetune_steps, CODE_BUDGET["finetune_steps"]
    )  # fine-tuning (released code)
    finite = jnp.all(jnp.isfinite(delta)) & jnp.all(jnp.isfinite(g))
    x_adv = jnp.where(finite, clip_with_gradient(p.x + delta * gb, p.lower, p.upper), p.x)
    return _Atom(
        x_adv=x_adv,
        success=finite & p.fooled_by(f.logits(x_adv)),
        finite=finite,
        moved=moved | m,
        g_sum=jnp.where(finite, g_sum, 0.0),
        selected=selected,
    )


class _Search(NamedTuple):
    """The λ1 search of §4.1 (the engine's state for one item)."""

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
    atoms: jax.Array  # int32 atoms run


def _init(f, p: Problem, c: SAPFConfig):
    num = lambda v: jnp.asarray(v, p.x.dtype)
    state = _Search(
        lam=num(c.lambda1),
        lb=num(c.lambda1_lower),
        ub=num(c.lambda1_upper),
        stop=jnp.bool_(False),
        found=jnp.bool_(False),
        diverged=jnp.bool_(False),
        degenerate=jnp.bool_(False),
        x_adv=p.x,
        lam_used=num(0.0),
        g_sum=num(0.0),
        selected=jnp.int32(0),
        atoms=jnp.int32(0),
    )
    return state, Passes()


def _step(f: Classifier, p: Problem, c: SAPFConfig, s: _Search):
    """One atom at λ1 = s.lam and the λ1 update of the released code (``train_adptive``),
    10·λ1 capped at the upper bound. Cost: passes_per_atom gradient passes + 1 forward."""
    upper = jnp.asarray(c.lambda1_upper, p.x.dtype)
    a = _atom(f, p, c, s.lam)
    ok = a.success
    keep = ok | ~s.found  # the last success, else the last atom (released code)
    pick = lambda new, old: jnp.where(keep, new, old)
    ub_s = jnp.minimum(s.ub, s.lam)
    lam_s = jnp.where(ub_s < upper, (ub_s + s.lb) / 2, s.lam)
    lb_f = jnp.maximum(s.lb, s.lam)
    lam_f = jnp.where(s.ub < upper, (s.ub + lb_f) / 2, jnp.minimum(10 * s.lam, upper))
    bad = ~a.finite | ~a.moved
    if c.search == "paper":
        done_ok = ok
    else:
        done_ok = ok & (s.lam < 0.01 * c.lambda1)
    exhausted = ~ok & (s.ub >= upper) & (s.lam >= upper)  # 10·λ1 would repeat λ1 = upper
    state = _Search(
        lam=jnp.where(ok, lam_s, lam_f),
        lb=jnp.where(ok, s.lb, lb_f),
        ub=jnp.where(ok, ub_s, s.ub),
        stop=bad | done_ok | exhausted,
        found=s.found | ok,
        diverged=s.diverged | ~a.finite,
        degenerate=s.degenerate | (a.finite & ~a.moved),
        x_adv=pick(a.x_adv, s.x_adv),
        lam_used=pick(s.lam, s.lam_used),
        g_sum=pick(a.g_sum, s.g_sum),
        selected=pick(a.selected, s.selected),
        atoms=s.atoms + 1,
    )
    n = passes_per_atom(c)
    return state, Passes(n + 1, n)


def _finish(f, p, c, s: _Search, steps):
    return Outcome(
        x_adv=s.x_adv,
        claimed=s.found,
        degenerate=s.degenerate,
        nonfinite=s.diverged,
        iterations=s.atoms,
        stats=SAPFStats(lambda1=s.lam_used, g_sum=s.g_sum, selected=s.selected),
    )


def _check_segments(segments, x, max_segments: int):
    if tuple(segments.shape) != tuple(x.shape[:-1]):
        raise SparsejaxError(
            f"sapf-gs: segments must be int [N, H, W] = {tuple(x.shape[:-1])}, "
            f"got {tuple(segments.shape)}"
        )
    if not jnp.issubdtype(segments.dtype, jnp.integer):
        raise SparsejaxError(f"sapf-gs: segments must be integer ids, got {segments.dtype}")
    if _config.is_concrete(segments):
        seg = np.asarray(segments)
        if seg.size and (seg.min() < 0 or seg.max() >= max_segments):
            raise SparsejaxError(
                f"sapf-gs: segment ids must lie in [0, max_segments={max_segments}), "
                f"got [{seg.min()}, {seg.max()}]"
            )


def _prepare_gs(x, c: SAPFGSConfig, given: dict) -> dict:
    """SLIC segments for SAPF-GS: the given ones (checked) or computed on the host (a
    ``pure_callback``, so it works under jit too)."""
    from sparsejax.attacks._sapf_weights import slic_segments

    if "segments" in given:
        seg = jnp.asarray(given["segments"])
        _check_segments(seg, x, c.max_segments)
        return {"segments": seg.astype(jnp.int32)}

    def host(xs):
        seg = slic_segments(np.asarray(xs), c.n_segments, c.compactness).astype(np.int32)
        # More segments than the static bound: ids past it get no group gradient (the
        # group_gradient contract); raise max_segments to use them all.
        return np.minimum(seg, c.max_segments)

    if _config.is_concrete(x):  # outside jit: compute them here, no callback in the program
        return {"segments": jnp.asarray(host(x))}
    shape = jax.ShapeDtypeStruct(x.shape[:-1], jnp.int32)
    return {"segments": jax.pure_callback(host, shape, x, vmap_method="sequential")}


def _prepare_vi(x, c: SAPFVIConfig, given: dict) -> dict:
    """SAPF-VI weights: the given ones (checked) or computed on the host (a callback)."""
    from sparsejax.attacks._sapf_weights import visual_weights

    if "weights" in given:
        w = jnp.asarray(given["weights"], x.dtype)
        if tuple(w.shape) != tuple(x.shape):
            raise SparsejaxError(
                f"sapf-vi: weights must have the shape of x {tuple(x.shape)}, got {w.shape}"
            )
        if _config.is_concrete(w):
            wn = np.asarray(w)
            if not (np.all(np.isfinite(wn)) and wn.min(initial=0) >= 0 and wn.max(initial=0) <= 1):
                raise SparsejaxError("sapf-vi: weights must be finite and lie in [0, 1] (Eq. 17)")
        return {"weights": w}

    def host(xs):
        return visual_weights(np.asarray(xs), c.weighting, normalize=c.normalize).astype(xs.dtype)

    if _config.is_concrete(x):
        return {"weights": jnp.asarray(host(x))}
    shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
    return {"weights": jax.pure_callback(host, shape, x, vmap_method="sequential")}


def _check_shape(c: SAPFConfig, example_shape) -> None:
    n = int(np.prod(example_shape))
    if _config.is_concrete(c.k) and np.any(np.asarray(c.k) > n):
        raise SparsejaxError(
            f"{c.attack_name} k must be <= {n}, the elements of one image; got {c.k}"
        )


def _algorithm(name, config_cls, extras=(), prepare=None):
    return engine.Algorithm(
        name=name,
        config_cls=config_cls,
        init=_init,
        step=_step,
        done=lambda f, p, c, s: s.stop,
        finish=_finish,
        max_steps=lambda c: c.max_iter,
        early_stop=True,
        targeted="required",
        extras=extras,
        prepare_extras=prepare,
        check_shape=_check_shape,
    )


_DOC = """{title} on a batch of (image, target) pairs.

    An item is one pair: to attack an image towards all 9 other classes, repeat it 9 times
    in ``x`` with the 9 targets (``sparsejax.metrics.all_target_pairs``). ``iterations``
    counts atoms (λ1 values tried, at most ``max_iter``); ``stats`` is a
    :class:`SAPFStats`. ℓ0 <= k elements when ``cardinality="exact"``.{more}
    """

ALGORITHM = _algorithm("sapf", SAPFConfig)
ALGORITHM_GS = _algorithm("sapf-gs", SAPFGSConfig, ("segments",), _prepare_gs)
ALGORITHM_VI = _algorithm("sapf-vi", SAPFVIConfig, ("weights",), _prepare_vi)

sapf = engine.attack_function(ALGORITHM, _DOC.format(title="SAPF (Fan et al., ECCV 2020)", more=""))
sapf_gs = engine.attack_function(
    ALGORITHM_GS,
    _DOC.format(
        title="SAPF-GS (Eq. 16: group sparsity over SLIC superpixels)",
        more="\n\n    segments: int[N, H, W] superpixel ids in [0, max_segments); None: SLIC\n"
        "      with the config's n_segments and compactness, computed on the host.",
    ),
)
sapf_vi = engine.attack_function(
    ALGORITHM_VI,
    _DOC.format(
        title="SAPF-VI (Eq. 17: visual-imperceptibility weights in the ℓ2 term)",
        more="\n\n    weights: float32[N, H, W, C] in [0, 1]; None: computed from the images\n"
        "      with the config's weighting and normalize.",
    ),
)
