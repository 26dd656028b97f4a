"""Sparse (ℓ0) attacks, one protocol for all (SPEC §2).

Every attack is called the same way and returns the same :class:`AttackResult`::

    r = sparsejax.attacks.sparsefool(logits_fn, x, y, config=None, *, targets=None,
                                     lower=0.0, upper=1.0, key=None, mask=None)

``get(name)`` / ``names()`` read the registry. Each algorithm is written once for one
example (its own private module) and run by :mod:`sparsejax.attacks.engine`.
"""

from sparsejax.attacks._cw_l0 import CWL0Config, CWL0Stats, cw_l0
from sparsejax.attacks._deepfool import DeepFoolConfig, DeepFoolResult, deepfool
from sparsejax.attacks._fmn import FMNConfig, FMNStats, fmn_l0
from sparsejax.attacks._jsma import JSMAConfig, JSMAStats, jsma
from sparsejax.attacks._linear_solver import SolverResult, linear_solver
from sparsejax.attacks._one_pixel import OnePixelConfig, OnePixelStats, one_pixel
from sparsejax.attacks._random_subset import RandomSubsetConfig, RandomSubsetStats, random_subset
from sparsejax.attacks._saa import SAAConfig, SAAStats, saa
from sparsejax.attacks._sapf import (
    SAPFConfig,
    SAPFGSConfig,
    SAPFStats,
    SAPFVIConfig,
    sapf,
    sapf_gs,
    sapf_vi,
)
from sparsejax.attacks._sapf_weights import slic_segments, visual_weights
from sparsejax.attacks._sigma_zero import SigmaZeroConfig, SigmaZeroStats, sigma_zero
from sparsejax.attacks._sparse_l0 import SparseL0Config, SparseL0Stats, sparse_l0
from sparsejax.attacks._sparse_rs import SparseRSConfig, SparseRSStats, sparse_rs
from sparsejax.attacks._sparsefool import (
    SparseFoolConfig,
    SparseFoolStats,
    perceptibility_box,
    sparsefool,
)
from sparsejax.attacks._spgd import SPGDConfig, SPGDStats, spgd
from sparsejax.attacks.engine import AttackResult, Schedule, Status
from sparsejax.attacks.registry import AttackSpec, get, names

__all__ = [
    "AttackResult",
    "AttackSpec",
    "CWL0Config",
    "CWL0Stats",
    "DeepFoolConfig",
    "DeepFoolResult",
    "FMNConfig",
    "FMNStats",
    "JSMAConfig",
    "JSMAStats",
    "OnePixelConfig",
    "OnePixelStats",
    "RandomSubsetConfig",
    "RandomSubsetStats",
    "SAAConfig",
    "SAAStats",
    "SAPFConfig",
    "SAPFGSConfig",
    "SAPFStats",
    "SAPFVIConfig",
    "Schedule",
    "SPGDConfig",
    "SPGDStats",
    "SigmaZeroConfig",
    "SigmaZeroStats",
    "SolverResult",
    "SparseFoolConfig",
    "SparseRSConfig",
    "SparseRSStats",
    "SparseFoolStats",
    "SparseL0Config",
    "SparseL0Stats",
    "Status",
    "cw_l0",
    "deepfool",
    "fmn_l0",
    "get",
    "jsma",
    "linear_solver",
    "names",
    "one_pixel",
    "random_subset",
    "perceptibility_box",
    "saa",
    "sapf",
    "sapf_gs",
    "sapf_vi",
    "sigma_zero",
    "slic_segments",
    "sparse_l0",
    "sparse_rs",
    "sparsefool",
    "spgd",
    "visual_weights",
]
