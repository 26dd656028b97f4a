"""The refill queue's width on this CPU: the early-stopping fixed-k attacks (sPGD with both
gradient rules, Sparse-RS) at 1, 4, 8 and 16 lanes, same images, same key, one run.

COMMAND:
  .venv/bin/python benchmarks/bench_queue_width.py --model lenet5 --n 100
  .venv/bin/python benchmarks/bench_queue_width.py --model resnet20 --n 100 --widths 1,4,8

Writes benchmarks/results/queue_width_{model}.{json,md}. Budgets as bench_l0_attacks.py's:
k = 10 pixels, sPGD 300 iterations, Sparse-RS 1000 queries. Seconds per attacked image of
one compiled call (compilation excluded); the number of lanes changes the batch shape the
model sees, hence its float rounding, hence a few paths (success and passes are given).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.bench_l0_attacks import MODELS, side_by_side  # noqa: E402
from sparsejax import attacks  # noqa: E402
from sparsejax.attacks import Schedule  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
CASES = {
    "spgd projected": (attacks.spgd, attacks.SPGDConfig(k=10.0, steps=300, gradient="projected")),
    "spgd unprojected": (
        attacks.spgd,
        attacks.SPGDConfig(k=10.0, steps=300, gradient="unprojected"),
    ),
    "sparse-rs": (attacks.sparse_rs, attacks.SparseRSConfig(k=10.0, queries=1000)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="lenet5")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--widths", default="1,4,8,16")
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    model, _, x_np, y_np = side_by_side(args.model, args.n)
    x, y, key = jnp.asarray(x_np), jnp.asarray(y_np), jax.random.key(0)
    rows = []
    for name, (fn, cfg) in CASES.items():
        for width in widths:
            call = jax.jit(fn, static_argnames="schedule")
            compiled = call.lower(
                model.logits_fn, x, y, cfg, key=key, schedule=Schedule("queue", width)
            ).compile()
            t0 = time.perf_counter()
            r = jax.block_until_ready(compiled(model.logits_fn, x, y, cfg, key=key))
            seconds = time.perf_counter() - t0
            rows.append({
                "attack": name, "lanes": width, "seconds_per_image": seconds / len(y_np),
                "success_rate": float(np.mean(np.asarray(r.success))),
                "passes_per_image": float(np.mean(np.asarray(r.model_evals))),
            })  # fmt: skip
            print(rows[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    stem = f"queue_width_{args.model}"
    payload = {"model": args.model, "n_attacked": len(y_np), "jax": jax.__version__, "rows": rows}
    (OUT / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = ["| attack | lanes | s/image | × 1 lane's time | success | passes/image |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        one = next(o for o in rows if o["attack"] == r["attack"] and o["lanes"] == widths[0])
        lines.append(
            f"| {r['attack']} | {r['lanes']} | {r['seconds_per_image']:.3f} | "
            f"{r['seconds_per_image'] / one['seconds_per_image']:.2f} | "
            f"{100 * r['success_rate']:.1f}% | {r['passes_per_image']:.0f} |"
        )
    (OUT / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
