"""Sparse-robustness evaluation (SPEC §6): robust accuracy against k changed pixels or
elements, per attack and for the per-sample ensemble, with AttackBench's optimality.

:func:`evaluate` runs the attacks and writes evaluation.json, figures and report.md;
:mod:`.curves` holds the metrics themselves, on arrays of per-sample distances.
"""

from sparsejax.evaluation import curves
from sparsejax.evaluation.run import (
    AttackEvaluation,
    Evaluation,
    check_evaluation_request,
    evaluate,
)

__all__ = ["AttackEvaluation", "Evaluation", "check_evaluation_request", "curves", "evaluate"]
