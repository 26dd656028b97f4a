"""SparseFool's LinearSolver: Algorithm 1 of Modas et al. (CVPR 2019) as a ``lax.while_loop``.

Solves the box-constrained linearized problem, Eq. (3),

    minimize ||r||_1  s.t.  w^T (x + r - x_B) = 0,  lower <= x + r <= upper,

greedily: at each iteration take the unused coordinate d with the largest |w_d| (Eq. 5),
move it by the ℓ1 projection step onto the plane (Eq. 4), project onto the box (Q), and mark
d as used (the set S), until the plane is reached.

Choices the paper leaves open follow the released code (LTS4/SparseFool ``linear_solver.py``):

- the loop stops when w^T (x - x_B) changes sign (not at exact equality), and each step
  aims ``margin`` = 1e-3 past the plane (the released ``beta``), so an unclipped step lands
  at w^T (x - x_B) = +1e-3; with a unit-norm w this is an ℓ2 distance of 1e-3;
- a step is at least ``min_step`` = 1e-4 (``torch.clamp(pert, min=1e-4)``);
- a coordinate is used up even when the box clipped its move away;
- coordinates with w_d = 0 are never moved; ties in |w_d| go to the first index.

Like Algorithm 1 and the released code, every step moves along +sign(w_d), i.e. it
increases w^T x, and the loop runs while w^T (x - x_B) keeps the sign it started with. From
the negative side (the normal case in SparseFool) that reaches the plane. From the positive
side, which happens on models whose gradients mislead DeepFool (the PGD-trained LeNet-5
here), it saturates every usable coordinate, exactly as the released code does: an
earlier version of this port returned x unchanged there instead, and SparseFool then
stalled until max_iter on examples the released code fools. A non-finite plane moves
nothing (``reached = False``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.ops import vdot


class SolverResult(NamedTuple):
    x: jax.Array  # float32[H, W, C], within [lower, upper]
    iterations: jax.Array  # int32: coordinates moved
    reached: jax.Array  # bool: the plane was crossed


class _State(NamedTuple):
    x: jax.Array  # [n] flat iterate
    available: jax.Array  # bool[n], the complement of S
    f: jax.Array  # w^T (x - x_B)
    it: jax.Array


def linear_solver(
    x: jax.Array,
    normal: jax.Array,
    boundary_point: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
    margin: float | jax.Array = 1e-3,
    min_step: float | jax.Array = 1e-4,
) -> SolverResult:
    """Algorithm 1 (LinearSolver) for one example.

    Args:
      x: float32[H, W, C] start point, within [lower, upper].
      normal: float32[H, W, C] plane normal w.
      boundary_point: float32[H, W, C] a point x_B of the plane.
      lower, upper: float32[H, W, C] box (the projection operator Q).
      margin: how far past the plane a step aims, in units of w^T x (the released beta).
      min_step: smallest step along a coordinate.

    Returns:
      SolverResult with the new point, the number of coordinates moved and whether
      w^T (x - x_B) changed sign (False when every usable coordinate saturated first).
    """
    shape = x.shape
    w = normal.ravel()
    p = boundary_point.ravel()
    lo, hi = lower.ravel(), upper.ravel()
    abs_w = jnp.abs(w)
    x_flat = x.ravel()
    f0 = vdot(w, x_flat - p)
    s0 = jnp.sign(f0)  # sign_true; NaN for a non-finite plane, and NaN == NaN is False
    beta = margin * s0

    def cond(s: _State):
        return (jnp.sign(s.f) == s0) & jnp.any(s.available)

    def body(s: _State) -> _State:
        d = jnp.argmax(jnp.where(s.available, abs_w, -1.0))  # Eq. (5)
        step = jnp.maximum(jnp.abs(s.f + beta) / abs_w[d], min_step)  # Eq. (4)
        x_d = jnp.clip(s.x[d] + step * jnp.sign(w[d]), lo[d], hi[d])  # Q: box projection
        x_new = s.x.at[d].set(x_d)
        return _State(x_new, s.available.at[d].set(False), vdot(w, x_new - p), s.it + 1)

    init = _State(x_flat, abs_w > 0, f0, jnp.int32(0))
    out = jax.lax.while_loop(cond, body, init)
    reached = (jnp.sign(out.f) != s0) & jnp.isfinite(out.f)
    return SolverResult(out.x.reshape(shape), out.it, reached)
