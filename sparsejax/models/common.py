"""Pieces shared by the model definitions."""

from __future__ import annotations

import jax.numpy as jnp

# PyTorch's Conv2d(padding=1) pads one pixel on every side. Flax's "SAME" pads (0, 1) for a
# stride-2 3x3 convolution on an even input, so ported models spell the padding out.
PAD1 = ((1, 1), (1, 1))


def normalize(x, mean: tuple[float, ...] | None, std: tuple[float, ...] | None):
    """Per-channel (x - mean) / std inside the model, so attacks see pixel space [0, 1]."""
    if mean is None:
        return x
    shape = (1,) * (x.ndim - 1) + (-1,)
    mean = jnp.asarray(mean, x.dtype).reshape(shape)  # [1, 1, 1, C]
    std = jnp.asarray(std, x.dtype).reshape(shape)
    return (x - mean) / std
