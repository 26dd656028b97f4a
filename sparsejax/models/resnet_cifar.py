"""CIFAR ResNets of He et al. (2016, §4.2) in the layout of ``resnet20-12fca82f.th`` (SPEC §4).

3x3 conv (16) + BN + ReLU, three stages of ``n`` basic blocks (16, 32, 64 channels; stride 2
at the start of stages 2 and 3), option-A shortcuts (subsample by 2 and zero-pad the
channels), global average pool, linear (classes). Depth = 6n + 2: ResNet-20/32/44/56/110.
BatchNorm always uses its running statistics: the models here are for inference only.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sparsejax.models.common import PAD1, Conv, normalize

# The normalization of the pytorch_resnet_cifar10 checkpoints (Idelbayev).
CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)


def _bn(name):
    return nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5, name=name)


class BasicBlock(nn.Module):
    planes: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):  # x: [B, H, W, C_in]
        out = Conv(
            self.planes,
            (3, 3),
            (self.stride, self.stride),
            padding=PAD1,
            use_bias=False,
            name="conv1",
        )(x)
        out = nn.relu(_bn("bn1")(out))
        out = Conv(self.planes, (3, 3), padding=PAD1, use_bias=False, name="conv2")(out)
        out = _bn("bn2")(out)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.planes:
            # Option A: x[:, ::2, ::2] and planes//4 zero channels on each side (identity weights).
            pad = self.planes // 4
            shortcut = jnp.pad(x[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (pad, pad)))
        return nn.relu(out + shortcut)


class CifarResNet(nn.Module):
    """Logits of a CIFAR ResNet with ``blocks_per_stage`` basic blocks per stage."""

    blocks_per_stage: int = 3
    num_classes: int = 10
    mean: tuple[float, ...] | None = CIFAR_MEAN
    std: tuple[float, ...] | None = CIFAR_STD

    @nn.compact
    def __call__(self, x):  # x: float32[B, 32, 32, 3] in [0, 1]
        x = normalize(x, self.mean, self.std)
        x = Conv(16, (3, 3), padding=PAD1, use_bias=False, name="conv1")(x)
        x = nn.relu(_bn("bn1")(x))
        for stage, planes in enumerate((16, 32, 64), start=1):
            for i in range(self.blocks_per_stage):
                stride = 2 if (stage > 1 and i == 0) else 1
                x = BasicBlock(planes, stride, name=f"layer{stage}.{i}")(x)
        x = jnp.mean(x, axis=(1, 2))  # global average pool -> [B, 64]
        return nn.Dense(self.num_classes, name="linear")(x)  # [B, K]
