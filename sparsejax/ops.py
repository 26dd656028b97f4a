"""Small differentiable building blocks shared by the attacks.

- :func:`heaviside`: the exact step H(x) = 1[x > 0] forward, with the Gaussian surrogate
  q_a(x) = exp(-(x/a)^2) / (|a| sqrt(pi)) as its derivative (Lin et al., Eqs. 9, 12, 18).
- :func:`gaussian_surrogate`: q_a itself, the analytic formula the tests compare against.
- :func:`vdot`, :func:`l2`: full-precision inner products and norms (they decide signs and
  argmins, so CPU and GPU take the same branches).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_SQRT_PI = math.sqrt(math.pi)
HIGHEST = jax.lax.Precision.HIGHEST


def vdot(a, b):
    """Full-precision inner product of two same-shape arrays (decides signs and argmins)."""
    return jnp.dot(a.ravel(), b.ravel(), precision=HIGHEST)


def l2(a):
    """ℓ2 norm at full precision."""
    return jnp.sqrt(vdot(a, a))


def gaussian_surrogate(x, a):
    """q_a(x) = exp(-(x/a)^2) / (|a| sqrt(pi)), Lin et al. Eq. (12).

    A zero-centred normal density whose width is set by ``a``; as a -> 0 it tends to the
    Dirac delta, the distributional derivative of the step (Theorem 4.1).
    """
    return jnp.exp(-jnp.square(x / a)) / (jnp.abs(a) * _SQRT_PI)


@jax.custom_vjp
def heaviside(x, a):
    """H(x) = 1 for x > 0, else 0 (Lin et al. Eq. 9), in the dtype of ``x``.

    The forward value is the exact step; the derivative with respect to ``x`` is replaced by
    the Gaussian surrogate q_a(x) (Eq. 18), since the true derivative is zero almost
    everywhere. ``a`` is an ordinary (traceable) argument so that it can be swept with
    ``vmap`` without recompiling; it receives a zero cotangent.

    Args:
      x: float array.
      a: surrogate width, scalar or broadcastable to ``x``; a != 0.
    """
    return (x > 0).astype(x.dtype)


def _heaviside_fwd(x, a):
    return heaviside(x, a), (x, a)


def _heaviside_bwd(res, g):
    x, a = res
    gx = g * gaussian_surrogate(x, a).astype(g.dtype)
    return gx, jnp.zeros_like(a)


heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)
