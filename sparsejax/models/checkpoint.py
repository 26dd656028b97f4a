"""Flax checkpoints of sparsejax: one msgpack file that loads without torch.

The file holds ``{"format", "model", "variables", "meta"}``; ``variables`` is the Flax
variable tree (``params`` and, for BatchNorm models, ``batch_stats``) as NumPy arrays.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization, traverse_util

from sparsejax.errors import CheckpointError

FORMAT = "sparsejax-flax-checkpoint/1"


def save(path: str | os.PathLike, model_name: str, variables: Any, meta: Mapping | None = None):
    """Writes a checkpoint atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = {
        "format": FORMAT,
        "model": model_name,
        "variables": jax.tree.map(np.asarray, serialization.to_state_dict(variables)),
        "meta": dict(meta or {}),
    }
    data = serialization.msgpack_serialize(tree)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read(path: str | os.PathLike) -> tuple[str, dict, dict]:
    """Reads a checkpoint written by :func:`save`. Returns (model name, variables, meta)."""
    path = Path(path)
    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:
        raise CheckpointError(f"weights file {path}: not a sparsejax Flax checkpoint ({e})") from e
    if not isinstance(tree, dict) or tree.get("format") != FORMAT:
        raise CheckpointError(f"weights file {path}: not a sparsejax Flax checkpoint ({FORMAT})")
    return str(tree["model"]), tree["variables"], dict(tree.get("meta") or {})


def sniff(path: str | os.PathLike) -> str:
    """'torch' for a PyTorch checkpoint (zip or pickle), 'tflite' for a TFLite flatbuffer
    (file identifier ``TFL3`` at bytes 4-8), 'flax' for anything else."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return "torch"
    if head[4:8] == b"TFL3":
        return "tflite"
    return "flax"


def _flat(tree) -> dict[str, tuple[int, ...]]:
    return {
        "/".join(k): tuple(np.shape(v))
        for k, v in traverse_util.flatten_dict(serialization.to_state_dict(tree)).items()
    }


def format_keys(keys, limit: int = 10) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_tree(template: Any, variables: Any, what: str) -> None:
    """Raises CheckpointError naming missing/unexpected entries and shape mismatches."""
    want, got = _flat(template), _flat(variables)
    missing, unexpected = set(want) - set(got), set(got) - set(want)
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: {len(missing)} missing key(s) [{format_keys(missing)}]; "
            f"{len(unexpected)} unexpected key(s) [{format_keys(unexpected)}]"
        )
    bad = [f"{k} {got[k]} != {want[k]}" for k in sorted(want) if want[k] != got[k]]
    if bad:
        raise CheckpointError(f"{what}: shape mismatch: {format_keys(bad, 6)}")


def check_finite(variables: Any, what: str) -> None:
    """Raises CheckpointError naming the first tensor that holds a NaN or an Inf."""
    flat = traverse_util.flatten_dict(serialization.to_state_dict(variables))
    for k in sorted(flat):
        v = np.asarray(flat[k])
        if not np.all(np.isfinite(v)):
            bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
            raise CheckpointError(
                f"{what}: tensor {'/'.join(k)} holds {bad} NaN/Inf value(s) of {np.size(v)}"
            )
