"""Robust accuracy at k changed pixels under sPGD, Sparse-RS and the sAA cascade.

COMMAND: .venv/bin/python experiments/l0_fixed_k.py [--n 50] [--models resnet20,lenet5-pgd]
Writes experiments/results/l0_fixed_k.{json,md}. CPU, one jitted batch call per (model, k,
attack), the first n test images (robust accuracy over all n: a misclassified image counts
as not robust).

Budgets (smaller than the papers' 10,000, stated in every row): sPGD unprojected 300
iterations (the official ``evaluate.py`` default); Sparse-RS 1000 queries (α_init 0.3,
margin loss); sAA = sPGD projected 300 → sPGD unprojected 300 → Sparse-RS 1000 (α_init 0.8,
CE) on the survivors. Magnitudes are bounded by the [0, 1] box only (ε = 1), as the
reference's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import attacks, data, models

HERE = Path(__file__).parent
MODELS = {
    "resnet20": ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10"),
    "lenet5-pgd": ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_advtrained.pt", "mnist"),
    "smallcnn-ddn": (
        "smallcnn-mnist", "weights/mnist/sigmazero_mnist_smallcnn_robust_ddn.pth", "mnist",
    ),
}  # fmt: skip
KS = (1, 2, 5, 10, 20)


def configs(k):
    k = float(k)
    return {
        "sPGD (unprojected, 300 it.)": (attacks.spgd, attacks.SPGDConfig(k=k, steps=300)),
        "Sparse-RS (1000 q.)": (attacks.sparse_rs, attacks.SparseRSConfig(k=k, queries=1000)),
        "sAA (300 + 300 it., 1000 q.)": (
            attacks.saa, attacks.SAAConfig(k=k, spgd_steps=300, rs_queries=1000),
        ),
    }  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    assets = data.require_assets()
    out = HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "l0_fixed_k.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {(r["model"], r["k"], r["attack"]) for r in rows}
    for key in args.models.split(","):
        name, weights, dataset = MODELS[key]
        model = models.load(name, assets / weights)
        ds = data.load_dataset(dataset, n=args.n)
        x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
        for k in KS:
            for label, (fn, cfg) in configs(k).items():
                if (key, k, label) in done:
                    continue
                run = jax.jit(fn).lower(model.logits_fn, x, y, cfg, key=jax.random.key(0)).compile()
                t0 = time.perf_counter()
                r = jax.block_until_ready(run(model.logits_fn, x, y, cfg, key=jax.random.key(0)))
                seconds = time.perf_counter() - t0
                clean = np.asarray(r.clean_pred) == ds.y
                robust = clean & ~np.asarray(r.success)
                assert int(r.l0_pixels.max()) <= k  # recounted: never more than k pixels
                row = dict(
                    model=key, k=k, attack=label, n=len(ds.y),
                    clean_accuracy=float(clean.mean()), robust_accuracy=float(robust.mean()),
                    passes_per_image=float(np.asarray(r.model_evals)[clean].mean()),
                    forwards_per_image=float(np.asarray(r.forwards)[clean].mean()),
                    seconds_per_image=seconds / len(ds.y),
                )  # fmt: skip
                if fn is attacks.saa:
                    row["ended_in_stage"] = np.bincount(
                        np.asarray(r.stats.stage)[clean & np.asarray(r.success)], minlength=3
                    ).tolist()
                rows.append(row)
                print(row, flush=True)
                path.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    lines = [
        "| model | attack | " + " | ".join(f"RA k={k}" for k in KS) + " | passes/img (k=1) "
        "| s/img (k=1) |",
        "|---|---|" + "---|" * len(KS) + "---|---|",
    ]
    for key in MODELS:
        for label in configs(1):
            got = {r["k"]: r for r in rows if r["model"] == key and r["attack"] == label}
            if not got:
                continue
            ra = " | ".join(
                f"{100 * got[k]['robust_accuracy']:.0f}%" if k in got else "–" for k in KS
            )
            one = got.get(1)
            tail = (
                f"{one['passes_per_image']:.0f} | {one['seconds_per_image']:.2f}"
                if one
                else "– | –"
            )
            lines.append(f"| {key} | {label} | {ra} | {tail} |")
    (out / "l0_fixed_k.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
