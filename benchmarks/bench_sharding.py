"""Batches split over simulated CPU devices and runs shared by processes (issue 16):
throughput against the device count and the process count, and what the split costs at
one device.

COMMAND: .venv/bin/python benchmarks/bench_sharding.py [--n 200] [--model lenet5]
    → benchmarks/results/sharding_<model>.json

Processes: the same job (both attacks) through ``sparsejax attack`` as 1 process and as 2
processes on localhost through ``jax.distributed`` (``--coordinator``; each process 1
device and one compiled call at a time, ``--workers 1``), batches of n/8; beside them 1
process with one call per core (``--workers 2``, the default here). Reported: the
wall time from the start of the processes to process 0's exit (start-up and compilation
included) and the attack-phase throughput results.json records.

Each configuration runs in a process of its own (JAX fixes the device count when it
starts): a plain process (1 device, no split: the baseline) and a process with
``--xla_force_host_platform_device_count=8`` running the same runner job on 1, 2, 4 and 8
of its devices. The job: the first n test images, SparseFool (λ = 1; a refill queue) and
sPGD (k = 10 pixels, 100 steps, projected; early stop, a refill queue) through
``sparsejax.runner`` with one compiled call at a time (``workers=1``, so that the devices
are the only parallelism), batches of n; best of ``--reps`` runs, compilation excluded.
The split at one device: the attack function compiled plain and inside
``execute._split_over_devices(attack, 1)``, timed on the same batch.
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

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "lenet5": ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_clntrained.pt", "mnist"),
    "resnet20": ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10"),
}
ATTACKS = {"sparsefool": ["lambda_=1.0"], "spgd": ["k=10", "steps=100"]}


def worker(args) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    import jax

    from sparsejax import data, models, runner
    from sparsejax.attacks import get

    name, weights, dataset = MODELS[args.model]
    model = models.load(name, data.require_assets() / weights)
    ds = data.load_dataset(dataset, n=args.n)
    rows = []
    device_counts = [1] if jax.local_device_count() == 1 else [1, 2, 4, 8]
    for attack, overrides in ATTACKS.items():
        spec = get(attack)
        config = runner.make_config(spec, overrides)
        for d in device_counts:
            best = None
            for _ in range(args.reps):
                with tempfile.TemporaryDirectory() as out:
                    res = runner.run_attack(
                        spec, config, model, ds, out, batch_size=args.n, progress=False,
                        workers=1, devices=d,
                    )  # fmt: skip
                s = res["summary"]
                if best is None or s["attack_seconds"] < best["attack_seconds"]:
                    best = s
            rows.append(
                {
                    "process_devices": jax.local_device_count(),
                    "attack": attack,
                    "devices": d,
                    "attack_seconds": best["attack_seconds"],
                    "items_per_second": best["items_per_second"],
                    "items_per_second_per_device": best["items_per_second_per_device"],
                    "success_rate": best["success_rate"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if jax.local_device_count() == 1:
        rows.extend(split_overhead(model, ds, args.reps))
    return rows


def split_overhead(model, ds, reps) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from sparsejax import runner
    from sparsejax.attacks import Schedule, get
    from sparsejax.runner import execute

    out = []
    for attack, overrides in ATTACKS.items():
        spec = get(attack)
        config = runner.make_config(spec, overrides)

        def fn(f, x, y, c, targets, mask, key_data, extras, spec=spec):
            r = spec.fn(
                f, x, y, c, mask=mask, key=jax.random.wrap_key_data(key_data),
                schedule=Schedule("queue", 8),
            )  # fmt: skip
            return {"x_adv": r.x_adv}

        n = len(ds)
        keys = jax.random.key_data(jax.random.split(jax.random.key(0), n))
        a = (model.logits_fn, jnp.asarray(ds.x), jnp.asarray(ds.y), config, None,
             jnp.ones(n, bool), keys, {})  # fmt: skip
        times = {}
        for label, f in (
            ("plain", fn),
            ("split over 1 device", execute._split_over_devices(fn, 1)),
        ):
            compiled = jax.jit(f).lower(*a).compile()
            jax.block_until_ready(compiled(*a))
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(*a))
                best = min(best, time.perf_counter() - t0)
            times[label] = best
        out.append({"attack": attack, "overhead_at_1_device": times})
        print(json.dumps(out[-1]), flush=True)
    return out


def process_rows(args) -> list[dict]:
    import socket

    from sparsejax import data

    name, weights, dataset = MODELS[args.model]
    weights = str(data.require_assets() / weights)
    rows = []
    for attack, overrides in ATTACKS.items():
        for procs, workers in ((1, 1), (1, 2), (2, 1)):
            best = None
            for _ in range(args.reps):
                with tempfile.TemporaryDirectory() as out, socket.socket() as sock:
                    sock.bind(("localhost", 0))
                    port = sock.getsockname()[1]
                    sock.close()
                    cmd = [
                        sys.executable, "-m", "sparsejax.cli", "--no-compile-cache", "attack",
                        "--attack", attack,
                        "--model", name, "--weights", weights, "--dataset", dataset,
                        "--n", str(args.n), "--batch-size", str(max(args.n // 8, 1)),
                        "--workers", str(workers), "--out", out,
                        *[a for o in overrides for a in ("--set", o)],
                    ]  # fmt: skip
                    job = [["--coordinator", f"localhost:{port}", "--num-processes",
                            str(procs), "--process-id", str(i)] for i in range(procs)]  # fmt: skip
                    t0 = time.perf_counter()
                    ps = [
                        subprocess.Popen(
                            [*cmd, *(job[i] if procs > 1 else [])],
                            cwd=ROOT,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            text=True,
                        )  # fmt: skip
                        for i in range(procs)
                    ]
                    errs = [p.communicate()[1] for p in ps]
                    wall = time.perf_counter() - t0
                    assert all(p.returncode == 0 for p in ps), errs
                    s = json.loads((Path(out) / "results.json").read_text())["summary"]
                row = {
                    "attack": attack, "processes": procs, "workers_per_process": workers,
                    "wall_seconds": wall, "attack_seconds_summed": s["attack_seconds"],
                    "items_per_second": s["items_per_second"],
                    "items_per_second_per_device": s["items_per_second_per_device"],
                    "success_rate": s["success_rate"],
                }  # fmt: skip
                if best is None or row["wall_seconds"] < best["wall_seconds"]:
                    best = row
            rows.append(best)
            print(json.dumps(best), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", choices=sorted(MODELS), default="lenet5")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        for row in worker(args):
            print("ROW " + json.dumps(row), flush=True)
        return
    rows = []
    for devices in (1, 8):
        env = dict(os.environ)
        if devices > 1:
            flags = env.get("XLA_FLAGS", "")
            env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}"
        cmd = [sys.executable, __file__, "--worker", "--n", str(args.n), "--model", args.model]
        proc = subprocess.run(
            [*cmd, "--reps", str(args.reps)], env=env, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        rows += [json.loads(ln[4:]) for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
    rows += process_rows(args)
    out = ROOT / "benchmarks" / "results" / f"sharding_{args.model}.json"
    out.write_text(json.dumps({"n": args.n, "model": args.model, "rows": rows}, indent=1) + "\n")
    for r in rows:
        print(r)
    print(f"→ {out}")


if __name__ == "__main__":
    main()
