"""DenseNet-161 (Huang et al. 2017; growth 48, blocks (6, 12, 36, 24), 96 initial features,
bottleneck width 4 x growth) in torchvision's ``densenet161`` layout.

``features`` holds: ``conv0`` 7x7 stride 2 padding 3, ``norm0``, ReLU, ``pool0`` (max 3x3
stride 2 padding 1); dense blocks ``denseblock{1..4}`` of layers ``denselayer{1..n}``, each
``norm1``, ReLU, ``conv1`` 1x1 (bn_size x growth), ``norm2``, ReLU, ``conv2`` 3x3 padding 1
(growth) applied to the concatenation of the block's input and every earlier layer's output,
in that order along the channels (torchvision's ``torch.cat(features, 1)``); between blocks
``transition{1..3}``: ``norm``, ReLU, ``conv`` 1x1 (half the channels), average pool 2x2;
and ``norm5``. Then ReLU, global average pool and ``classifier``. Convolutions have no bias;
BatchNorm eps 1e-5 with running statistics. NHWC here, so the concatenation is on the last
axis, in torchvision's order, which keeps the port's row order of each ``conv1`` right.

Flax names are the key paths (``features.denseblock1.denselayer1.norm1``); torchvision's
pre-0.3 checkpoints spelled these ``norm.1``, which its own loader renames before loading:
do the same before porting such a file.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sparsejax.models.common import PAD1, VALID, Conv, normalize
from sparsejax.models.imagenet._layers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    avg_pool_blocks,
    batch_norm,
    global_avg_pool,
    max_pool_overlapping,
)


class DenseLayer(nn.Module):
    """[B, H, W, C] (the concatenation so far) -> [B, H, W, growth] (new features)."""

    growth: int
    bn_size: int

    @nn.compact
    def __call__(self, x):
        y = nn.relu(batch_norm("norm1")(x))
        y = Conv(self.bn_size * self.growth, (1, 1), padding=VALID, use_bias=False, name="conv1")(y)
        y = nn.relu(batch_norm("norm2")(y))
        return Conv(self.growth, (3, 3), padding=PAD1, use_bias=False, name="conv2")(y)


class DenseNet(nn.Module):
    """Logits of a torchvision DenseNet: float32[B, 224, 224, 3] in [0, 1] -> [B, classes]."""

    growth: int = 48
    blocks: tuple[int, ...] = (6, 12, 36, 24)
    init_features: int = 96
    bn_size: int = 4
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x):
        x = normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        x = Conv(
            self.init_features,
            (7, 7),
            (2, 2),
            padding=((3, 3), (3, 3)),
            use_bias=False,
            name="features.conv0",
        )(x)
        x = nn.relu(batch_norm("features.norm0")(x))  # [B, 112, 112, 96]
        x = max_pool_overlapping(x, 3, 2, 1)  # [B, 56, 56, 96]
        for b, n in enumerate(self.blocks, 1):
            for i in range(1, n + 1):
                new = DenseLayer(
                    self.growth, self.bn_size, name=f"features.denseblock{b}.denselayer{i}"
                )(x)
                x = jnp.concatenate([x, new], axis=-1)  # [B, H, W, C + growth]
            if b < len(self.blocks):  # transition: BN, ReLU, 1x1 conv to half, 2x2 avg pool
                t = f"features.transition{b}"
                x = nn.relu(batch_norm(f"{t}.norm")(x))
                width = x.shape[-1] // 2
                x = Conv(width, (1, 1), padding=VALID, use_bias=False, name=f"{t}.conv")(x)
                x = avg_pool_blocks(x, 2)  # H, W halved
        x = nn.relu(batch_norm("features.norm5")(x))  # [B, 7, 7, 2208]
        return nn.Dense(self.num_classes, name="classifier")(global_avg_pool(x))
