"""DeepFool on affine classifiers, where one step is exact, and its degenerate cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import DeepFoolConfig, deepfool

SHAPE = (4, 4, 2)
D = int(np.prod(SHAPE))


def _affine(W, b):
    """logits(x) = vec(x) W + b, batched: the classic setting where DeepFool is exact."""
    Wj, bj = jnp.asarray(W), jnp.asarray(b)
    return jax.tree_util.Partial(
        lambda W, b, x: (
            jnp.dot(x.reshape(x.shape[0], -1), W, precision=jax.lax.Precision.HIGHEST) + b[None]
        ),
        Wj,
        bj,
    )


def _closed_form(W, b, x, src, classes):
    """min_k |f_k - f_src| / ||w_k - w_src|| over ``classes``: the step and the normal."""
    f = x.ravel() @ W + b
    best = None
    for k in classes:
        w = W[:, k] - W[:, src]
        d = abs(f[k] - f[src]) / np.linalg.norm(w)
        if best is None or d < best[0]:
            best = (d, k, w)
    d, k, w = best
    return (d * w / np.linalg.norm(w)).reshape(SHAPE), k, (w / np.linalg.norm(w)).reshape(SHAPE)


def _one_step_problems(n, num_classes, targeted, seed, candidates=None):
    """Random affine problems on which one exact step (plus the 2% overshoot) flips."""
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < n:
        W = rng.normal(size=(D, num_classes)).astype(np.float64)
        b = rng.normal(size=num_classes)
        x = rng.uniform(0, 1, SHAPE)
        f = x.ravel() @ W + b
        y = int(np.argmax(f))
        if targeted:
            t = int(rng.choice([c for c in range(num_classes) if c != y]))
            src = int(np.argmax(np.where(np.arange(num_classes) == t, -np.inf, f)))
            r, k, normal = _closed_form(W, b, x, src, [t])
        else:
            order = [c for c in np.argsort(-f, kind="stable") if c != y]
            cls = order[: (candidates or num_classes) - 1]
            r, k, normal = _closed_form(W, b, x, y, cls)
            t = None
        over = (x + 1.02 * r).ravel() @ W + b
        ok = (np.argmax(over) == t) if targeted else (np.argmax(over) == k)
        if ok:
            found.append(
                (
                    W.astype(np.float32),
                    b.astype(np.float32),
                    x.astype(np.float32),
                    y,
                    t,
                    r,
                    k,
                    normal,
                )
            )
    return found


def _run_all(problems, config, targeted):
    """One compiled, vmapped call over all problems (each has its own W, b)."""
    W, b, x, y = (jnp.asarray(np.stack([p[i] for p in problems])) for i in range(4))
    t = jnp.asarray([p[4] if targeted else 0 for p in problems], jnp.int32)

    def one(W, b, x, y, t):
        return deepfool(_affine(W, b), x, y, config, t if targeted else None)

    return jax.jit(jax.vmap(one))(W, b, x, y, t)


@pytest.mark.parametrize("targeted", [False, True])
def test_one_step_is_exact_on_affine_models(targeted):
    problems = _one_step_problems(12, 10, targeted, seed=int(targeted))
    res = _run_all(problems, DeepFoolConfig(), targeted)
    for i, (W, b, x, y, t, r, k, normal) in enumerate(problems):
        assert int(res.iterations[i]) == 1
        assert bool(res.flipped[i]) and int(res.adv_class[i]) == k
        np.testing.assert_allclose(res.r_tot[i], r, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(res.normal[i], normal, atol=1e-5)  # Eq. (6), unit norm
        # The boundary point is on the boundary: f_k = f_src there.
        f = (x + np.asarray(res.r_tot[i])).ravel() @ W + b
        src = (
            y
            if t is None
            else int(np.argmax(np.where(np.arange(10) == t, -np.inf, x.ravel() @ W + b)))
        )
        assert abs(f[k] - f[src]) < 1e-3 * max(1.0, abs(f[k]))
        rows = 1 if targeted else 9  # one VJP per candidate: e_k - e_src
        assert (int(res.forwards[i]), int(res.backwards[i])) == (3, rows + 1)


def test_only_the_top_candidates_are_considered():
    problems = _one_step_problems(8, 10, False, seed=5, candidates=3)
    res = _run_all(problems, DeepFoolConfig(num_candidates=3), False)
    for i, (_, _, _, _, _, r, k, _) in enumerate(problems):
        assert int(res.adv_class[i]) == k
        np.testing.assert_allclose(res.r_tot[i], r, rtol=2e-4, atol=1e-6)
        assert int(res.backwards[i]) == 2 + 1  # 2 candidates besides the label, + normal


def test_constant_model_stalls_without_nans():
    fn = jax.tree_util.Partial(lambda c, x: jnp.zeros((x.shape[0], 5)) + c[None], jnp.arange(5.0))
    res = deepfool(fn, jnp.full(SHAPE, 0.5), 4)
    assert not bool(res.flipped)
    for leaf in jax.tree.leaves(res):
        assert np.all(np.isfinite(np.asarray(leaf)))
    np.testing.assert_array_equal(res.normal, 0.0)


def test_unreachable_boundary_stops_at_the_cap_without_nans():
    # f_1 - f_0 = -exp(-sum x) < 0 everywhere, with a gradient that never vanishes over the
    # steps taken: DeepFool keeps stepping (sum x grows by 1 per step) and never flips.
    fn = jax.tree_util.Partial(
        lambda c, x: jnp.stack(
            [jnp.zeros(x.shape[0]), -c * jnp.exp(-x.reshape(x.shape[0], -1).sum(1))], 1
        ),
        1.0,
    )
    res = deepfool(fn, jnp.full(SHAPE, 0.1), 0, DeepFoolConfig(max_iter=7))
    assert int(res.iterations) == 7 and not bool(res.flipped)
    assert int(res.adv_class) == 1  # fallback: the last candidate class
    assert np.all(np.isfinite(np.asarray(res.r_tot)))
    assert np.isclose(float(jnp.linalg.norm(res.normal)), 1.0, atol=1e-5)


def test_jit_and_vmap_agree_with_a_python_loop():
    probs = _one_step_problems(4, 10, False, seed=9)
    W, b = probs[0][0], probs[0][1]
    fn = _affine(W, b)
    xs = jnp.asarray(np.stack([p[2] for p in _one_step_problems(6, 10, False, seed=9)]))
    ys = jnp.argmax(fn(xs), axis=1)
    batched = jax.jit(jax.vmap(lambda x, y: deepfool(fn, x, y)))(xs, ys)
    for i in range(xs.shape[0]):
        one = deepfool(fn, xs[i], ys[i])
        np.testing.assert_allclose(batched.r_tot[i], one.r_tot, rtol=1e-5, atol=1e-7)
        assert int(batched.iterations[i]) == int(one.iterations)
