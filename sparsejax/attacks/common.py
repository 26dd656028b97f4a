"""What every attack shares: status codes, the result type, model-call helpers.

Attacks are written for one example (``x: float32[H, W, C]``) and batched with
``jax.vmap``; :func:`finalize` turns the batched raw output into an :class:`AttackResult`
whose success is re-verified by one more forward pass on the returned images (SPEC §1-2).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import metrics
from sparsejax.errors import SparsejaxError

HIGHEST = jax.lax.Precision.HIGHEST


class Status(enum.IntEnum):
    """Why an attack stopped, per example."""

    SUCCESS = 0  # the returned x_adv is adversarial (re-verified)
    MAX_ITER = 1  # iteration cap reached without success
    ALREADY_MISCLASSIFIED = 2  # the clean input was already misclassified: returned unchanged
    FAILED = 3  # the algorithm could not proceed (degenerate or non-finite geometry)
    NOT_ADVERSARIAL = 4  # the loop claimed success but the re-check on x_adv disagreed
    SKIPPED = 5  # masked out by the caller (e.g. padding of a last batch): not attacked


class AttackResult(NamedTuple):
    """Batched result of an attack (leading axis: examples).

    Attributes:
      x_adv: float32[B, H, W, C], inside [lower, upper] bit for bit.
      success: bool[B], re-verified on x_adv by a separate forward pass.
      l0_pixels: int32[B], (h, w) positions with any channel changed.
      l0_elements: int32[B], changed channel values.
      iterations: int32[B], outer iterations used.
      status: int32[B], a :class:`Status` code.
      model_evals: int32[B], forward passes + backward (VJP) passes spent on the example,
        the final re-verification included (= forwards + backwards).
      forwards: int32[B], forward passes.
      backwards: int32[B], backward passes, one per VJP cotangent row.
      clean_pred: int32[B], the model's prediction on the clean input.
      adv_pred: int32[B], the model's prediction on x_adv.
    """

    x_adv: jax.Array
    success: jax.Array
    l0_pixels: jax.Array
    l0_elements: jax.Array
    iterations: jax.Array
    status: jax.Array
    model_evals: jax.Array
    forwards: jax.Array
    backwards: jax.Array
    clean_pred: jax.Array
    adv_pred: jax.Array


def single_logits(logits_fn, x):
    """Logits of one example: ``logits_fn`` takes a batch; under vmap this batches again."""
    return logits_fn(x[None])[0]  # [K]


def logits_and_rows(logits_fn, x, choose_rows):
    """One forward pass and one VJP per cotangent row chosen from the logits.

    Args:
      logits_fn: batched logits function.
      x: float32[H, W, C] the point.
      choose_rows: ``logits [K] -> cotangents [R, K]``; rows may depend on the logits.

    Returns:
      (logits [K], cotangents [R, K], gradients [R, H, W, C]) with gradients[r] =
      ∇_x <cotangents[r], logits(x)>. Cost: 1 forward + R backward passes.
    """
    logits, vjp = jax.vjp(lambda z: single_logits(logits_fn, z), x)
    cot = choose_rows(jax.lax.stop_gradient(logits))
    (grads,) = jax.vmap(vjp)(cot.astype(logits.dtype))
    return logits, cot, grads


def vdot(a, b):
    """Full-precision inner product of two same-shape arrays (decides signs and argmins)."""
    return jnp.dot(a.ravel(), b.ravel(), precision=HIGHEST)


def l2(a):
    return jnp.sqrt(vdot(a, a))


def finalize(logits_fn, x, labels, out, target=None) -> AttackResult:
    """Re-verifies success with one forward pass on ``out.x_adv`` and counts ℓ0 in both units.

    ``out`` is an attack's batched raw output: any structure with the fields ``x_adv``,
    ``status``, ``iterations``, ``forwards``, ``backwards`` and ``clean_pred``.
    """
    x_adv, raw_status, clean_pred = out.x_adv, out.status, out.clean_pred
    iterations, forwards, backwards = out.iterations, out.forwards, out.backwards
    adv_pred = jnp.argmax(logits_fn(x_adv), axis=-1).astype(jnp.int32)
    not_attacked = (raw_status == Status.ALREADY_MISCLASSIFIED) | (raw_status == Status.SKIPPED)
    success = metrics.is_adversarial(adv_pred, labels, target) & ~not_attacked
    status = jnp.where(
        not_attacked | success,
        jnp.where(not_attacked, raw_status, Status.SUCCESS),
        jnp.where(raw_status == Status.SUCCESS, Status.NOT_ADVERSARIAL, raw_status),
    ).astype(jnp.int32)
    forwards = (forwards + 1).astype(jnp.int32)  # the re-verification
    backwards = backwards.astype(jnp.int32)
    return AttackResult(
        x_adv=x_adv,
        success=success,
        l0_pixels=metrics.l0_pixels(x_adv, x),
        l0_elements=metrics.l0_elements(x_adv, x),
        iterations=iterations.astype(jnp.int32),
        status=status,
        model_evals=forwards + backwards,
        forwards=forwards,
        backwards=backwards,
        clean_pred=clean_pred.astype(jnp.int32),
        adv_pred=adv_pred,
    )


def default_slots(n: int) -> int:
    """Examples attacked side by side in one call when the caller does not say.

    On CPU: 1. The per-example cost of a ResNet-20 SparseFool step is flat from 1 to 16
    lanes on 2 cores, and every extra lane adds waste (a lane that finished its DeepFool call
    makes the others compute the rest of an outer iteration for nothing; the tail of the
    queue): measured on 100 CIFAR-10 images, 0.145 s/image with 1 slot, 0.150 with 2, 0.151
    with 4, 0.175 with 8. (The tiny 8x8 digits model prefers 8 slots: 1.0 vs 1.3 ms/image.)
    The second core is used by running calls side by side
    (:func:`sparsejax.runner.default_workers`). Accelerators want width: 64.
    """
    return max(1, min(n, 1 if jax.default_backend() == "cpu" else 64))


def check_number(name: str, value, lo=None, hi=None, lo_open: bool = False) -> None:
    """Host-side range check of a config number, scalar or sweep array (skipped when traced)."""
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise SparsejaxError(f"{name} must be finite, got {value}")
    if lo is not None and (np.any(v <= lo) if lo_open else np.any(v < lo)):
        raise SparsejaxError(f"{name} must be {'>' if lo_open else '>='} {lo:g}, got {value}")
    if hi is not None and np.any(v > hi):
        raise SparsejaxError(f"{name} must be <= {hi:g}, got {value}")
