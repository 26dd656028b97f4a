"""A PyTorch implementation of SparseFool (Algorithms 1 and 2) with the released defaults.

Written from the paper (Modas et al., CVPR 2019) and the released code's conventions
(LTS4/SparseFool): batch size 1, as the original runs; DeepFool over the top-10 classes with
one backward pass per class (``retain_graph``), linearization at the un-overshot point,
check at the overshot point, overshoot 0.02, 50 steps; the normal of Eq. (6) at x_B scaled
to unit norm; the plane through x_i + λ r_tot; the greedy LinearSolver with the 1e-3 margin
and the 1e-4 minimum step; the total perturbation overshot by 1.02 and clipped; max_iter 20.

Two differences from the released code, both for a fair comparison: the model's parameters
do not require gradients (the released code also computes unused weight gradients), and
the attack runs in pixel space with the normalization inside the model, as sparsejax does.
It counts forward and backward passes like sparsejax.
"""

from __future__ import annotations

import torch


class Counter:
    def __init__(self):
        self.forwards = 0
        self.backwards = 0


def _deepfool(im, net, label, lambda_fac, counter, num_classes=10, overshoot=0.02, max_iter=50):
    f_image = net(im)[0]
    counter.forwards += 1
    order = torch.argsort(f_image, descending=True)
    order = order[order != label][: num_classes - 1]  # top candidates besides the label
    classes = torch.cat([torch.tensor([label]), order])
    r_tot = torch.zeros_like(im)
    k_i, loop_i, last = label, 0, int(order[0])
    while k_i == label and loop_i < max_iter:
        x = (im + r_tot).requires_grad_(True)
        fs = net(x)[0]
        counter.forwards += 1
        grads = []
        for c in classes:  # one backward pass per class, as the released code
            (g,) = torch.autograd.grad(fs[c], x, retain_graph=True)
            grads.append(g)
            counter.backwards += 1
        pert, w = float("inf"), None
        for j in range(1, len(classes)):
            w_k = grads[j] - grads[0]
            f_k = (fs[classes[j]] - fs[classes[0]]).detach()
            nrm = w_k.norm()
            if nrm > 0:
                pert_k = f_k.abs() / nrm
                if pert_k < pert:
                    pert, w, last = float(pert_k), w_k, int(classes[j])
        if w is None:
            break
        r_tot = r_tot + max(pert, 1e-4) * w / w.norm()
        with torch.no_grad():
            k_i = int(torch.argmax(net(im + (1 + overshoot) * r_tot)[0]))
        counter.forwards += 1
        loop_i += 1
    adv = k_i if k_i != label else last
    x = (im + r_tot).requires_grad_(True)
    fs = net(x)[0]
    (g,) = torch.autograd.grad(fs[adv] - fs[label], x)
    counter.forwards += 1
    counter.backwards += 1
    return g / g.norm(), im + lambda_fac * r_tot, loop_i


def _linear_solver(x_0, normal, boundary_point, lb, ub):
    coord = normal.clone().view(-1)
    w = normal.view(-1)
    p = boundary_point.view(-1)
    x_i = x_0.clone().view(-1)
    f_k = torch.dot(w, x_i - p)
    sign_true = torch.sign(f_k)
    beta = 1e-3 * sign_true
    current = sign_true
    lbf, ubf = lb.view(-1), ub.view(-1)
    while current == sign_true and torch.count_nonzero(coord) > 0:
        f_k = torch.dot(w, x_i - p) + beta
        j = int(torch.argmax(coord.abs()))
        pert = max(float(f_k.abs() / coord[j].abs()), 1e-4)
        x_i[j] = torch.clamp(x_i[j] + pert * torch.sign(coord[j]), lbf[j], ubf[j])
        current = torch.sign(torch.dot(w, x_i - p))
        coord[j] = 0
    return x_i.view_as(x_0)


@torch.no_grad()
def _pred(net, x, counter):
    counter.forwards += 1
    return int(torch.argmax(net(x)[0]))


def sparsefool(x_0, net, label, lb, ub, lambda_=3.0, max_iter=20, epsilon=0.02):
    """One example: x_0 [1, C, H, W] in [lb, ub]. Returns (x_adv, iterations, counter)."""
    counter = Counter()
    pred = _pred(net, x_0, counter)
    if pred != label:
        return x_0, 0, counter
    x_i, fool_im, fool, loops = x_0.clone(), x_0.clone(), pred, 0
    while fool == pred and loops < max_iter:
        normal, x_b, _ = _deepfool(x_i, net, label, lambda_, counter)
        x_i = _linear_solver(x_i, normal, x_b, lb, ub)
        fool_im = torch.clamp(x_0 + (1 + epsilon) * (x_i - x_0), lb, ub)
        fool = _pred(net, fool_im, counter)
        loops += 1
    return fool_im, loops, counter
