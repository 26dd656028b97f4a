"""VGG-16 and VGG-19 without BatchNorm (Simonyan & Zisserman 2015, configurations D and E),
in torchvision's ``vgg16``/``vgg19`` layout.

torchvision keeps the convolutions in one ``nn.Sequential`` called ``features``, in which
every 3x3 convolution (padding 1) is followed by a ReLU and every "M" of the configuration
is a ``MaxPool2d(2, 2)``; a parameter's key is its index in that sequence
(``features.0.weight``, ``features.2.weight``, ``features.5.weight``, ... : ReLUs and pools
take indices too). Then ``AdaptiveAvgPool2d((7, 7))``, an NCHW ``flatten`` and
``classifier`` = Linear(25088, 4096) [0], ReLU, Dropout, Linear(4096, 4096) [3], ReLU,
Dropout, Linear(4096, classes) [6]. Here the Flax names are those keys' module paths, the
flatten is NHWC, and the ModelSpec's ``nchw_flatten`` makes the port reorder the rows of
``classifier.0``. Dropout is off (eval).
"""

from __future__ import annotations

import flax.linen as nn

from sparsejax.models.common import PAD1, Conv, max_pool, normalize
from sparsejax.models.imagenet._layers import IMAGENET_MEAN, IMAGENET_STD, adaptive_avg_pool

# Channels of each 3x3 convolution; "M" a 2x2 max-pooling.
CONFIGS = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M")
    + (512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def feature_indices(config) -> list[int]:
    """Index in torchvision's ``features`` of each convolution of ``config``."""
    out, i = [], 0
    for v in config:
        if v == "M":
            i += 1
        else:
            out.append(i)
            i += 2  # the convolution and its ReLU
    return out


class VGG(nn.Module):
    """Logits of a VGG: float32[B, 224, 224, 3] in [0, 1] -> float32[B, num_classes]."""

    depth: int = 16
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x):
        x = normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        config = CONFIGS[self.depth]
        index = 0
        for v in config:
            if v == "M":
                x = max_pool(x, (2, 2))  # disjoint 2x2 blocks: the fast-gradient pool
                index += 1
            else:
                x = nn.relu(Conv(v, (3, 3), padding=PAD1, name=f"features.{index}")(x))
                index += 2
        x = adaptive_avg_pool(x, (7, 7))  # [B, 7, 7, 512]
        x = x.reshape(x.shape[0], -1)  # NHWC flatten; the port reorders classifier.0's rows
        x = nn.relu(nn.Dense(4096, name="classifier.0")(x))
        x = nn.relu(nn.Dense(4096, name="classifier.3")(x))
        return nn.Dense(self.num_classes, name="classifier.6")(x)
