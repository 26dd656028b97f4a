"""SparseFool (Modas, Moosavi-Dezfooli, Frossard, CVPR 2019), Algorithm 2.

Each outer iteration i:
  1. DeepFool from x_i gives r_tot and the normal w of Eq. (6) at x_B = x_i + r_tot (§3.2);
  2. the plane passes through x_i + λ (x_B - x_i) = x_i + λ r_tot, λ >= 1 (§3.3, Fig. 4);
  3. x_{i+1} = LinearSolver(x_i, w, x_i + λ r_tot, Q) (Algorithm 1, box [lower, upper]);
  4. stop when the label flips (or reaches the target, §3.3), or after ``max_iter``.

Choices the paper leaves open follow the released code (LTS4/SparseFool ``sparsefool.py``):
max_iter = 20 (the README says 50; the code default is 20); the label is checked on
x_0 + (1 + overshoot)(x_{i+1} - x_0) clipped to the box, with overshoot = 0.02 on the total
perturbation, and that overshot image is what is returned, as in the released code (the
iterate x_{i+1} itself is not overshot). The ±δ perceptibility box of §4.2 is the bound
[max(lower, x - δ), min(upper, x + δ)], δ in [0, 1] units (δ_paper / 255).

The attack runs in pixel space with the model's normalization inside ``logits_fn`` (SPEC
§1); the released demo attacks in normalized space. Gradients w.r.t. pixels are the
normalized-space gradients divided by the per-channel std, so the LinearSolver's coordinate
order and DeepFool's ℓ2 geometry differ slightly from the released demo on normalized
models (ResNet-20 here); on unnormalized models (the LeNet-5s) they are the same.

Failure handling: a zero DeepFool normal ends the example with status DEGENERATE, a
non-finite one with NONFINITE; nothing is NaN.

One engine step is one *tick*: one DeepFool step and, when that ends the DeepFool call, the
rest of the outer iteration (normal, LinearSolver, label check). A lane therefore never
waits for another lane's DeepFool call, and the outer part, under ``vmap``, runs only on
the ticks where some lane needs it (:func:`~sparsejax.attacks.engine.lane_cond`).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.attacks import _config, engine
from sparsejax.attacks._config import param
from sparsejax.attacks._deepfool import (
    DeepFoolConfig,
    DeepFoolState,
    deepfool_finished,
    deepfool_init,
    deepfool_normal,
    deepfool_step,
    num_rows,
)
from sparsejax.attacks._linear_solver import linear_solver
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem


@_config.config
class SparseFoolConfig:
    """SparseFool settings. Numbers are traced (sweep them, no recompilation); ``max_iter``
    and the DeepFool shapes are static."""

    attack_name: ClassVar[str] = "sparsefool"

    lambda_: float = param(
        3.0,
        doc="how far past the DeepFool boundary point the plane is placed (paper: 1 on "
        "MNIST, 3 on CIFAR-10 and ImageNet; released default 3)",
        unit="multiple of r_tot, >= 1",
        paper="λ (§3.3, Fig. 4)",
    )
    overshoot: float = param(
        0.02,
        doc="the output is x_0 + (1 + overshoot)(x_i - x_0), clipped to the box",
        unit="fraction of the total perturbation",
        paper="overshoot ε (released sparsefool.py)",
    )
    delta: float = param(
        1.0,
        doc="the ±δ perceptibility box [x - δ, x + δ]; 1 = the full range",
        unit="[0, 1] pixel units (δ_paper / 255)",
        paper="δ (§4.2)",
    )
    solver_margin: float = param(
        1e-3,
        doc="how far past the plane each LinearSolver step aims",
        unit="units of wᵀx (ℓ2 with a unit normal)",
        paper="beta (released linear_solver.py)",
    )
    max_iter: int = param(
        20,
        static=True,
        doc="cap on outer iterations (Algorithm 2)",
        unit="outer iterations",
        paper="max_iter (released code: 20; its README says 50)",
    )
    deepfool: DeepFoolConfig = param(
        DeepFoolConfig(),
        doc="the DeepFool settings (top-10 candidates, overshoot 0.02, 50 steps)",
    )

    def validate(self) -> None:
        _config.check_count(self, "max_iter", hi=100_000)
        _config.check_number(self, "lambda_", lo=1.0)
        _config.check_number(self, "overshoot", lo=0.0)
        _config.check_number(self, "delta", lo=0.0, lo_open=True, hi=1.0)
        _config.check_number(self, "solver_margin", lo=0.0)


class SparseFoolStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    deepfool_steps: jax.Array  # int32 DeepFool steps over all outer iterations (= ticks)
    solver_steps: jax.Array  # int32 coordinates moved by the LinearSolver, in total


class _State(NamedTuple):
    x_i: jax.Array  # float32[H, W, C] the SparseFool iterate
    fool_im: jax.Array  # float32[H, W, C] overshot, clipped output candidate
    df: DeepFoolState  # the DeepFool call in progress from x_i
    it: jax.Array  # int32 outer iterations completed
    fooled: jax.Array  # bool
    degenerate: jax.Array  # bool: a zero normal
    nonfinite: jax.Array  # bool: a non-finite normal
    deepfool_steps: jax.Array  # int32
    solver_steps: jax.Array  # int32


def perceptibility_box(x, delta, lower=0.0, upper=1.0):
    """[max(lower, x - δ), min(upper, x + δ)]: SparseFool §4.2 (``utils.valid_bounds``)."""
    lo = jnp.maximum(jnp.broadcast_to(lower, x.shape), x - delta)
    hi = jnp.minimum(jnp.broadcast_to(upper, x.shape), x + delta)
    return lo.astype(x.dtype), hi.astype(x.dtype)


def _init(f: Classifier, p: Problem, c: SparseFoolConfig):
    state = _State(
        x_i=p.x,
        fool_im=p.x,
        df=deepfool_init(p.x, p.label, c.deepfool, f.num_classes, p.targeted),
        it=jnp.int32(0),
        fooled=jnp.bool_(False),
        degenerate=jnp.bool_(False),
        nonfinite=jnp.bool_(False),
        deepfool_steps=jnp.int32(0),
        solver_steps=jnp.int32(0),
    )
    return state, Passes()


def _outer_part(f: Classifier, p: Problem, c: SparseFoolConfig, s: _State, df: DeepFoolState):
    """The end of an outer iteration: normal (Eq. 6), LinearSolver, overshoot, label check.
    Cost: 2 forwards (normal, check) + 1 backward (normal)."""
    normal = deepfool_normal(f, s.x_i, p.label, df, p.target_or_none)  # Eq. (6)
    unusable = ~jnp.any(normal.w != 0)
    lo, hi = perceptibility_box(p.x, c.delta, p.lower, p.upper)
    plane_point = s.x_i + c.lambda_ * df.r_tot  # x_i + λ(x_B - x_i), §3.3
    sol = linear_solver(s.x_i, normal.w, plane_point, lo, hi, c.solver_margin)  # Algorithm 1
    x_next = jnp.where(unusable, s.x_i, sol.x)
    fool_im = jnp.clip(p.x + (1 + c.overshoot) * (x_next - p.x), lo, hi)
    adversarial = p.fooled_by(f.logits(fool_im))
    return s._replace(
        x_i=x_next,
        fool_im=fool_im,
        df=deepfool_init(p.x, p.label, c.deepfool, f.num_classes, p.targeted),
        it=s.it + 1,
        fooled=adversarial & ~unusable,
        degenerate=unusable & normal.finite,
        nonfinite=unusable & ~normal.finite,
        deepfool_steps=s.deepfool_steps + 1,
        solver_steps=s.solver_steps + sol.iterations,
    )


def _step(f: Classifier, p: Problem, c: SparseFoolConfig, s: _State):
    """One tick: a DeepFool step (2 forwards + k backwards) and, if that ends the DeepFool
    call, the rest of the outer iteration (2 forwards + 1 backward more)."""
    df = deepfool_step(f, s.x_i, p.label, c.deepfool, s.df, p.target_or_none)
    ended = deepfool_finished(df, p.label, c.deepfool, p.target_or_none)
    continued = lambda p, c, s, df: s._replace(df=df, deepfool_steps=s.deepfool_steps + 1)
    outer = lambda p, c, s, df: _outer_part(f, p, c, s, df)
    s = engine.lane_cond(ended, outer, continued, p, c, s, df)
    k = num_rows(c.deepfool, f.num_classes, p.targeted)
    ended = ended.astype(jnp.int32)
    return s, Passes(forwards=2 + 2 * ended, backwards=k + ended)


def _done(f, p, c: SparseFoolConfig, s: _State):
    return s.fooled | s.degenerate | s.nonfinite | (s.it >= c.max_iter)


def _finish(f, p, c, s: _State, steps):
    return Outcome(
        x_adv=s.fool_im,
        claimed=s.fooled,
        degenerate=s.degenerate,
        nonfinite=s.nonfinite,
        iterations=s.it,
        stats=SparseFoolStats(s.deepfool_steps, s.solver_steps),
    )


ALGORITHM = engine.Algorithm(
    name="sparsefool",
    config_cls=SparseFoolConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    # Each outer iteration ends within deepfool.max_iter ticks; _done enforces max_iter.
    max_steps=lambda c: c.max_iter * c.deepfool.max_iter,
    early_stop=True,
)

sparsefool = engine.attack_function(
    ALGORITHM,
    """SparseFool (Modas et al., CVPR 2019; Algorithm 2) on a batch.

    ``iterations`` counts outer iterations (DeepFool + LinearSolver), at most ``max_iter``;
    ``stats`` is a :class:`SparseFoolStats` (DeepFool steps, LinearSolver steps). Targeted
    (§3.3) when ``targets`` are given. Changing the numbers in the config (λ, δ, overshoot,
    ...) or the model's weights does not recompile.
    """,
)
