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
JAX's own rule (the tests compare them); only the layouts XLA sees change. Grouped
convolutions (PyTorch's ``groups``) go through the same VJP; depthwise ones (one input
channel per group, MobileNetV2's) are written as sums of shifted slices instead, which
XLA:CPU runs far faster than its grouped convolution (:func:`conv2d`).
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


def conv2d(
    x, kernel, strides: tuple[int, int], padding: tuple[tuple[int, int], ...], groups: int = 1
):
    """NHWC x HWIO convolution with explicit padding ((top, bottom), (left, right)).

    Args:
      x: float32[B, H, W, C_in].
      kernel: float32[kh, kw, C_in // groups, C_out], PyTorch's ``(C_out, C_in // groups,
        kh, kw)`` weight transposed; output channels ``g * C_out // groups + o`` read the
        input channels of group ``g`` (PyTorch's and XLA's ``feature_group_count`` order).
      strides, padding: as PyTorch's ``stride`` and ``padding`` (padding >= 0).
      groups: PyTorch's ``groups``; ``groups == C_in`` with ``kernel.shape[2] == 1`` is a
        depthwise convolution (channel multiplier ``C_out // C_in``).

    Returns:
      float32[B, H', W', C_out].

    Why depthwise convolutions do not go through XLA's convolution: XLA:CPU runs one with
    ``feature_group_count == C_in`` on a slow generic path, forward and backward, while a
    sum of ``kh * kw`` shifted, strided slices times the kernel's rows is one fused
    elementwise loop (benchmarks/README.md, "The torchvision ImageNet models"). Its VJP is
    written the same way: the input-gradient a sum of taps of the dilated cotangent with
    the flipped kernel, the kernel-gradient ``kh * kw`` reductions.
    """
    if groups < 1 or x.shape[-1] % groups or kernel.shape[-1] % groups:
        raise ValueError(f"groups={groups} must divide C_in={x.shape[-1]} and C_out")
    if kernel.shape[2] * groups != x.shape[-1]:
        raise ValueError(
            f"kernel {kernel.shape} has {kernel.shape[2]} input channels per group; "
            f"C_in={x.shape[-1]} / groups={groups} wanted"
        )
    if groups > 1 and kernel.shape[2] == 1:
        return _depthwise(x, kernel, tuple(strides), tuple(map(tuple, padding)))
    return _conv2d(x, kernel, tuple(strides), tuple(map(tuple, padding)), groups)


def _depthwise(x, kernel, strides, padding):
    """Depthwise convolution: [B, H, W, C] x [kh, kw, 1, C * m] -> [B, H', W', C * m]."""
    mult = kernel.shape[-1] // x.shape[-1]
    if mult > 1:  # output channel c * m + o reads input channel c
        x = jnp.repeat(x, mult, axis=-1)
    return _depthwise_same_channels(x, kernel, strides, padding)


def _pad_hw(x, pads, interior=(0, 0)):
    """Zero padding of H and W (lax.pad: negative amounts crop; interior dilates)."""
    (t, b), (left, r) = pads
    zero = jnp.zeros((), x.dtype)
    return lax.pad(x, zero, ((0, 0, 0), (t, b, interior[0]), (left, r, interior[1]), (0, 0, 0)))


def _taps(xp, kh, kw, strides, out_hw):
    """The kh * kw strided windows of the padded input: (i, j, xp[:, i::sh, j::sw][:ho, :wo])."""
    (sh, sw), (ho, wo) = strides, out_hw
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw, :]


def _tap_sum(xp, kernel, strides, out_hw):
    """sum_{i, j} window(i, j) * kernel[i, j]: one fused elementwise loop in XLA."""
    out = None
    for i, j, tap in _taps(xp, kernel.shape[0], kernel.shape[1], strides, out_hw):
        term = tap * kernel[i, j][None, None]  # [B, ho, wo, C] * [1, 1, 1, C]
        out = term if out is None else out + term
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise_same_channels(x, kernel, strides, padding):
    xp = _pad_hw(x, padding)
    kh, kw = kernel.shape[:2]
    out_hw = ((xp.shape[1] - kh) // strides[0] + 1, (xp.shape[2] - kw) // strides[1] + 1)
    return _tap_sum(xp, kernel, strides, out_hw)


def _depthwise_fwd(x, kernel, strides, padding):
    return _depthwise_same_channels(x, kernel, strides, padding), (x, kernel)


def _depthwise_bwd(strides, padding, res, g):
    # JAX's own transpose of the strided slices is one padded tensor per tap, summed
    # afterwards; here the input-gradient is again a sum of taps (of the cotangent,
    # dilated by the stride and padded, with the flipped kernel), one fused loop.
    x, kernel = res
    kh, kw = kernel.shape[:2]
    pad = (
        _transposed_padding(kh, padding[0][0], x.shape[1], g.shape[1], strides[0]),
        _transposed_padding(kw, padding[1][0], x.shape[2], g.shape[2], strides[1]),
    )
    gp = _pad_hw(g, pad, (strides[0] - 1, strides[1] - 1))
    gx = _tap_sum(gp, jnp.flip(kernel, (0, 1)), (1, 1), x.shape[1:3])
    # dK[i, j, 0, c] = sum_{b, h, w} window(i, j)[b, h, w, c] g[b, h, w, c]
    taps = _taps(_pad_hw(x, padding), kh, kw, strides, g.shape[1:3])
    gk = jnp.stack([jnp.sum(tap * g, axis=(0, 1, 2)) for _, _, tap in taps])
    return gx, gk.reshape(kernel.shape)


_depthwise_same_channels.defvjp(_depthwise_fwd, _depthwise_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv2d(x, kernel, strides, padding, groups):
    return lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=_DN, feature_group_count=groups
    )


def _conv2d_fwd(x, kernel, strides, padding, groups):
    return _conv2d(x, kernel, strides, padding, groups), (x, kernel)


def _transposed_padding(k, pad_lo, n_in, n_out, stride):
    lo = k - 1 - pad_lo
    return lo, n_in + k - 1 - lo - ((n_out - 1) * stride + 1)


def _input_grad_by_col2im(x_shape, strides, groups) -> bool:
    """Whether :func:`_conv2d_bwd` takes dx by :func:`_col2im_input_grad`: ungrouped, and
    strided or with fewer than 8 input channels (benchmarks/bench_conv_input_grad.py)."""
    return groups == 1 and (tuple(strides) != (1, 1) or x_shape[-1] < 8)


def _col2im_input_grad(g, kernel, strides, padding, x_shape):
    """dx of an ungrouped convolution as one matrix product and a sum of taps ("col2im").

    dP[b, h, w, i, j, c] = sum_o g[b, h, w, o] K[i, j, c, o] (a [B*H'*W', O] x [O, kh*kw*C]
    product); x_pad[b, h*s + i, w*s + j, c] receives dP[b, h, w, i, j, c] (each tap placed
    by a strided pad, all taps one fused loop); the padding is cropped off.

    Why: the transposed convolution XLA:CPU runs otherwise convolves the cotangent dilated
    by the stride, s*s times the work in zeros, and with few input channels its output has
    few channels, on which its matrix tiles run mostly empty. In those two cases this form
    is the faster one; elsewhere the convolution is (benchmarks/README.md, "The
    input-gradient of a convolution").
    """
    kh, kw, cin, cout = kernel.shape
    b, ho, wo, _ = g.shape
    taps = jnp.dot(g.reshape(-1, cout), kernel.reshape(kh * kw * cin, cout).T)
    taps = taps.reshape(b, ho, wo, kh, kw, cin)
    (pt, pb), (pl, pr) = padding
    hp, wp = x_shape[1] + pt + pb, x_shape[2] + pl + pr
    sh, sw = strides
    out = None
    for i in range(kh):
        for j in range(kw):
            pads = ((i, hp - (i + (ho - 1) * sh + 1)), (j, wp - (j + (wo - 1) * sw + 1)))
            tap = _pad_hw(taps[:, :, :, i, j, :], pads, (sh - 1, sw - 1))
            out = tap if out is None else out + tap
    return out[:, pt : pt + x_shape[1], pl : pl + x_shape[2], :]


def _conv2d_bwd(strides, padding, groups, res, g):
    x, kernel = res
    kh, kw, cin_g, cout = kernel.shape
    if _input_grad_by_col2im(x.shape, strides, groups):
        gx = _col2im_input_grad(g, kernel, strides, padding, x.shape)
    else:
        # HWIO kernel of the transposed convolution: flipped, and in each group the input
        # and output channels swapped ([kh, kw, C_in/G, G, C_out/G] -> [kh, kw, C_out/G, G,
        # C_in/G]).
        flipped = jnp.flip(kernel, (0, 1)).reshape(kh, kw, cin_g, groups, cout // groups)
        flipped = flipped.transpose(0, 1, 4, 3, 2).reshape(kh, kw, cout // groups, groups * cin_g)
        pad = (
            _transposed_padding(kh, padding[0][0], x.shape[1], g.shape[1], strides[0]),
            _transposed_padding(kw, padding[1][0], x.shape[2], g.shape[2], strides[1]),
        )
        gx = lax.conv_general_dilated(
            g,
            flipped,
            (1, 1),
            pad,
            lhs_dilation=strides,
            dimension_numbers=_DN,
            feature_group_count=groups,
        )
    # dK[i, j, c, o] = sum_{b, h, w} x_pad[b, h*s + i, w*s + j, c] g[b, h, w, o]: a
    # convolution of x (channels as batch, images as features) with g as an HWIO kernel
    # dilated by the stride; rows that the forward pass never reached are sliced off. With
    # groups, the batch (x's channels) splits into G groups, each paired with its group of
    # output channels (batch_group_count, as JAX's own rule).
    gk = lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0),
        g.transpose(1, 2, 0, 3),
        (1, 1),
        padding,
        rhs_dilation=strides,
        dimension_numbers=_DN,
        batch_group_count=groups,
    )[:, :kh, :kw, :]
    return gx, gk.transpose(1, 2, 0, 3)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


class Conv(nn.Module):
    """A 2-D convolution layer like ``flax.linen.Conv`` (same parameter names and default
    initializers) built on :func:`conv2d`."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: tuple[tuple[int, int], tuple[int, int]] = VALID
    use_bias: bool = True
    feature_group_count: int = 1  # PyTorch's ``groups``; = C_in for a depthwise convolution

    @nn.compact
    def __call__(self, x):  # [B, H, W, C_in] -> [B, H', W', features]
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, x.shape[-1] // self.feature_group_count, self.features),
        )
        y = conv2d(
            x,
            kernel,
            tuple(self.strides),
            tuple(map(tuple, self.padding)),
            self.feature_group_count,
        )
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
