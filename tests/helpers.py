"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import gzip
import struct

import jax
import numpy as np


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


def assert_results_equal(a, b) -> None:
    """Two attack results (any pytrees of arrays) are bit-for-bit identical."""
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


def assert_masked_untouched(r, x, mask, reference_x_adv) -> None:
    """Masked-out examples come back unchanged with status SKIPPED; the others are attacked
    exactly as in ``reference_x_adv`` (the unmasked run)."""
    from sparsejax.attacks.common import Status

    skipped = ~np.asarray(mask)
    np.testing.assert_array_equal(np.asarray(r.x_adv)[skipped], np.asarray(x)[skipped])
    assert set(np.asarray(r.status)[skipped]) == {Status.SKIPPED}
    np.testing.assert_array_equal(
        np.asarray(r.x_adv)[~skipped], np.asarray(reference_x_adv)[~skipped]
    )
