"""sparsejax: sparse (few-pixel, l0) adversarial attacks in JAX.

Images are float32 NHWC in pixel space [0, 1]; models carry their normalization inside a
pure ``logits_fn(x: [B, H, W, C]) -> [B, K]`` (SPEC §1).
"""

from sparsejax import data, models
from sparsejax.data import Dataset, load_dataset
from sparsejax.errors import (
    CheckpointError,
    DatasetUnavailableError,
    SparsejaxError,
    UnknownNameError,
)
from sparsejax.models import Model, load

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Dataset",
    "DatasetUnavailableError",
    "Model",
    "SparsejaxError",
    "UnknownNameError",
    "data",
    "load",
    "load_dataset",
    "models",
]
