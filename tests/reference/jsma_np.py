"""A NumPy version of JSMA for one example, written line by line from CleverHans 3.1's
``jsma_symbolic`` (``cleverhans/attacks/saliency_map_method.py``), in float64: the full
d x d pair-score matrix, used features pushed out of the search by ∓2·max|·| as there, the
pair from the argmax of the flattened matrix (p1 = best % d, p2 = best // d).

The model is given as ``logits(x)`` -> [K] and ``jacobian(x)`` -> [K, d] (hand-derived:
see ``mlp`` below). SparseFool's untargeted variant stops when the prediction leaves
``label`` instead of reaching the target.
"""

from __future__ import annotations

import numpy as np


def jsma_np(logits, jacobian, x, target, theta=1.0, gamma=1.0, lower=0.0, upper=1.0,
            label=None):  # fmt: skip
    """Returns (x_adv, pairs): the pairs (p1, p2) changed, in order. With ``label`` the
    stop test is pred != label (SparseFool's), else pred == target (CleverHans')."""
    x = np.asarray(x, np.float64).ravel().copy()
    d = x.size
    max_iters = np.floor(d * gamma / 2)
    increase = theta > 0
    zero_diagonal = 1.0 - np.eye(d)
    domain = (x < upper) if increase else (x > lower)
    domain = domain.astype(np.float64)
    pairs = []
    i = 0
    while i < max_iters:
        z = logits(x)
        pred = int(np.argmax(z))
        grads = jacobian(x)  # [K, d]
        grads_target = grads[target]
        grads_other = grads.sum(0) - grads[target]
        coef = (4 * int(increase) - 2) * (domain == 0)
        target_tmp = grads_target - coef * np.max(np.abs(grads_target))
        other_tmp = grads_other + coef * np.max(np.abs(grads_other))
        target_sum = target_tmp[:, None] + target_tmp[None, :]
        other_sum = other_tmp[:, None] + other_tmp[None, :]
        if increase:
            mask = (target_sum > 0) & (other_sum < 0)
        else:
            mask = (target_sum < 0) & (other_sum > 0)
        scores = mask * (-target_sum * other_sum) * zero_diagonal
        best = int(np.argmax(scores.ravel()))
        p1, p2 = best % d, best // d
        not_done = (pred == label) if label is not None else (pred != target)
        if not (not_done and domain.sum() >= 2):
            break
        pairs.append((p1, p2))
        domain[p1] -= 1
        domain[p2] -= 1
        step = np.zeros(d)
        step[p1] += 1
        step[p2] += 1
        if increase:
            x = np.minimum(upper, x + step * theta)
        else:
            # The reference writes x - step * theta here, which for theta < 0 moves the
            # features up (a sign slip); sparsejax and this port move them by theta.
            x = np.maximum(lower, x + step * theta)
        i += 1
    return x, pairs


def mlp(W1, b1, W2, b2):
    """(logits, jacobian) of Z = W2 tanh(W1 x + b1) + b2, with J = W2 diag(1 - h²) W1."""

    def logits(x):
        return W2 @ np.tanh(W1 @ x + b1) + b2

    def jacobian(x):
        h = np.tanh(W1 @ x + b1)
        return W2 @ ((1 - h**2)[:, None] * W1)

    return logits, jacobian
