"""The evaluations' cost against the floor of their attacks (issue 14's cost measure).

COMMAND: .venv/bin/python experiments/evaluation_cost.py [--models lenet5,...]
    (after experiments/evaluate_models.py; about a minute per model; run it alone: it times)

For every run of an evaluation (``experiments/runs/evaluate/<model>[-every<n>]/``, one
folder per attack, per budget for the fixed-k ones), the floor is what its model passes
cost at the lanes they ran on: Σ forwards · t_f + Σ backwards · t_b, with t_f and t_b the
per-example seconds of one forward pass and one VJP row in a compiled loop over that many
lanes (``benchmarks/bench_sparsefool.py: pass_costs``, best of 7), lanes = the refill
queue's width for an early-stopping attack, the batch for a lockstep one. Beside it: the
attack seconds the runner recorded (compilation excluded) and the compilation seconds.
→ ``results/evaluation_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from evaluate_models import MODELS  # noqa: E402

from benchmarks.bench_sparsefool import pass_costs  # noqa: E402
from sparsejax import data, io, models  # noqa: E402


def runs_of(folder: Path):
    """(attack, results.json content, fingerprint) of every run in an evaluation folder."""
    for res_file in sorted(folder.rglob("results.json")):
        fp = json.loads((res_file.parent / "run.json").read_text())["fingerprint"]
        yield fp["attack"], json.loads(res_file.read_text()), fp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    assets = data.require_assets()
    table, rows = {}, []
    for key in args.models.split(","):
        name, weights, dataset = MODELS[key]
        model = models.load(name, assets / weights)
        x = data.load_dataset(dataset, n=200).x
        costs: dict[int, tuple[float, float]] = {}
        for folder in sorted((HERE / "runs" / "evaluate").glob(f"{key}*")):
            if folder.name != key and not folder.name.startswith(f"{key}-every"):
                continue
            per_attack = defaultdict(lambda: dict(floor=0.0, seconds=0.0, compile=0.0, runs=0))
            for attack, res, fp in runs_of(folder):
                sched = res["schedule"]
                lanes = sched["width"] if sched["kind"] == "queue" else fp["batch_size"]
                if lanes not in costs:
                    costs[lanes] = pass_costs(model, x, lanes, k=1)
                t_f, t_b = costs[lanes]
                ex = res["examples"]
                fwd = sum(e["forwards"] for e in ex)
                bwd = sum(e["backwards"] for e in ex)
                a = per_attack[attack]
                a["floor"] += fwd * t_f + bwd * t_b
                a["seconds"] += res["summary"]["attack_seconds"]
                a["compile"] += res["summary"].get("compile_s") or 0.0
                a["runs"] += 1
            total = {
                f: sum(a[f] for a in per_attack.values()) for f in ("floor", "seconds", "compile")
            }
            table[folder.name] = {
                "pass_cost_ms": {str(k): [1e3 * t for t in v] for k, v in costs.items()},
                "attacks": dict(per_attack),
                "total": total,
            }
            for attack, a in [*per_attack.items(), ("all attacks", total)]:
                rows.append(
                    f"| {folder.name} | {attack} | {a.get('runs', '')} | {a['floor']:.1f} | "
                    f"{a['seconds']:.1f} | {a['seconds'] / a['floor']:.2f} | {a['compile']:.0f} |"
                )
            print(rows[-1], flush=True)
    out = HERE / "results" / "evaluation_cost"
    io.write_json(out.with_suffix(".json"), table)
    md = [
        "| evaluation | attack | runs | floor s | attack s | attack / floor | compile s |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
