"""Inception-v3 (Szegedy et al. 2016) in torchvision's ``inception_v3`` layout, as its
pretrained weights are used: ``transform_input=True``, evaluation mode.

Every convolution is a ``BasicConv2d``: ``{name}.conv`` (no bias), ``{name}.bn``
(BatchNorm, eps 0.001), ReLU. Stem: ``Conv2d_1a_3x3`` (32, stride 2), ``Conv2d_2a_3x3``
(32), ``Conv2d_2b_3x3`` (64, padding 1), max-pool 3x3 stride 2, ``Conv2d_3b_1x1`` (80),
``Conv2d_4a_3x3`` (192), max-pool 3x3 stride 2 (299 -> 149 -> 147 -> 73 -> 71 -> 35). Then
``Mixed_5b/5c/5d`` (InceptionA), ``Mixed_6a`` (InceptionB, 35 -> 17), ``Mixed_6b..6e``
(InceptionC), ``Mixed_7a`` (InceptionD, 17 -> 8), ``Mixed_7b/7c`` (InceptionE), global
average pool, ``fc`` (2048 -> classes; Dropout before it is off). Each block concatenates
its branches along the channels in torchvision's order (the order of the ``outputs`` list
in each block's ``_forward``). The average-pool branches pool 3x3 stride 1 padding 1 with
``count_include_pad=True`` (a border window is divided by 9).

``AuxLogits.*``: torchvision's auxiliary classifier runs only in training mode; the
evaluation logits never touch it, so the ModelSpec lists it in ``ignored_keys`` and the
port drops those keys.

Normalization. torchvision's eval preprocessing feeds ``x = (u - m) / s`` (ImageNet mean
m, std s, u in [0, 1]); ``transform_input`` then maps each channel to
``x * s / 0.5 + (m - 0.5) / 0.5 = (u - 0.5) / 0.5``: the network sees ``2u - 1``, the
normalization of Google's original checkpoint. That is what :class:`InceptionV3` applies to
its [0, 1] inputs: mean 0.5 and std 0.5 in every channel.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sparsejax.models.common import Conv, normalize
from sparsejax.models.imagenet._layers import (
    avg_pool_include_pad,
    batch_norm,
    global_avg_pool,
    max_pool_overlapping,
)

TRANSFORMED_MEAN = (0.5, 0.5, 0.5)
TRANSFORMED_STD = (0.5, 0.5, 0.5)


class BasicConv2d(nn.Module):
    """``conv`` (no bias) + ``bn`` (eps 0.001) + ReLU; kernel and padding as (h, w)."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        (ph, pw), s = self.padding, self.stride
        x = Conv(
            self.features,
            self.kernel,
            (s, s),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            name="conv",
        )(x)
        return nn.relu(batch_norm("bn", eps=1e-3)(x))


def _bc(features, name, kernel=(1, 1), stride=1, padding=(0, 0)):
    return BasicConv2d(features, kernel, stride, padding, name=name)


def _pool_branch(x, features):
    """The average-pool branch of blocks A, C, E: 3x3 / 1 / 1, border windows over 9."""
    return _bc(features, "branch_pool")(avg_pool_include_pad(x, 3, 1, 1))


class InceptionA(nn.Module):
    """[B, 35, 35, C] -> [B, 35, 35, 224 + pool_features]."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = _bc(64, "branch1x1")(x)
        b5 = _bc(48, "branch5x5_1")(x)
        b5 = _bc(64, "branch5x5_2", (5, 5), padding=(2, 2))(b5)
        b3 = _bc(64, "branch3x3dbl_1")(x)
        b3 = _bc(96, "branch3x3dbl_2", (3, 3), padding=(1, 1))(b3)
        b3 = _bc(96, "branch3x3dbl_3", (3, 3), padding=(1, 1))(b3)
        bp = _pool_branch(x, self.pool_features)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """[B, 35, 35, C] -> [B, 17, 17, 480 + C] (grid reduction)."""

    @nn.compact
    def __call__(self, x):
        b3 = _bc(384, "branch3x3", (3, 3), stride=2)(x)
        bd = _bc(64, "branch3x3dbl_1")(x)
        bd = _bc(96, "branch3x3dbl_2", (3, 3), padding=(1, 1))(bd)
        bd = _bc(96, "branch3x3dbl_3", (3, 3), stride=2)(bd)
        bp = max_pool_overlapping(x, 3, 2)
        return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
    """[B, 17, 17, 768] -> [B, 17, 17, 768] (factorized 7x7 convolutions)."""

    c7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.c7
        b1 = _bc(192, "branch1x1")(x)
        b7 = _bc(c7, "branch7x7_1")(x)
        b7 = _bc(c7, "branch7x7_2", (1, 7), padding=(0, 3))(b7)
        b7 = _bc(192, "branch7x7_3", (7, 1), padding=(3, 0))(b7)
        bd = _bc(c7, "branch7x7dbl_1")(x)
        bd = _bc(c7, "branch7x7dbl_2", (7, 1), padding=(3, 0))(bd)
        bd = _bc(c7, "branch7x7dbl_3", (1, 7), padding=(0, 3))(bd)
        bd = _bc(c7, "branch7x7dbl_4", (7, 1), padding=(3, 0))(bd)
        bd = _bc(192, "branch7x7dbl_5", (1, 7), padding=(0, 3))(bd)
        bp = _pool_branch(x, 192)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """[B, 17, 17, 768] -> [B, 8, 8, 1280] (grid reduction)."""

    @nn.compact
    def __call__(self, x):
        b3 = _bc(192, "branch3x3_1")(x)
        b3 = _bc(320, "branch3x3_2", (3, 3), stride=2)(b3)
        b7 = _bc(192, "branch7x7x3_1")(x)
        b7 = _bc(192, "branch7x7x3_2", (1, 7), padding=(0, 3))(b7)
        b7 = _bc(192, "branch7x7x3_3", (7, 1), padding=(3, 0))(b7)
        b7 = _bc(192, "branch7x7x3_4", (3, 3), stride=2)(b7)
        bp = max_pool_overlapping(x, 3, 2)
        return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
    """[B, 8, 8, C] -> [B, 8, 8, 2048] (expanded filter banks)."""

    @nn.compact
    def __call__(self, x):
        b1 = _bc(320, "branch1x1")(x)
        b3 = _bc(384, "branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                _bc(384, "branch3x3_2a", (1, 3), padding=(0, 1))(b3),
                _bc(384, "branch3x3_2b", (3, 1), padding=(1, 0))(b3),
            ],
            axis=-1,
        )
        bd = _bc(448, "branch3x3dbl_1")(x)
        bd = _bc(384, "branch3x3dbl_2", (3, 3), padding=(1, 1))(bd)
        bd = jnp.concatenate(
            [
                _bc(384, "branch3x3dbl_3a", (1, 3), padding=(0, 1))(bd),
                _bc(384, "branch3x3dbl_3b", (3, 1), padding=(1, 0))(bd),
            ],
            axis=-1,
        )
        bp = _pool_branch(x, 192)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """Logits of torchvision's Inception-v3 (``transform_input=True``, eval):
    float32[B, 299, 299, 3] in [0, 1] -> float32[B, num_classes]."""

    num_classes: int = 1000

    @nn.compact
    def __call__(self, x):
        x = normalize(x, TRANSFORMED_MEAN, TRANSFORMED_STD)  # 2u - 1: see the module docstring
        x = _bc(32, "Conv2d_1a_3x3", (3, 3), stride=2)(x)  # [B, 149, 149, 32]
        x = _bc(32, "Conv2d_2a_3x3", (3, 3))(x)  # [B, 147, 147, 32]
        x = _bc(64, "Conv2d_2b_3x3", (3, 3), padding=(1, 1))(x)  # [B, 147, 147, 64]
        x = max_pool_overlapping(x, 3, 2)  # [B, 73, 73, 64]
        x = _bc(80, "Conv2d_3b_1x1")(x)
        x = _bc(192, "Conv2d_4a_3x3", (3, 3))(x)  # [B, 71, 71, 192]
        x = max_pool_overlapping(x, 3, 2)  # [B, 35, 35, 192]
        x = InceptionA(32, name="Mixed_5b")(x)  # [B, 35, 35, 256]
        x = InceptionA(64, name="Mixed_5c")(x)  # [B, 35, 35, 288]
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)  # [B, 17, 17, 768]
        for name, c7 in (
            ("Mixed_6b", 128),
            ("Mixed_6c", 160),
            ("Mixed_6d", 160),
            ("Mixed_6e", 192),
        ):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)  # [B, 8, 8, 1280]
        x = InceptionE(name="Mixed_7b")(x)  # [B, 8, 8, 2048]
        x = InceptionE(name="Mixed_7c")(x)
        return nn.Dense(self.num_classes, name="fc")(global_avg_pool(x))
