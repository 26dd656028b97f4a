"""Obscuring and leading noise (Lin et al. §5.3) in the adversarials of the evaluation runs.

COMMAND: .venv/bin/python experiments/noise_categories.py [--top 0.2]

Needs the run folders of ``experiments/evaluate_models.py`` (experiments/runs/evaluate/).
For each (model, min-norm attack): the perturbed pixels of its successful adversarials
classified by ``sparsejax.evaluation.interpret`` (the rule in its module doc), the
fractions over all their perturbed pixels beside the chance level in brackets (each
category's share of all the pixels of the same images: what perturbed pixels placed at
random would give).
Writes experiments/results/noise_categories.{json,md} and
experiments/figures/noise_categories_<model>.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sparsejax import data, io, models
from sparsejax.evaluation import interpret

HERE = Path(__file__).parent
MODELS = {
    "resnet20": ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10"),
    "lenet5": ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_clntrained.pt", "mnist"),
}
ATTACKS = ("sigma-zero", "fmn-l0", "sparsefool")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--top", type=float, default=0.2)
    args = ap.parse_args()
    assets = data.require_assets()
    rows = []
    for key, (name, weights, dataset) in MODELS.items():
        model = models.load(name, assets / weights)
        for attack in ATTACKS:
            run = HERE / "runs" / "evaluate" / key / attack
            res = json.loads((run / "results.json").read_text())
            adv = np.load(run / "adversarials.npz")
            ok = np.array([e["success"] for e in res["examples"]])
            index = adv["index"][ok]
            ds = data.load_dataset(dataset, n=int(adv["index"].max()) + 1)
            x, y = ds.x[index], ds.y[index]
            noise = interpret.classify_noise(model.logits_fn, x, adv["x_adv"][ok], y, args.top)
            counts = {c: int(v.sum()) for c, v in noise["counts"].items()}
            rows.append(dict(model=key, attack=attack, images=int(ok.sum()), pixels=counts,
                             fractions=noise["fractions"], chance=noise["chance"]))  # fmt: skip
            print(rows[-1], flush=True)
            if attack == "sigma-zero":
                interpret.figure(
                    x, adv["x_adv"][ok], y, noise,
                    HERE / "figures" / f"noise_categories_{key}.png", ds.class_names,
                )  # fmt: skip
    doc = {"top": args.top, "rows": rows, "versions": io.versions()}
    io.write_json(HERE / "results" / "noise_categories.json", doc)
    lines = [
        "| model | attack | images | perturbed pixels | obscuring | leading | both | neither |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r["fractions"]
        lines.append(
            f"| {r['model']} | {r['attack']} | {r['images']} | {sum(r['pixels'].values())} | "
            + " | ".join(
                f"{100 * f[c]:.1f}% ({100 * r['chance'][c]:.1f}%)" for c in interpret.CATEGORIES
            )
            + " |"
        )
    (HERE / "results" / "noise_categories.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
