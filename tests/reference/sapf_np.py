"""Independent NumPy (float64) versions of SAPF's pieces, written from the paper's equations.

Fan et al., ECCV 2020: box projection (Eq. 11), ℓ2-sphere projection (Eq. 13), the G step
(Eq. 14), the dual updates (Eq. 15, with the residual G − Y), the ρ update (§4.1), the δ
step (Eq. 7, with Eq. 17's weights), the SAPF-GS subgradient (Eq. 16), and the loss
gradients of an affine classifier Z = A·vec(clip(x + ε)) + b, in closed form. The
semi-implicit G step (our stabilisation) is solved here with a dense linear solve instead
of the Sherman-Morrison formula of the library. Vectors are flat (N,) arrays.
"""

from __future__ import annotations

import numpy as np


def box_np(v):
    return np.minimum(1.0, np.maximum(0.0, v))


def sphere_np(v):
    a = np.asarray(v, np.float64) - 0.5
    norm = np.linalg.norm(a)
    if norm == 0:
        return np.ones_like(a)  # the library's documented choice at the centre
    return 0.5 + np.sqrt(a.size) / 2 * a / norm


def admm_iteration_np(g, grad_lin, curv, z1, z2, z3, rho, k, lr, rho_max, growth, implicit):
    """Steps 2.1-2.4. Returns (G', Z1', Z2', z3', ρ', Y1, Y2)."""
    g = np.asarray(g, np.float64)
    r1, r2, r3 = rho
    y1 = box_np(g + z1 / r1)
    y2 = sphere_np(g + z2 / r2)
    n = g.size
    if implicit:
        m = np.diag(1.0 / lr + curv + r1 + r2 + np.zeros(n)) + r3 * np.ones((n, n))
        rhs = g / lr - (grad_lin + z1 + z2 + z3 - r1 * y1 - r2 * y2) + r3 * k
        g_new = np.linalg.solve(m, rhs)
    else:
        d = (
            grad_lin
            + curv * g
            + r1 * (g - y1)
            + r2 * (g - y2)
            + (z3 + r3 * (g.sum() - k)) * np.ones(n)
            + z1
            + z2
        )
        g_new = g - lr * d
    z1 = z1 + r1 * (g_new - y1)
    z2 = z2 + r2 * (g_new - y2)
    z3 = z3 + r3 * (g_new.sum() - k)
    rho = np.minimum(growth * np.asarray(rho, np.float64), rho_max)
    return g_new, z1, z2, z3, rho, y1, y2


def affine_loss_grad_np(x, eps, lo, hi, a, b, target, kappa, loss):
    """∂L(Z(clip(x + ε)), t)/∂ε for Z = A·v + b, with torch.clamp's gradient (1 on the
    closed box). x, eps, lo, hi: (N,); a: (K, N); b: (K,)."""
    v = x + eps
    inside = ((v >= lo) & (v <= hi)).astype(np.float64)
    z = a @ np.clip(v, lo, hi) + b
    if loss == "ce":
        p = np.exp(z - z.max())
        p /= p.sum()
        p[target] -= 1.0
        return (p @ a) * inside
    others = [j for j in range(len(z)) if j != target]
    j = others[int(np.argmax(z[others]))]
    if z[j] - z[target] + kappa <= 0:
        return np.zeros_like(x)
    return (a[j] - a[target]) * inside


def delta_step_np(x, lo, hi, a, b, target, delta, g, w, lr, lam1, kappa, loss, implicit):
    """Eq. (7) (weights of Eq. 17): explicit, or with the quadratic term at the new point."""
    gl = lam1 * affine_loss_grad_np(x, delta * g, lo, hi, a, b, target, kappa, loss)
    if implicit:
        return (delta - lr * g * gl) / (1 + 2 * lr * w**2 * g**2)
    return delta - lr * (2 * w**2 * delta * g * g + g * gl)


def group_grad_np(g_hwc, segments):
    """∂Σ_i ‖G^i‖₂/∂G by explicit loops over the groups (0 on a group of norm 0)."""
    out = np.zeros_like(g_hwc, np.float64)
    for s in np.unique(segments):
        m = segments == s
        norm = np.sqrt(np.sum(g_hwc[m] ** 2))
        if norm > 0:
            out[m] = g_hwc[m] / norm
    return out


def g_smooth_np(x, lo, hi, a, b, target, delta, g, w, lam1, kappa, loss):
    """(∇_lin, c) of Eq. (14)'s smooth part: δ⊙λ1∂L/∂ε and 2w²δ²."""
    gl = lam1 * affine_loss_grad_np(x, delta * g, lo, hi, a, b, target, kappa, loss)
    return delta * gl, 2 * w**2 * delta**2


def topk_np(g, k):
    """Binary vector with ones at the k largest entries (ties: lowest index first)."""
    out = np.zeros_like(g)
    out[np.argsort(-g, kind="stable")[:k]] = 1.0
    return out
