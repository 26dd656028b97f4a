"""A NumPy version of FMN-ℓ0 for an affine classifier, written from adv_lib 0.2.8's
``fmn(norm=0)`` loop (no starting points) with hand-derived gradients, in float64.

Model: Z = W @ x.ravel() + b. Loss: Z_j* - Z_y with j* the strongest other class
(untargeted), Z_t - Z_j* (targeted); its gradient W_j* - W_y (W_t - W_j*). The ε rule,
the normalised step, the ℓ0 projection (|δ| below the ε-th largest zeroed) and the clip as
in the reference.
"""

from __future__ import annotations

import math

import numpy as np


def fmn_l0_np(
    W, b, x, cls, steps=10, alpha_init=1.0, alpha_final=None, gamma_init=0.05,
    gamma_final=0.001, targeted=False,
):  # fmt: skip
    """Returns (best_adv, best_l0, best_step, deltas): deltas[i] is δ after step i."""
    alpha_final = alpha_init / 100 if alpha_final is None else alpha_final
    d = x.size
    delta = np.zeros_like(x)
    eps = 1.0
    best, best_l0, best_step = x.copy(), float(d), -1
    deltas = []
    for i in range(steps):
        cosine = (1 + math.cos(math.pi * i / steps)) / 2
        alpha = alpha_final + (alpha_init - alpha_final) * cosine
        gamma = gamma_final + (gamma_init - gamma_final) * cosine
        z = W @ (x + delta).ravel() + b
        j = int(np.argmax(np.where(np.arange(len(z)) == cls, -np.inf, z)))
        grad = (W[cls] - W[j]) if targeted else (W[j] - W[cls])
        pred = int(np.argmax(z))
        adversarial = pred == cls if targeted else pred != cls
        l0 = float(np.count_nonzero(delta))
        if adversarial and l0 < best_l0:
            best, best_l0, best_step = x + delta, l0, i
        if adversarial:
            eps = min(eps - 1, math.floor(eps * (1 - gamma)), best_l0)
        else:
            eps = max(eps + 1, math.floor(eps * (1 + gamma)))
        eps = min(max(eps, 0.0), float(d))
        delta = delta + alpha * grad.reshape(x.shape) / max(np.linalg.norm(grad), 1e-12)
        mags = np.abs(delta).ravel()
        threshold = np.sort(mags)[::-1][max(int(eps) - 1, 0)]
        delta[np.abs(delta) < threshold] = 0.0
        delta = np.clip(x + delta, 0.0, 1.0) - x
        deltas.append(delta.copy())
    return best, best_l0, best_step, deltas
