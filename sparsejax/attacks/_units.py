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

import jax
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


def ranks(scores):
    """int32[U]: each score's place in descending order (0: the largest; ties broken by
    position). Unsigned integer scores are ranked as such (no negation wraps them)."""
    flipped = ~scores if jnp.issubdtype(scores.dtype, jnp.unsignedinteger) else -scores
    return _places(jnp.argsort(flipped, stable=True))


def _places(order):
    """int32[U]: where each unit stands in ``order`` (the inverse permutation)."""
    places = jnp.arange(order.size, dtype=jnp.int32)
    return jnp.zeros(order.shape, jnp.int32).at[order].set(places)


def _ordered_bits(scores):
    """uint32[U] in the order of float32 ``scores`` (-0 = +0; NaN below -inf, where
    ``argsort(-scores)`` puts it: last)."""
    x = jnp.where(scores == 0, jnp.zeros_like(scores), scores)
    b = jax.lax.bitcast_convert_type(x, jnp.uint32)
    b = jnp.where((b >> 31) == 1, ~b, b | jnp.uint32(1 << 31))
    return jnp.where(jnp.isnan(x), jnp.uint32(0), b)


def top_k(scores, k):
    """bool[U]: the k largest scores, exactly ⌈k⌉ of them (ties broken by position: the
    units with ``ranks(scores) < k``), for a traced k (``lax.top_k`` needs a static one).
    Found from the ⌈k⌉-th largest value of one sorted uint32 operand (XLA:CPU sorts that
    several times faster than the key-value pair of an argsort)."""
    if scores.dtype == jnp.float32:
        key = _ordered_bits(scores)
    elif scores.dtype == jnp.uint32:
        key = scores
    else:
        return ranks(scores) < k
    u = key.size
    count = jnp.clip(jnp.ceil(k), 0, u).astype(jnp.int32)
    threshold = jax.lax.sort(key)[jnp.clip(u - count, 0, u - 1)]
    above, at = key > threshold, key == threshold
    need = count - jnp.sum(above, dtype=jnp.int32)
    return (count > 0) & (above | (at & (jnp.cumsum(at, dtype=jnp.int32) <= need)))


def random_ranks(draws, first=None):
    """int32[U]: a uniformly random order of the U units from ``draws`` (uint32[U] random
    bits), the units flagged in ``first`` (bool[U]) ahead of all others. Sorted as one
    uint32 key per unit (XLA:CPU sorts a single unsigned operand several times faster than
    a key-value pair): the top bit ``first``, the next 31 - ⌈log2 U⌉ bits the draw's, the
    low bits the unit's position, which makes every key distinct and gives back the order.
    Units whose draws agree on those bits are ordered by position; up to U = 4096 (≥ 19
    random bits) that decides about U / 2^19 of a cut; beyond it, a key-value sort of 31
    bits."""
    u = draws.shape[0]
    low = max(1, (u - 1).bit_length())
    if low > 12:
        key = draws >> 1 if first is None else (draws >> 1) | (first.astype(jnp.uint32) << 31)
        return ranks(key)
    high = (draws >> (low + 1)) << low
    if first is not None:
        high = high | (first.astype(jnp.uint32) << 31)
    # Ascending on the complement: the largest high part first, equal ones by position.
    mask = (1 << low) - 1
    key = (~high & ~jnp.uint32(mask)) | jnp.arange(u, dtype=jnp.uint32)
    return _places((jax.lax.sort(key) & mask).astype(jnp.int32))


def check_k(cfg, example_shape) -> None:
    """k must fit in the image (before compilation)."""
    n = unit_shape(example_shape, cfg.unit)[0]
    if _config.is_concrete(cfg.k) and np.any(np.asarray(cfg.k) > n):
        raise SparsejaxError(
            f"{_config.config_name(cfg)} k must be <= {n}, the {cfg.unit} of one image; got {cfg.k}"
        )
