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
from sparsejax.models import checkpoint, imagenet
from sparsejax.models.lenet import LeNet5
from sparsejax.models.resnet_cifar import CifarResNet
from sparsejax.models.smallcnn import SmallCNN
from sparsejax.models.tflite_mobilenet import TFLiteMobileNetV2, load_tflite


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
      preprocessing: how a dataset's images are brought to ``input_shape`` for this model
        (a name in ``sparsejax.data.PREPROCESSING``; None: the images must already have
        that shape). The model chooses it, so the command line never has to be told.
      ignored_keys: prefixes of checkpoint keys the port drops on purpose (e.g. Inception-v3's
        ``AuxLogits.``, unused at evaluation), each with its reason in the module.
      weights_format: the weights file :func:`load` reads: ``"torch"`` (a PyTorch state
        dict, ported, or a sparsejax Flax checkpoint) or ``"tflite"`` (a TFLite flatbuffer
        read by the module's own loader, and nothing else).
    """

    name: str
    module: nn.Module
    input_shape: tuple[int, int, int]
    num_classes: int
    nchw_flatten: tuple[tuple[str, tuple[int, int, int]], ...] = ()
    description: str = ""
    preprocessing: str | None = None
    ignored_keys: tuple[str, ...] = ()
    weights_format: str = "torch"

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


def _torchvision_specs() -> list[ModelSpec]:
    """torchvision's ImageNet classifiers under torchvision's names and state-dict layout
    (sparsejax/models/imagenet/), each with the preprocessing of torchvision's eval
    transforms: resize the short side to 256 and crop 224 (342 and 299 for Inception-v3)."""

    def spec(name, module, description, side=224, **kw):
        pre = "torchvision-256-224" if side == 224 else "torchvision-342-299"
        return ModelSpec(
            name, module, (side, side, 3), 1000, description=description, preprocessing=pre, **kw
        )

    resnets = {18: "basic blocks", 50: "bottlenecks", 101: "bottlenecks", 152: "bottlenecks"}
    return [
        *[
            spec(
                f"vgg{d}",
                imagenet.VGG(depth=d),
                f"torchvision VGG-{d} (no BatchNorm), ImageNet, mean/std inside",
                nchw_flatten=(("classifier.0", (512, 7, 7)),),
            )
            for d in (16, 19)
        ],
        *[
            spec(
                f"resnet{d}",
                imagenet.ResNet(depth=d),
                f"torchvision ResNet-{d} ({kind}), ImageNet, mean/std inside",
            )
            for d, kind in resnets.items()
        ],
        spec(
            "densenet161",
            imagenet.DenseNet(),
            "torchvision DenseNet-161 (growth 48), ImageNet, mean/std inside",
        ),
        spec(
            "inception_v3",
            imagenet.InceptionV3(),
            "torchvision Inception-v3 (transform_input=True: 2u - 1 inside), ImageNet, 299x299",
            side=299,
            # The auxiliary classifier runs only in training (see imagenet/inception.py).
            ignored_keys=("AuxLogits.",),
        ),
        spec(
            "mobilenet_v2",
            imagenet.MobileNetV2(),
            "torchvision MobileNetV2 (width 1.0), ImageNet, mean/std inside",
        ),
    ]


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
        ModelSpec(
            "mobilenet_v2-tflite",
            TFLiteMobileNetV2(),
            (224, 224, 3),
            1000,
            description="Google's TF-slim MobileNetV2 1.0/224 from its quantized TFLite file, "
            "run in float; 2u - 1 inside (tflite_mobilenet.py)",
            preprocessing="tf-slim-inception",
            weights_format="tflite",
        ),
        *_torchvision_specs(),
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
    """Loads ``name`` with weights from a PyTorch checkpoint or a sparsejax Flax checkpoint
    (or, for a model with ``weights_format="tflite"``, from a TFLite file and only that).

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
    if spec.weights_format == "tflite" or kind == "tflite":
        return Model(spec, _load_tflite(spec, path, kind), weights=str(path))
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


def _load_tflite(spec: ModelSpec, path: Path, kind: str) -> Any:
    """The float variables of a model that reads TFLite files (``weights_format="tflite"``);
    a TFLite file for any other model, or another file for this one, is an error."""
    if spec.weights_format != "tflite":
        readers = sorted(n for n, s in MODELS.items() if s.weights_format == "tflite")
        raise CheckpointError(
            f"weights file {path} is a TFLite flatbuffer; {spec.name} reads PyTorch or "
            f"sparsejax checkpoints (TFLite files: {', '.join(readers)})"
        )
    if kind != "tflite":
        what = "a PyTorch checkpoint" if kind == "torch" else "not a TFLite flatbuffer"
        raise CheckpointError(
            f"weights file {path}: {what}; {spec.name} reads a .tflite file (TFL3)"
        )
    variables = load_tflite(path, spec.module, spec.input_shape)
    checkpoint.check_tree(spec.variable_shapes(), variables, f"weights file {path}")
    checkpoint.check_finite(variables, f"weights file {path}")
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables)
