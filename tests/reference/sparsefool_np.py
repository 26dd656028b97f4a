"""NumPy ports of SparseFool's released PyTorch code (LTS4/SparseFool), line by line.

``linear_solver_np`` follows ``linear_solver.py`` statement for statement, in float32 like
the torch original (torch.dot -> np.dot, torch.argmax -> np.argmax: first index on ties).
It records the coordinates it moved so the tests can compare the exact path.
"""

from __future__ import annotations

import numpy as np


def linear_solver_np(x_0, normal, boundary_point, lb, ub):
    """Returns (x_i, moved coordinates in order). All inputs float32 arrays of one shape."""
    input_shape = x_0.shape
    coord_vec = normal.astype(np.float32).copy()
    plane_normal = coord_vec.copy().reshape(-1)
    plane_point = boundary_point.astype(np.float32).copy().reshape(-1)
    x_i = x_0.astype(np.float32).copy()

    f_k = np.dot(plane_normal, x_0.reshape(-1) - plane_point)
    sign_true = np.sign(f_k)
    beta = np.float32(0.001) * sign_true
    current_sign = sign_true
    moved = []
    while current_sign == sign_true and np.count_nonzero(coord_vec) > 0:
        f_k = np.dot(plane_normal, x_i.reshape(-1) - plane_point) + beta
        pert = np.abs(f_k) / np.abs(coord_vec).max()
        mask = np.zeros_like(coord_vec)
        idx = np.unravel_index(np.argmax(np.abs(coord_vec)), input_shape)
        mask[idx] = 1.0
        r_i = np.maximum(pert, np.float32(1e-4)) * mask * np.sign(coord_vec)
        x_i = x_i + r_i
        x_i = np.maximum(np.minimum(x_i, ub), lb)  # utils.clip_image_values
        f_k = np.dot(plane_normal, x_i.reshape(-1) - plane_point)
        current_sign = np.sign(f_k)
        coord_vec[r_i != 0] = 0
        moved.append(int(np.ravel_multi_index(idx, input_shape)))
    return x_i.astype(np.float32), moved
