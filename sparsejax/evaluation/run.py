"""``sparsejax evaluate``: every chosen attack on one model and dataset, scored as SPEC §6.

Each attack runs through the runner (:func:`sparsejax.runner.run_attack`), so every run is
resumable per batch and shows a progress bar:

- a min-norm attack once, in ``DIR/<attack>/``;
- a fixed-k attack once per budget k, in ``DIR/<attack>/k<k>/``, with its budget
  (``AttackSpec.at_budget``: ``k``, or the one-pixel attack's pixels) and its ``unit``
  where it has one set to k. Every budget is run: a fixed-k attack's
  success at k says nothing about k' < k, and its result at the largest k is not monotone
  in k. The override ``budgets=1,2,5`` (``--set one-pixel.budgets=1,2,5``) runs one
  attack at a subset of the budgets only (an expensive attack, or one made for small k);
  its curve then stays flat above its largest budget. A sample's distance is the smallest
  ℓ0 (in the evaluation's unit) of the adversarials its runs found, and
  ``DIR/<attack>/adversarials.npz`` holds that adversarial (the clean image where none
  was found). A fixed-k attack that counts in elements only runs in a pixel evaluation
  of a one-channel model, where the two units are one.

Distances are recounted from the adversarials themselves, in both units, never taken from
the attacks' own accounts. The evaluation is untargeted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsejax import io, metrics
from sparsejax.attacks import get
from sparsejax.errors import SparsejaxError
from sparsejax.evaluation import curves
from sparsejax.runner import plan as _plan
from sparsejax.runner import processes, run_attack, store

UNITS = ("pixels", "elements")


@dataclasses.dataclass(frozen=True)
class AttackEvaluation:
    """One attack's (or the ensemble's) scores over the N evaluated samples.

    Attributes:
      distances_pixels, distances_elements: float64[N], 0 for a misclassified clean input,
        inf where the attack failed (None in JSON).
      budgets: the k of the curve (0 and every budget), in the evaluation's unit.
      robust_accuracy: RA(k) at ``budgets`` in the evaluation's unit.
      robust_accuracy_other_unit: RA at the same numbers k in the other unit.
      asr_k: σ-zero's ASR_k (a fraction) at every budget.
      median_l0: median distance over all N (inf kept); median_l0_successes: over the
        broken samples only.
      q: model passes (forward and backward) per sample, every run of the attack summed;
        q_forwards, q_backwards: its two parts (a backward pass is one VJP row).
      s: seconds per sample (attack phases, compilation excluded), every run summed.
      optimality: AttackBench's, against the ensemble of the evaluated attacks, with the
        exact areas under the step curves; optimality_trapezoid: with AttackBench's code's
        trapezoid (:func:`~sparsejax.evaluation.curves.optimality`).
    """

    distances_pixels: np.ndarray
    distances_elements: np.ndarray
    budgets: tuple[int, ...]
    robust_accuracy: np.ndarray
    robust_accuracy_other_unit: np.ndarray
    asr_k: np.ndarray
    median_l0: float
    median_l0_successes: float | None
    q: float
    q_forwards: float
    q_backwards: float
    s: float
    optimality: float | None
    optimality_trapezoid: float | None


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What ``sparsejax evaluate`` computes; :meth:`to_json` is evaluation.json."""

    model: str
    weights: str
    dataset: str
    indices: np.ndarray  # int64[N] dataset indices of the samples
    clean_accuracy: float
    unit: str
    budgets: tuple[int, ...]
    attacks: dict[str, AttackEvaluation]
    ensemble: AttackEvaluation
    configs: dict[str, dict]
    complete: bool

    def distances(self, attack: str, unit: str | None = None) -> np.ndarray:
        a = self.ensemble if attack == "ensemble" else self.attacks[attack]
        return a.distances_pixels if (unit or self.unit) == "pixels" else a.distances_elements

    def to_json(self) -> dict:
        def nullable(d):
            return [None if not np.isfinite(v) else int(v) for v in d]

        def finite(v):
            return None if v is None or not np.isfinite(v) else float(v)

        def one(a: AttackEvaluation) -> dict:
            ks = [0, *self.budgets]
            other = "elements" if self.unit == "pixels" else "pixels"
            return {
                "distances_pixels": nullable(a.distances_pixels),
                "distances_elements": nullable(a.distances_elements),
                "robust_accuracy": {"k": ks, "ra": a.robust_accuracy.tolist()},
                f"robust_accuracy_{other}": {"k": ks, "ra": a.robust_accuracy_other_unit.tolist()},
                "asr_k": {str(k): float(v) for k, v in zip(self.budgets, a.asr_k, strict=True)},
                "median_l0": finite(a.median_l0),
                "median_l0_successes": finite(a.median_l0_successes),
                "q": a.q,
                "q_forwards": a.q_forwards,
                "q_backwards": a.q_backwards,
                "s": a.s,
                "optimality": finite(a.optimality),
                "optimality_trapezoid": finite(a.optimality_trapezoid),
            }

        return {
            "model": self.model,
            "weights": self.weights,
            "dataset": self.dataset,
            "n": int(len(self.indices)),
            "indices": [int(i) for i in self.indices],
            "clean_accuracy": self.clean_accuracy,
            "unit": self.unit,
            "budgets": list(self.budgets),
            "conventions": {
                "distances": "per sample in `indices` order; 0 = misclassified clean, "
                "null = the attack failed",
                "robust_accuracy": "RA(k) = 1 - #{i : d_i <= k} / N over all N samples",
                "asr_k": "#{i : d_i <= k} / N (sigma-zero's ASR_k as a fraction)",
                "median_l0": "over all N, failures as infinity (null when infinite)",
                "q": "forward + backward model passes per sample, every run summed "
                "(q_forwards + q_backwards; a backward pass is one VJP row)",
                "s": "attack seconds per sample, compilation excluded, every run summed",
                "optimality": "AttackBench's 1 - (A - A*) / (clean_acc * d_max - A*), A the "
                "exact area under the step curve RA(k) on [0, d_max]",
                "optimality_trapezoid": "the same with AttackBench's code's trapezoid between "
                "the distinct distances",
                "ensemble": "d*_i = min over the attacks of d_i, per unit",
            },
            "attacks": {name: one(a) for name, a in self.attacks.items()},
            "ensemble": one(self.ensemble),
            "configs": self.configs,
            "complete": self.complete,
            "versions": io.versions(),
        }


def check_evaluation_request(
    attacks: Sequence[str],
    budgets: Sequence[int],
    unit: str,
    overrides: Mapping[str, Sequence[str]] | None = None,
    model_shape: tuple[int, int, int] | None = None,
    *,
    batch_size: int = 50,
    seed: int = 0,
    workers: int | None = None,
    devices: int | None = None,
) -> dict[str, list[tuple[int | None, Any]]]:
    """Everything about the request checked on the host: the runs it makes, per attack a
    list of (budget or None, config). Raises SparsejaxError naming the problem."""
    if unit not in UNITS:
        raise SparsejaxError(f"--unit must be pixels or elements, got {unit!r}")
    if not attacks:
        raise SparsejaxError("--attacks: name at least one attack")
    if len(set(attacks)) != len(attacks):
        raise SparsejaxError(f"--attacks names an attack twice: {', '.join(attacks)}")
    budgets = list(budgets)
    if not budgets or any(isinstance(k, bool) or not isinstance(k, int) for k in budgets):
        raise SparsejaxError(f"--budgets must be whole numbers, got {budgets}")
    if any(k < 1 for k in budgets) or sorted(set(budgets)) != budgets:
        raise SparsejaxError(f"--budgets must be increasing and >= 1, got {budgets}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(attacks))
    if unknown:
        raise SparsejaxError(f"--set {unknown[0]}.…: {unknown[0]!r} is not among --attacks")
    runs: dict[str, list[tuple[int | None, Any]]] = {}
    for name in attacks:
        spec = get(name)
        if spec.targeted == "required":
            raise SparsejaxError(f"{name} is targeted only; the evaluation is untargeted")
        own = _own_budgets(name, spec, overrides.get(name, ()), budgets)
        config_overrides = [o for o in overrides.get(name, ()) if not _is_budgets(o)]
        base = _plan.make_config(spec, config_overrides)
        _plan.check_request(
            spec, base, seed=seed, batch_size=batch_size, workers=workers, devices=devices
        )
        if spec.budget == "min-norm":
            runs[name] = [(None, base)]
            continue
        fields = {f.name for f in dataclasses.fields(base)}
        if spec.at_budget is None:
            raise SparsejaxError(f"{name} has no budget field: it cannot run at --budgets")
        one_channel = model_shape is not None and model_shape[-1] == 1  # pixels = elements
        if "unit" not in fields and spec.unit != unit and not one_channel:
            raise SparsejaxError(
                f"{name} counts its budget in {spec.unit} only; use --unit {spec.unit} or "
                "leave it out"
            )
        runs[name] = []
        for k in own:
            cfg = spec.at_budget(base, k)
            if "unit" in fields:
                cfg = dataclasses.replace(cfg, unit=unit)
            _plan.check_request(spec, cfg)
            if model_shape is not None and spec.max_changed(cfg, model_shape) != k:
                raise SparsejaxError(
                    f"{name} at k = {k} may change {spec.max_changed(cfg, model_shape):g} "
                    f"{unit}, not {k}: its k is not a budget in {unit} on this model"
                )
            runs[name].append((k, cfg))
    return runs


def _is_budgets(override: str) -> bool:
    return override.partition("=")[0].strip() == "budgets"


def _own_budgets(name, spec, overrides: Sequence[str], budgets: list[int]) -> list[int]:
    """The budgets one attack runs at: all of them, or the subset its ``budgets=``
    override names."""
    given = [o.partition("=")[2] for o in overrides if _is_budgets(o)]
    if not given:
        return budgets
    if spec.budget == "min-norm":
        raise SparsejaxError(f"--set {name}.budgets: {name} is min-norm, it runs once")
    try:
        own = [int(k) for k in given[-1].split(",") if k.strip()]
    except ValueError:
        raise SparsejaxError(
            f"--set {name}.budgets must be whole numbers, got {given[-1]!r}"
        ) from None
    if not own or sorted(set(own)) != own or not set(own) <= set(budgets):
        raise SparsejaxError(
            f"--set {name}.budgets={given[-1]}: an increasing subset of --budgets {budgets}"
        )
    return own


def _l0(x_adv: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ℓ0 in pixels and in elements, recounted from the images."""
    return np.asarray(metrics.l0_pixels(x_adv, x)), np.asarray(metrics.l0_elements(x_adv, x))


def evaluate(
    model,
    ds,
    attacks: Sequence[str],
    budgets: Sequence[int] = (1, 2, 5, 10, 20, 50, 100),
    unit: str = "pixels",
    out: str | Path = "runs/evaluate",
    *,
    overrides: Mapping[str, Sequence[str]] | None = None,
    batch_size: int = 50,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    workers: int | None = None,
    devices: int | None = None,
    job: processes.Processes | None = None,
    memory_budget: int | None = None,
) -> Evaluation | None:
    """Evaluates ``model`` on ``ds`` against ``attacks`` (registered names) and writes
    ``out/evaluation.json``, ``out/<attack>/adversarials.npz``, ``out/robust_accuracy.png``,
    ``out/examples.png`` and ``out/report.md``.

    ``overrides``: per attack, ``KEY=VALUE`` config overrides (as ``--set``). A fixed-k
    attack runs at every budget (module doc). Rerunning the same call resumes every
    unfinished run and recomputes the same evaluation.

    ``job``: this process's place in a job of several (default
    :func:`~sparsejax.runner.processes.current`): every process attacks its share of each
    run's batches; process 0 merges each run and writes the evaluation. The others
    return None once their shares are done. ``memory_budget``: as ``run_attack``'s.
    """
    from sparsejax.evaluation import report

    runs = check_evaluation_request(
        attacks, budgets, unit, overrides, model.input_shape, batch_size=batch_size, seed=seed,
        workers=workers, devices=devices,
    )  # fmt: skip
    out = Path(out)
    store.check_writable(out)
    job = processes.current() if job is None else job
    x = ds.x
    clean_correct = model.predict(x).argmax(1) == ds.y
    n = len(ds)
    position = {int(v): i for i, v in enumerate(ds.indices)}
    per_attack: dict[str, dict] = {}
    complete = True
    for name, jobs in runs.items():
        spec = get(name)
        best_adv = x.copy()
        best = np.full(n, np.inf)  # ℓ0 in `unit` of the sparsest adversarial found
        forwards = backwards = seconds = 0.0
        for k, cfg in jobs:
            folder = out / name if k is None else out / name / f"k{k}"
            res = run_attack(
                spec, cfg, model, ds, folder, batch_size=batch_size, seed=seed,
                overwrite=overwrite, progress=progress, workers=workers, devices=devices,
                label=name if k is None else f"{name} k={k}", job=job,
                memory_budget=memory_budget,
            )  # fmt: skip
            if not job.merges:
                continue  # process 0 reads every process's batches
            complete &= bool(res["complete"])
            ex = res["examples"]
            adv = np.load(folder / "adversarials.npz")["x_adv"]
            pos = np.array([position[e["index"]] for e in ex], int)
            success = np.zeros(n, bool)
            success[pos] = [e["success"] for e in ex]
            x_adv = x.copy()
            x_adv[pos] = adv
            pixels, elements = _l0(x_adv, x)
            mine = np.where(success, pixels if unit == "pixels" else elements, np.inf)
            better = mine < best
            best = np.where(better, mine, best)
            best_adv[better] = x_adv[better]
            forwards += float(sum(e["forwards"] for e in ex))
            backwards += float(sum(e["backwards"] for e in ex))
            seconds += float(res["summary"]["attack_seconds"])
        if not job.merges:
            continue
        if jobs[0][0] is not None:  # fixed-k: the merged adversarials (min-norm: the run's)
            io.write_npz(out / name / "adversarials.npz", x_adv=best_adv, index=ds.indices)
        pixels, elements = _l0(best_adv, x)
        broken = np.isfinite(best)
        per_attack[name] = dict(
            pixels=curves.distances(pixels, broken, clean_correct),
            elements=curves.distances(elements, broken, clean_correct),
            q_forwards=forwards / n,
            q_backwards=backwards / n,
            s=seconds / n,
            config=_plan.config_dict(jobs[0][1])
            | ({"k": [k for k, _ in jobs]} if jobs[0][0] else {}),
        )

    if not job.merges:
        return None
    ks = [0, *budgets]
    other = "elements" if unit == "pixels" else "pixels"
    star = {u: curves.ensemble(a[u] for a in per_attack.values()) for u in UNITS}

    def scored(d: Mapping[str, np.ndarray], q_f: float, q_b: float, s: float) -> AttackEvaluation:
        return AttackEvaluation(
            distances_pixels=d["pixels"],
            distances_elements=d["elements"],
            budgets=tuple(budgets),
            robust_accuracy=curves.robust_accuracy(d[unit], ks),
            robust_accuracy_other_unit=curves.robust_accuracy(d[other], ks),
            asr_k=curves.attack_success_rate(d[unit], budgets),
            median_l0=curves.median_l0(d[unit]),
            median_l0_successes=curves.median_l0_successes(d[unit]),
            q=q_f + q_b,
            q_forwards=q_f,
            q_backwards=q_b,
            s=s,
            optimality=curves.optimality(d[unit], star[unit]),
            optimality_trapezoid=curves.optimality(d[unit], star[unit], area="trapezoid"),
        )

    ev = Evaluation(
        model=model.name,
        weights=str(model.weights),
        dataset=ds.name,
        indices=np.asarray(ds.indices),
        clean_accuracy=float(np.mean(clean_correct)),
        unit=unit,
        budgets=tuple(budgets),
        attacks={
            name: scored(a, a["q_forwards"], a["q_backwards"], a["s"])
            for name, a in per_attack.items()
        },
        ensemble=scored(
            star,
            *(sum(a[f] for a in per_attack.values()) for f in ("q_forwards", "q_backwards", "s")),
        ),
        configs={name: a["config"] for name, a in per_attack.items()},
        complete=complete,
    )
    io.write_json(out / "evaluation.json", ev.to_json())
    report.write_all(ev, model, ds, out)
    return ev
