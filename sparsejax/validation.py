"""Checks on user input that run on the host, before anything is traced or compiled.

Each failure is a :class:`~sparsejax.errors.SparsejaxError` with a one-line message that
names the offending input and what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsejax.errors import SparsejaxError


def check_images(x: Any, model, what: str = "images") -> None:
    """x must be float32[N, H, W, C] matching ``model.input_shape``, finite, within bounds."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise SparsejaxError(f"{what}: expected an array, got {type(x).__name__}")
    shape = tuple(x.shape)
    if len(shape) != 4:
        raise SparsejaxError(
            f"{what}: expected a batch float32[N, H, W, C], got shape {shape} "
            "(add a batch axis for a single image)"
        )
    if shape[1:] != tuple(model.input_shape):
        raise SparsejaxError(
            f"{what}: shape {shape[1:]} per image does not fit model {model.name} "
            f"(expects {tuple(model.input_shape)}, NHWC)"
        )
    if shape[0] < 1:
        raise SparsejaxError(f"{what}: the batch is empty")
    if np.dtype(x.dtype) != np.float32:
        hint = " (divide uint8 images by 255)" if np.dtype(x.dtype) == np.uint8 else ""
        raise SparsejaxError(f"{what}: dtype must be float32 in pixel space, got {x.dtype}{hint}")
    arr = np.asarray(x)
    if not np.isfinite(arr).all():
        raise SparsejaxError(f"{what}: contains NaN or Inf")
    lo, hi = model.bounds
    amin, amax = float(arr.min()), float(arr.max())
    if amin < lo or amax > hi:
        raise SparsejaxError(
            f"{what}: values must lie in [{lo:g}, {hi:g}] (pixel space; the model normalizes "
            f"inside), got [{amin:g}, {amax:g}]"
        )


def check_labels(y: Any, n: int, num_classes: int, what: str = "labels") -> None:
    """y must be integers of shape (n,) in [0, num_classes)."""
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise SparsejaxError(f"{what}: expected an integer array, got {type(y).__name__}")
    if not np.issubdtype(np.dtype(y.dtype), np.integer):
        raise SparsejaxError(f"{what}: dtype must be integer, got {y.dtype}")
    if tuple(y.shape) != (n,):
        raise SparsejaxError(
            f"{what}: expected shape ({n},) to match the images, got {tuple(y.shape)}"
        )
    arr = np.asarray(y)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise SparsejaxError(
            f"{what}: must lie in [0, {num_classes - 1}] for a {num_classes}-class model, "
            f"got [{arr.min()}, {arr.max()}]"
        )
