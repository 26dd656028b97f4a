"""The one engine against the code it replaced: same images, same budgets, one run.

COMMAND:
  git worktree add /tmp/sparsejax-0.1 7a10d08      # the last commit before the engine
  .venv/bin/python benchmarks/bench_engine.py --baseline /tmp/sparsejax-0.1 [--n 100]

Every case runs in a fresh process, once per code version and repetition, old and new
alternating so that the VM's drift hits both alike; the best time of ``--reps`` is
reported (compilation excluded, timed apart). Cases, on the shared ResNet-20 and the first
n CIFAR-10 test images:

- ``sparsefool``: λ = 3, one compiled call over n images;
- ``sparsefool-sweep``: λ ∈ {1, 2, 3, 4, 5} in one call (0.1: ``sparsefool_sweep``'s shared
  queue; now: ``sparsejax.sweep``);
- ``sparse-l0``: 0.1's default reading (Eq. 20 with a free w, loss scale 1), one call;
- ``sapf``: the library defaults on the first 5 images × their 9 other classes, one call
  (0.1: ``lax.map`` chunks of one pair; now: the refill queue, 1 lane and 4 lanes);
- ``cli``: ``sparsejax attack --attack sparsefool`` end to end on 20 images, cold (empty
  compilation cache) and warm (the same job again); 0.1 has no cache.

Each case also records success, median ℓ0 and model passes, and the parent checks that the
returned images are the same (bit for bit, or the number of images that differ).
Writes benchmarks/results/engine.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "weights/cifar10/resnet20-12fca82f.th"
LAMBDAS = [1.0, 2.0, 3.0, 4.0, 5.0]


# --------------------------------------------------------------------------- worker side


def _worker(version: str, case: str, n: int, out: str) -> None:
    import jax
    import jax.numpy as jnp

    from sparsejax import data, metrics, models

    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / WEIGHTS)
    old = version == "old"

    if case.startswith("sapf"):
        ds = data.load_dataset("cifar10", n=5)
        idx, tgt = metrics.all_target_pairs(ds.y, 10)
        x, y, t = jnp.asarray(ds.x[idx]), jnp.asarray(ds.y[idx]), jnp.asarray(tgt)
    else:
        ds = data.load_dataset("cifar10", n=n)
        x, y, t = jnp.asarray(ds.x), jnp.asarray(ds.y), None

    if old:
        from sparsejax.attacks.sapf import SAPFConfig, sapf_batch

        from sparsejax.attacks import (
            SparseFoolConfig,
            SparseL0Config,
            sparse_l0_batch,
            sparsefool_batch,
            sparsefool_sweep,
        )

        fns = {
            "sparsefool": lambda f, x, y: sparsefool_batch(f, x, y, SparseFoolConfig(lambda_=3.0)),
            "sparsefool-sweep": lambda f, x, y: sparsefool_sweep(
                f, x, y, SparseFoolConfig(), lambda_=jnp.asarray(LAMBDAS)
            ),
            "sparse-l0": lambda f, x, y: sparse_l0_batch(f, x, y, SparseL0Config()),
            "sapf": lambda f, x, y, t: sapf_batch(f, x, y, SAPFConfig(), targets=t),
        }
    else:
        import sparsejax
        from sparsejax.attacks import (
            SAPFConfig,
            Schedule,
            SparseFoolConfig,
            SparseL0Config,
            sapf,
            sparse_l0,
            sparsefool,
        )

        fns = {
            "sparsefool": lambda f, x, y: sparsefool(f, x, y, SparseFoolConfig(lambda_=3.0)),
            "sparsefool-sweep": lambda f, x, y: sparsejax.sweep(
                sparsefool, f, x, y, values={"lambda_": LAMBDAS}
            ),
            # 0.1's default reading (Eq. 20, a free w, loss scale 1), not today's default
            "sparse-l0": lambda f, x, y: sparse_l0(
                f, x, y, SparseL0Config(update="eq20", loss_scale="paper")
            ),
            "sapf": lambda f, x, y, t: sapf(f, x, y, SAPFConfig(), targets=t),
            "sapf-4-lanes": lambda f, x, y, t: sapf(
                f, x, y, SAPFConfig(), targets=t, schedule=Schedule("queue", 4)
            ),
        }
    name = "sapf" if case.startswith("sapf") else case
    fn = jax.jit(fns[case])
    args = (model.logits_fn, x, y) + ((t,) if name == "sapf" else ())
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = jax.block_until_ready(compiled(*args))
    seconds = time.perf_counter() - t0
    success = np.asarray(r.success)
    clean = np.asarray(r.clean_pred) == np.asarray(y)
    if success.ndim == 2:  # a sweep: [V, N]
        clean = np.broadcast_to(clean, success.shape)
    ok = success & clean
    items = int(np.prod(success.shape))
    np.savez(out, x_adv=np.asarray(r.x_adv), success=success)
    print(
        json.dumps(
            {
                "version": version,
                "case": case,
                "items": items,
                "compile_s": compile_s,
                "seconds": seconds,
                "seconds_per_item": seconds / items,
                "success_rate": float(ok.sum() / max(clean.sum(), 1)),
                "median_l0_elements": float(np.median(np.asarray(r.l0_elements)[ok])),
                "median_l0_pixels": float(np.median(np.asarray(r.l0_pixels)[ok])),
                "passes_per_item": float(np.asarray(r.model_evals)[clean].mean()),
                "forwards": float(np.asarray(r.forwards)[clean].sum()),
                "backwards": float(np.asarray(r.backwards)[clean].sum()),
            }
        )
    )


# --------------------------------------------------------------------------- parent side


def _env(root: Path) -> dict:
    from sparsejax import data

    return {**os.environ, "PYTHONPATH": str(root), "SPARSEJAX_ASSETS": str(data.require_assets())}


def _run(root: Path, version: str, case: str, n: int, out: Path) -> dict:
    env = _env(root)
    cmd = [sys.executable, __file__, "--worker", version, case, str(n), str(out)]
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{version} {case} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _cli(root: Path, version: str, out: Path, cache: Path | None) -> dict:
    env = _env(root)
    if cache is None:
        env["SPARSEJAX_NO_COMPILE_CACHE"] = "1"
    else:
        env["SPARSEJAX_CACHE_DIR"] = str(cache)
    assets = Path(env["SPARSEJAX_ASSETS"])
    cmd = [
        sys.executable, "-c", "import sys; from sparsejax.cli import main; sys.exit(main())",
        "attack", "--attack", "sparsefool", "--model", "resnet20-cifar10",
        "--weights", str(assets / WEIGHTS), "--dataset", "cifar10", "--n", "20",
        "--batch-size", "10", "--set", "lambda_=3.0", "--out", str(out), "--overwrite",
    ]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{version} cli failed:\n{p.stderr[-3000:]}")
    s = json.loads((out / "results.json").read_text())["summary"]
    compile_s = s.get("compile_s", s.get("compile_seconds"))
    return {
        "version": version,
        "wall_s": wall,
        "compile_s": compile_s,
        "attack_s": s["attack_seconds"],
    }


def _pass_costs(n_lanes: int) -> tuple[float, float]:
    """Per-example forward and VJP-row costs on ``n_lanes`` lanes (this checkout's code)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_sparsefool import pass_costs
    from sparsejax import data, models

    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / WEIGHTS)
    x = data.load_dataset("cifar10", n=max(n_lanes, 1)).x
    return pass_costs(model, x, n_lanes, 1)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, type=Path, help="a checkout of 0.1 (7a10d08)")
    ap.add_argument("--new", type=Path, default=ROOT, help="the checkout to compare (this one)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument(
        "--cases", nargs="+", default=["sparsefool", "sparsefool-sweep", "sparse-l0", "sapf", "cli"]
    )
    args = ap.parse_args()
    roots = {"old": args.baseline.resolve(), "new": args.new.resolve()}
    rows, checks = [], {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    for case in [c for c in args.cases if c != "cli"]:
        versions = [("old", case), ("new", case)]
        if case == "sapf":
            versions.append(("new", "sapf-4-lanes"))
        best = {}
        for rep in range(args.reps):
            for version, c in versions:
                out = tmp / f"{version}_{c}_{rep}.npz"
                r = _run(roots[version], version, c, args.n, out)
                key = (version, c)
                if key not in best or r["seconds"] < best[key]["seconds"]:
                    best[key] = {**r, "npz": str(out)}
                print(json.dumps(r), flush=True)
        old_adv = np.load(best[("old", case)]["npz"])
        flat = lambda a: a.reshape(-1, int(np.prod(a.shape[-3:])))
        for r in best.values():
            adv = np.load(r["npz"])
            same = (flat(adv["x_adv"]) == flat(old_adv["x_adv"])).all(axis=1)
            r["images_identical_to_0.1"] = f"{int(same.sum())}/{same.size}"
            r["same_success_as_0.1"] = bool(np.array_equal(adv["success"], old_adv["success"]))
            rows.append(r)
    # The floor: Σ forwards·t_F + VJP rows·t_B, with the per-pass costs timed on the lanes
    # the attack uses (1 for the queues, n for Lin et al.'s lockstep), by this checkout.
    costs = {lanes: _pass_costs(lanes) for lanes in (1, args.n)}
    for r in rows:
        t_f, t_b = costs[args.n if r["case"] == "sparse-l0" else 1]
        floor = r["forwards"] * t_f + r["backwards"] * t_b
        r["wall_over_floor"] = r["seconds"] / floor if r["case"] != "sparsefool-sweep" else None
    checks["pass_costs"] = {
        str(k): {"t_forward_s": v[0], "t_backward_row_s": v[1]} for k, v in costs.items()
    }
    cli = []
    if "cli" in args.cases:
        cache = tmp / "jax-cache"
        for rep in range(args.reps):
            cli.append({**_cli(roots["old"], "old", tmp / f"cli_old_{rep}", None), "run": "0.1"})
            cli.append(
                {**_cli(roots["new"], "new", tmp / f"cli_nocache_{rep}", None), "run": "no cache"}
            )
        cli.append({**_cli(roots["new"], "new", tmp / "cli_cold", cache), "run": "cold cache"})
        cli.append({**_cli(roots["new"], "new", tmp / "cli_warm", cache), "run": "warm cache"})
        for c in cli:
            print(json.dumps(c), flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = {"n": args.n, "reps": args.reps, "rows": rows, "cli": cli, **checks}
    (out / "engine.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "| case | code | s/item | compile s | success | median ℓ0 px / el | passes/item "
        "| wall/floor | x_adv = 0.1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        wf = "–" if r["wall_over_floor"] is None else f"{r['wall_over_floor']:.2f}"
        lines.append(
            f"| {r['case']} | {'0.1' if r['version'] == 'old' else 'engine'} | "
            f"{r['seconds_per_item']:.3f} | {r['compile_s']:.1f} | "
            f"{100 * r['success_rate']:.1f}% | "
            f"{r['median_l0_pixels']:.0f} / {r['median_l0_elements']:.0f} | "
            f"{r['passes_per_item']:.0f} | {wf} | {r['images_identical_to_0.1']} |"
        )
    if cli:
        lines += [
            "",
            "| sparsejax attack, 20 images | wall s | compile s | attack s |",
            "|---|---|---|---|",
        ]
        for c in cli:
            lines.append(
                f"| {c['run']} | {c['wall_s']:.1f} | {c['compile_s']:.2f} | {c['attack_s']:.1f} |"
            )
    (out / "engine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
