"""A NumPy version of the Lin et al. attack for an affine softmax classifier, written from
the paper's equations with hand-derived gradients (no autodiff), in float64.

Model: logits(x) = W @ x.ravel() + b. For the cross-entropy CE(z, y) = -log softmax(z)_y,
∇_x CE = W^T (softmax(z) - e_y).

- I-FGSM (Eqs. 3-4, Kurakin et al.): x_{n+1} = Π_{[x-ε, x+ε] ∩ [lo, hi]}(x_n ± α sign(∇_x CE)).
- Eq. (20): J(w) = s · CE(f(x + π(w - τ/ε) ⊙ δ), y_adv) + λ Σ_j H(π(w_j - τ/ε)),
  ∂J/∂w_j = 1[w_j > τ/ε] (s (∇_x CE)_j δ_j + λ q_a(w_j - τ/ε)), with the surrogate
  q_a(u) = exp(-(u/a)^2) / (|a| sqrt(pi)) in place of the Heaviside derivative (Eq. 18).
- Algorithm 1 (appendix B), the surrogate through the ReLU: w' = π(w - τ/ε) every step,
  ∂J/∂w'_j = s (∇_x CE)_j δ_j + λ s q_a(w'_j) 1[w'_j > 0], then w <- w' - η v; the loss
  scale s = β/λ of the released code (1 for the paper's scale).
- SGD with momentum (PyTorch/optax form): v <- g + μ v; w <- w - η v.
- Output Eq. (22): x + mask ⊙ Ω ⊙ δ, Ω ε = min(x - lo, hi - x); the sparsest iterate whose
  output is adversarial is kept (the released code's rule).
"""

from __future__ import annotations

import math

import numpy as np


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def ce_grad(W, b, x, y):
    """∇_x CE(W x + b, y) for x of any shape."""
    p = softmax(W @ x.ravel() + b)
    p[y] -= 1.0
    return (W.T @ p).reshape(x.shape)


def ifgsm_np(W, b, x, y, eps, alpha, steps, lo=0.0, hi=1.0, targeted=False):
    sign = -1.0 if targeted else 1.0
    low, high = np.maximum(x - eps, lo), np.minimum(x + eps, hi)
    xn = x.copy()
    for _ in range(steps):
        xn = np.clip(xn + sign * alpha * np.sign(ce_grad(W, b, xn, y)), low, high)
    return xn - x


def q(u, a):
    return np.exp(-((u / a) ** 2)) / (abs(a) * math.sqrt(math.pi))


def eq20_grad(W, b, x, delta, w, y, ce_sign, eps, tau, lam, a):
    """∂J/∂w of Eq. (20), derived by hand."""
    u = w - tau / eps
    active = u > 0
    m = np.where(active, u, 0.0)
    g_x = ce_grad(W, b, x + m * delta, y)
    return np.where(active, ce_sign * g_x * delta + lam * q(np.maximum(u, 0.0), a), 0.0)


def algorithm1_grad(W, b, x, delta, w_thr, y, ce_sign, lam, a, scale):
    """∂J/∂w' of Algorithm 1 at the thresholded w' >= 0, derived by hand: the ℓ0 term's
    surrogate through the ReLU (zero where w' = 0)."""
    g_x = ce_grad(W, b, x + w_thr * delta, y)
    l0 = np.where(w_thr > 0, q(w_thr, a), 0.0)
    return scale * (ce_sign * g_x * delta + lam * l0)


def sparse_l0_np(
    W,
    b,
    x,
    label,
    eps=4 / 255,
    alpha=1 / 255,
    fgsm_steps=10,
    a=0.1,
    tau=0.3,
    lam=1e-2,
    lr=1e-2,
    momentum=0.9,
    w_init=0.1,
    steps=100,
    lo=0.0,
    hi=1.0,
    update="eq20",
    scale=1.0,
):
    """Untargeted attack with y_adv = the class I-FGSM reaches (runner-up if it did not
    flip), Eq. (20) or Algorithm 1 updates (``update``), the whole objective times
    ``scale``, symmetric Ω, sparsest adversarial iterate kept.

    Returns (x_adv, mask, best_iteration, delta)."""
    delta = ifgsm_np(W, b, x, label, eps, alpha, fgsm_steps, lo, hi)
    z = W @ (x + delta).ravel() + b
    z[label] = -np.inf
    y_adv = int(np.argmax(z))
    step_out = np.minimum(x - lo, hi - x) * np.clip(delta / eps, -1, 1)
    w = np.full_like(x, tau / eps + w_init)
    v = np.zeros_like(x)
    best_mask, best_count, best_it = None, None, -1
    for t in range(steps):
        if update == "eq20":
            g = scale * eq20_grad(W, b, x, delta, w, y_adv, 1.0, eps, tau, lam, a)
        else:
            w = np.maximum(w - tau / eps, 0.0)  # Algorithm 1: w = π(w - τ/ε) in place
            g = algorithm1_grad(W, b, x, delta, w, y_adv, 1.0, lam, a, scale)
        v = g + momentum * v
        w = w - lr * v
        mask = w - tau / eps > 0
        cand = x + np.where(mask, step_out, 0.0)
        count = int(np.sum(mask & (step_out != 0)))
        fooled = int(np.argmax(W @ cand.ravel() + b)) != label
        if fooled and (best_count is None or count < best_count):
            best_mask, best_count, best_it = mask, count, t + 1
    if best_mask is None:
        best_mask, best_it = w - tau / eps > 0, steps
    return x + np.where(best_mask, step_out, 0.0), best_mask, best_it, delta
