"""sPGD's patience count, both readings, beside the official code: success over seeds.

COMMAND: .venv/bin/python experiments/spgd_patience_count.py --spgd /tmp/ref/spgd \
    [--model lenet5-pgd] [--k 10] [--seeds 12] [--n 100] [--rules projected,unprojected]
Writes experiments/results/spgd_patience_count_{model}_k{k}.{json,md}. The official sPGD
(CityU-MLO/sPGD ``autoattack/spgd.py``, a clone outside the repository: ``--spgd``; left
out when not given) and sparsejax ``spgd`` with ``unchanged_count`` "since-redraw" and
"consecutive", both gradient rules, 300 iterations, k pixels, on the same first n test
images the model classifies correctly (``benchmarks/bench_l0_attacks.side_by_side``), one
batch per run; seeds 0 .. seeds-1 (``torch.manual_seed`` / ``jax.random.key``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_l0_attacks import load_by_file, side_by_side  # noqa: E402
from sparsejax import attacks  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spgd", type=Path, help="a clone of CityU-MLO/sPGD")
    ap.add_argument("--model", default="lenet5-pgd")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--rules", default="projected,unprojected")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    model, net, x_np, y_np = side_by_side(args.model, args.n)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    xt = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y_np.astype(np.int64))
    official = None
    if args.spgd:
        sys.path.insert(0, str(args.spgd / "autoattack"))
        official = load_by_file("official_spgd", args.spgd / "autoattack" / "spgd.py")

    rows = []
    for rule in args.rules.split(","):
        runs = {}
        if official is not None:
            att = official.SparsePGD(
                net, epsilon=1.0, k=args.k, t=300, unprojected_gradient=rule == "unprojected"
            )
            rates = []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                adv = att(xt, yt)[0]
                with torch.no_grad():
                    rates.append(float(np.mean(net(adv).argmax(1).numpy() != y_np)))
            runs["official sPGD"] = rates
        for count in ("since-redraw", "consecutive"):
            cfg = attacks.SPGDConfig(
                k=float(args.k), steps=300, gradient=rule, unchanged_count=count
            )
            compiled = (
                jax.jit(attacks.spgd)
                .lower(model.logits_fn, x, y, cfg, key=jax.random.key(0))
                .compile()
            )
            rates = []
            for seed in range(args.seeds):
                r = compiled(model.logits_fn, x, y, cfg, key=jax.random.key(seed))
                rates.append(float(np.mean(np.asarray(r.success))))
            runs[f"sparsejax unchanged_count={count}"] = rates
        for label, rates in runs.items():
            row = dict(
                rule=rule, implementation=label, success=rates,
                mean=float(np.mean(rates)), std_of_mean=float(np.std(rates, ddof=1) /
                np.sqrt(len(rates))),
            )  # fmt: skip
            rows.append(row)
            print(row, flush=True)

    out = ROOT / "experiments" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"spgd_patience_count_{args.model}_k{args.k}"
    payload = dict(model=args.model, k_pixels=args.k, n_attacked=len(y_np), seeds=args.seeds,
                   steps=300, rows=rows)  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [
        f"{args.model}, k = {args.k} pixels, 300 iterations, {len(y_np)} images, "
        f"{args.seeds} seeds",
        "",
        "| rule | implementation | mean success | ± (std. of the mean) | min–max |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rule']} | {r['implementation']} | {100 * r['mean']:.1f}% | "
            f"{100 * r['std_of_mean']:.1f} | {100 * min(r['success']):.0f}–"
            f"{100 * max(r['success']):.0f}% |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
