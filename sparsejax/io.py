"""Result files: atomic JSON/npz writes and the version stamp of a run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes JSON atomically: a reader sees the old file or the new one, never half."""
    text = json.dumps(obj, indent=2, default=_jsonable, allow_nan=False)
    _atomic_write_bytes(Path(path), (text + "\n").encode())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes bytes atomically."""
    _atomic_write_bytes(Path(path), data)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_write_bytes(Path(path), buf.getvalue())


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("sparsejax", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    import jax

    out["backend"] = jax.default_backend()
    return out
