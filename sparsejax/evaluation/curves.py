"""The sparse-robustness metrics of SPEC §6, on per-sample ℓ0 distances (NumPy only).

A distance array ``d`` holds, for each of the N evaluated samples, the ℓ0 distance an
attack reached in one unit: 0 when the clean input is already misclassified, ``inf`` when
the attack failed, else the count of changed pixels or elements of its adversarial.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def distances(l0: np.ndarray, success: np.ndarray, clean_correct: np.ndarray) -> np.ndarray:
    """float64[N]: 0 where the clean input is misclassified, inf where the attack failed on
    a correctly classified one, else ``l0``."""
    l0, success, clean_correct = (np.asarray(a) for a in (l0, success, clean_correct))
    return np.where(~clean_correct, 0.0, np.where(success, l0.astype(np.float64), np.inf))


def ensemble(per_attack: Iterable[np.ndarray]) -> np.ndarray:
    """float64[N]: the per-sample best, d*_i = min over attacks of d_i (SPEC §6)."""
    return np.min(np.stack([np.asarray(d, np.float64) for d in per_attack]), axis=0)


def robust_accuracy(d: np.ndarray, ks: Sequence[float]) -> np.ndarray:
    """float64[len(ks)]: RA(k) = 1 - #{i : d_i <= k} / N (k = 0 gives the clean accuracy)."""
    d = np.asarray(d, np.float64)
    return np.array([1.0 - float(np.mean(d <= k)) for k in ks])


def attack_success_rate(d: np.ndarray, ks: Sequence[float]) -> np.ndarray:
    """float64[len(ks)]: σ-zero's ASR_k = #{i : d_i <= k} / N, as a fraction (its code
    prints 100 times this); the misclassified samples count, as in σ-zero's code."""
    return 1.0 - robust_accuracy(d, ks)


def median_l0(d: np.ndarray) -> float:
    """The median of d over all N samples, failures kept as inf (σ-zero's convention):
    inf when at least half the samples were not broken."""
    return float(np.median(np.asarray(d, np.float64)))


def median_l0_successes(d: np.ndarray) -> float | None:
    """The median over the samples the attack broke (0 < d < inf); None if there are none."""
    d = np.asarray(d, np.float64)
    hit = d[(d > 0) & np.isfinite(d)]
    return float(np.median(hit)) if hit.size else None


def _trapezoid_area(d: np.ndarray, d_max: float) -> float:
    """AttackBench's area (``analysis/utils.py::eval_optimality``): a trapezoid through RA at
    the distinct distances of ``d`` clipped at d_max, RA at a distance counting every sample
    at or below it."""
    values, counts = np.unique(np.minimum(d, d_max), return_counts=True)
    ra = 1.0 - np.cumsum(counts) / d.size
    return float(np.trapezoid(ra, values))


def _exact_area(d: np.ndarray, d_max: float) -> float:
    """The area under the step curve RA(k) on [0, d_max]: ∫ (1/N) Σ_i [d_i > k] dk =
    mean_i min(d_i, d_max)."""
    return float(np.mean(np.minimum(d, d_max)))


def optimality(d: np.ndarray, d_star: np.ndarray, area: str = "exact") -> float | None:
    """AttackBench's optimality of an attack against the ensemble d* (SPEC §6):
    1 - (A - A*) / (clean_acc · d_max - A*), A* the area under the ensemble's curve up to
    d_max = max_i d*_i, A the attack's with its distances clipped at d_max, clean_acc the
    fraction of d*_i > 0.

    ``area="exact"``: the areas under the step curves RA(k). Then 1 means the attack is the
    per-sample best and 0 that its curve stays at the clean accuracy up to d_max, and an
    attack never below the ensemble per sample scores in [0, 1]. ``area="trapezoid"``:
    AttackBench's code, a trapezoid between the distinct distances of each curve (for
    comparison with its tables); on integer ℓ0 distances it can exceed 1 (the ensemble's
    curve has more corners to cut) and an attack that breaks nothing scores above 0.

    Samples no attack broke (d*_i = inf) are clipped at d_max = the largest finite d*, in
    both areas (AttackBench's distances are all finite). None when the ensemble broke
    nothing at a positive distance (d_max = 0: there is no area to compare).
    """
    if area not in ("exact", "trapezoid"):
        raise ValueError(f"area must be exact or trapezoid, got {area!r}")
    d, d_star = np.asarray(d, np.float64), np.asarray(d_star, np.float64)
    if d.shape != d_star.shape:
        raise ValueError(f"distances of shape {d.shape} against an ensemble of {d_star.shape}")
    finite = d_star[np.isfinite(d_star)]
    d_max = float(finite.max()) if finite.size else 0.0
    if d_max <= 0:
        return None
    measure = _exact_area if area == "exact" else _trapezoid_area
    clean_acc = float(np.mean(d_star > 0))
    best = measure(d_star, d_max)
    denominator = clean_acc * d_max - best
    if denominator <= 0:
        return None
    score = 1.0 - (measure(d, d_max) - best) / denominator
    if area == "exact":  # in [0, 1] exactly for d >= d* (above); clip the last-bit rounding
        score = min(max(score, 0.0), 1.0) if -1e-9 < score < 1 + 1e-9 else score
    return score
