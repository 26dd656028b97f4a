"""The sparse ℓ0 attack of Lin, Lou, Wang, Jalaian and Yuan, "Towards Interpretable
Adversarial Examples via Sparse Adversarial Attack" (§4.4, appendix B Algorithm 1, §5.1).

For one example x with label y:

  1. δ = I-FGSM(x) (Eqs. 3-4): ε = 4/255, α = 1/255, 10 steps; δ ∈ [-ε, ε].
  2. A weight w of the shape of δ is optimised by SGD with momentum 0.9, learning rate 1e-2,
     on J = CE(f(x + m ⊙ δ), y_adv) + λ Σ_j H(m_j), m = π(w - τ/ε) (Eqs. 18-20), π = ReLU,
     H the Heaviside step whose derivative is the Gaussian q_a (Eq. 12;
     :func:`sparsejax.ops.heaviside`). Paper defaults: a = 0.1, τ = 0.3, λ = 1e-2 (MNIST,
     CIFAR-10; 1e-3 on ImageNet), 100 steps (200 on ImageNet).
  3. The output is x + Ω ⊙ H(π(w - τ/ε)) ⊙ δ with Ω = min(x/ε, (1 - x)/ε) (Eq. 22): a
     binary mask times the largest perturbation along sign(δ) that stays in [0, 1], so no
     clipping is ever needed (Proposition 2).

**How w is updated** (``update``). The paper gives two readings that differ:

- ``"algorithm1"`` (default): appendix B's Algorithm 1. Every step overwrites w with its
  thresholded value, w ← π(w - τ/ε) (line 1 of the loop), evaluates J at that w, and takes
  the step w ← w - η∇_w J from it. The ℓ0 term's surrogate derivative is taken through the
  ReLU, as Eq. (20)'s chain rule gives: d H(π(u))/du = q_a(π(u)) π'(u), so a weight the
  threshold has zeroed gets no ℓ0 push, while its cross-entropy gradient (at w = 0) can
  bring it back. The threshold acts as a soft threshold every step: a weight stays only
  while its cross-entropy step keeps clearing τ/ε (≈ 19 at ε = 4/255).
- ``"eq20"``: Eq. (20) with a free w, J(w) = CE(f(x + π(w - τ/ε) ⊙ δ)) + λ ΣH(π(w - τ/ε));
  a weight below the threshold has π' = 0 and never returns.
- ``"algorithm1_post_relu"``: Algorithm 1 with q_a evaluated at the thresholded w itself,
  so the zeroed weights, at w = 0, get the largest ℓ0 push q_a(0) (sparsejax 0.1's
  ``algorithm1``). Kept as a measured reading (RESULTS.md), not as a recommendation.

**The loss scale** (``loss_scale``). The released code (fudong03/SparseAttack) minimises
β (CE/λ + ΣH) with β = 100, i.e. J × β/λ (1e4 at λ = 1e-2): ``"released"`` (default). At the
paper's scale 1 (``"paper"``) no cross-entropy step of Algorithm 1 clears τ/ε in 100 steps
with lr 1e-2, and every weight dies at the first threshold.

**The surrogate's role.** Under the default reading the Gaussian surrogate of the ℓ0 term
does almost nothing: removing its gradient (``surrogate="none"``) gives about the same
results, and so does any width a from 0.01 to 1 (measured, RESULTS.md). The sparsity comes
from the threshold τ/ε applied every step and from keeping the sparsest fooling iterate; λ
enters through the loss scale β/λ. That scale suits models whose input gradients are large
enough for some steps to clear τ/ε (ResNet-20); on the MNIST LeNet-5s they are not, and
``beta`` must be raised (RESULTS.md).

Other choices the paper leaves open, each measured in ``experiments/RESULTS.md``:

- **Initial w** (not stated; the released code draws ``randn``). Here w_0 = τ/ε + ``w_init``
  everywhere, i.e. π(w_0 - τ/ε) = ``w_init``: every element starts selected.
- **y_adv for untargeted attacks.** Eq. (20) minimises the cross-entropy towards y_adv,
  the class that the I-FGSM example reaches (Eqs. 2-3, and the released code);
  ``untargeted_loss="adv_label"`` does that (if I-FGSM did not flip the label, y_adv is the
  runner-up class at x + δ). ``"true_label"`` maximises the cross-entropy of the true label
  instead. Targeted attacks minimise the cross-entropy of the target (§5.1: least-likely).
- **Which iterate is returned.** Algorithm 1 returns the last one (``keep="last"``); the
  released code keeps the sparsest iterate whose Eq. (22) example is adversarial
  (``keep="sparsest"``, default; one extra forward pass per step).
- **Mini-batches.** The paper optimises mini-batches of 256 images; w is per image, so the
  objective here is per image (the sum over a batch, not the mean, whose gradient would be
  256 times smaller per image at the same learning rate).
- **I-FGSM** is the standard iterative method of Kurakin et al. [22]: the gradient at the
  current iterate, projection onto the ε-ball and the box after every step. (Eq. 3 as
  printed takes the gradient at the clean x every step; the released code does one FGSM
  step with an accumulated gradient.) The model is evaluated at x + m ⊙ δ without clipping
  during the optimisation, as in the paper; only the output must be valid.

Execution: every example runs the same ``steps`` SGD steps (one engine step each), so the
default schedule is a lockstep ``vmap``. ``iterations`` is the SGD step whose mask is
returned (0: the initial mask).

General bounds: with per-element [lower, upper] instead of [0, 1], Ω ε = min(x - lower,
upper - x), and Proposition 2 holds the same way. The product Ω ⊙ δ is evaluated as
min(x - lower, upper - x) · clip(δ/ε, -1, 1), which equals Eq. (22) and keeps the output
inside the box in float32 arithmetic too (tested: no clipping needed).
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax.attacks import _config, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.attacks.losses import cross_entropy, strongest_other
from sparsejax.ops import heaviside


@_config.config
class SparseL0Config:
    """Settings of the Lin et al. attack. Numbers are traced (sweep them, no recompilation);
    step counts and modes are static."""

    attack_name: ClassVar[str] = "sparse-l0"

    epsilon: float = param(
        4 / 255,
        doc="ℓ∞ bound of the I-FGSM initial perturbation δ",
        unit="[0, 1] pixel units",
        paper="ε (Eqs. 3-4, §5.1: 4/255)",
    )
    alpha: float = param(
        1 / 255,
        doc="I-FGSM step size",
        unit="[0, 1] pixel units",
        paper="α (Eq. 4, §5.1: 1/255)",
    )
    a: float = param(
        0.1,
        doc="width of the Gaussian surrogate q_a of the Heaviside derivative",
        unit="units of π(w - τ/ε)",
        paper="a (Eq. 12, §5.1: 0.1)",
    )
    tau: float = param(
        0.3, doc="threshold of the tailored ReLU π(w - τ/ε)", paper="τ (Eq. 19, §5.1: 0.3)"
    )
    lambda_: float = param(
        1e-2,
        doc="weight of the ℓ0 term (1e-2 MNIST/CIFAR-10, 1e-3 ImageNet)",
        unit="per element",
        paper="λ (Eq. 20, §5.1)",
    )
    learning_rate: float = param(1e-2, doc="SGD learning rate", paper="§5.1: 1e-2")
    momentum: float = param(0.9, doc="SGD momentum", paper="§5.1: 0.9")
    w_init: float = param(
        0.1,
        doc="initial value of π(w - τ/ε), the same for every element",
        unit="units of π(w - τ/ε)",
        paper="unstated (see the module doc)",
    )
    fgsm_steps: int = param(
        10, static=True, doc="I-FGSM iterations", unit="steps", paper="§5.1: 10"
    )
    steps: int = param(
        100,
        static=True,
        doc="SGD steps on w (every example runs all of them)",
        unit="steps",
        paper="§5.1: 100 (200 on ImageNet)",
    )
    update: Literal["algorithm1", "eq20", "algorithm1_post_relu"] = param(
        "algorithm1",
        static=True,
        doc="algorithm1: appendix B, w = π(w - τ/ε) in place every step, the surrogate "
        "through the ReLU; eq20: a free w; algorithm1_post_relu: q_a at the thresholded w "
        "(0.1's reading)",
        paper="Algorithm 1 / Eq. (20)",
    )
    loss_scale: Literal["released", "paper"] = param(
        "released",
        static=True,
        doc="released: the loss times β/λ, i.e. β(CE/λ + ΣH) (fudong03/SparseAttack); "
        "paper: CE + λΣH",
    )
    beta: float = param(
        100.0,
        doc="β of the released loss scale β(CE/λ + ΣH) (used when loss_scale='released')",
        paper="beta = 1e2 (released helper.py)",
    )
    surrogate: Literal["gaussian", "none"] = param(
        "gaussian",
        static=True,
        doc="gaussian: H with the q_a derivative (Eq. 18); none: the ℓ0 term with no "
        "gradient (an ablation)",
        paper="q_a (Eq. 12)",
    )
    keep: Literal["sparsest", "last"] = param(
        "sparsest",
        static=True,
        doc="which iterate is returned: the sparsest adversarial one (released code) or "
        "the last (Algorithm 1)",
    )
    untargeted_loss: Literal["adv_label", "true_label"] = param(
        "adv_label",
        static=True,
        doc="adv_label: minimise CE towards the I-FGSM class (Eq. 20); true_label: "
        "maximise CE of the label",
    )
    box: Literal["symmetric", "directional"] = param(
        "symmetric",
        static=True,
        doc="Ω of Eq. (22): the room in both directions (paper) or along sign(δ)",
        paper="Ω (Eq. 22)",
    )

    def validate(self) -> None:
        _config.check_count(self, "fgsm_steps", lo=0, hi=1_000_000)
        _config.check_count(self, "steps", lo=1, hi=1_000_000)
        _config.check_number(self, "epsilon", lo=0.0, lo_open=True, hi=1.0)
        _config.check_number(self, "alpha", lo=0.0)
        _config.check_number(self, "a", lo=0.0, lo_open=True)
        _config.check_number(self, "tau", lo=0.0)
        _config.check_number(self, "lambda_", lo=0.0)
        _config.check_number(self, "learning_rate", lo=0.0, lo_open=True)
        _config.check_number(self, "momentum", lo=0.0, hi=1.0)
        _config.check_number(self, "w_init")
        _config.check_number(self, "beta", lo=0.0, lo_open=True)
        if self.loss_scale == "released":
            _config.check_number(self, "lambda_", lo=0.0, lo_open=True)  # β/λ


class SparseL0Stats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    y_adv: jax.Array  # int32 the class the cross-entropy term pulls towards (-1: none)
    delta_l0: jax.Array  # int32 nonzero elements of the I-FGSM perturbation δ
    mask_l0: jax.Array  # int32 elements of the returned mask that Ω ⊙ δ can move


def ifgsm(f: Classifier, x, y, epsilon, alpha, steps: int, lower, upper, targeted: bool):
    """I-FGSM (Eqs. 3-4; Kurakin et al.) for one example: δ with |δ| <= ε, x + δ in the box.

    Untargeted: ascend CE(f(x_n), y) with y the true label; targeted: descend CE(f(x_n), y)
    with y the target. Cost: ``steps`` forward and backward passes.
    """
    sign = -1.0 if targeted else 1.0
    lo = jnp.maximum(x - epsilon, lower)
    hi = jnp.minimum(x + epsilon, upper)

    def step(_, xn):
        g = jax.grad(lambda z: cross_entropy(f.logits(z), y))(xn)
        return jnp.clip(xn + sign * alpha * jnp.sign(g), lo, hi)

    return jax.lax.fori_loop(0, steps, step, x) - x


def box_step(x, delta, epsilon, lower, upper, box: str = "symmetric"):
    """Ω ⊙ δ of Eq. (22).

    ``symmetric`` (the paper): Ω = min((x - lower)/ε, (upper - x)/ε), the room in both
    directions. ``directional``: Ω = (upper - x)/ε where δ > 0 and (x - lower)/ε where
    δ < 0, the room along sign(δ); Proposition 2's proof goes through unchanged. Written as
    room · clip(δ/ε, -1, 1) so that x + mask ⊙ Ω ⊙ δ stays inside [lower, upper] in
    floating point as well as in exact arithmetic.
    """
    if box == "symmetric":
        room = jnp.minimum(x - lower, upper - x)
    else:
        room = jnp.where(delta > 0, upper - x, x - lower)
    return room * jnp.clip(delta / epsilon, -1.0, 1.0)


def shifted_relu(w, tau, epsilon):
    """π(w - τ/ε), the tailored ReLU of Eq. (19)."""
    return jax.nn.relu(w - tau / epsilon)


def attack_objective(f: Classifier, x, delta, w, y, ce_sign, config: SparseL0Config):
    """The objective of one step, for one example, as a function of the variable the step
    differentiates (Eqs. 18-20; appendix B).

    ``update="eq20"``: w is free, m = π(w - τ/ε),
        J(w) = ce_sign · CE(f(x + m ⊙ δ), y) + λ Σ_j H(m_j).
    ``update="algorithm1"``: w is the thresholded weight of Algorithm 1 (w = π(·) ≥ 0),
        J(w) = ce_sign · CE(f(x + w ⊙ δ), y) + λ Σ_j H(π(w_j)),
    the surrogate through the ReLU: zero ℓ0 derivative at w_j = 0.
    ``update="algorithm1_post_relu"``: as Algorithm 1 but λ Σ_j H(w_j), q_a at w_j = 0 too.

    H has the Gaussian surrogate derivative q_a (Eq. 18), or none (``surrogate="none"``).
    The whole objective is scaled by β/λ under ``loss_scale="released"``.
    """
    eps = jnp.asarray(config.epsilon, x.dtype)
    if config.update == "eq20":
        m = h_arg = shifted_relu(w, config.tau, eps)
    elif config.update == "algorithm1":
        m, h_arg = w, jax.nn.relu(w)  # relu'(0) = 0: a zeroed weight gets no ℓ0 push
    else:
        m = h_arg = w
    logits = f.logits(x + m * delta)
    h = heaviside(h_arg, jnp.asarray(config.a, x.dtype))
    if config.surrogate == "none":
        h = jax.lax.stop_gradient(h)
    j = ce_sign * cross_entropy(logits, y) + config.lambda_ * jnp.sum(h)
    if config.loss_scale == "released":
        j = j * (config.beta / config.lambda_)  # β(CE/λ + ΣH)
    return j


class _State(NamedTuple):
    delta: jax.Array  # float32[H, W, C] the I-FGSM perturbation
    step_out: jax.Array  # float32[H, W, C] Ω ⊙ δ (Eq. 22)
    y_adv: jax.Array  # int32 class of the cross-entropy term
    ce_sign: jax.Array  # +1: minimise CE(y_adv); -1: maximise CE(label)
    w: jax.Array  # float32[H, W, C], the mask is π(w - τ/ε) > 0 (before Alg. 1's threshold)
    opt_state: optax.OptState
    t: jax.Array  # int32 SGD steps taken
    best_mask: jax.Array  # bool[H, W, C]
    best_count: jax.Array  # int32 changed elements of the best candidate
    best_iter: jax.Array  # int32 (-1: none yet)
    nonfinite: jax.Array  # bool: a non-finite loss or gradient was met (and skipped)


def _optimizer(c: SparseL0Config):
    return optax.sgd(c.learning_rate, momentum=c.momentum)


def _mask_of(w, c: SparseL0Config):
    """H(π(w - τ/ε)): the elements the output changes (Eq. 22; Algorithm 1's last line)."""
    return shifted_relu(w, c.tau, c.epsilon) > 0


def _init(f: Classifier, p: Problem, c: SparseL0Config):
    """The I-FGSM start (Eqs. 3-4), y_adv, Ω ⊙ δ and w_0."""
    x = p.x
    eps = jnp.asarray(c.epsilon, x.dtype)
    fgsm_label = p.target if p.targeted else p.label
    delta = ifgsm(f, x, fgsm_label, eps, c.alpha, c.fgsm_steps, p.lower, p.upper, p.targeted)
    passes = Passes(c.fgsm_steps, c.fgsm_steps)
    if p.targeted:
        y_adv, ce_sign = p.target, 1.0
    elif c.untargeted_loss == "adv_label":  # the class the I-FGSM example reaches
        y_adv, ce_sign = strongest_other(f.logits(x + delta), p.label), 1.0
        passes = passes + Passes(1, 0)
    else:
        y_adv, ce_sign = p.label, -1.0
    w0 = jnp.full_like(x, c.tau / eps + c.w_init)  # π(w_0 - τ/ε) = w_init everywhere
    state = _State(
        delta=delta,
        step_out=box_step(x, delta, eps, p.lower, p.upper, c.box),
        y_adv=jnp.asarray(y_adv, jnp.int32),
        ce_sign=jnp.asarray(ce_sign, x.dtype),
        w=w0,
        opt_state=_optimizer(c).init(w0),
        t=jnp.int32(0),
        best_mask=jnp.ones(x.shape, bool),
        best_count=jnp.int32(jnp.iinfo(jnp.int32).max),
        best_iter=jnp.int32(-1),
        nonfinite=jnp.bool_(False),
    )
    return state, passes


def _candidate(p: Problem, s: _State, mask):
    """Eq. (22)-(23): x + Ω ⊙ H(π(w - τ/ε)) ⊙ δ."""
    return p.x + jnp.where(mask, s.step_out, 0.0)


def _step(f: Classifier, p: Problem, c: SparseL0Config, s: _State):
    """One SGD step on w (1 forward + 1 backward), and with ``keep="sparsest"`` the check of
    the new mask (1 forward)."""
    objective = lambda v: attack_objective(f, p.x, s.delta, v, s.y_adv, s.ce_sign, c)
    # Eq. (20) differentiates the free w; Algorithm 1 first overwrites w = π(w - τ/ε)
    # (line 1 of its loop) and steps from there.
    w = s.w if c.update == "eq20" else shifted_relu(s.w, c.tau, c.epsilon)
    loss, grad = jax.value_and_grad(objective)(w)
    finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad))
    updates, opt_state = _optimizer(c).update(grad, s.opt_state, w)
    w = optax.apply_updates(w, updates)  # w = w - η∇J (with momentum)
    keep = lambda new, old: jnp.where(finite, new, old)  # a non-finite step is not taken
    s = s._replace(
        w=keep(w, s.w),
        opt_state=jax.tree.map(keep, opt_state, s.opt_state),
        t=s.t + 1,
        nonfinite=s.nonfinite | ~finite,
    )
    if c.keep == "last":
        return s, Passes(1, 1)
    mask = _mask_of(s.w, c)
    count = jnp.sum(mask & (s.step_out != 0), dtype=jnp.int32)
    fooled = p.fooled_by(f.logits(_candidate(p, s, mask)))
    better = fooled & (count < s.best_count) & finite
    s = s._replace(
        best_mask=jnp.where(better, mask, s.best_mask),
        best_count=jnp.where(better, count, s.best_count),
        best_iter=jnp.where(better, s.t, s.best_iter),
    )
    return s, Passes(2, 1)


def _finish(f, p: Problem, c: SparseL0Config, s: _State, steps):
    found = s.best_iter >= 0
    if c.keep == "sparsest":
        mask = jnp.where(found, s.best_mask, _mask_of(s.w, c))
        iterations = jnp.where(found, s.best_iter, s.t)
        claimed = found
    else:
        mask, iterations = _mask_of(s.w, c), s.t
        claimed = jnp.bool_(False)  # not checked here: the engine's re-verification decides
    movable = s.step_out != 0
    return Outcome(
        x_adv=_candidate(p, s, mask),
        claimed=claimed,
        degenerate=~jnp.any(movable),  # δ = 0 or no room: no element can change
        nonfinite=s.nonfinite,
        iterations=iterations,
        stats=SparseL0Stats(
            y_adv=s.y_adv,
            delta_l0=jnp.sum(s.delta != 0, dtype=jnp.int32),
            mask_l0=jnp.sum(mask & movable, dtype=jnp.int32),
        ),
    )


ALGORITHM = engine.Algorithm(
    name="sparse-l0",
    config_cls=SparseL0Config,
    init=_init,
    step=_step,
    done=lambda f, p, c, s: jnp.bool_(False),  # every example runs all steps
    finish=_finish,
    max_steps=lambda c: c.steps,
    early_stop=False,
)

sparse_l0 = engine.attack_function(
    ALGORITHM,
    """The sparse attack of Lin et al. (Algorithm 1 at the released code's loss scale by
    default, or Eq. 20; the I-FGSM start and the Ω box of Eq. 22) on a batch.

    ``iterations`` is the SGD step whose mask is returned (0: the initial mask); ``stats``
    is a :class:`SparseL0Stats`. Targeted (minimise the cross-entropy of the target) when
    ``targets`` are given. Every example runs ``steps`` SGD steps.
    """,
)
