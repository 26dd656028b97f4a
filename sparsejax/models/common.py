"""Pieces shared by the model definitions: normalization inside the model, and a
convolution and a max-pooling whose gradients stay fast inside compiled loops.

Why a custom convolution: on XLA:CPU, the input-gradient of a convolution traced inside a
``while_loop``/``fori_loop`` body keeps JAX's transposed-kernel layout (``01oi``), which
XLA:CPU does not canonicalize there and runs on a slow generic path: 6-10x slower than
the same gradient outside a loop (measured on ResNet-20; jax-ml/jax#12868, "Convolution
is significantly slower inside a loop body (CPU)"). Attacks run their model gradients
inside loops, so :func:`conv2d` defines its VJP with the input-gradient written as an
ordinary NHWC/HWIO convolution of the flipped, transposed kernel, and the kernel-gradient
as an ordinary convolution too (training runs in a ``scan``). The values are those of
JAX's own rule (the tests compare them); only the layouts XLA sees change.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# PyTorch's Conv2d(padding=1) pads one pixel on every side. Flax's "SAME" pads (0, 1) for a
# stride-2 3x3 convolution on an even input, so ported models spell the padding out.
PAD1 = ((1, 1), (1, 1))
VALID = ((0, 0), (0, 0))
_DN = ("NHWC", "HWIO", "NHWC")


def normalize(x, mean: tuple[float, ...] | None, std: tuple[float, ...] | None):
    """Per-channel (x - mean) / std inside the model, so attacks see pixel space [0, 1]."""
    if mean is None:
        return x
    shape = (1,) * (x.ndim - 1) + (-1,)
    mean = jnp.asarray(mean, x.dtype).reshape(shape)  # [1, 1, 1, C]
    std = jnp.asarray(std, x.dtype).reshape(shape)
    return (x - mean) / std


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x, kernel, strides: tuple[int, int], padding: tuple[tuple[int, int], ...]):
    """NHWC x HWIO convolution with explicit padding ((top, bottom), (left, right))."""
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DN)


def _conv2d_fwd(x, kernel, strides, padding):
    return conv2d(x, kernel, strides, padding), (x, kernel)


def _transposed_padding(k, pad_lo, n_in, n_out, stride):
    lo = k - 1 - pad_lo
    return lo, n_in + k - 1 - lo - ((n_out - 1) * stride + 1)


def _conv2d_bwd(strides, padding, res, g):
    x, kernel = res
    kh, kw = kernel.shape[:2]
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)  # HWIO kernel of the transposed conv
    pad = (
        _transposed_padding(kh, padding[0][0], x.shape[1], g.shape[1], strides[0]),
        _transposed_padding(kw, padding[1][0], x.shape[2], g.shape[2], strides[1]),
    )
    gx = lax.conv_general_dilated(
        g, flipped, (1, 1), pad, lhs_dilation=strides, dimension_numbers=_DN
    )
    # dK[i, j, c, o] = sum_{b, h, w} x_pad[b, h*s + i, w*s + j, c] g[b, h, w, o]: a
    # convolution of x (channels as batch, images as features) with g as an HWIO kernel
    # dilated by the stride; rows that the forward pass never reached are sliced off.
    gk = lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0),
        g.transpose(1, 2, 0, 3),
        (1, 1),
        padding,
        rhs_dilation=strides,
        dimension_numbers=_DN,
    )[:, :kh, :kw, :]
    return gx, gk.transpose(1, 2, 0, 3)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


class Conv(nn.Module):
    """A 2-D convolution layer like ``flax.linen.Conv`` (same parameter names and default
    initializers) built on :func:`conv2d`."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: tuple[tuple[int, int], tuple[int, int]] = VALID
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):  # [B, H, W, C_in] -> [B, H', W', features]
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, x.shape[-1], self.features),
        )
        y = conv2d(x, kernel, tuple(self.strides), tuple(map(tuple, self.padding)))
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
            y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
        return y


def max_pool(x, window: tuple[int, int] = (2, 2)):
    """Max-pooling over non-overlapping ``window`` blocks (stride = window, VALID: rows and
    columns past the last whole block are dropped), NHWC: [B, H, W, C] -> [B, H // wh,
    W // ww, C]. The values of ``flax.linen.max_pool(x, window, strides=window)``.

    Why not that function: its gradient is XLA's select-and-scatter, which runs on a slow
    path on XLA:CPU (most of LeNet-5's backward pass, measured in benchmarks/README.md).
    Here the gradient goes, as PyTorch's does, to the first maximum of each block in
    row-major order (a tie does not split it).
    """
    wh, ww = window
    h, w = (x.shape[1] // wh) * wh, (x.shape[2] // ww) * ww
    return _block_max(x[:, :h, :w, :], (wh, ww))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _block_max(x, window):
    return jnp.max(_blocks(x, window), axis=-1)


def _blocks(x, window):
    """[B, H, W, C] -> [B, H/wh, W/ww, C, wh*ww], each block's values in row-major order."""
    (b, h, w, c), (wh, ww) = x.shape, window
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(b, h // wh, w // ww, c, wh * ww)


def _block_max_fwd(x, window):
    return _block_max(x, window), x


def _block_max_bwd(window, x, g):
    (b, h, w, c), (wh, ww) = x.shape, window
    first = jnp.argmax(_blocks(x, window), axis=-1)  # the first maximum (NaN counts as one)
    hit = jnp.arange(wh * ww).reshape((1,) * first.ndim + (-1,)) == first[..., None]
    gx = jnp.where(hit, g[..., None], jnp.zeros((), g.dtype))
    gx = gx.reshape(b, h // wh, w // ww, c, wh, ww).transpose(0, 1, 4, 2, 5, 3)
    return (gx.reshape(b, h, w, c),)


_block_max.defvjp(_block_max_fwd, _block_max_bwd)
