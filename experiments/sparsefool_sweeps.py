"""SparseFool Fig. 4 (λ) and Fig. 6 (δ) on ResNet-20 / CIFAR-10, each as ONE compiled call.

COMMAND: .venv/bin/python experiments/sparsefool_sweeps.py [--n 100]
Writes experiments/results/sparsefool_sweeps.json and experiments/figures/
sparsefool_lambda_sweep.png, sparsefool_delta_sweep.png. About 4 minutes on 2 CPU cores.

Fig. 4 of the paper: λ from 1 to 5 (fooling rate, sparsity, iterations; Inception-v3,
4000 ImageNet images). Fig. 6: sparsity against the ±δ box (δ in 0-255 units; ResNet-101,
100 ImageNet images), λ = 3. Here: the shared ResNet-20 on the first n CIFAR-10 test images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import sparsejax
from sparsejax import data, metrics, models, plots
from sparsejax.attacks import SparseFoolConfig, sparsefool

HERE = Path(__file__).parent


def run_sweep(model, ds, base, field, values):
    """One compiled call: every (value, image) pair in the same refill queue."""
    x, y, v = jnp.asarray(ds.x), jnp.asarray(ds.y), jnp.asarray(values, jnp.float32)
    fn = jax.jit(
        lambda v: sparsejax.sweep(sparsefool, model.logits_fn, x, y, base, values={field: v})
    )
    t0 = time.perf_counter()
    compiled = fn.lower(v).compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = jax.block_until_ready(compiled(v))
    seconds = time.perf_counter() - t0
    rows = []
    for j, v in enumerate(values):
        ok = np.asarray(r.clean_pred[j]) == ds.y
        s = metrics.summarize(
            np.asarray(r.success[j]),
            ok,
            np.asarray(r.l0_pixels[j]),
            np.asarray(r.l0_elements[j]),
            model.input_shape,
        )
        rows.append(
            {
                field: float(v),
                **s,
                "mean_iterations": float(np.asarray(r.iterations[j])[ok].mean()),
                "passes_per_sample": float(np.asarray(r.model_evals[j])[ok].mean()),
            }
        )
    return rows, {"compile_seconds": t_compile, "seconds": seconds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / "weights/cifar10/resnet20-12fca82f.th")
    ds = data.load_dataset("cifar10", n=args.n)
    lambdas = [1.0, 1.5, 2.0, 3.0, 4.0, 5.0]
    lam_rows, lam_t = run_sweep(model, ds, SparseFoolConfig(), "lambda_", lambdas)
    deltas255 = [5, 10, 15, 20, 25, 50, 100, 255]
    del_rows, del_t = run_sweep(
        model, ds, SparseFoolConfig(lambda_=3.0), "delta", [d / 255 for d in deltas255]
    )
    for r, d in zip(del_rows, deltas255, strict=True):
        r["delta_255"] = d
    out = {
        "n": args.n,
        "model": "resnet20-cifar10",
        "lambda_sweep": lam_rows,
        "lambda_timing": lam_t,
        "delta_sweep": del_rows,
        "delta_timing": del_t,
    }
    (HERE / "results" / "sparsefool_sweeps.json").write_text(json.dumps(out, indent=2) + "\n")
    plots.sweep_figure(
        lambdas,
        {
            "fooling rate (%)": [100 * r["success_rate"] for r in lam_rows],
            "median perturbed pixels (%)": [r["median_l0_pixels_pct"] for r in lam_rows],
            "mean iterations": [r["mean_iterations"] for r in lam_rows],
        },
        "λ",
        HERE / "figures" / "sparsefool_lambda_sweep.png",
        title=f"SparseFool λ sweep (Fig. 4), ResNet-20, {args.n} CIFAR-10 images",
    )
    plots.sweep_figure(
        deltas255,
        {
            "median perturbed pixels (%)": [r["median_l0_pixels_pct"] for r in del_rows],
            "fooling rate (%)": [100 * r["success_rate"] for r in del_rows],
            "mean iterations": [r["mean_iterations"] for r in del_rows],
        },
        "δ (0-255 units)",
        HERE / "figures" / "sparsefool_delta_sweep.png",
        title=f"SparseFool ±δ box (Fig. 6), λ=3, ResNet-20, {args.n} CIFAR-10 images",
    )
    for r in lam_rows:
        print(
            f"lambda {r['lambda_']:.1f}: fooling {100 * r['success_rate']:.1f}% median "
            f"{r['median_l0_pixels']} px ({r['median_l0_pixels_pct']:.2f}%) iters "
            f"{r['mean_iterations']:.2f}"
        )
    for r in del_rows:
        print(
            f"delta {r['delta_255']:3d}/255: fooling {100 * r['success_rate']:.1f}% median "
            f"{r['median_l0_pixels']} px ({r['median_l0_pixels_pct']:.2f}%) iters "
            f"{r['mean_iterations']:.2f}"
        )
    print("timing", lam_t, del_t)


if __name__ == "__main__":
    main()
