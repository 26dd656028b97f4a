"""The model passes every attack is made of, on this CPU: the shared models' forward pass and
forward + input-gradient pass in JAX with sparsejax's XLA:CPU setting (``sparsejax/_xla.py``),
in JAX with XLA's default (the same script in a subprocess with SPARSEJAX_KEEP_XLA_FLAGS=1),
and in PyTorch (2 intra-op threads), on the same images.

COMMAND:
  .venv/bin/python benchmarks/bench_passes.py [--models lenet5,lenet5-pgd,smallcnn-ddn,resnet20]
      [--batches 1,20,100] [--reps 5]

Writes benchmarks/results/passes.{json,md}. Each cost is per pass of the whole batch, inside a
compiled ``fori_loop`` (the way attacks run them; PyTorch: a Python loop), best of ``--reps``
runs alternating between the two kinds of pass. The gradient is that of a logit margin, as
σ-zero's and sPGD's (one VJP row).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.bench_l0_attacks import MODELS, torch_model  # noqa: E402
from sparsejax import _xla, data, models  # noqa: E402
from sparsejax.attacks.losses import logit_margin  # noqa: E402

OUT = ROOT / "benchmarks" / "results"


def _iters(batch: int) -> int:
    return 200 if batch == 1 else 20


def margin(logits, y):
    """Σ_b of the attacks' logit margin (the loss is immaterial to the cost; it must depend
    on x)."""
    return jnp.sum(jax.vmap(logit_margin)(logits, y))


def jax_costs(key: str, batch: int, reps: int) -> dict:
    name, weights, dataset, _ = MODELS[key]
    model = models.load(name, data.require_assets() / weights)
    ds = data.load_dataset(dataset, n=batch)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    t = _iters(batch)
    grad = jax.grad(lambda z, f: margin(f(z), y))
    bodies = {
        "forward": lambda f: lambda i, z: z + 1e-9 * jnp.sum(f(z)),
        "forward+gradient": lambda f: lambda i, z: z + 1e-9 * grad(z, f),
    }
    fns = {
        k: jax.jit(lambda f, z, b=b: jax.lax.fori_loop(0, t, b(f), z)) for k, b in bodies.items()
    }
    for fn in fns.values():
        jax.block_until_ready(fn(model.logits_fn, x))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(model.logits_fn, x))
            best[k] = min(best[k], (time.perf_counter() - t0) / t)
    return best


def torch_costs(key: str, batch: int, reps: int) -> dict:
    import torch

    torch.set_num_threads(2)
    name, weights, dataset, cls = MODELS[key]
    net = torch_model(cls, data.require_assets() / weights)
    ds = data.load_dataset(dataset, n=batch)
    x = torch.tensor(np.ascontiguousarray(ds.x.transpose(0, 3, 1, 2)))
    y = torch.tensor(ds.y, dtype=torch.long)
    t = _iters(batch)

    def forward():
        with torch.no_grad():
            net(x)

    def gradient():
        z = x.clone().requires_grad_(True)
        logits = net(z)
        other = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -1e9)
        (logits.gather(1, y[:, None])[:, 0] - other.max(1).values).sum().backward()

    fns = {"forward": forward, "forward+gradient": gradient}
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(t):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="lenet5,lenet5-pgd,smallcnn-ddn,resnet20")
    ap.add_argument("--batches", default="1,20,100")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--jax-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    keys, batches = args.models.split(","), [int(b) for b in args.batches.split(",")]
    if args.jax_only:  # the subprocess with XLA's default: print its costs as JSON
        costs = {f"{k}/{b}": jax_costs(k, b, args.reps) for k in keys for b in batches}
        print(json.dumps(costs))
        return
    assert _xla.FLAG in os.environ.get("XLA_FLAGS", ""), "sparsejax's setting is not on"
    env = dict(os.environ, SPARSEJAX_KEEP_XLA_FLAGS="1")
    env["XLA_FLAGS"] = env["XLA_FLAGS"].replace(_xla.FLAG, "").strip()
    cmd = [sys.executable, __file__, "--models", args.models, "--batches", args.batches,
           "--reps", str(args.reps), "--jax-only"]  # fmt: skip
    default = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                        text=True).stdout.strip().splitlines()[-1])  # fmt: skip
    rows = []
    for k in keys:
        for b in batches:
            ours, theirs = jax_costs(k, b, args.reps), torch_costs(k, b, args.reps)
            for kind in ("forward", "forward+gradient"):
                rows.append({
                    "model": k, "batch": b, "pass": kind,
                    "jax_sparsejax_ms": 1e3 * ours[kind],
                    "jax_xla_default_ms": 1e3 * default[f"{k}/{b}"][kind],
                    "torch_ms": 1e3 * theirs[kind],
                })  # fmt: skip
                print(rows[-1], flush=True)
    versions = {"jax": jax.__version__, "torch": __import__("torch").__version__,
                "xla_flag": _xla.FLAG}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "passes.json").write_text(json.dumps({"rows": rows, "versions": versions}, indent=1))
    lines = [
        "| model | batch | pass | JAX, sparsejax's setting (ms) | JAX, XLA's default (ms) "
        "| PyTorch (ms) | XLA default / sparsejax | sparsejax / PyTorch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, d, p = r["jax_sparsejax_ms"], r["jax_xla_default_ms"], r["torch_ms"]
        lines.append(f"| {r['model']} | {r['batch']} | {r['pass']} | {s:.3g} | {d:.3g} | "
                     f"{p:.3g} | {d / s:.2f} | {s / p:.2f} |")  # fmt: skip
    (OUT / "passes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
