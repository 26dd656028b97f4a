"""The Lin et al. attack against its model-evaluation floor, beside sparsejax SparseFool on
the same images, in one process.

COMMAND: .venv/bin/python benchmarks/bench_sparse_l0.py [--n 100]
Writes benchmarks/results/sparse_l0_resnet20.{json,md}. Shared ResNet-20, first n CIFAR-10
test images, CPU, paper defaults (100 SGD steps, 10 I-FGSM steps; SparseFool λ = 3).

Floor: the attack counts its forward and backward passes per example; every example runs
the same steps in lockstep, so the floor is Σ_examples (forwards · t_F + backwards · t_B),
with t_F and t_B the per-example cost of one forward pass and of one VJP row measured on
the same number of lanes inside a compiled loop (``bench_sparsefool.pass_costs``).
Every time is the best of ``--reps`` runs, the pass costs measured between them (the VM's
speed drifts between minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sparsejax  # noqa: E402
from benchmarks.bench_sparsefool import best_of, pass_costs  # noqa: E402
from sparsejax import data, models, runner  # noqa: E402
from sparsejax.attacks import SparseFoolConfig, SparseL0Config, sparse_l0, sparsefool  # noqa: E402

WEIGHTS = "weights/cifar10/resnet20-12fca82f.th"


def one_call(fn, model, x, y, cfg, reps, between=None, **kw):
    """(result, best wall seconds, compile seconds, ``between()`` results)."""
    jitted = jax.jit(fn, static_argnames=tuple(kw))
    t0 = time.perf_counter()
    compiled = jitted.lower(model.logits_fn, x, y, cfg, **kw).compile()
    compile_s = time.perf_counter() - t0
    secs, r, extra, times = best_of(
        reps, lambda: jax.block_until_ready(compiled(model.logits_fn, x, y, cfg)), between
    )
    return r, secs, compile_s, list(zip(times, extra, strict=True)) if extra else []


def row(name, r, seconds, y, extra=None):
    ok = np.asarray(r.clean_pred) == y
    succ = np.asarray(r.success) & ok
    le, lp = np.asarray(r.l0_elements), np.asarray(r.l0_pixels)
    return {
        "implementation": name,
        "n": len(y),
        "n_attacked": int(ok.sum()),
        "success_rate": float(succ.sum() / ok.sum()),
        "median_l0_elements": float(np.median(le[succ])) if succ.any() else None,
        "median_l0_pixels": float(np.median(lp[succ])) if succ.any() else None,
        "seconds_total": seconds,
        "seconds_per_image": seconds / len(y),
        "passes_per_image": float(np.asarray(r.model_evals).mean()),
        **(extra or {}),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3, help="timed runs; the best is reported")
    args = ap.parse_args()
    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / WEIGHTS)
    ds = data.load_dataset("cifar10", n=args.n)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    rows = []

    # Lin et al.: one call, every image in lockstep.
    cfg = SparseL0Config()
    r, secs, comp, measured = one_call(
        sparse_l0, model, x, y, cfg, args.reps, lambda: pass_costs(model, ds.x, args.n, 1)
    )
    costs = (min(m[0] for _, m in measured), min(m[1] for _, m in measured))
    fw, bw = np.asarray(r.forwards), np.asarray(r.backwards)
    floor = float((fw * costs[0] + bw * costs[1]).sum())
    # Each run against the pass costs measured right after it (robust to the VM's drift).
    per_run = [w / float((fw * m[0] + bw * m[1]).sum()) for w, m in measured]
    rows.append(
        row(
            "sparsejax Lin et al. (one compiled call)",
            r,
            secs,
            ds.y,
            {
                "compile_seconds": comp,
                "forwards_per_image": float(fw.mean()),
                "backwards_per_image": float(bw.mean()),
                "t_forward_s": costs[0],
                "t_backward_row_s": costs[1],
                "floor_seconds": floor,
                "wall_over_floor": secs / floor,
                "wall_over_adjacent_floor_per_run": per_run,
            },
        )
    )
    print(rows[-1], flush=True)

    # SparseFool on the same images.
    r, secs, comp, _ = one_call(
        sparsefool,
        model,
        x,
        y,
        SparseFoolConfig(lambda_=3.0),
        args.reps,
    )
    rows.append(
        row(
            "sparsejax SparseFool λ=3 (one compiled call)", r, secs, ds.y, {"compile_seconds": comp}
        )
    )
    print(rows[-1], flush=True)

    # Both through the runner: batches of n / workers, one compiled call per core at once.
    import tempfile

    workers = runner.default_workers()
    for name, attack, config in (
        ("Lin et al.", "sparse-l0", SparseL0Config()),
        ("SparseFool λ=3", "sparsefool", SparseFoolConfig(lambda_=3.0)),
    ):
        spec = sparsejax.attacks.get(attack)

        def via_runner(spec=spec, config=config):
            with tempfile.TemporaryDirectory() as tmp:
                return runner.run_attack(
                    spec,
                    config,
                    model,
                    ds,
                    tmp,
                    batch_size=-(-args.n // workers),
                    workers=workers,
                    progress=False,
                )

        res = min(
            (via_runner() for _ in range(args.reps)), key=lambda r_: r_["summary"]["attack_seconds"]
        )
        s = res["summary"]
        rows.append(
            {
                "implementation": f"sparsejax {name} (runner, {workers} workers)",
                "n": args.n,
                "n_attacked": s["n_attacked"],
                "success_rate": s["success_rate"],
                "median_l0_elements": s["median_l0_elements"],
                "median_l0_pixels": s["median_l0_pixels"],
                "seconds_total": s["attack_seconds"],
                "seconds_per_image": s["attack_seconds"] / args.n,
                "passes_per_image": float(np.mean([e["model_evals"] for e in res["examples"]])),
            }
        )
        print(rows[-1], flush=True)

    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": "resnet20-cifar10",
        "n": args.n,
        "jax": jax.__version__,
        "device": "cpu",
        "rows": rows,
    }
    (out / "sparse_l0_resnet20.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = [
        "| implementation | s/image | success | median ℓ0 elements | median ℓ0 pixels | "
        "passes/image |",
        "|---|---|---|---|---|---|",
    ]
    for rr in rows:
        lines.append(
            f"| {rr['implementation']} | {rr['seconds_per_image']:.3f} | "
            f"{100 * rr['success_rate']:.1f}% | {rr['median_l0_elements']} | "
            f"{rr['median_l0_pixels']} | {rr['passes_per_image']:.0f} |"
        )
    j = rows[0]
    lines += [
        "",
        f"Lin et al., one call over {args.n} lanes: compile {j['compile_seconds']:.1f} s (not "
        f"in s/image); floor = {j['forwards_per_image']:.0f} forwards × "
        f"{1e3 * j['t_forward_s']:.2f} ms + {j['backwards_per_image']:.0f} VJP rows × "
        f"{1e3 * j['t_backward_row_s']:.2f} ms per image = {j['floor_seconds'] / args.n:.3f} "
        f"s/image; wall/floor = {j['wall_over_floor']:.2f}. Time per image against SparseFool "
        f"(one call each): {j['seconds_per_image'] / rows[1]['seconds_per_image']:.1f}×. Each "
        "run against the pass costs measured right after it: "
        + ", ".join(f"{q:.2f}" for q in j["wall_over_adjacent_floor_per_run"])
        + ".",
    ]
    (out / "sparse_l0_resnet20.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
