"""Models by name (SPEC §4) and :func:`load`, which returns a :class:`Model`."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.errors import CheckpointError, UnknownNameError
from sparsejax.models import checkpoint
from sparsejax.models.lenet import LeNet5
from sparsejax.models.resnet_cifar import CifarResNet
from sparsejax.models.smallcnn import SmallCNN


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """An architecture under a name.

    Attributes:
      name: registry name, e.g. ``resnet20-cifar10``.
      module: the Flax Linen module (one instance per name, so that jitted functions that
        take ``Partial(module.apply, variables)`` are reused when only the weights change).
      input_shape: (H, W, C) of one image.
      num_classes: number of logits.
      nchw_flatten: (PyTorch module path, (C, H, W)) of each dense layer that follows a
        PyTorch NCHW flatten, for the porting step.
      description: one line for ``sparsejax models``.
    """

    name: str
    module: nn.Module
    input_shape: tuple[int, int, int]
    num_classes: int
    nchw_flatten: tuple[tuple[str, tuple[int, int, int]], ...] = ()
    description: str = ""

    def init(self, key: jax.Array) -> Any:
        return self.module.init(key, jnp.zeros((1,) + self.input_shape, jnp.float32))

    def variable_shapes(self) -> Any:
        return jax.eval_shape(self.init, jax.random.key(0))


def _resnet(depth: int) -> ModelSpec:
    n = (depth - 2) // 6
    return ModelSpec(
        f"resnet{depth}-cifar10",
        CifarResNet(blocks_per_stage=n),
        (32, 32, 3),
        10,
        description=f"CIFAR ResNet-{depth} (He et al.), option-A shortcuts, "
        "ImageNet mean/std inside",
    )


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec(
            "lenet5-mnist",
            LeNet5(),
            (28, 28, 1),
            10,
            (("linear1", (64, 7, 7)),),
            "advertorch LeNet-5 (conv32-conv64-fc200-fc10), MNIST",
        ),
        ModelSpec(
            "lenet5-digits",
            LeNet5(),
            (8, 8, 1),
            10,
            (("linear1", (64, 2, 2)),),
            "the same LeNet-5 on scikit-learn's 8x8 digits (embedded default)",
        ),
        ModelSpec(
            "smallcnn-mnist",
            SmallCNN(),
            (28, 28, 1),
            10,
            (("classifier.fc1", (64, 4, 4)),),
            "Carlini-Wagner 4-conv/3-dense net, TRADES layout, MNIST",
        ),
        *[_resnet(d) for d in (20, 32, 44, 56, 110)],
    ]
}


def model_names() -> list[str]:
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown model {name!r}; known: {', '.join(model_names())}"
        ) from None


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A classifier ready for attacks.

    Attributes:
      spec: the architecture.
      variables: Flax variables (``params`` and, with BatchNorm, ``batch_stats``).
      weights: where the variables came from (a path, or ``random-init(seed)``).
      bounds: pixel bounds of the inputs (normalization is inside the model).
    """

    spec: ModelSpec
    variables: Any
    weights: str
    bounds: tuple[float, float] = (0.0, 1.0)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def logits_fn(self) -> Callable[[jax.Array], jax.Array]:
        """Pure ``x: float32[B, H, W, C] in [0, 1] -> float32[B, K]``, a pytree (no retrace
        when only the weights change)."""
        return jax.tree_util.Partial(self.spec.module.apply, self.variables)

    def predict(self, x: np.ndarray, batch_size: int = 500, progress: bool = False) -> np.ndarray:
        """Logits of ``x`` (float32[N, H, W, C] in [0, 1]) in padded fixed-size batches."""
        from sparsejax.validation import check_images

        check_images(x, self)
        return _batched_logits(self.logits_fn, np.asarray(x), batch_size, progress)


@functools.cache
def _jitted_apply():
    return jax.jit(lambda f, x: f(x))


def _batched_logits(logits_fn, x: np.ndarray, batch_size: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    n = x.shape[0]
    bs = min(batch_size, n)
    out = []
    apply = _jitted_apply()
    for start in tqdm(range(0, n, bs), desc="eval", unit="batch", disable=not progress):
        xb = x[start : start + bs]
        pad = bs - xb.shape[0]  # pad the last batch instead of dropping or recompiling
        if pad:
            xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
        out.append(np.asarray(apply(logits_fn, xb))[: bs - pad])
    return np.concatenate(out)


def create(name: str, seed: int = 0) -> Model:
    """A model with random (untrained) weights, for tests and training."""
    spec = get_spec(name)
    return Model(spec, spec.init(jax.random.key(seed)), weights=f"random-init(seed={seed})")


def load(name: str, weights: str | os.PathLike) -> Model:
    """Loads ``name`` with weights from a PyTorch checkpoint or a sparsejax Flax checkpoint.

    Everything is checked before any compilation: the name, the path, the file format and
    the fit of every tensor to the architecture (missing, unexpected and mis-shaped keys
    are listed).
    """
    spec = get_spec(name)
    path = Path(weights)
    if not path.exists():
        raise CheckpointError(f"weights file {path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"weights file {path}: not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file {path}: empty file")
    kind = checkpoint.sniff(path)
    if kind != "torch" and path.suffix in (".pt", ".pth", ".th"):
        raise CheckpointError(
            f"weights file {path}: not a PyTorch checkpoint (neither a zip archive nor a "
            "pickle), though named like one"
        )
    if kind == "torch":
        from sparsejax.models.port import port_checkpoint

        variables = port_checkpoint(path, spec)
    else:
        ckpt_model, variables, _meta = checkpoint.read(path)
        if ckpt_model != name:
            raise CheckpointError(
                f"weights file {path} holds a {ckpt_model!r} checkpoint, not {name!r}"
            )
        checkpoint.check_tree(spec.variable_shapes(), variables, f"weights file {path}")
    checkpoint.check_finite(variables, f"weights file {path}")
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables)
    return Model(spec, variables, weights=str(path))
