"""The ℓ0 unit of a fixed-k attack, shared by sPGD and Sparse-RS (SPEC §1).

A fixed-k attack chooses k *units* of one image [H, W, C] and changes only those:

- ``"pixels"``: a unit is an (h, w) position, all C channels together (U = H·W units of C
  values; the unit of sPGD's and Sparse-RS's papers);
- ``"elements"``: a unit is one channel value (U = H·W·C units of 1 value; σ-zero's
  harness gets the same by reshaping the image to 1 channel of width W·C).

So a budget of k pixels changes at most k·C elements, and k elements at most k pixels.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
import numpy as np

from sparsejax.attacks import _config
from sparsejax.errors import SparsejaxError

Unit = Literal["pixels", "elements"]


def unit_shape(example_shape, unit: Unit) -> tuple[int, int]:
    """(U, V): the number of units of one image and the values in each."""
    h, w, c = example_shape
    return (h * w, c) if unit == "pixels" else (h * w * c, 1)


def as_units(a, unit: Unit):
    """[H, W, C] -> [U, V]."""
    return a.reshape(unit_shape(a.shape, unit))


def top_k(scores, k):
    """bool[U]: the k largest scores, exactly k of them (ties broken by position), for a
    traced k (a rank, not ``lax.top_k``, whose k must be static)."""
    order = jnp.argsort(-scores, stable=True)
    ranks = (
        jnp.zeros(scores.shape, jnp.int32).at[order].set(jnp.arange(scores.size, dtype=jnp.int32))
    )
    return ranks < k


def check_k(cfg, example_shape) -> None:
    """k must fit in the image (before compilation)."""
    n = unit_shape(example_shape, cfg.unit)[0]
    if _config.is_concrete(cfg.k) and np.any(np.asarray(cfg.k) > n):
        raise SparsejaxError(
            f"{_config.config_name(cfg)} k must be <= {n}, the {cfg.unit} of one image; got {cfg.k}"
        )
