"""What each reading of Lin et al. gives, on the same images: one row per reading.

COMMAND: .venv/bin/python experiments/sparse_l0_readings.py [--n 200]
Writes experiments/results/sparse_l0_readings.{json,md}. About 20 minutes on 2 CPU cores.

ResNet-20, the first n CIFAR-10 test images; every row one compiled call (the attack in
lockstep over the n images), the paper's settings otherwise (ε = 4/255, α = 1/255, 10 I-FGSM
steps, a = 0.1, τ = 0.3, λ = 1e-2, lr 1e-2, momentum 0.9, 100 steps, the Eq. (22) box, the
sparsest fooling iterate). The readings (``notes/lin-audit.md`` has the independent audit's
numbers on images 0-49):

- Eq. (20) with a free w at the paper's loss scale 1 (sparsejax 0.1's default), and at the
  released code's scale β/λ;
- Algorithm 1 as printed (scale 1); Algorithm 1 with q_a at the thresholded w (0.1's
  ``algorithm1``) at scale 1 and at the released scale; Algorithm 1 with the surrogate
  through the ReLU at the released scale (the default now); the same returning the
  last iterate (as Algorithm 1 does); the same with the ℓ0 term's gradient removed;
- SparseFool λ = 3 on the same images.
Untargeted, and least-likely targeted for the default, 0.1's default and SparseFool.
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
from sparsejax.attacks import SparseL0Config

HERE = Path(__file__).parent
WEIGHTS = "weights/cifar10/resnet20-12fca82f.th"

READINGS = [
    ("Eq. (20), free w, scale 1 (0.1 default)", SparseL0Config(update="eq20", loss_scale="paper")),
    ("Eq. (20), free w, released scale β/λ", SparseL0Config(update="eq20")),
    ("Algorithm 1 as printed, scale 1", SparseL0Config(loss_scale="paper")),
    (
        "Algorithm 1, q_a at the thresholded w (0.1 `algorithm1`), scale 1",
        SparseL0Config(update="algorithm1_post_relu", loss_scale="paper"),
    ),
    (
        "Algorithm 1, q_a at the thresholded w, released scale",
        SparseL0Config(update="algorithm1_post_relu"),
    ),
    ("**Algorithm 1, surrogate through the ReLU, released scale (default)**", SparseL0Config()),
    ("default, last iterate returned (Algorithm 1's output)", SparseL0Config(keep="last")),
    ("default, ℓ0 surrogate gradient removed", SparseL0Config(surrogate="none")),
]
TARGETED = {0, 5}  # 0.1's default and the new default, also least-likely targeted


def measure(model, x, y, t, fn, config) -> dict:
    jitted = jax.jit(lambda x, y, c, t: fn(model.logits_fn, x, y, c, targets=t))
    t0 = time.perf_counter()
    compiled = jitted.lower(x, y, config, t).compile()
    t1 = time.perf_counter()
    r = jax.block_until_ready(compiled(x, y, config, t))
    seconds = time.perf_counter() - t1
    ok = np.asarray(r.clean_pred) == np.asarray(y)
    succ = np.asarray(r.success) & ok
    el, px = np.asarray(r.l0_elements)[succ], np.asarray(r.l0_pixels)[succ]
    stat = lambda f, a: float(f(a)) if a.size else None
    return {
        "n_attacked": int(ok.sum()),
        "success_rate": float(succ.sum() / ok.sum()),
        "median_l0_elements": stat(np.median, el),
        "mean_l0_elements": stat(np.mean, el),
        "median_l0_pixels": stat(np.median, px),
        "mean_l0_pixels": stat(np.mean, px),
        "seconds_per_image": seconds / len(y),
        "compile_s": t1 - t0,
        "passes_per_image": float(np.asarray(r.model_evals)[ok].mean()),
        "mean_returned_iteration": float(np.asarray(r.iterations)[ok].mean()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / WEIGHTS)
    ds = data.load_dataset("cifar10", n=args.n)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    least_likely = jnp.argmin(model.logits_fn(x), axis=1)
    rows = []
    runs = [(label, attacks.sparse_l0, cfg, i) for i, (label, cfg) in enumerate(READINGS)]
    runs.append(("SparseFool λ = 3", attacks.sparsefool, attacks.SparseFoolConfig(), -1))
    for label, fn, cfg, i in runs:
        for targets in (None, least_likely) if (i in TARGETED or i < 0) else (None,):
            r = measure(model, x, y, targets, fn, cfg)
            r.update(reading=label, targeted="least-likely" if targets is not None else "no")
            rows.append(r)
            print(json.dumps(r), flush=True)
    (HERE / "results" / "sparse_l0_readings.json").write_text(
        json.dumps({"n": args.n, "model": "resnet20-cifar10", "rows": rows}, indent=2) + "\n"
    )
    fmt = lambda v, spec: "–" if v is None else format(v, spec)
    lines = [
        "| reading | targeted | success | median ℓ0 el. | mean ℓ0 el. | median ℓ0 px | "
        "mean ℓ0 px | s/image | passes/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['reading']} | {r['targeted']} | {100 * r['success_rate']:.1f}% | "
            f"{fmt(r['median_l0_elements'], 'g')} | {fmt(r['mean_l0_elements'], '.1f')} | "
            f"{fmt(r['median_l0_pixels'], 'g')} | {fmt(r['mean_l0_pixels'], '.1f')} | "
            f"{r['seconds_per_image']:.3f} | {r['passes_per_image']:.0f} |"
        )
    (HERE / "results" / "sparse_l0_readings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
