"""The sparse ℓ0 attack of Lin, Lou, Wang, Jalaian and Yuan, "Towards Interpretable
Adversarial Examples via Sparse Adversarial Attack" (§4.4, appendix B Algorithm 1, §5.1).

For one example x with label y:

  1. δ = I-FGSM(x) (Eqs. 3-4): ε = 4/255, α = 1/255, 10 steps; δ ∈ [-ε, ε].
  2. A weight w of the shape of δ is optimised by SGD with momentum 0.9, learning rate 1e-2,
     on Eq. (20):
         J(w) = CE(f(x + π(w - τ/ε) ⊙ δ), y_adv) + λ Σ_j H(π(w_j - τ/ε)),
     π = ReLU, H = the Heaviside step whose derivative is the Gaussian q_a (Eqs. 12, 18;
     :func:`sparsejax.ops.heaviside`). Paper defaults: a = 0.1, τ = 0.3, λ = 1e-2 (MNIST,
     CIFAR-10; 1e-3 on ImageNet), 100 steps (200 on ImageNet).
  3. The output is x + Ω ⊙ H(π(w - τ/ε)) ⊙ δ with Ω = min(x/ε, (1 - x)/ε) (Eq. 22): a
     binary mask times the largest perturbation along sign(δ) that stays in [0, 1], so no
     clipping is ever needed (Proposition 2).

The paper leaves several things open. The choices, each measured in
``experiments/RESULTS.md`` (section "Lin et al."):

- **Initial w** (not stated; the released code draws ``randn``, which its threshold kills
  at once). Here w_0 = τ/ε + ``w_init`` everywhere, i.e. π(w_0 - τ/ε) = ``w_init``. The
  surrogate q_a only pushes weights whose π(w - τ/ε) is within a few ``a`` of 0 (q_a(3a)
  is 1e-4 of q_a(0)), and with the paper's learning rate a weight moves by at most about
  λ q_a(0) · lr / (1 - momentum) ≈ 6e-3 per step, so the default ``w_init = a`` starts
  every weight where the ℓ0 term acts. Larger values leave the mask dense after 100 steps
  (measured).
- **y_adv for untargeted attacks.** Eq. (20) minimises the cross-entropy towards y_adv,
  the class that the I-FGSM example reaches (Eqs. 2-3, and the released code);
  ``untargeted_loss="adv_label"`` does that (if I-FGSM did not flip the label, y_adv is the
  runner-up class at x + δ). ``"true_label"`` maximises the cross-entropy of the true label
  instead. Targeted attacks minimise the cross-entropy of the target (§5.1: least-likely).
- **Which iterate is returned.** Algorithm 1 returns the last one (``keep="last"``); the
  released code keeps the sparsest iterate whose Eq. (22) example is adversarial
  (``keep="sparsest"``, one extra forward pass per step). Default: ``"sparsest"``.
- **Eq. (20) or Algorithm 1.** Algorithm 1 overwrites w with π(w - τ/ε) before each step
  and evaluates x + w ⊙ δ, so the threshold τ/ε is subtracted again at every step
  (``update="algorithm1"``); Eq. (20) keeps a free w (``update="eq20"``, default, SPEC §3).
- **Mini-batches.** The paper optimises mini-batches of 256 images; w is per image, so the
  objective here is per image (the sum over a batch, not the mean, whose gradient would be
  256 times smaller per image at the same learning rate).
- **I-FGSM** is the standard iterative method of Kurakin et al. [22]: the gradient at the
  current iterate, projection onto the ε-ball and the box after every step. (Eq. 3 as
  printed takes the gradient at the clean x every step; the released code does one FGSM
  step with an accumulated gradient.) The model is evaluated at x + π(w - τ/ε) ⊙ δ without
  clipping during the optimisation, as in the paper; only the output must be valid.

General bounds: with per-element [lower, upper] instead of [0, 1], Ω ε = min(x - lower,
upper - x), and Proposition 2 holds the same way. The product Ω ⊙ δ is evaluated as
min(x - lower, upper - x) · clip(δ/ε, -1, 1), which equals Eq. (22) and keeps the output
inside the box in float32 arithmetic too (tested: no clipping needed).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax.attacks.common import (
    AttackResult,
    Status,
    check_number,
    finalize,
    single_logits,
)
from sparsejax.errors import SparsejaxError
from sparsejax.ops import heaviside

UPDATES = ("eq20", "algorithm1")
KEEPS = ("sparsest", "last")
UNTARGETED_LOSSES = ("adv_label", "true_label")
BOXES = ("symmetric", "directional")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseL0Config:
    """Settings of the Lin et al. attack. Numbers are traced (sweep them with vmap, no
    recompilation); step counts and modes are static.

    Attributes:
      epsilon: ℓ∞ bound ε of the I-FGSM initial perturbation (paper: 4/255).
      alpha: I-FGSM step size α (paper: 1/255).
      a: width of the Gaussian surrogate q_a of the Heaviside derivative (Eq. 12; 0.1).
      tau: τ of the tailored ReLU π(w - τ/ε) (Eq. 19; 0.3).
      lambda_: weight λ of the ℓ0 term (Eq. 20; 1e-2 MNIST/CIFAR-10, 1e-3 ImageNet).
      learning_rate: SGD learning rate (1e-2).
      momentum: SGD momentum (0.9).
      w_init: initial value of π(w - τ/ε), the same for every element (paper: unstated).
      fgsm_steps: I-FGSM iterations (10).
      steps: SGD iterations on w (100 MNIST/CIFAR-10, 200 ImageNet).
      targeted: minimise the cross-entropy of a given target (static).
      update: "eq20" (default) or "algorithm1" (appendix B, in-place shifted ReLU).
      keep: "sparsest" successful iterate (released code, default) or "last" (Alg. 1).
      untargeted_loss: "adv_label" (Eq. 20, default) or "true_label" (maximise CE(y)).
    """

    epsilon: float = 4 / 255
    alpha: float = 1 / 255
    a: float = 0.1
    tau: float = 0.3
    lambda_: float = 1e-2
    learning_rate: float = 1e-2
    momentum: float = 0.9
    w_init: float = 0.1
    fgsm_steps: int = dataclasses.field(default=10, metadata=dict(static=True))
    steps: int = dataclasses.field(default=100, metadata=dict(static=True))
    targeted: bool = dataclasses.field(default=False, metadata=dict(static=True))
    update: str = dataclasses.field(default="eq20", metadata=dict(static=True))
    keep: str = dataclasses.field(default="sparsest", metadata=dict(static=True))
    untargeted_loss: str = dataclasses.field(default="adv_label", metadata=dict(static=True))
    box: str = dataclasses.field(default="symmetric", metadata=dict(static=True))

    def validate(self) -> None:
        """Range checks on concrete values (one-line errors, before compilation)."""
        for name, value, allowed in (
            ("update", self.update, UPDATES),
            ("keep", self.keep, KEEPS),
            ("untargeted_loss", self.untargeted_loss, UNTARGETED_LOSSES),
            ("box", self.box, BOXES),
        ):
            if value not in allowed:
                raise SparsejaxError(
                    f"sparse-l0 {name} must be one of {', '.join(allowed)}, got {value!r}"
                )
        for name in ("fgsm_steps", "steps"):
            if getattr(self, name) < 0:
                raise SparsejaxError(f"sparse-l0 {name} must be >= 0, got {getattr(self, name)}")
        check_number("sparse-l0 epsilon", self.epsilon, lo=0.0, lo_open=True)
        check_number("sparse-l0 alpha", self.alpha, lo=0.0)
        check_number("sparse-l0 a", self.a, lo=0.0, lo_open=True)
        check_number("sparse-l0 tau", self.tau, lo=0.0)
        check_number("sparse-l0 lambda_", self.lambda_, lo=0.0)
        check_number("sparse-l0 learning_rate", self.learning_rate, lo=0.0, lo_open=True)
        check_number("sparse-l0 momentum", self.momentum, lo=0.0, hi=1.0)
        check_number("sparse-l0 w_init", self.w_init)


class SparseL0Output(NamedTuple):
    """Per-example output of :func:`sparse_l0`, before re-verification."""

    x_adv: jax.Array  # float32[H, W, C]
    status: jax.Array  # int32 Status (SUCCESS as claimed by the loop; re-checked later)
    iterations: jax.Array  # int32 SGD step whose mask is returned (0: the initial mask)
    forwards: jax.Array  # int32 forward passes (the clean one included)
    backwards: jax.Array  # int32 backward passes
    clean_pred: jax.Array  # int32
    y_adv: jax.Array  # int32 class the cross-entropy term pulls towards (-1: none)
    delta_l0: jax.Array  # int32 nonzero elements of the I-FGSM perturbation δ


def _cross_entropy(logits, y):
    return -jax.nn.log_softmax(logits)[y]


def ifgsm(logits_fn, x, y, epsilon, alpha, steps: int, lower, upper, targeted: bool):
    """I-FGSM (Eqs. 3-4; Kurakin et al.) for one example: δ with |δ| <= ε, x + δ in the box.

    Untargeted: ascend CE(f(x_n), y) with y the true label; targeted: descend CE(f(x_n), y)
    with y the target. Cost: ``steps`` forward and backward passes.
    """
    sign = -1.0 if targeted else 1.0
    lo = jnp.maximum(x - epsilon, lower)
    hi = jnp.minimum(x + epsilon, upper)

    def step(_, xn):
        g = jax.grad(lambda z: _cross_entropy(single_logits(logits_fn, z), y))(xn)
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


def attack_objective(logits_fn, x, delta, w, y, ce_sign, config: SparseL0Config):
    """The objective minimised over w, for one example.

    ``update="eq20"``: Eq. (20),
        J(w) = ce_sign · CE(f(x + π(w - τ/ε) ⊙ δ), y) + λ Σ_j H(π(w_j - τ/ε)).
    ``update="algorithm1"``: appendix B's loss at its already thresholded w,
        J(w) = ce_sign · CE(f(x + w ⊙ δ), y) + λ Σ_j H(w_j).
    H has the Gaussian surrogate derivative q_a (Eq. 18).
    """
    eps = jnp.asarray(config.epsilon, x.dtype)
    m = shifted_relu(w, config.tau, eps) if config.update == "eq20" else w
    logits = single_logits(logits_fn, x + m * delta)
    l0 = jnp.sum(heaviside(m, jnp.asarray(config.a, x.dtype)))
    return ce_sign * _cross_entropy(logits, y) + config.lambda_ * l0


class _Opt(NamedTuple):
    w: jax.Array
    opt_state: optax.OptState
    best_mask: jax.Array  # bool[H, W, C]
    best_count: jax.Array  # int32 changed elements of the best candidate
    best_iter: jax.Array
    failed: jax.Array


def sparse_l0(
    logits_fn,
    x: jax.Array,
    label: jax.Array,
    config: SparseL0Config = SparseL0Config(),
    target: jax.Array | None = None,
    lower: jax.Array | float = 0.0,
    upper: jax.Array | float = 1.0,
    active: jax.Array | bool = True,
) -> SparseL0Output:
    """The Lin et al. attack on one example.

    Args:
      logits_fn: ``float32[B, H, W, C] -> float32[B, K]`` with normalization inside.
      x: float32[H, W, C] in [lower, upper].
      label: int32 true label.
      config: SparseL0Config.
      target: int32 target class when ``config.targeted`` (else None).
      lower, upper: bounds broadcastable to x (default [0, 1]).
      active: False to return x untouched with status SKIPPED (padding of a batch).

    Returns:
      SparseL0Output (success as claimed by the loop; :func:`sparse_l0_batch` re-verifies
      it on the returned image).
    """
    if config.targeted != (target is not None):
        raise SparsejaxError("sparse-l0: pass a target exactly when config.targeted is True")
    lower = jnp.broadcast_to(jnp.asarray(lower, x.dtype), x.shape)
    upper = jnp.broadcast_to(jnp.asarray(upper, x.dtype), x.shape)
    label = jnp.asarray(label, jnp.int32)
    eps = jnp.asarray(config.epsilon, x.dtype)
    tau = jnp.asarray(config.tau, x.dtype)
    clean_logits = single_logits(logits_fn, x)
    clean_pred = jnp.argmax(clean_logits).astype(jnp.int32)
    already = clean_pred != label
    targeted = config.targeted
    forwards, backwards = 1, 0

    # 1. The initial perturbation (Eqs. 3-4).
    fgsm_label = jnp.asarray(target, jnp.int32) if targeted else label
    delta = ifgsm(
        logits_fn, x, fgsm_label, eps, config.alpha, config.fgsm_steps, lower, upper, targeted
    )
    forwards += config.fgsm_steps
    backwards += config.fgsm_steps

    # The class the cross-entropy term pulls towards, and its sign.
    if targeted:
        y_adv, ce_sign = fgsm_label, 1.0
    elif config.untargeted_loss == "adv_label":
        at_delta = single_logits(logits_fn, x + delta)
        forwards += 1
        others = jnp.where(jnp.arange(at_delta.shape[0]) == label, -jnp.inf, at_delta)
        y_adv, ce_sign = jnp.argmax(others).astype(jnp.int32), 1.0
    else:
        y_adv, ce_sign = label, -1.0

    step_out = box_step(x, delta, eps, lower, upper, config.box)  # Ω ⊙ δ, Eq. (22)
    movable = step_out != 0  # elements that a mask bit actually changes

    def candidate(mask):  # Eq. (22)-(23): x + Ω ⊙ H(π(w - τ/ε)) ⊙ δ
        return x + jnp.where(mask, step_out, 0.0)

    def is_adversarial(logits):
        pred = jnp.argmax(logits)
        return (pred == target) if targeted else (pred != label)

    def objective(v):
        return attack_objective(logits_fn, x, delta, v, y_adv, ce_sign, config)

    tx = optax.sgd(config.learning_rate, momentum=config.momentum)
    w0 = jnp.full_like(x, tau / eps + config.w_init)
    if config.update == "algorithm1":
        w0 = shifted_relu(w0, tau, eps)  # Alg. 1 line 1 of the loop, first time
    dense = jnp.ones(x.shape, bool)
    init = _Opt(
        w=w0,
        opt_state=tx.init(w0),
        best_mask=dense,
        best_count=jnp.int32(jnp.iinfo(jnp.int32).max),
        best_iter=jnp.int32(-1),
        failed=jnp.bool_(False),
    )

    def mask_of(w):
        if config.update == "eq20":
            return shifted_relu(w, tau, eps) > 0
        return w > 0  # Algorithm 1 keeps w already thresholded

    def body(t, s: _Opt) -> _Opt:
        loss, grad = jax.value_and_grad(objective)(s.w)
        finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad))
        updates, opt_state = tx.update(grad, s.opt_state, s.w)
        w = optax.apply_updates(s.w, updates)
        if config.update == "algorithm1":
            w = shifted_relu(w, tau, eps)  # the next iteration's in-place w = π(w - τ/ε)
        w = jnp.where(finite, w, s.w)
        opt_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), opt_state, s.opt_state
        )
        s = s._replace(w=w, opt_state=opt_state, failed=s.failed | ~finite)
        if config.keep == "sparsest":
            mask = mask_of(w)
            count = jnp.sum(mask & movable, dtype=jnp.int32)
            fooled = is_adversarial(single_logits(logits_fn, candidate(mask)))
            better = fooled & (count < s.best_count) & finite
            s = s._replace(
                best_mask=jnp.where(better, mask, s.best_mask),
                best_count=jnp.where(better, count, s.best_count),
                best_iter=jnp.where(better, t + 1, s.best_iter),
            )
        return s

    s = jax.lax.fori_loop(0, config.steps, body, init)
    forwards += config.steps
    backwards += config.steps
    if config.keep == "sparsest":
        forwards += config.steps
        found = s.best_iter >= 0
        mask = jnp.where(found, s.best_mask, mask_of(s.w))
        iterations = jnp.where(found, s.best_iter, config.steps)
        claimed = found
    else:
        mask = mask_of(s.w)
        iterations = jnp.int32(config.steps)
        claimed = jnp.bool_(False)  # not checked here: finalize's re-verification decides
    x_adv = candidate(mask)
    finite_out = jnp.all(jnp.isfinite(x_adv))
    failed = (s.failed & ~claimed) | ~finite_out
    untouched = already | ~jnp.asarray(active, bool)
    status = jnp.select(
        [~jnp.asarray(active, bool), already, failed, claimed],
        [Status.SKIPPED, Status.ALREADY_MISCLASSIFIED, Status.FAILED, Status.SUCCESS],
        Status.MAX_ITER,
    ).astype(jnp.int32)
    return SparseL0Output(
        x_adv=jnp.where(untouched | ~finite_out, x, x_adv),
        status=status,
        iterations=jnp.asarray(iterations, jnp.int32),
        forwards=jnp.int32(forwards),
        backwards=jnp.int32(backwards),
        clean_pred=clean_pred,
        y_adv=jnp.asarray(y_adv, jnp.int32),
        delta_l0=jnp.sum(delta != 0, dtype=jnp.int32),
    )


def sparse_l0_batch(
    logits_fn,
    x: jax.Array,
    labels: jax.Array,
    config: SparseL0Config = SparseL0Config(),
    targets: jax.Array | None = None,
    lower: jax.Array | float = 0.0,
    upper: jax.Array | float = 1.0,
    mask: jax.Array | None = None,
    slots: int | None = None,
) -> AttackResult:
    """The Lin et al. attack on a batch (``jax.vmap`` of :func:`sparse_l0`), success
    re-verified on the returned images.

    Every example runs the same fixed number of steps, so the batch runs in lockstep with
    nothing to wait for. Jit it at the call site; changing the numbers in ``config`` (ε, α,
    a, τ, λ, learning rate, momentum, w_init) or the model weights does not recompile.

    Args:
      logits_fn: ``float32[B, H, W, C] -> float32[B, K]``.
      x: float32[N, H, W, C] in [lower, upper]; labels: int32[N].
      config: SparseL0Config.
      targets: int32[N] when ``config.targeted``.
      lower, upper: bounds broadcastable to x.
      mask: bool[N]; examples with False are returned unchanged with status SKIPPED.
      slots: accepted for interface compatibility with the other attacks; unused.

    Returns:
      AttackResult; ``iterations`` is the SGD step whose mask was returned.
    """
    del slots
    if config.targeted != (targets is not None):
        raise SparsejaxError("sparse-l0: pass targets exactly when config.targeted is True")
    n = x.shape[0]
    lower = jnp.broadcast_to(jnp.asarray(lower, x.dtype), x.shape)
    upper = jnp.broadcast_to(jnp.asarray(upper, x.dtype), x.shape)
    mask = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask, bool)
    out = jax.vmap(
        lambda xi, y, t, lo, hi, m: sparse_l0(logits_fn, xi, y, config, t, lo, hi, m),
        in_axes=(0, 0, 0 if targets is not None else None, 0, 0, 0),
    )(x, labels, targets, lower, upper, mask)
    return finalize(logits_fn, x, labels, out, targets)
