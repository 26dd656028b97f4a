"""A NumPy version of σ-zero for an affine classifier, written from the paper's Algorithm 1
and adv_lib's ``sigma_zero`` loop with hand-derived gradients (no autodiff), in float64.

Model: Z = W @ x.ravel() + b. Loss L(δ) = max(Z_c - Z_j*, 0) + (1/d) Σ δ²/(δ² + σ) with
c the label and j* the strongest other class (untargeted), or max(Z_j* - Z_t, 0) with j*
the strongest class other than the target t (targeted). Its gradient: (W_c - W_j*) where
the margin is positive (W_j* - W_t targeted), plus (1/d) 2δσ/(δ² + σ)².
Adam written out (m, v, bias corrections), the step size annealed after each step, the
threshold moved by ± τ_factor · η, |δ| < τ zeroed.
"""

from __future__ import annotations

import math

import numpy as np


def loss_grad(W, b, x, delta, cls, sigma, targeted):
    z = W @ (x + delta).ravel() + b
    others = np.where(np.arange(len(z)) == cls, -np.inf, z)
    j = int(np.argmax(others))
    margin = z[j] - z[cls] if targeted else z[cls] - z[j]
    g = np.zeros(x.size)
    if margin > 0:
        g = W[j] - W[cls] if targeted else W[cls] - W[j]
    sq = delta**2
    g = g.reshape(x.shape) + 2 * delta * sigma / (sq + sigma) ** 2 / x.size
    return z, g


def sigma_zero_np(
    W, b, x, cls, steps=100, eta0=1.0, sigma=1e-3, tau0=0.3, tau_factor=0.01, targeted=False
):
    """Returns (best_adv, best_l0, best_step)."""
    delta = np.zeros_like(x)
    m, v = np.zeros_like(x), np.zeros_like(x)
    best, best_l0, best_step = x.copy(), x.size + 1, -1
    tau, eta = tau0, eta0
    for i in range(steps):
        z, g = loss_grad(W, b, x, delta, cls, sigma, targeted)
        pred = int(np.argmax(z))
        adversarial = pred == cls if targeted else pred != cls
        l0 = int(np.count_nonzero(delta))
        if adversarial and l0 < best_l0:
            best, best_l0, best_step = x + delta, l0, i
        g = g / max(np.abs(g).max(), 1e-12)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        denom = np.sqrt(v) / math.sqrt(1 - 0.999 ** (i + 1)) + 1e-8
        delta = delta - eta / (1 - 0.9 ** (i + 1)) * m / denom
        delta = np.clip(x + delta, 0.0, 1.0) - x
        eta = eta0 * (0.1 + 0.9 * (1 + math.cos(math.pi * i / steps)) / 2)
        tau = min(max(tau + (tau_factor * eta if adversarial else -tau_factor * eta), 0.0), 1.0)
        delta[np.abs(delta) < tau] = 0.0
    return best, best_l0, best_step
