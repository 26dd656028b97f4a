"""σ-zero's frontier: median ℓ0 and seconds per image as the step budget shrinks, with and
without the early stop at an ℓ0 budget.

COMMAND: .venv/bin/python experiments/sigma_zero_frontier.py [--n 20] [--budget 10]
Writes experiments/results/sigma_zero_frontier.{json,md}. Shared ResNet-20, the first n
CIFAR-10 test images (the misclassified ones skipped), CPU, one jitted batch call per row
(compilation excluded). adv_lib's time at 1000 steps on the same images is
benchmarks/bench_sigma_zero.py's (benchmarks/results/sigma_zero_resnet20.json), read here.
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
ROOT = HERE.parent
WEIGHTS = "weights/cifar10/resnet20-12fca82f.th"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--budget", type=int, default=10, help="early stop at this many elements")
    args = ap.parse_args()
    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / WEIGHTS)
    ds = data.load_dataset("cifar10", n=args.n)
    ok = np.asarray(jnp.argmax(model.logits_fn(jnp.asarray(ds.x)), axis=1)) == ds.y
    x, y = jnp.asarray(ds.x[ok]), jnp.asarray(ds.y[ok])
    n = int(ok.sum())
    ref = json.loads((ROOT / "benchmarks/results/sigma_zero_resnet20.json").read_text())
    adv_lib = next(r for r in ref["rows"] if r["implementation"].startswith("adv_lib"))
    rows = []
    for steps in (100, 250, 500, 1000):
        for budget in (0, args.budget):
            cfg = attacks.SigmaZeroConfig(steps=steps, budget=budget)
            run = jax.jit(attacks.sigma_zero).lower(model.logits_fn, x, y, cfg).compile()
            t0 = time.perf_counter()
            r = jax.block_until_ready(run(model.logits_fn, x, y, cfg))
            s = (time.perf_counter() - t0) / n
            succ = np.asarray(r.success)
            el = np.where(succ, np.asarray(r.l0_elements), np.inf)
            rows.append(dict(
                steps=steps, budget=budget, n=n, success_rate=float(succ.mean()),
                median_l0_elements=float(np.median(el)),
                asr_at_budget=float((el <= args.budget).mean()),
                seconds_per_image=s, fraction_of_adv_lib_time=s / adv_lib["seconds_per_image"],
            ))  # fmt: skip
            print(rows[-1], flush=True)
    out = HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(adv_lib_1000_steps=adv_lib, rows=rows)
    (out / "sigma_zero_frontier.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"| steps | early stop | success | median ℓ0 el. (failures ∞) | ASR at {args.budget} el. "
        "| s/image | × adv_lib's time |",
        "|---|---|---|---|---|---|---|",
    ] + [
        f"| {r['steps']} | {'at ' + str(r['budget']) + ' el.' if r['budget'] else 'no'} | "
        f"{100 * r['success_rate']:.0f}% | {r['median_l0_elements']:g} | "
        f"{100 * r['asr_at_budget']:.0f}% | {r['seconds_per_image']:.2f} | "
        f"{r['fraction_of_adv_lib_time']:.2f} |"
        for r in rows
    ]
    lines.append(
        f"| adv_lib 1000 | no | {100 * adv_lib['success_rate']:.0f}% | "
        f"{adv_lib['median_l0_elements']:g} (successes) | – | "
        f"{adv_lib['seconds_per_image']:.2f} | 1.00 |"
    )
    (out / "sigma_zero_frontier.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
