"""PyTorch checkpoint -> Flax variables, tensor by tensor and by name (SPEC §4).

The Flax modules name their layers after the PyTorch module paths (``conv1``,
``layer1.0.bn2``, ``classifier.fc1``), so a Flax leaf ``(collection, *path, leaf)`` maps to
the PyTorch key ``".".join(path) + "." + suffix``:

=================  ==============  ===========================================
Flax               PyTorch         layout change
=================  ==============  ===========================================
params/kernel 4-D  weight          OIHW -> HWIO
params/kernel 2-D  weight          (out, in) -> (in, out); after an NCHW flatten
                                   the input rows are reordered C,H,W -> H,W,C
params/bias        bias            -
params/scale       weight          (BatchNorm)
batch_stats/mean   running_mean    -
batch_stats/var    running_var     -
=================  ==============  ===========================================

Wrappers ``{"state_dict": ...}`` / ``{"model": ...}`` and ``module.`` prefixes are accepted;
``num_batches_tracked`` is ignored. A checkpoint that does not fit the architecture fails
with the missing and unexpected keys listed. Porting needs torch; the result does not.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sparsejax.errors import CheckpointError
from sparsejax.models.checkpoint import format_keys

_IGNORED_SUFFIXES = ("num_batches_tracked",)
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads a PyTorch checkpoint (weights only) as a flat name -> float32 NumPy dict."""
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(
            f"weights file {path} is a PyTorch checkpoint: porting needs torch "
            "(pip install 'sparsejax[port]'), or pass a ported Flax checkpoint"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch colours its messages
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            raise CheckpointError(
                f"weights file {path}: holds pickled Python objects ({found.group(1)}), not a "
                "state_dict of tensors; save model.state_dict() and load that"
            ) from None
        found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = found.group(1).strip() if found else text.strip().splitlines()[0]
        raise CheckpointError(
            f"weights file {path}: torch.load failed ({type(e).__name__}: {reason[:200]})"
        ) from None
    for key in _WRAPPER_KEYS:  # {'state_dict': ..., 'best_prec1': ...} and friends
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise CheckpointError(f"weights file {path}: not a PyTorch state_dict of tensors")
    out = {}
    for k, v in obj.items():
        if k.endswith(_IGNORED_SUFFIXES):
            continue
        k = k[len("module.") :] if k.startswith("module.") else k
        out[k] = v.detach().cpu().to(torch.float32).numpy()
    return out


def _torch_key(collection: str, path: tuple[str, ...], leaf: str) -> str:
    suffix = {
        ("params", "kernel"): "weight",
        ("params", "bias"): "bias",
        ("params", "scale"): "weight",
        ("batch_stats", "mean"): "running_mean",
        ("batch_stats", "var"): "running_var",
    }.get((collection, leaf))
    if suffix is None:
        raise CheckpointError(
            f"no PyTorch name for Flax variable {collection}/{'/'.join(path)}/{leaf}"
        )
    return ".".join(path) + "." + suffix


def _to_flax(t: np.ndarray, collection: str, leaf: str, nchw: tuple[int, int, int] | None):
    if collection == "params" and leaf == "kernel":
        if t.ndim == 4:
            return np.transpose(t, (2, 3, 1, 0))  # OIHW -> HWIO
        if t.ndim == 2:
            if nchw is not None:  # rows of torch's NCHW flatten -> rows of Flax's NHWC flatten
                c, h, w = nchw
                if t.shape[1] != c * h * w:
                    return t.T  # wrong size: let the shape check report it
                return t.reshape(t.shape[0], c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)
            return t.T
    return t


def state_dict_to_variables(state_dict: dict[str, np.ndarray], spec, source: str = "checkpoint"):
    """Maps a flat PyTorch state dict onto the Flax variables of ``spec`` (a ModelSpec)."""
    template = jax.eval_shape(
        spec.module.init, jax.random.key(0), jnp.zeros((1,) + spec.input_shape, jnp.float32)
    )
    wanted = {}  # torch key -> (Flax path, Flax shape)
    for (collection, *path, leaf), sds in traverse_util.flatten_dict(dict(template)).items():
        wanted[_torch_key(collection, tuple(path), leaf)] = ((collection, *path, leaf), sds.shape)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(spec.ignored_keys)}
    missing = set(wanted) - set(state_dict)
    unexpected = set(state_dict) - set(wanted)
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit {spec.name}: {len(missing)} missing key(s) "
            f"[{format_keys(missing)}]; {len(unexpected)} unexpected key(s) "
            f"[{format_keys(unexpected)}]"
        )
    nchw_flatten = dict(spec.nchw_flatten)
    flat, bad = {}, []
    for key, (fpath, shape) in wanted.items():
        module_path = ".".join(fpath[1:-1])
        arr = _to_flax(state_dict[key], fpath[0], fpath[-1], nchw_flatten.get(module_path))
        if arr.shape != shape:
            bad.append(f"{key} {tuple(state_dict[key].shape)} (as Flax {arr.shape} != {shape})")
        flat[fpath] = np.ascontiguousarray(arr, dtype=np.float32)
    if bad:
        raise CheckpointError(
            f"{source} does not fit {spec.name}: shape mismatch: {format_keys(bad, 6)}"
        )
    return traverse_util.unflatten_dict(flat)


def port_checkpoint(path: str | os.PathLike, spec):
    """Reads a PyTorch checkpoint file and returns Flax variables for ``spec``."""
    return state_dict_to_variables(
        read_torch_state_dict(path), spec, source=f"weights file {Path(path)}"
    )
