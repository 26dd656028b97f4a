"""A NumPy version of Carlini & Wagner's ℓ0 attack for one image, written line by line from
their ``l0_attack.py`` (carlini/nn_robust_attacks, ``attack_single`` and the ``doit`` of
``gradient_descent``), in float64, with the TensorFlow graph replaced by hand-derived
gradients and TensorFlow 1's ``AdamOptimizer`` written out (ε added to √v, the bias
corrections folded into the step size).

The image is in the reference's box [-0.5, 0.5], shape [H, W, C]; the model is given as
``logits(x)`` -> [K] and ``jacobian(x)`` -> [K, d] on that image (see ``jsma_np.mlp``,
composed with the shift of the box by the caller). Departure: the fixing loop visits ties
in ``totalchange`` in index order (``kind="stable"``); the reference's default ``argsort``
leaves their order to NumPy.
"""

from __future__ import annotations

import numpy as np


def _adam():
    state = dict(m=None, v=None, t=0)

    def step(w, g, lr, b1=0.9, b2=0.999, eps=1e-8):
        if state["m"] is None:
            state["m"], state["v"] = np.zeros_like(w), np.zeros_like(w)
        state["t"] += 1
        t = state["t"]
        state["m"] = b1 * state["m"] + (1 - b1) * g
        state["v"] = b2 * state["v"] + (1 - b2) * g * g
        lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        return w - lr_t * state["m"] / (np.sqrt(state["v"]) + eps)

    return step


def cw_l0_np(logits, jacobian, img, target, targeted, *, max_iterations=1000,
             learning_rate=1e-2, initial_const=1e-3, largest_const=2e6, const_factor=2.0,
             independent_channels=False):  # fmt: skip
    """Returns (solution or None, trace): trace has ``steps`` (Adam iterations in all),
    ``rounds`` (successful ℓ2 solves), ``const`` (at the end), ``valids`` (the mask
    after each round's fixing) and ``ends`` (the steps in all when each round ended)."""
    h, w_, ch = img.shape
    num_labels = logits(img.ravel()).size
    tlab = np.eye(num_labels)[target]
    trace = dict(steps=0, rounds=0, const=None, valids=[], ends=[])

    def doit(oimgs, starts, valid, CONST):
        imgs = np.arctanh(oimgs * 1.999999)
        starts = np.arctanh(starts * 1.999999)
        modifier = np.zeros_like(oimgs)
        canchange, simg, original, timg = valid, starts, oimgs, imgs
        adam = _adam()

        def run(modifier, CONST):
            newimg = (np.tanh(modifier + simg) / 2) * canchange + (1 - canchange) * original
            output = logits(newimg.ravel())
            real = np.sum(tlab * output)
            other = np.max((1 - tlab) * output - (tlab * 10000))
            if targeted:
                loss1 = max(0.0, other - real + 0.01)
                dl1 = np.eye(num_labels)[np.argmax((1 - tlab) * output - tlab * 10000)] - tlab
            else:
                loss1 = max(0.0, real - other + 0.01)
                dl1 = tlab - np.eye(num_labels)[np.argmax((1 - tlab) * output - tlab * 10000)]
            dl1 = dl1 * (loss1 > 0)
            d_newimg = CONST * (dl1 @ jacobian(newimg.ravel())).reshape(newimg.shape)
            d_newimg += 2 * (newimg - np.tanh(timg) / 2)
            outgrad = d_newimg * canchange * (1 - np.tanh(modifier + simg) ** 2) / 2
            return loss1, outgrad, newimg

        while CONST < largest_const:
            for _step in range(max_iterations):
                oldmodifier = modifier.copy()
                works, grad, _ = run(modifier, CONST)
                modifier = adam(modifier, grad, learning_rate)
                trace["steps"] += 1
                if works < 0.0001:
                    modifier = oldmodifier
                    grads, nimg = run(modifier, CONST)[1:]
                    trace["ends"].append(trace["steps"])
                    return grads, nimg, CONST
            CONST *= const_factor
        trace["const"] = CONST
        return None

    valid = np.ones((h, w_, ch))
    prev = np.copy(img)
    last_solution = None
    const = initial_const
    equal_count = None
    while True:
        res = doit(np.copy(img), np.copy(prev), valid, const)
        if res is None:
            return last_solution, trace
        trace["rounds"] += 1
        gradientnorm, nimg, const = res
        equal_count = h * w_ - np.sum(np.all(np.abs(img - nimg) < 0.0001, axis=2))
        if np.sum(valid) == 0:
            return img, trace
        if independent_channels:
            valid = valid.flatten()
            totalchange = abs(nimg - img) * np.abs(gradientnorm)
        else:
            valid = valid.reshape((h * w_, ch))
            totalchange = abs(np.sum(nimg - img, axis=2)) * np.sum(np.abs(gradientnorm), axis=2)
        totalchange = totalchange.flatten()
        did = 0
        for e in np.argsort(totalchange, kind="stable"):
            if np.all(valid[e]):
                did += 1
                valid[e] = 0
                if totalchange[e] > 0.01:
                    break
                if did >= 0.3 * equal_count**0.5:
                    break
        valid = np.reshape(valid, (h, w_, ch))
        trace["valids"].append(valid.copy())
        last_solution = prev = nimg
