"""Deterministic random weights for a torchvision state dict, from its keys and shapes and a
seed (NumPy only: runs in the torchvision environment that writes the parity fixture and in
the test suite, which has no torchvision).

Each tensor is drawn from its own stream, seeded by ``(seed, crc32(key))``, with NumPy's
PCG64 ``random(dtype=float32)`` (a stream NumPy keeps stable), so a key's values depend on
nothing but the seed and the key: adding or removing other keys changes nothing.

- convolution / linear weights (2-D or 4-D ``*.weight``): uniform on [-a, a] with
  a = sqrt(6 / fan_in), variance 2 / fan_in (He et al.), fan_in = in/groups x kh x kw, so
  that activations keep their scale through 150+ layers;
- their biases: uniform on [-0.05, 0.05];
- BatchNorm (a prefix with a ``running_mean``): ``weight`` in ``bn_weight`` ([0.8, 1.2] by
  default), ``bias`` and ``running_mean`` in [-0.05, 0.05], ``running_var`` in [0.6, 1.6]:
  no entry is the identity value (1 or 0), so a mis-mapped statistic or a wrong eps shows
  in the logits.

Why these ranges: the running statistics do not renormalize the activations they meet, so
each BatchNorm scales its signal by about weight / sqrt(running_var). Below 1 on average the
input-dependent signal fades with depth and the BatchNorm offsets (input-independent) take
over the logits, and a parity test on them would say little about the inputs' path; so the
default keeps that factor near 1 and the offsets small. A ResNet adds every block's branch
to its trunk, so there the factor must stay below 1 or ResNet-152's logits grow by orders of
magnitude: the ResNets' fixture passes ``bn_weight=(0.5, 1.0)``.

Integer buffers (``num_batches_tracked``) are not listed by the fixture and get no value.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable

import numpy as np

_BN = {"bias": (-0.05, 0.05), "running_mean": (-0.05, 0.05), "running_var": (0.6, 1.6)}
_BIAS = (-0.05, 0.05)


def _uniform(seed: int, key: str, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    u = rng.random(shape, dtype=np.float32)
    return (np.float32(lo) + np.float32(hi - lo) * u).astype(np.float32)


def seeded_state_dict(
    keys_shapes: Iterable[tuple[str, Iterable[int]]],
    seed: int,
    bn_weight: tuple[float, float] = (0.8, 1.2),
) -> dict[str, np.ndarray]:
    """``{key: float32[shape]}`` for every (key, shape), by the rules in the module docstring."""
    bn = {**_BN, "weight": tuple(bn_weight)}
    items = [(k, tuple(int(d) for d in s)) for k, s in keys_shapes]
    bn_prefixes = {k[: -len("running_mean")] for k, _ in items if k.endswith(".running_mean")}
    out = {}
    for key, shape in items:
        prefix, _, leaf = key.rpartition(".")
        if prefix + "." in bn_prefixes:
            lo, hi = bn[leaf]
        elif leaf == "weight" and len(shape) in (2, 4):
            a = float(np.sqrt(6.0 / int(np.prod(shape[1:]))))
            lo, hi = -a, a
        elif leaf == "bias":
            lo, hi = _BIAS
        else:
            raise ValueError(f"no rule for {key} {shape}")
        out[key] = _uniform(seed, key, shape, lo, hi)
    return out


def fingerprint(state_dict: dict[str, np.ndarray]) -> str:
    """A short hash of every key, shape and the first and last 8 values of each tensor: the
    fixture stores it, so a change in the generator (another NumPy stream) is reported as
    such rather than as a logit mismatch."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        v = np.ascontiguousarray(state_dict[key], dtype=np.float32).ravel()
        h.update(f"{key}{state_dict[key].shape}".encode())
        h.update(v[:8].tobytes() + v[-8:].tobytes())
    return h.hexdigest()[:16]


def random_image(seed: int, side: int) -> np.ndarray:
    """float32[side, side, 3] uniform in [0, 1): the fixture's third, synthetic input."""
    rng = np.random.default_rng([seed, side])
    return rng.random((side, side, 3), dtype=np.float32)
