"""LinearSolver (Algorithm 1) against a line-by-line NumPy port of the released code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import linear_solver
from tests.reference.sparsefool_np import linear_solver_np

SHAPES = [(8, 8, 1), (4, 4, 3), (6, 5, 3)]
N_PROBLEMS = 80  # per shape: 240 random planes and boxes in all


def _problems(shape, n, seed, positive_every=0):
    """Random start points inside random boxes and planes with the start on the negative side
    (what SparseFool produces), at distances from "a few coordinates" to "unreachable";
    every ``positive_every``-th problem starts on the positive side instead."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.uniform(0, 1, shape).astype(np.float32)
        delta = rng.choice([0.05, 0.2, 1.0])
        lb = np.maximum(0.0, x - delta).astype(np.float32)
        ub = np.minimum(1.0, x + delta).astype(np.float32)
        w = rng.normal(size=shape).astype(np.float32)
        if i % 7 == 0:
            w[rng.uniform(size=shape) < 0.3] = 0.0  # some coordinates unusable
        w /= np.linalg.norm(w)
        dist = rng.choice([0.01, 0.1, 0.5, 2.0, 50.0])  # 50: beyond the box, unreachable
        side = -1.0 if positive_every and i % positive_every == 3 else 1.0
        p = (x + side * dist * w).astype(np.float32)  # w.(x - p) = -side * dist
        out.append((x, w, p, lb, ub))
    return [np.stack(a) for a in zip(*out, strict=True)]


@pytest.mark.parametrize("shape", SHAPES)
def test_parity_with_numpy_port(shape):
    # One problem in five starts on the positive side, where both saturate every coordinate.
    x, w, p, lb, ub = _problems(shape, N_PROBLEMS, seed=sum(shape), positive_every=5)
    res = jax.jit(jax.vmap(linear_solver))(x, w, p, lb, ub)
    got_x, got_it = np.asarray(res.x), np.asarray(res.iterations)
    reached = 0
    for i in range(N_PROBLEMS):
        want_x, moved = linear_solver_np(x[i], w[i], p[i], lb[i], ub[i])
        assert got_it[i] == len(moved), f"problem {i}: iterations {got_it[i]} vs {len(moved)}"
        # The same coordinates, in the same order: the order of |w| (stable) among w != 0.
        order = [j for j in np.argsort(-np.abs(w[i].ravel()), kind="stable") if w[i].ravel()[j]]
        assert moved == order[: len(moved)]
        np.testing.assert_allclose(got_x[i], want_x, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(got_x[i] != x[i], want_x != x[i])
        reached += bool(res.reached[i])
    # Both kinds of problem occur: plane reached, and every coordinate saturated first.
    assert 0 < reached < N_PROBLEMS


def test_solution_properties():
    shape = (6, 6, 3)
    x, w, p, lb, ub = _problems(shape, 60, seed=7)
    res = jax.jit(jax.vmap(linear_solver))(x, w, p, lb, ub)
    gx = np.asarray(res.x)
    assert np.all(gx >= lb) and np.all(gx <= ub)  # bit for bit inside the box
    f = np.einsum("nhwc,nhwc->n", w, gx - p)
    reached = np.asarray(res.reached)
    assert np.all(f[reached] >= 0)
    # Reached planes are crossed by at most the margin, unless the last move was clipped
    # or the 1e-4 minimum step overshot.
    assert np.all(f[reached] <= 1e-3 + np.abs(w).max() * 1e-4 + 1e-5)
    # Unreached: every usable coordinate was moved, to the bound its sign points at.
    for i in np.flatnonzero(~reached):
        wi, xi = w[i].ravel(), gx[i].ravel()
        target = np.where(wi > 0, ub[i].ravel(), lb[i].ravel())
        np.testing.assert_array_equal(xi[wi != 0], target[wi != 0])
        assert res.iterations[i] == np.count_nonzero(wi)


def test_positive_side_saturates_like_the_released_code_and_degenerate_planes_do_nothing():
    x = jnp.full((3, 3, 1), 0.5)
    w = (jnp.arange(9.0) - 4.0).reshape(3, 3, 1)
    w = w / jnp.linalg.norm(w)
    lb, ub = jnp.zeros_like(x), jnp.ones_like(x)
    pos = linear_solver(x, w, x - 0.1 * w, lb, ub)  # w.(x - p) > 0: steps only increase it
    assert int(pos.iterations) == 8 and not bool(pos.reached)  # every w != 0 coordinate moved
    moved = np.sign(np.asarray(pos.x - x))
    np.testing.assert_array_equal(moved, np.sign(np.asarray(w)))  # along +sign(w), as released
    for bad in (jnp.zeros_like(w), jnp.full_like(w, jnp.nan)):
        r = linear_solver(x, bad, x + 0.1, lb, ub)
        assert int(r.iterations) == 0 and not bool(r.reached)
        np.testing.assert_array_equal(r.x, x)


def test_one_coordinate_suffices_when_it_can():
    # w's largest entry can carry the whole step: the l1 projection moves that coordinate only.
    x = jnp.full((2, 2, 1), 0.5)
    w = jnp.array([0.1, 0.9, 0.3, 0.2]).reshape(2, 2, 1)
    w = w / jnp.linalg.norm(w)
    p = x + 0.05 * w
    r = linear_solver(x, w, p, jnp.zeros_like(x), jnp.ones_like(x))
    assert int(r.iterations) == 1
    changed = np.flatnonzero(np.asarray(r.x != x).ravel())
    assert changed.tolist() == [1]
    expected = 0.5 + (0.05 + 1e-3) / float(w.ravel()[1])  # the released 1e-3 past the plane
    np.testing.assert_allclose(float(r.x.ravel()[1]), expected, rtol=1e-6)
