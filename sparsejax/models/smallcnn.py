"""The Carlini-Wagner MNIST network in the layout of the public TRADES checkpoints (SPEC §4).

feature_extractor: conv1 (32) -> ReLU -> conv2 (32) -> ReLU -> maxpool 2 -> conv3 (64) ->
ReLU -> conv4 (64) -> ReLU -> maxpool 2 (all 3x3, no padding); classifier: fc1 (200) ->
ReLU -> [dropout, inactive at inference] -> fc2 (200) -> ReLU -> fc3 (classes).
"""

from __future__ import annotations

import flax.linen as nn

from sparsejax.models.common import VALID, Conv, max_pool, normalize


class SmallCNN(nn.Module):
    num_classes: int = 10
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @nn.compact
    def __call__(self, x):  # x: float32[B, 28, 28, 1] in [0, 1]
        x = normalize(x, self.mean, self.std)
        conv = lambda c, name: Conv(c, (3, 3), padding=VALID, name=name)
        x = nn.relu(conv(32, "feature_extractor.conv1")(x))
        x = nn.relu(conv(32, "feature_extractor.conv2")(x))
        x = max_pool(x, (2, 2))
        x = nn.relu(conv(64, "feature_extractor.conv3")(x))
        x = nn.relu(conv(64, "feature_extractor.conv4")(x))
        x = max_pool(x, (2, 2))
        x = x.reshape(x.shape[0], -1)  # [B, 4 * 4 * 64], NHWC order
        x = nn.relu(nn.Dense(200, name="classifier.fc1")(x))
        x = nn.relu(nn.Dense(200, name="classifier.fc2")(x))
        return nn.Dense(self.num_classes, name="classifier.fc3")(x)  # [B, K]
