"""`sparsejax.evaluate` on the shared models: robust accuracy against k changed pixels for
every attack and their per-sample ensemble, with optimality, q and s.

COMMAND: .venv/bin/python experiments/evaluate_models.py [--n 200] [--every-n 20]
    [--models lenet5,...] [--which main,every,cw]
  and .venv/bin/python experiments/evaluate_models.py --table   (RESULTS.md's tables, from
    the copies in experiments/results/; runs nothing)

Two evaluations per model (both resumable: rerun the command after an interruption; the
runs go to experiments/runs/evaluate/<model>/ and .../<model>-every<n>/, not committed;
evaluation.json, report.md and the figures are copied to experiments/results/):

- ``evaluate_<model>``: the first n test images (200), the attacks of MAIN;
- ``evaluate_every_<model>``: the first every-n images (20), every registered attack that
  can run untargeted at pixel budgets on the model (EVERY): MAIN and the two that cost
  10-40 s per image, C&W-ℓ0 and the one-pixel attack.
- ``evaluate_cw_<model>`` (``--which cw``, not in the default): C&W-ℓ0 alone on the n
  images of the first; ``--table`` sets it beside the first's ensemble, with and without it
  (the one-pixel attack is left at the every-n run: 200 images of the four models would take
  about 6 hours of this CPU).

Not in either: SAPF and its two variants (targeted only: the evaluation is untargeted); the
random subset on ResNet-20 (its k counts elements in each channel, not pixels).

Attacks and budgets (smaller than the papers', stated here and in each evaluation.json):
SparseFool λ = 3 (its default); σ-zero 1000 steps (adv_lib's default); FMN-ℓ0 1000 steps
(AttackBench's); sPGD unprojected 300 iterations (the official ``evaluate.py``) and
Sparse-RS 1000 queries at every budget k in pixels; Lin et al. at its defaults on ResNet-20
and with the directional box and β = 1e3 on MNIST (its defaults break 0.5% of the clean
LeNet-5's images: RESULTS, "Lin et al."); JSMA θ = 1, γ = 1; the random subset, one draw;
sAA (sPGD projected 300, unprojected 300, Sparse-RS 1000) at k = 1, 2, 5, 10 only;
C&W-ℓ0 100 Adam steps per constant, c up to 2e3; the one-pixel attack (400 candidates,
100 generations) at k = 1 only.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

import sparsejax
from sparsejax import data, models

HERE = Path(__file__).parent
MODELS = {
    "lenet5": ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_clntrained.pt", "mnist"),
    "lenet5-pgd": ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_advtrained.pt", "mnist"),
    "smallcnn-ddn": (
        "smallcnn-mnist", "weights/mnist/sigmazero_mnist_smallcnn_robust_ddn.pth", "mnist",
    ),
    "resnet20": ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10"),
}  # fmt: skip
MAIN = ("sparsefool", "sigma-zero", "fmn-l0", "spgd", "sparse-rs", "sparse-l0", "jsma",
        "random-subset", "saa")  # fmt: skip
EVERY = (*MAIN, "cw-l0", "one-pixel")
BUDGETS = (1, 2, 5, 10, 20, 50)
OVERRIDES = {
    "fmn-l0": ["steps=1000"],
    "spgd": ["steps=300", "gradient=unprojected"],
    "sparse-rs": ["queries=1000"],
    "saa": ["spgd_steps=300", "rs_queries=1000", "budgets=1,2,5,10"],
    "cw-l0": ["steps=100", "largest_const=2000.0"],
    "one-pixel": ["budgets=1"],
}
MNIST_OVERRIDES = {"sparse-l0": ["box=directional", "beta=1000.0"]}


def plan(key: str, attacks: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]]]:
    """The attacks and overrides of one evaluation of model ``key``."""
    dataset = MODELS[key][2]
    names = [a for a in attacks if not (a == "random-subset" and dataset == "cifar10")]
    extra = MNIST_OVERRIDES if dataset == "mnist" else {}
    overrides = {a: OVERRIDES.get(a, []) + extra.get(a, []) for a in names}
    return names, {a: o for a, o in overrides.items() if o}


LABELS = {
    "lenet5": "LeNet-5 (clean)", "lenet5-pgd": "LeNet-5 (PGD)", "smallcnn-ddn": "SmallCNN (DDN)",
    "resnet20": "ResNet-20",
}  # fmt: skip


def table(prefix: str) -> str:
    """One Markdown table of every model's ``results/<prefix>_<model>/evaluation.json``:
    robust accuracy (%) at each budget, median ℓ0 in pixels (failures as ∞), optimality
    (exact; AttackBench's trapezoid in brackets), q and s per sample. Bold: the ensemble
    below every single attack at that k."""
    rows = []
    for key, label in LABELS.items():
        doc = json.loads((HERE / "results" / f"{prefix}_{key}" / "evaluation.json").read_text())
        blocks = {**doc["attacks"], "**ensemble**": doc["ensemble"]}
        if not rows:
            ks = doc["attacks"][next(iter(doc["attacks"]))]["robust_accuracy"]["k"]
            rows += [
                f"| model | attack | {' | '.join(f'k={k}' for k in ks)} | median ℓ0 px (∞ kept) "
                "| optimality | q | s/sample |",
                "|---|---|" + "---|" * (len(ks) + 4),
            ]
        best_single = [min(b["robust_accuracy"]["ra"][i] for b in doc["attacks"].values())
                       for i in range(len(ks))]  # fmt: skip
        for i, (name, b) in enumerate(blocks.items()):
            ra = b["robust_accuracy"]["ra"]
            cells = [
                f"**{100 * r:.1f}**" if name.startswith("**") and r < best_single[j] - 1e-9
                else f"{100 * r:.1f}"
                for j, r in enumerate(ra)
            ]  # fmt: skip
            med = b["median_l0"]
            med = "∞" if med is None or math.isinf(med) else f"{med:g}"
            opt = "1" if name.startswith("**") else (
                f"{b['optimality']:.3f} ({b['optimality_trapezoid']:.3f})")  # fmt: skip
            rows.append(
                f"| {label if i == 0 else ''} | {name} | {' | '.join(cells)} | {med} | {opt} | "
                f"{b['q']:.0f} | {b['s']:.3f} |"
            )
    return "\n".join(rows)


def with_cw() -> str:
    """C&W-ℓ0 on the main evaluation's images beside that evaluation's ensemble: robust
    accuracy (%) at each budget, median ℓ0 px, and C&W-ℓ0's optimality against the ensemble
    of the main evaluation's attacks and C&W-ℓ0."""
    from sparsejax.evaluation import curves

    rows = []
    for key, label in LABELS.items():
        path = HERE / "results" / f"evaluate_cw_{key}" / "evaluation.json"
        if not path.exists():
            continue
        main_path = HERE / "results" / f"evaluate_{key}" / "evaluation.json"
        main_doc = json.loads(main_path.read_text())
        cw_doc = json.loads(path.read_text())
        assert main_doc["indices"] == cw_doc["indices"], key  # the same images, same order
        dist = lambda b: np.array([np.inf if v is None else v for v in b["distances_pixels"]])
        cw = dist(cw_doc["attacks"]["cw-l0"])
        nine = curves.ensemble(dist(b) for b in main_doc["attacks"].values())
        ten = curves.ensemble([nine, cw])
        ks = [0, *main_doc["budgets"]]
        if not rows:
            rows += [
                f"| model | curve | {' | '.join(f'k={k}' for k in ks)} | median ℓ0 px "
                "| C&W-ℓ0 optimality | C&W-ℓ0 s/sample |",
                "|---|---|" + "---|" * (len(ks) + 3),
            ]
        for i, (name, d) in enumerate(
            (("C&W-ℓ0", cw), (f"ensemble of the {len(main_doc['attacks'])}", nine),
             ("ensemble with C&W-ℓ0", ten))
        ):  # fmt: skip
            ra = " | ".join(f"{100 * r:.1f}" for r in curves.robust_accuracy(d, ks))
            med = curves.median_l0(d)
            extra = (f"{curves.optimality(cw, ten):.3f} | {cw_doc['attacks']['cw-l0']['s']:.3f}"
                     if i == 0 else "– | –")  # fmt: skip
            rows.append(f"| {label if i == 0 else ''} | {name} | {ra} | "
                        f"{'∞' if math.isinf(med) else f'{med:g}'} | {extra} |")  # fmt: skip
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--every-n", type=int, default=20, help="images of the every-attack run")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--which", default="main,every", help="any of main, every, cw")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--table", action="store_true", help="print RESULTS.md's tables and stop")
    args = ap.parse_args()
    if args.table:
        for prefix in ("evaluate", "evaluate_every"):
            print(f"{prefix}:\n{table(prefix)}\n")
        print(f"evaluate_cw:\n{with_cw()}\n")
        return
    assets = data.require_assets()
    for key in args.models.split(","):
        name, weights, dataset = MODELS[key]
        model = models.load(name, assets / weights)
        for which, n, attacks, run_name, result_name in (
            ("main", args.n, MAIN, key, f"evaluate_{key}"),
            ("every", args.every_n, EVERY, f"{key}-every{args.every_n}", f"evaluate_every_{key}"),
            ("cw", args.n, ("cw-l0",), f"{key}-cw", f"evaluate_cw_{key}"),
        ):
            if which not in args.which.split(","):
                continue
            ds = data.load_dataset(dataset, n=n)
            names, overrides = plan(key, attacks)
            out = HERE / "runs" / "evaluate" / run_name
            t0 = time.perf_counter()
            ev = sparsejax.evaluate(
                model, ds, names, BUDGETS, "pixels", out, overrides=overrides,
                batch_size=min(args.batch_size, n),
            )  # fmt: skip
            wall = time.perf_counter() - t0
            keep = HERE / "results" / result_name
            keep.mkdir(parents=True, exist_ok=True)
            for f in ("evaluation.json", "report.md", "robust_accuracy.png", "examples.png"):
                if (out / f).exists():
                    shutil.copy(out / f, keep / f)
            spent = sum(a.s for a in ev.attacks.values()) * len(ev.indices)
            print(f"{run_name}: wall {wall:.0f} s this session, attack time {spent:.0f} s")
            print((out / "report.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
