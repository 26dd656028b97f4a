"""`sparsejax.evaluate` on the shared models: robust accuracy against k changed pixels for
every attack and their per-sample ensemble, with optimality, q and s.

COMMAND: .venv/bin/python experiments/evaluate_models.py [--n 200] [--models lenet5,...]

The runs (resumable: rerun the command after an interruption) go to
experiments/runs/evaluate/<model>/ (not committed); evaluation.json, report.md and
robust_accuracy.png are copied to experiments/results/evaluate_<model>/.

Attacks and budgets (smaller than the papers', stated here and in each evaluation.json):
SparseFool λ = 3 (its default); σ-zero 1000 steps (adv_lib's default); FMN-ℓ0 1000 steps
(AttackBench's); sPGD unprojected 300 iterations (the official ``evaluate.py``) and
Sparse-RS 1000 queries at every budget k in pixels. The first n test images.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

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
ATTACKS = ("sparsefool", "sigma-zero", "fmn-l0", "spgd", "sparse-rs")
BUDGETS = (1, 2, 5, 10, 20, 50)
OVERRIDES = {
    "fmn-l0": ["steps=1000"],
    "spgd": ["steps=300", "gradient=unprojected"],
    "sparse-rs": ["queries=1000"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args()
    assets = data.require_assets()
    for key in args.models.split(","):
        name, weights, dataset = MODELS[key]
        model = models.load(name, assets / weights)
        ds = data.load_dataset(dataset, n=args.n)
        out = HERE / "runs" / "evaluate" / key
        t0 = time.perf_counter()
        ev = sparsejax.evaluate(
            model, ds, ATTACKS, BUDGETS, "pixels", out, overrides=OVERRIDES,
            batch_size=args.batch_size,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        keep = HERE / "results" / f"evaluate_{key}"
        keep.mkdir(parents=True, exist_ok=True)
        for f in ("evaluation.json", "report.md", "robust_accuracy.png", "examples.png"):
            if (out / f).exists():
                shutil.copy(out / f, keep / f)
        spent = sum(a.s for a in ev.attacks.values()) * len(ev.indices)
        print(f"{key}: wall {wall:.0f} s this session, attack time {spent:.0f} s in all runs")
        print((out / "report.md").read_text())


if __name__ == "__main__":
    main()
