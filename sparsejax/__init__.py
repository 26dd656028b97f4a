"""sparsejax: sparse (few-pixel, l0) adversarial attacks in JAX.

Images are float32 NHWC in pixel space [0, 1]; models carry their normalization inside a
pure ``logits_fn(x: [B, H, W, C]) -> [B, K]`` (SPEC §1). Attacks live in
:mod:`sparsejax.attacks`, all with one signature; :func:`sweep` runs one over any traced
config field in one call; :func:`evaluate` measures a model's robustness to k changed
pixels against several attacks (SPEC §6).
"""

from sparsejax import _xla

_xla.apply()  # before anything starts a JAX backend: XLA:CPU's convolutions (see _xla)

from sparsejax import attacks, data, models  # noqa: E402
from sparsejax.attacks.engine import sweep  # noqa: E402
from sparsejax.data import Dataset, load_dataset  # noqa: E402
from sparsejax.errors import (  # noqa: E402
    CheckpointError,
    DatasetUnavailableError,
    SparsejaxError,
    UnknownNameError,
)
from sparsejax.evaluation import evaluate  # noqa: E402
from sparsejax.models import Model, load  # noqa: E402

__version__ = "0.2.0.dev0"

__all__ = [
    "CheckpointError",
    "Dataset",
    "DatasetUnavailableError",
    "Model",
    "SparsejaxError",
    "UnknownNameError",
    "attacks",
    "data",
    "evaluate",
    "load",
    "load_dataset",
    "models",
    "sweep",
]
