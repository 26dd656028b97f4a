"""MobileNetV2 (Sandler et al. 2018, width 1.0) in torchvision's ``mobilenet_v2`` layout.

``features.0``: 3x3 stride 2 conv (32) [``.0``] + BatchNorm [``.1``] + ReLU6. Then 17
inverted residual blocks ``features.1`` .. ``features.17`` from the settings (expansion t,
channels c, repeats n, first stride s): (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
(6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1). A block is the sequence
``conv``: with t > 1 a 1x1 expansion to ``round(c_in * t)`` channels (``conv.0.0`` conv,
``conv.0.1`` BN, ReLU6); a 3x3 depthwise conv (groups = channels, the block's stride,
padding 1) + BN + ReLU6 (``conv.{1,0}.{0,1}``, the index shifted down without the
expansion); a 1x1 linear projection (``conv.{2,1}``) and its BN (``conv.{3,2}``). A block
adds its input where the stride is 1 and the channels do not change. ``features.18``: 1x1
conv to 1280 + BN + ReLU6; global average pool; ``classifier.1`` Linear (``classifier.0`` is
Dropout, off here). Convolutions have no bias; BatchNorm eps 1e-5, running statistics.

The depthwise convolutions are :class:`sparsejax.models.common.Conv` with
``feature_group_count = channels``, which runs them as sums of shifted slices
(:func:`sparsejax.models.common.conv2d`).
"""

from __future__ import annotations

import flax.linen as nn

from sparsejax.models.common import VALID, Conv, normalize
from sparsejax.models.imagenet._layers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    batch_norm,
    global_avg_pool,
)

SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
SETTINGS += ((6, 160, 3, 2), (6, 320, 1, 1))


class ConvBNReLU6(nn.Module):
    """torchvision's ``Conv2dNormActivation(..., activation_layer=ReLU6)``: ``0`` conv
    (padding (k - 1) // 2, no bias), ``1`` BatchNorm, ReLU6."""

    features: int
    kernel: int = 3
    stride: int = 1
    groups: int = 1

    @nn.compact
    def __call__(self, x):
        p = (self.kernel - 1) // 2
        x = Conv(
            self.features,
            (self.kernel, self.kernel),
            (self.stride, self.stride),
            padding=((p, p), (p, p)),
            use_bias=False,
            feature_group_count=self.groups,
            name="0",
        )(x)
        return nn.relu6(batch_norm("1")(x))


class InvertedResidual(nn.Module):
    """[B, H, W, C_in] -> [B, H / stride, W / stride, out]."""

    out: int
    stride: int
    expand: int

    @nn.compact
    def __call__(self, x):
        c_in = x.shape[-1]
        hidden = int(round(c_in * self.expand))
        y, i = x, 0
        if self.expand != 1:
            y = ConvBNReLU6(hidden, 1, name="conv.0")(y)  # pointwise expansion
            i = 1
        y = ConvBNReLU6(hidden, 3, self.stride, groups=hidden, name=f"conv.{i}")(y)  # depthwise
        y = Conv(self.out, (1, 1), padding=VALID, use_bias=False, name=f"conv.{i + 1}")(y)
        y = batch_norm(f"conv.{i + 2}")(y)  # linear bottleneck: no activation
        if self.stride == 1 and c_in == self.out:
            return x + y
        return y


class MobileNetV2(nn.Module):
    """Logits of torchvision's MobileNetV2: float32[B, 224, 224, 3] in [0, 1] -> [B, classes]."""

    num_classes: int = 1000

    @nn.compact
    def __call__(self, x):
        x = normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        x = ConvBNReLU6(32, 3, 2, name="features.0")(x)  # [B, 112, 112, 32]
        index = 1
        for t, c, n, s in SETTINGS:
            for i in range(n):
                x = InvertedResidual(c, s if i == 0 else 1, t, name=f"features.{index}")(x)
                index += 1
        x = ConvBNReLU6(1280, 1, name=f"features.{index}")(x)  # [B, 7, 7, 1280]
        return nn.Dense(self.num_classes, name="classifier.1")(global_avg_pool(x))
