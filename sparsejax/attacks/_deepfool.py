"""ℓ2 DeepFool (Moosavi-Dezfooli et al., CVPR 2016) as SparseFool uses it (§3.2).

For one example, returns the boundary point x_B = x + r_tot and the unit normal of
SparseFool's Eq. (6), w = ∇f_{k(x_B)}(x_B) - ∇f_{k(x)}(x_B). The variant follows the released
SparseFool ``deepfool.py`` (LTS4/SparseFool):

- candidate classes: the top ``num_candidates`` logits at the start point (default 10),
  fixed for the call; the source class is the true label;
- each step linearizes at the un-overshot point x + r_tot, moves to the closest linearized
  boundary, r_i = max(|f_k| / ||w_k||, 1e-4) · w_k / ||w_k|| (``clamp(min=1e-4)``), and checks
  the class at the overshot point x + (1 + overshoot) · r_tot;
- at most ``max_iter`` = 50 steps; the normal is taken at the un-overshot point and scaled
  to unit ℓ2 norm.

Where the released code would divide by zero (DeepFool never flips, so the normal is the
gradient of f_label - f_label = 0) this returns the normal towards the last chosen
candidate class instead, and ``flipped = False``; a zero or non-finite normal is returned
as zeros, and callers treat it as a failure. Nothing is NaN.

Targeted variant (SparseFool §3.3, "approximating the decision boundary of a specific
category"): the boundary is the one between the target t and the strongest other class c
at the current point (c = argmax_{j != t} f_j), the step moves to f_t = f_c, the check is
argmax == t, and the normal is ∇(f_t - f_c) at x_B.

The algorithm is split into :func:`deepfool_init`, :func:`deepfool_step` (one linearization:
1 forward + ``num_rows`` backward passes, then 1 forward for the check) and
:func:`deepfool_normal` (1 forward + 1 backward), so that SparseFool can interleave it with
its own steps; :func:`deepfool` runs the whole thing for one example.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.attacks import _config
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier
from sparsejax.attacks.losses import strongest_other
from sparsejax.ops import l2

NEG_INF = -jnp.inf


@_config.config
class DeepFoolConfig:
    """DeepFool settings (SparseFool's released defaults)."""

    attack_name: ClassVar[str] = "deepfool"

    overshoot: float = param(
        0.02,
        doc="the class check is made at x + (1 + overshoot) r_tot",
        unit="fraction of r_tot",
        paper="overshoot (released deepfool.py)",
    )
    min_step: float = param(
        1e-4,
        doc="smallest step length, clamp(pert, min=1e-4)",
        unit="ℓ2, [0, 1] pixel units",
        paper="clamp(min=1e-4) (released code)",
    )
    num_candidates: int = param(
        10,
        static=True,
        doc="classes considered: the top logits at the start point, the label included",
        unit="classes",
        paper="num_classes=10 (released code)",
    )
    max_iter: int = param(
        50,
        static=True,
        doc="cap on DeepFool steps per call",
        unit="steps",
        paper="max_iter=50 (released code)",
    )

    def validate(self) -> None:
        _config.check_count(self, "num_candidates", lo=2)
        _config.check_count(self, "max_iter", hi=100_000)
        _config.check_number(self, "overshoot", lo=0.0)
        _config.check_number(self, "min_step", lo=0.0)


class DeepFoolState(NamedTuple):
    r_tot: jax.Array  # float32[H, W, C]; the current point is x + r_tot
    it: jax.Array  # int32 steps taken
    candidates: jax.Array  # int32[c] candidate classes, fixed at the first step
    last_class: jax.Array  # int32 class of the last step's closest boundary
    check_class: jax.Array  # int32 argmax at the overshot point (-1 before the first step)
    stalled: jax.Array  # bool: no usable direction (all candidate gradients equal)


class DeepFoolResult(NamedTuple):
    r_tot: jax.Array  # float32[H, W, C]; the boundary point is x + r_tot
    normal: jax.Array  # float32[H, W, C], unit ℓ2 norm (zeros if degenerate), Eq. (6)
    adv_class: jax.Array  # int32 class at the overshot point (or the fallback class)
    iterations: jax.Array  # int32
    flipped: jax.Array  # bool: crossed (untargeted) / reached the target
    forwards: jax.Array  # int32 forward passes
    backwards: jax.Array  # int32 backward (VJP) passes


def num_candidates(config: DeepFoolConfig, num_classes: int, targeted: bool) -> int:
    """Classes whose boundary with the source class a step considers."""
    return 1 if targeted else min(config.num_candidates, num_classes) - 1


def num_rows(config: DeepFoolConfig, num_classes: int, targeted: bool) -> int:
    """Backward passes per step: one VJP per candidate, with cotangent e_k - e_src, gives
    w_k = ∇(f_k - f_src) directly. (The released code runs one backward pass per class,
    the source included, and subtracts: one pass more per step for the same w_k.)"""
    return num_candidates(config, num_classes, targeted)


def _source_class(logits, label, target):
    return label if target is None else strongest_other(logits, target)


def _crossed(s: DeepFoolState, label, target):
    if target is not None:
        return s.check_class == target
    return (s.check_class != label) & (s.check_class >= 0)


def deepfool_init(x, label, config: DeepFoolConfig, num_classes: int, targeted: bool):
    c = num_candidates(config, num_classes, targeted)
    return DeepFoolState(
        r_tot=jnp.zeros_like(x),
        it=jnp.int32(0),
        candidates=jnp.zeros((c,), jnp.int32),
        last_class=jnp.asarray(label, jnp.int32),
        check_class=jnp.int32(-1),
        stalled=jnp.bool_(False),
    )


def deepfool_finished(s: DeepFoolState, label, config: DeepFoolConfig, target=None):
    """Crossed (or reached the target), stalled, or out of steps."""
    return _crossed(s, label, target) | s.stalled | (s.it >= config.max_iter)


def deepfool_step(f: Classifier, x, label, config: DeepFoolConfig, s: DeepFoolState, target=None):
    """One DeepFool step from x + r_tot. Cost: 2 forwards + ``num_rows`` backwards."""
    num_classes = f.num_classes
    targeted = target is not None
    c = num_candidates(config, num_classes, targeted)
    classes = jnp.arange(num_classes)

    def rows(logits):  # [c, K] cotangents e_cand - e_src
        src = jnp.asarray(_source_class(logits, label, target), jnp.int32)
        if targeted:
            cand = jnp.asarray(target, jnp.int32)[None]
        else:
            top = jax.lax.top_k(jnp.where(classes == label, NEG_INF, logits), c)[1]
            cand = jnp.where(s.it == 0, top.astype(jnp.int32), s.candidates)
        return jax.nn.one_hot(cand, num_classes) - jax.nn.one_hot(src, num_classes)[None]

    logits, cot, w_k = f.logits_and_rows(x + s.r_tot, rows)  # w_k: [c, H, W, C]
    cand = jnp.argmax(cot, axis=-1).astype(jnp.int32)  # [c]: the +1 entry of each row
    f_k = cot @ logits  # f_cand - f_src, [c]
    norms = jax.vmap(l2)(w_k)  # [c]
    safe = jnp.where(norms > 0, norms, 1.0)
    pert_k = jnp.where(norms > 0, jnp.abs(f_k) / safe, jnp.inf)
    j = jnp.argmin(pert_k)  # the closest linearized boundary
    ok = jnp.isfinite(pert_k[j])
    # A select, not a product with 0: a non-finite gradient must not leak into r_tot.
    r_i = jnp.where(ok, (jnp.maximum(pert_k[j], config.min_step) / safe[j]) * w_k[j], 0.0)
    r_tot = s.r_tot + r_i
    check = jnp.argmax(f.logits(x + (1 + config.overshoot) * r_tot))
    return DeepFoolState(
        r_tot=r_tot,
        it=s.it + 1,
        candidates=s.candidates if targeted else cand,
        last_class=cand[j],
        check_class=check.astype(jnp.int32),
        stalled=~ok,
    )


class Normal(NamedTuple):
    """SparseFool's Eq. (6) at the boundary point."""

    w: jax.Array  # float32[H, W, C], unit ℓ2 norm; zeros when not usable
    adv_class: jax.Array  # int32 k(x_B): the class crossed into (or the fallback class)
    crossed: jax.Array  # bool: DeepFool crossed (untargeted) / reached the target
    finite: jax.Array  # bool: the gradient was finite (False: w = 0 because of a NaN/Inf)


def deepfool_normal(f: Classifier, x, label, s: DeepFoolState, target=None) -> Normal:
    """Eq. (6) at x_B = x + r_tot, unit ℓ2 norm (zeros if zero or not finite), and k(x_B).

    Cost: 1 forward + 1 backward (the gradient of the difference of two logits).
    """
    num_classes = f.num_classes
    crossed = _crossed(s, label, target)
    adv_class = jnp.where(crossed, s.check_class, s.last_class)

    def normal_row(logits):
        src = _source_class(logits, label, target)
        return (jax.nn.one_hot(adv_class, num_classes) - jax.nn.one_hot(src, num_classes))[None]

    _, _, g = f.logits_and_rows(x + s.r_tot, normal_row)
    norm = l2(g[0])
    finite = jnp.isfinite(norm)
    good = finite & (norm > 0)
    w = jnp.where(good, g[0] / jnp.where(good, norm, 1.0), 0.0)
    return Normal(w, adv_class.astype(jnp.int32), crossed, finite)


def deepfool(
    logits_fn,
    x: jax.Array,
    label: jax.Array,
    config: DeepFoolConfig | None = None,
    target: jax.Array | None = None,
) -> DeepFoolResult:
    """ℓ2 DeepFool from one point, returning SparseFool's boundary point and normal.

    A building block for one example (SparseFool interleaves its steps with its own); not a
    registered sparse attack.

    Args:
      logits_fn: ``float32[B, H, W, C] -> float32[B, K]``.
      x: float32[H, W, C] start point (SparseFool's current iterate).
      label: int32 true class (the source class of the untargeted attack).
      config: DeepFoolConfig (None: the defaults).
      target: int32 target class for the targeted variant, or None.

    Returns:
      DeepFoolResult. Cost: per step 2 forwards + ``num_rows`` backwards, plus 1 forward and
      1 backward for the normal.
    """
    config = DeepFoolConfig() if config is None else config
    f = Classifier(logits_fn, x.shape, x.dtype)
    label = jnp.asarray(label, jnp.int32)
    k = num_rows(config, f.num_classes, target is not None)
    s = jax.lax.while_loop(
        lambda s: ~deepfool_finished(s, label, config, target),
        lambda s: deepfool_step(f, x, label, config, s, target),
        deepfool_init(x, label, config, f.num_classes, target is not None),
    )
    normal = deepfool_normal(f, x, label, s, target)
    return DeepFoolResult(
        r_tot=s.r_tot,
        normal=normal.w,
        adv_class=normal.adv_class,
        iterations=s.it,
        flipped=normal.crossed,
        forwards=2 * s.it + 1,
        backwards=k * s.it + 1,
    )
