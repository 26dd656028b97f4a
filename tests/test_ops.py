"""The Heaviside step with a Gaussian-surrogate derivative (Lin et al. Eqs. 9, 12, 18),
checked against the analytic formula, never finite differences (they see the true
derivative, zero almost everywhere)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.ops import gaussian_surrogate, heaviside


def q_analytic(x, a):
    """q_a(x) = exp(-(x/a)^2) / (|a| sqrt(pi)), Eq. (12), in float64 NumPy."""
    x = np.asarray(x, np.float64)
    return np.exp(-((x / a) ** 2)) / (abs(a) * math.sqrt(math.pi))


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    if request.param == "float64":
        jax.config.update("jax_enable_x64", True)
        yield jnp.float64
        jax.config.update("jax_enable_x64", False)
    else:
        yield jnp.float32


POINTS = np.array([-2.0, -0.3, -0.1, -1e-3, 0.0, 1e-3, 0.05, 0.1, 0.25, 1.0, 3.0])


def test_forward_is_the_exact_step(dtype):
    x = jnp.asarray(POINTS, dtype)
    h = heaviside(x, 0.1)
    assert h.dtype == dtype
    np.testing.assert_array_equal(np.asarray(h), (POINTS > 0).astype(np.float64))  # H(0) = 0


@pytest.mark.parametrize("a", [0.01, 0.1, 1.0, -0.5])
def test_gradient_is_the_gaussian_surrogate(dtype, a):
    x = jnp.asarray(POINTS, dtype)
    g = jax.grad(lambda z: jnp.sum(heaviside(z, a)))(x)
    assert g.dtype == dtype
    # float32: exp of a large argument carries the argument's rounding times (x/a)^2, and values
    # below the normal range (q_0.1(1) = 2e-43) are flushed to zero.
    rtol, atol = (1e-5, 1e-37) if dtype == jnp.float32 else (1e-13, 0.0)
    expect = q_analytic(POINTS, a)
    np.testing.assert_allclose(np.asarray(g, np.float64), expect, rtol=rtol, atol=atol)
    np.testing.assert_allclose(
        np.asarray(gaussian_surrogate(x, a), np.float64), expect, rtol=rtol, atol=atol
    )


def test_chain_rule_with_cotangents_and_composition(dtype):
    """d/dw Σ c_j H(relu(w_j - t)) = c_j q_a(relu(w_j - t)) 1[w_j > t]."""
    w = jnp.asarray(POINTS, dtype)
    c = jnp.asarray(np.linspace(-1, 2, POINTS.size), dtype)
    t, a = 0.05, 0.1
    g = jax.grad(lambda v: jnp.sum(c * heaviside(jax.nn.relu(v - t), a)))(w)
    expect = np.asarray(c, np.float64) * q_analytic(np.maximum(POINTS - t, 0), a) * (POINTS > t)
    np.testing.assert_allclose(np.asarray(g, np.float64), expect, rtol=1e-5, atol=1e-37)


def test_jit_vmap_and_grad_agree_and_a_is_traced():
    x = jnp.asarray(POINTS, jnp.float32)
    widths = jnp.asarray([0.05, 0.1, 0.5])
    grad_h = jax.grad(lambda z, a: jnp.sum(heaviside(z, a)))
    # vmap over the width (a traced argument), under jit: one compilation, exact values.
    batched = jax.jit(jax.vmap(grad_h, in_axes=(None, 0)))(x, widths)
    for i, a in enumerate(np.asarray(widths)):
        np.testing.assert_allclose(
            np.asarray(batched[i]), q_analytic(POINTS, a), rtol=1e-5, atol=1e-37
        )
        np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(grad_h(x, a)))
    # vmap over x, and the width receives no gradient.
    gx = jax.vmap(jax.grad(lambda z: heaviside(z, 0.1)))(x)
    np.testing.assert_allclose(np.asarray(gx), q_analytic(POINTS, 0.1), rtol=1e-5, atol=1e-37)
    ga = jax.grad(lambda a: jnp.sum(heaviside(x, a)))(0.1)
    assert float(ga) == 0.0


def test_the_surrogate_narrows_to_a_delta():
    """Theorem 4.1 numerically: q_a integrates to 1 and concentrates at 0 as a -> 0."""
    grid = np.linspace(-1, 1, 200001)
    for a in (0.2, 0.05, 0.01):
        q = np.asarray(gaussian_surrogate(jnp.asarray(grid, jnp.float32), a), np.float64)
        mass = np.trapezoid(q, grid)
        near = np.trapezoid(np.where(np.abs(grid) < 3 * a, q, 0), grid)
        assert abs(mass - 1) < 1e-4 and near > 0.9999
