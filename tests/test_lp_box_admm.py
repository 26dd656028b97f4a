"""ℓp-box ADMM pieces of SAPF against an independent NumPy reference and a known answer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import _lp_box_admm as admm
from tests.reference.sapf_np import admm_iteration_np, box_np, sphere_np


def test_box_projection_matches_reference_and_is_idempotent(rng):
    v = rng.normal(0.5, 2.0, size=(4, 5, 3)).astype(np.float32)
    y = np.asarray(admm.project_box(jnp.asarray(v)))
    np.testing.assert_array_equal(y, box_np(v).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(admm.project_box(jnp.asarray(y))), y)


@pytest.mark.parametrize("shape", [(7,), (8, 8, 1), (32, 32, 3)])
def test_sphere_projection_matches_reference_and_is_nearest(rng, shape):
    v = rng.normal(0.5, 1.0, size=shape).astype(np.float32)
    y = np.asarray(admm.project_sphere(jnp.asarray(v)), np.float64)
    np.testing.assert_allclose(y, sphere_np(v), rtol=0, atol=2e-6)
    n = v.size
    assert np.sum((y - 0.5) ** 2) == pytest.approx(n / 4, rel=1e-5)  # on S_p (Eq. 4)
    # Nearest point of S_p: no random point of the sphere (binary vertices included) is closer.
    d = np.linalg.norm(y - v)
    for _ in range(50):
        u = rng.normal(size=shape)
        p = 0.5 + np.sqrt(n) / 2 * u / np.linalg.norm(u)
        assert d <= np.linalg.norm(p - v) + 1e-5
    vertex = rng.integers(0, 2, size=shape).astype(np.float64)
    assert d <= np.linalg.norm(vertex - v) + 1e-5


def test_sphere_projection_never_nan():
    n = 12
    centre = jnp.full((n,), 0.5)
    np.testing.assert_array_equal(admm.project_sphere(centre), np.ones(n))  # documented choice
    # Offsets whose squares under- or overflow float32 (a naive norm gives 0/0 or inf/inf).
    for scale in (1e-6, 1e20, 1e30, 3e38):
        v = jnp.float32(0.5) + jnp.float32(scale) * jnp.asarray(np.linspace(-1, 1, n), jnp.float32)
        y = np.asarray(admm.project_sphere(v), np.float64)
        assert np.all(np.isfinite(y)), scale
        assert np.sum((y - 0.5) ** 2) == pytest.approx(n / 4, rel=1e-5), scale
        np.testing.assert_allclose(y, sphere_np(np.asarray(v, np.float64)), atol=1e-5)


@pytest.mark.parametrize("implicit", [False, True])
def test_one_admm_iteration_matches_reference(rng, implicit):
    """Y1 (Eq. 11), Y2 (Eq. 13), the G step (Eq. 14, or its semi-implicit form), the duals
    (Eq. 15) and the ρ update, on random inputs with ρ's large enough to matter."""
    shape = (6, 6, 3)
    n = int(np.prod(shape))
    g = rng.normal(0.5, 0.6, size=shape)
    grad_lin = rng.normal(size=shape)
    curv = rng.uniform(0, 3, size=shape)
    z1, z2 = rng.normal(size=shape), rng.normal(size=shape)
    z3 = 0.7
    rho = np.array([0.3, 0.2, 0.01])
    rho_max = np.array([20.0, 10.0, 0.01005])
    k, lr, growth = 20.0, 0.1, 1.01
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    state = admm.ADMMState(f32(z1), f32(z2), f32(z3), f32(rho))
    g_new, st, y1, y2 = jax.jit(admm.admm_iteration, static_argnames="implicit")(
        f32(g), f32(grad_lin), f32(curv), state, k, lr, f32(rho_max), growth, implicit=implicit
    )
    ref = admm_iteration_np(
        g.ravel(),
        grad_lin.ravel(),
        curv.ravel(),
        z1.ravel(),
        z2.ravel(),
        z3,
        rho,
        k,
        lr,
        rho_max,
        growth,
        implicit,
    )
    tol = dict(rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(np.ravel(g_new), ref[0], **tol)
    np.testing.assert_allclose(np.ravel(st.z1), ref[1], **tol)
    np.testing.assert_allclose(np.ravel(st.z2), ref[2], **tol)
    np.testing.assert_allclose(float(st.z3), ref[3], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(st.rho), ref[4], rtol=1e-6)
    assert float(st.rho[2]) == pytest.approx(0.01005)  # capped
    np.testing.assert_allclose(np.ravel(y1), ref[5], **tol)
    np.testing.assert_allclose(np.ravel(y2), ref[6], **tol)
    assert n == g.size


def _gap_instance(rng, n, k):
    """c with k entries in [0.55, 1] and the rest in [0, 0.45]: the binary minimiser of
    ½‖G − c‖² under 1ᵀG = k is the top-k pattern of c."""
    c = rng.uniform(0, 0.45, n)
    top = rng.permutation(n)[:k]
    c[top] = rng.uniform(0.55, 1.0, k)
    pattern = np.zeros(n, bool)
    pattern[top] = True
    return jnp.asarray(c, jnp.float32), pattern


def _solve(c, k, steps, growth, implicit):
    run = lambda: admm.lp_box_admm(
        lambda g: (-c, 1.0),  # ∇ ½‖G − c‖² = G − c: ∇_lin = −c, curvature 1
        jnp.ones_like(c),
        k,
        steps,
        0.1,
        admm.PAPER_RHO,
        admm.PAPER_RHO_MAX,
        growth,
        implicit=implicit,
    )
    return jax.jit(run)()


@pytest.mark.parametrize(
    "steps,budget,implicit",
    [(2000, False, False), (2000, False, True), (200, True, True)],
)
def test_admm_recovers_the_top_k_pattern_of_a_separable_quadratic(rng, steps, budget, implicit):
    """The paper's schedule (2000 steps), explicit or semi-implicit, and the budget schedule
    in 200 steps reach the binary minimiser and meet 1ᵀG = k."""
    n, k = 64, 10
    growth = admm.budget_growth(admm.PAPER_RHO_GROWTH, steps) if budget else 1.01
    for _ in range(3):
        c, pattern = _gap_instance(rng, n, k)
        g, _, rho, _ = _solve(c, k, steps, growth, implicit)
        g = np.asarray(g)
        np.testing.assert_array_equal(g > 0.5, pattern)
        assert abs(g.sum() - k) < 0.05
        assert np.max(np.minimum(np.abs(g), np.abs(g - 1))) < 0.1  # nearly binary
        np.testing.assert_allclose(np.asarray(rho), admm.PAPER_RHO_MAX, rtol=1e-6)


def test_paper_caps_diverge_explicitly_but_not_semi_implicitly(rng):
    """ρ3 → 100 makes Eq. (14)'s explicit step diverge on N = 512 (η_G·N·ρ3 ≫ 1; the
    released repository's issue #3); the semi-implicit step stays finite and exact."""
    n, k = 512, 50
    c, pattern = _gap_instance(rng, n, k)
    g_explicit = np.asarray(_solve(c, k, 2000, 1.01, False)[0])
    assert not np.all(np.isfinite(g_explicit))
    g = np.asarray(_solve(c, k, 2000, 1.01, True)[0])
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g > 0.5, pattern)


def test_schedules():
    lr, lrs = jnp.float32(0.1), []
    for t in range(3000):
        lrs.append(float(lr))
        lr = admm.decay_step_size(lr, t, 0.9, 50, 1e-3)
    expected = [max(0.1 * 0.9 ** (t // 50), 1e-3) for t in range(3000)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-5)
    g = float(admm.budget_growth(1.01, 200))
    assert g**200 == pytest.approx(1.01**2000, rel=1e-4)
    rho = jnp.asarray(admm.PAPER_RHO, jnp.float32)
    for _ in range(2000):
        rho = admm.rho_update(rho, jnp.asarray(admm.PAPER_RHO_MAX), 1.01)
    np.testing.assert_allclose(np.asarray(rho), admm.PAPER_RHO_MAX)
