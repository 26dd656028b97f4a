"""Layers the torchvision ImageNet architectures share: ImageNet normalization, BatchNorm in
eval mode, and pooling that matches PyTorch's to the pixel.

Pooling in these models, and where each one goes:

- non-overlapping max-pooling (VGG's 2x2 stride 2): :func:`sparsejax.models.common.max_pool`,
  whose gradient avoids XLA's select-and-scatter;
- overlapping max-pooling (ResNet's and DenseNet's 3x3 stride 2 padding 1, Inception's 3x3
  stride 2): :func:`max_pool_overlapping`;
- average pooling over non-overlapping blocks (DenseNet's transitions):
  :func:`avg_pool_blocks`; Inception's 3x3 stride 1 padding 1 with
  ``count_include_pad=True``: :func:`avg_pool_include_pad`;
- ``AdaptiveAvgPool2d``: :func:`adaptive_avg_pool` (VGG's 7x7) and a mean over H, W (1x1).

None of these torchvision models uses ``ceil_mode=True`` (GoogLeNet and SqueezeNet do), so
every output size here is PyTorch's floor((n + 2p - k) / s) + 1.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def batch_norm(name: str, eps: float = 1e-5) -> nn.BatchNorm:
    """``BatchNorm2d`` in eval mode: running statistics, PyTorch's ``eps`` (1e-5 by default;
    Inception-v3's BasicConv2d uses 1e-3). Variables ``scale``/``bias`` (``weight``/``bias``)
    and ``mean``/``var`` (``running_mean``/``running_var``)."""
    return nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=eps, name=name)


def max_pool_overlapping(x, window: int, stride: int, padding: int = 0):
    """PyTorch's ``MaxPool2d(window, stride, padding)`` (``ceil_mode=False``) on NHWC x:
    [B, H, W, C] -> [B, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, C].

    ``common.max_pool`` reshapes the image into disjoint blocks, which cannot express
    windows that overlap (k > s), so these go through ``lax.reduce_window`` (via
    ``flax.linen.max_pool``). Its padding is -inf, as PyTorch's: a padded pixel never wins,
    even where every real value in the window is negative.
    """
    pad = ((padding, padding), (padding, padding))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pad)


def avg_pool_include_pad(x, window: int, stride: int, padding: int):
    """PyTorch's ``avg_pool2d(x, window, stride, padding)`` with its default
    ``count_include_pad=True``: zero padding, and every window divided by ``window**2``
    (also at the border, where it covers padded pixels). NHWC in and out."""
    pad = ((padding, padding), (padding, padding))
    return nn.avg_pool(
        x, (window, window), strides=(stride, stride), padding=pad, count_include_pad=True
    )


def avg_pool_blocks(x, window: int):
    """``AvgPool2d(window, stride=window)``: the mean of each disjoint ``window x window``
    block; rows and columns past the last whole block are dropped, as PyTorch does.
    [B, H, W, C] -> [B, H // k, W // k, C]."""
    b, h, w, c = x.shape
    ho, wo = h // window, w // window
    x = x[:, : ho * window, : wo * window, :].reshape(b, ho, window, wo, window, c)
    return jnp.mean(x, axis=(2, 4))


def _adaptive_matrix(n: int, m: int) -> np.ndarray:
    """[m, n] averaging weights of PyTorch's adaptive pooling from n to m: output i averages
    inputs floor(i n / m) .. ceil((i + 1) n / m) - 1."""
    p = np.zeros((m, n), np.float32)
    for i in range(m):
        lo, hi = (i * n) // m, -((-(i + 1) * n) // m)
        p[i, lo:hi] = 1.0 / (hi - lo)
    return p


def adaptive_avg_pool(x, out_hw: tuple[int, int]):
    """``AdaptiveAvgPool2d(out_hw)`` on NHWC x: [B, H, W, C] -> [B, oh, ow, C]. The identity
    when the size already matches (VGG at 224x224: 7x7 in, 7x7 out)."""
    (oh, ow), (h, w) = out_hw, x.shape[1:3]
    if (h, w) == (oh, ow):
        return x
    ph, pw = jnp.asarray(_adaptive_matrix(h, oh)), jnp.asarray(_adaptive_matrix(w, ow))
    return jnp.einsum("bhwc,ih,jw->bijc", x, ph, pw)


def global_avg_pool(x):
    """``AdaptiveAvgPool2d((1, 1))`` + ``flatten(1)``: [B, H, W, C] -> [B, C]."""
    return jnp.mean(x, axis=(1, 2))
