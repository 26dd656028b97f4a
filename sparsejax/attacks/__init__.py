"""Attacks: pure functions for one example, batched entry points, configs as pytrees."""

from sparsejax.attacks.common import AttackResult, Status, default_slots
from sparsejax.attacks.deepfool import DeepFoolConfig, DeepFoolResult, deepfool
from sparsejax.attacks.linear_solver import SolverResult, linear_solver
from sparsejax.attacks.sparse_l0 import SparseL0Config, SparseL0Output, sparse_l0, sparse_l0_batch
from sparsejax.attacks.sparsefool import (
    SparseFoolConfig,
    SparseFoolOutput,
    perceptibility_box,
    sparsefool,
    sparsefool_batch,
    sparsefool_sweep,
)

__all__ = [
    "AttackResult",
    "DeepFoolConfig",
    "DeepFoolResult",
    "SolverResult",
    "SparseL0Config",
    "SparseL0Output",
    "SparseFoolConfig",
    "SparseFoolOutput",
    "Status",
    "deepfool",
    "default_slots",
    "linear_solver",
    "perceptibility_box",
    "sparse_l0",
    "sparse_l0_batch",
    "sparsefool",
    "sparsefool_batch",
    "sparsefool_sweep",
]
