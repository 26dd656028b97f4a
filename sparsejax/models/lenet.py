"""LeNet-5 in the advertorch layout (the shared MNIST checkpoints; SPEC §4).

conv1 (32, 3x3, pad 1) -> ReLU -> maxpool 2 -> conv2 (64, 3x3, pad 1) -> ReLU -> maxpool 2
-> flatten -> linear1 (200) -> ReLU -> linear2 (classes). No input normalization.
The same module on 8x8 inputs is the project's embedded default model (``lenet5-digits``).
"""

from __future__ import annotations

import flax.linen as nn

from sparsejax.models.common import PAD1, Conv, max_pool, normalize


class LeNet5(nn.Module):
    """Logits of the advertorch LeNet-5.

    Attributes:
      num_classes: number of output logits.
      mean, std: optional per-channel normalization applied inside the model.
    """

    num_classes: int = 10
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @nn.compact
    def __call__(self, x):  # x: float32[B, H, W, 1] in [0, 1]
        x = normalize(x, self.mean, self.std)
        x = nn.relu(Conv(32, (3, 3), padding=PAD1, name="conv1")(x))
        x = max_pool(x, (2, 2))
        x = nn.relu(Conv(64, (3, 3), padding=PAD1, name="conv2")(x))
        x = max_pool(x, (2, 2))
        x = x.reshape(x.shape[0], -1)  # [B, H/4 * W/4 * 64], NHWC order
        x = nn.relu(nn.Dense(200, name="linear1")(x))
        return nn.Dense(self.num_classes, name="linear2")(x)  # [B, K]
