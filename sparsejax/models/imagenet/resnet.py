"""ResNet-18/50/101/152 (He et al. 2016) in torchvision's ``resnet*`` layout.

Stem: ``conv1`` 7x7 stride 2 padding 3 (no bias), ``bn1``, ReLU, ``maxpool`` 3x3 stride 2
padding 1. Four stages ``layer1`` .. ``layer4`` (64, 128, 256, 512 planes; stride 2 at the
first block of stages 2-4) of blocks ``layer{s}.{i}``:

- ``BasicBlock`` (ResNet-18): ``conv1`` 3x3 (stride), ``bn1``, ReLU, ``conv2`` 3x3, ``bn2``;
- ``Bottleneck`` (ResNet-50/101/152, torchvision's "v1.5": the stride sits on the 3x3):
  ``conv1`` 1x1, ``bn1``, ``conv2`` 3x3 (stride), ``bn2``, ``conv3`` 1x1 (4x planes),
  ``bn3``;

each adding a shortcut, then ReLU; the shortcut is ``downsample.0`` (1x1 conv, stride) +
``downsample.1`` (BatchNorm) where the stride or the width changes, the identity otherwise.
Global average pool and ``fc``. All convolutions are bias-free; BatchNorm eps 1e-5, running
statistics.
"""

from __future__ import annotations

import flax.linen as nn

from sparsejax.models.common import VALID, Conv, normalize
from sparsejax.models.imagenet._layers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    batch_norm,
    global_avg_pool,
    max_pool_overlapping,
)

# depth -> (block kind, blocks per stage)
CONFIGS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _conv(features, k, stride, name):
    pad = ((k // 2, k // 2), (k // 2, k // 2)) if k > 1 else VALID
    return Conv(features, (k, k), (stride, stride), padding=pad, use_bias=False, name=name)


class BasicBlock(nn.Module):
    planes: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):  # [B, H, W, C_in] -> [B, H / stride, W / stride, planes]
        out = nn.relu(batch_norm("bn1")(_conv(self.planes, 3, self.stride, "conv1")(x)))
        out = batch_norm("bn2")(_conv(self.planes, 3, 1, "conv2")(out))
        return nn.relu(out + _shortcut(self, x, self.planes))


class Bottleneck(nn.Module):
    planes: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):  # [B, H, W, C_in] -> [B, H / stride, W / stride, 4 planes]
        out = nn.relu(batch_norm("bn1")(_conv(self.planes, 1, 1, "conv1")(x)))
        out = nn.relu(batch_norm("bn2")(_conv(self.planes, 3, self.stride, "conv2")(out)))
        out = batch_norm("bn3")(_conv(4 * self.planes, 1, 1, "conv3")(out))
        return nn.relu(out + _shortcut(self, x, 4 * self.planes))


def _shortcut(block: nn.Module, x, width: int):
    """The identity, or ``downsample`` (1x1 conv with the block's stride + BN) where the
    stride or the width changes. Called inside the block's compact ``__call__``, so the two
    layers become the block's submodules."""
    if block.stride == 1 and x.shape[-1] == width:
        return x
    return batch_norm("downsample.1")(_conv(width, 1, block.stride, "downsample.0")(x))


class ResNet(nn.Module):
    """Logits of a torchvision ResNet: float32[B, 224, 224, 3] in [0, 1] -> [B, classes]."""

    depth: int = 50
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x):
        kind, blocks = CONFIGS[self.depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        x = normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        x = Conv(64, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False, name="conv1")(x)
        x = nn.relu(batch_norm("bn1")(x))  # [B, 112, 112, 64]
        x = max_pool_overlapping(x, 3, 2, 1)  # [B, 56, 56, 64]
        for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
            for i in range(n):
                stride = 2 if (stage > 1 and i == 0) else 1
                x = block(planes, stride, name=f"layer{stage}.{i}")(x)
        x = global_avg_pool(x)  # [B, 512] (basic) or [B, 2048] (bottleneck)
        return nn.Dense(self.num_classes, name="fc")(x)
