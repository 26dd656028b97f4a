"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import gzip
import struct

import jax
import numpy as np

# XLA's default build (the suite compiles at LLVM's cheapest level: conftest.py), for the
# tests that follow another implementation's float path step by step, and for the real-model
# tests whose run outweighs their compile (SAPF's ResNet-20 test: 91 s at the cheapest
# level, 68 s at the default, compile included).
XLA_DEFAULT = {"xla_backend_optimization_level": 3}


def write_idx(path, arr: np.ndarray) -> None:
    """Writes a uint8 array in the IDX format (gzipped when the name ends in .gz)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + arr.tobytes())


@contextlib.contextmanager
def count_compilations():
    """Counts XLA backend compilations inside the block: ``with count_compilations() as c``."""
    box = {"n": 0}

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            box["n"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield box
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
