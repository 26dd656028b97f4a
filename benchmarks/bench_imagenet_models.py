"""The torchvision ImageNet architectures: sparsejax's Flax ports beside torchvision's own
modules on this CPU, forward pass and forward + input-gradient pass, time per image and
peak memory, at batch 1 and at the largest batch of ``--batches`` whose peak stays within
``--limit-gib``.

COMMAND:
  .venv/bin/python benchmarks/bench_imagenet_models.py [--archs vgg16,...]
      [--batches 1,2,4,8,16,32,64,128] [--limit-gib 8] [--reps 3]
      [--torch-python /work/tvenv/bin/python]

Writes benchmarks/results/imagenet_models{--tag}.{json,md}. With ``--depthwise``, instead:
one depthwise layer three ways (``depthwise_costs``) -> results/imagenet_depthwise.{json,md}.
``--jax-xla-flags`` sets the sparsejax processes' XLA_FLAGS (to try other XLA:CPU settings).

Both sides run the same seeded weights (``tests/reference/seeded_torchvision_weights.py``
on the keys of the committed parity fixture, the weights the parity test checks) on the
same seeded uniform-random images in [0, 1]: sparsejax through the registry's port and the
model's ``logits_fn``, torchvision (another interpreter with torchvision, ``weights=None``
+ ``load_state_dict``, eval mode, 2 threads) on the ImageNet-normalized NCHW batch. The
gradient is that of a logit margin w.r.t. the input (one VJP row, as the attacks run it).
sparsejax runs k passes inside one compiled ``fori_loop`` (the way attacks run them), k
chosen so that one run lasts about ``--min-run-s``; torchvision a Python loop of k passes;
best of ``--reps`` runs, compilation and the first call excluded.

Every (side, architecture, batch) runs in a process of its own. Peak memory is that
process's peak resident set (VmHWM) from the moment its weights are loaded (the
high-water mark is reset there, after the seeded-weight generation is freed) through the
first call (compilation) and the timed runs, per pass: forward first, then the mark is
reset again for the gradient pass.

The largest batch: the largest listed batch whose measured peak (sparsejax's
forward+gradient pass) stays within the limit, while the next listed batch's measured peak
does not (``choose_and_measure``; a linear extrapolation from batches 1 and 8 only picks
where to start). torchvision runs at the batch sparsejax gets; its own peak is reported,
not used to choose. ``--resume`` reuses the runs of an earlier results/imagenet_models.json
(each run is one process and does not depend on the others). sparsejax and
torchvision run one after the other at each batch, so that a change in the machine's load
(it is shared) falls on both alike as far as possible; the load averages before and after
each process are in the JSON.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "torchvision_imagenet.json.gz"
ARCHS = "vgg16,vgg19,resnet18,resnet50,resnet101,resnet152,densenet161,inception_v3,mobilenet_v2"
TORCH_CTOR = {  # constructor arguments besides weights=None (as the fixture's)
    "vgg16": {"init_weights": False},
    "vgg19": {"init_weights": False},
    "inception_v3": {"aux_logits": True, "transform_input": True, "init_weights": False},
}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PROBE = 8  # the second batch whose peak the choice of the largest batch extrapolates from


# ---- helpers shared by both children (NumPy and the standard library only) ----------------


def _meta() -> dict:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        return json.load(f)


def _seeded(name: str):
    sys.path.insert(0, str(ROOT))
    from tests.reference.seeded_torchvision_weights import seeded_state_dict

    meta = _meta()
    arch = meta["architectures"][name]
    kw = {"bn_weight": tuple(arch["bn_weight"])} if arch["bn_weight"] else {}
    return seeded_state_dict(arch["keys"], meta["seed"], **kw), arch["side"]


def _images(batch: int, side: int):
    import numpy as np

    return np.random.default_rng([7, batch, side]).random((batch, side, side, 3), np.float32)


def _reset_peak() -> None:
    """Resets this process's VmHWM to its current RSS (Linux: 5 > /proc/self/clear_refs)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB -> GiB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _time_runs(run, batch: int, reps: int, min_run_s: float) -> dict:
    """``run(k)`` does k passes and blocks. Returns ms per image, the first call's seconds
    (compilation included), k and the peak since the caller's reset; with ``reps == 0``
    only the first call and the peak."""
    t0 = time.perf_counter()
    run(1)
    first = time.perf_counter() - t0
    if reps == 0:  # a peak check: one call, no timing
        return {"ms_per_image": None, "first_call_s": first, "k": 0, "peak_gib": _peak_gib()}
    t0 = time.perf_counter()
    run(1)
    one = time.perf_counter() - t0
    k = max(1, math.ceil(min_run_s / max(one, 1e-6)))
    best = one
    for _ in range(reps):
        t0 = time.perf_counter()
        run(k)
        best = min(best, (time.perf_counter() - t0) / k)
    return {"ms_per_image": 1e3 * best / batch, "first_call_s": first, "k": k,
            "peak_gib": _peak_gib()}  # fmt: skip


# ---- the children ---------------------------------------------------------------------------


def child_jax(name: str, batch: int, reps: int, min_run_s: float) -> dict:
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp

    from sparsejax import _xla, models
    from sparsejax.attacks.losses import logit_margin
    from sparsejax.models.port import state_dict_to_variables

    spec = models.get_spec(name)
    sd, side = _seeded(name)
    variables = jax.tree.map(jnp.asarray, state_dict_to_variables(sd, spec))
    del sd
    f = models.Model(spec, variables, "seeded").logits_fn
    x = jnp.asarray(_images(batch, side))
    y = jnp.zeros((batch,), jnp.int32)

    def margin(z, f):
        return jnp.sum(jax.vmap(logit_margin)(f(z), y))

    grad = jax.grad(margin)
    bodies = {
        "forward": lambda f: lambda i, z: z + 1e-9 * jnp.sum(f(z)),
        "forward+gradient": lambda f: lambda i, z: z + 1e-9 * grad(z, f),
    }
    out = {"jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
           "sparsejax_xla_flag": _xla.FLAG in os.environ.get("XLA_FLAGS", "")}  # fmt: skip
    for kind, body in bodies.items():
        loop = jax.jit(lambda f, z, k, b=body: jax.lax.fori_loop(0, k, b(f), z))
        _reset_peak()
        out[kind] = _time_runs(
            lambda k, loop=loop: jax.block_until_ready(loop(f, x, k)), batch, reps, min_run_s
        )
        del loop
    return out


def child_torch(name: str, batch: int, reps: int, min_run_s: float) -> dict:
    import numpy as np
    import torch
    import torchvision

    torch.set_num_threads(2)
    sd, side = _seeded(name)
    net = getattr(torchvision.models, name)(weights=None, **TORCH_CTOR.get(name, {})).eval()
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()},
                                              strict=False)  # fmt: skip
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    del sd
    for p in net.parameters():
        p.requires_grad_(False)  # the input gradient only, as on the JAX side
    u = torch.from_numpy(np.ascontiguousarray(_images(batch, side).transpose(0, 3, 1, 2)))
    x = (u - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    y = torch.zeros(batch, dtype=torch.long)

    def forward(k):
        with torch.no_grad():
            for _ in range(k):
                net(x)

    def gradient(k):
        for _ in range(k):
            z = x.clone().requires_grad_(True)
            logits = net(z)
            other = logits.masked_fill(torch.nn.functional.one_hot(y, 1000).bool(), -torch.inf)
            (logits.gather(1, y[:, None])[:, 0] - other.max(1).values).sum().backward()

    out = {"torch": torch.__version__, "torchvision": torchvision.__version__,
           "threads": torch.get_num_threads()}  # fmt: skip
    for kind, run in (("forward", forward), ("forward+gradient", gradient)):
        _reset_peak()
        out[kind] = _time_runs(run, batch, reps, min_run_s)
    return out


def depthwise_costs(reps: int) -> list[dict]:
    """One MobileNetV2 depthwise layer three ways, per pass of a compiled 5-pass
    ``fori_loop``: XLA's convolution with ``feature_group_count = C``, the sum of shifted
    slices differentiated by JAX, and ``sparsejax.models.common.conv2d`` (the same sum with
    its own VJP). Why the depthwise path exists; run with ``--depthwise``."""
    shapes = [(8, 112, 96, 2), (8, 56, 144, 1), (8, 14, 576, 1), (1, 112, 32, 1)]
    return [row for shape in shapes for row in _depthwise_shape(*shape, reps)]


def _upsample(y, stride: int, h: int):
    """[B, h', h', C] -> [B, h, h, C], each pixel repeated stride x stride times."""
    import jax.numpy as jnp

    y = jnp.repeat(jnp.repeat(y, stride, axis=1), stride, axis=2)
    return y[:, :h, :h, :]


def _depthwise_shape(b: int, h: int, c: int, stride: int, reps: int) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sparsejax.models import common

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((b, h, h, c), np.float32))
    k = jnp.asarray(rng.random((3, 3, 1, c), np.float32))
    s, pad, side = (stride, stride), ((1, 1), (1, 1)), (h + 2 - 3) // stride + 1
    ways = {
        "xla_grouped_conv": lambda z: jax.lax.conv_general_dilated(
            z, k, s, pad, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
        ),
        "slices_jax_autodiff": lambda z: common._tap_sum(common._pad_hw(z, pad), k, s, (side,) * 2),
        "sparsejax_conv2d": lambda z: common.conv2d(z, k, s, pad, c),
    }
    rows = []
    for way, f in ways.items():
        grad = jax.grad(lambda z, f=f: jnp.sum(f(z) ** 2))
        bodies = {
            # The output, upsampled back to the input's shape, feeds the next pass: an
            # elementwise loop (a full sum instead would be a reduction that XLA:CPU runs on
            # one thread, and would dominate this one-layer pass).
            "forward": lambda i, z, f=f: z + 1e-9 * _upsample(f(z), stride, h),
            "forward+gradient": lambda i, z, g=grad: z + 1e-9 * g(z),
        }
        for kind, body in bodies.items():
            loop = jax.jit(lambda z, body=body: jax.lax.fori_loop(0, 5, body, z))
            jax.block_until_ready(loop(x))
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                jax.block_until_ready(loop(x))
                best = min(best, (time.perf_counter() - t0) / 5)
            rows.append({"shape": [b, h, h, c], "stride": stride, "way": way,
                         "pass": kind, "ms": 1e3 * best})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


# ---- the driver -----------------------------------------------------------------------------


def run_child(side: str, name: str, batch: int, args, reps: int | None = None) -> dict:
    python = sys.executable if side == "jax" else args.torch_python
    reps = args.reps if reps is None else reps
    cmd = [python, __file__, "--child", side, "--archs", name, "--batches", str(batch),
           "--reps", str(reps), "--min-run-s", str(args.min_run_s)]  # fmt: skip
    env = dict(os.environ)
    if side == "jax" and args.jax_xla_flags is not None:
        env["XLA_FLAGS"] = args.jax_xla_flags  # sparsejax adds its own flag only if absent
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{side} {name} batch {batch} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res.update(wall_s=time.perf_counter() - t0, loadavg_before=load0,
               loadavg_after=os.getloadavg()[0])  # fmt: skip
    print(side, name, batch, {k: res[k] for k in ("forward", "forward+gradient")}, flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default=ARCHS)
    ap.add_argument("--batches", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--limit-gib", type=float, default=8.0)
    ap.add_argument("--reps", type=int, default=3, help="best of, at batch 1")
    ap.add_argument("--reps-large", type=int, default=2, help="best of, at the largest batch")
    ap.add_argument("--min-run-s", type=float, default=1.0)
    ap.add_argument("--torch-python", default="/work/tvenv/bin/python")
    ap.add_argument("--depthwise", action="store_true", help="only the depthwise comparison")
    ap.add_argument("--resume", action="store_true", help="reuse the runs of results/*.json")
    ap.add_argument("--jax-xla-flags", help="XLA_FLAGS of the sparsejax processes")
    ap.add_argument("--tag", default="", help="results/imagenet_models<tag>.{json,md}")
    ap.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.depthwise:
        rows = depthwise_costs(args.reps)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "imagenet_depthwise.json").write_text(json.dumps({"rows": rows}, indent=1))
        table = {}
        for r in rows:
            table.setdefault((tuple(r["shape"]), r["stride"], r["pass"]), {})[r["way"]] = r["ms"]
        lines = [
            "| input [B, H, W, C] | stride | pass | XLA grouped conv (ms) "
            "| slices, JAX's autodiff (ms) | sparsejax conv2d (ms) |",
            "|---|---|---|---|---|---|",
        ]
        for (shape, stride, kind), w in table.items():
            lines.append(
                f"| {list(shape)} | {stride} | {kind} | {w['xla_grouped_conv']:.3g} "
                f"| {w['slices_jax_autodiff']:.3g} | {w['sparsejax_conv2d']:.3g} |"
            )
        (OUT / "imagenet_depthwise.md").write_text("\n".join(lines) + "\n")
        return
    names, batches = args.archs.split(","), [int(b) for b in args.batches.split(",")]
    if args.child:  # one measurement, printed as one JSON line
        fn = child_jax if args.child == "jax" else child_torch
        print(json.dumps(fn(names[0], batches[0], args.reps, args.min_run_s)))
        return

    previous = {}
    if args.resume and (OUT / f"imagenet_models{args.tag}.json").exists():
        previous = json.loads((OUT / f"imagenet_models{args.tag}.json").read_text())["runs"]
    results = {}  # name -> {"batches": {b: {"jax": ..., "torch": ...}}, "largest": b, ...}
    for name in names:
        results[name] = choose_and_measure(name, batches, args, previous.get(name, {}))
        write(results, args)  # after every architecture: a crash keeps what was measured


def choose_and_measure(name: str, batches: list[int], args, old: dict) -> dict:
    """Batch 1, the probe, then the largest listed batch whose measured peak (sparsejax's
    forward+gradient pass) is within the limit: start at the extrapolated guess, step down
    while over the limit, step up while the next batch's peak (a one-run check) is within.
    With ``--resume``, runs of ``old`` (an earlier run of this script) are reused."""
    old_full = {int(b): r for b, r in old.get("batches", {}).items()}
    old_checks = {int(b): r for b, r in old.get("checks", {}).items()}
    runs, checks = {}, {}

    def full(b: int, side: str) -> dict:
        if side in old_full.get(b, {}):
            runs.setdefault(b, {})[side] = old_full[b][side]
        else:
            reps = args.reps if b == 1 else args.reps_large
            runs.setdefault(b, {})[side] = run_child(side, name, b, args, reps=reps)
        return runs[b][side]

    def peak(r: dict) -> float:
        return r["forward+gradient"]["peak_gib"]

    def check(b: int) -> float:  # the peak at b: any earlier run, or a one-run check
        for r in (runs.get(b, {}).get("jax"), old_full.get(b, {}).get("jax"), old_checks.get(b)):
            if r is not None:
                checks[b] = r
                return peak(r)
        checks[b] = run_child("jax", name, b, args, reps=0)
        return peak(checks[b])

    full(1, "jax")
    full(1, "torch")
    if batches == [1]:
        return {"largest": 1, "batches": {"1": runs[1]}}
    probe = old.get("probe", {}).get("jax") or run_child("jax", name, PROBE, args, reps=1)
    per_image = max((peak(probe) - peak(runs[1]["jax"])) / (PROBE - 1), 1e-6)
    guess = [b for b in batches if peak(probe) + (b - PROBE) * per_image <= args.limit_gib]
    i = batches.index(max(guess or [1]))
    while i > 0:
        if peak(full(batches[i], "jax")) > args.limit_gib:
            i -= 1  # over: one down (its own run decides again)
        elif i + 1 < len(batches) and check(batches[i + 1]) <= args.limit_gib:
            i += 1  # the next one fits too: one up
        else:
            break
    largest = batches[i]
    full(largest, "torch")
    for b, r in runs.items():  # full runs that ended over the limit: kept as checks
        if b not in (1, largest):
            checks[b] = r["jax"]
    over = {b: peak(r["jax"]) for b, r in runs.items() if peak(r["jax"]) > args.limit_gib}
    return {"largest": largest, "probe": {"batch": PROBE, "jax": probe},
            "predicted_gib_per_image": per_image,
            "batches": {str(b): r for b, r in sorted(runs.items()) if b in (1, largest)},
            "checks": {str(b): r for b, r in sorted(checks.items()) if b != largest},
            "over_limit_gib": {str(b): p for b, p in sorted(over.items())}}  # fmt: skip


def write(results: dict, args) -> None:
    rows = []
    for name, res in results.items():
        for b in sorted({1, res["largest"]}):
            r = res["batches"][str(b)]
            for kind in ("forward", "forward+gradient"):
                j, t = r["jax"][kind], r["torch"][kind]
                rows.append({"model": name, "batch": b, "pass": kind,
                             "sparsejax_ms_per_image": j["ms_per_image"],
                             "torchvision_ms_per_image": t["ms_per_image"],
                             "sparsejax_peak_gib": j["peak_gib"],
                             "torchvision_peak_gib": t["peak_gib"],
                             "sparsejax_first_call_s": j["first_call_s"],
                             "loadavg_before": [r["jax"]["loadavg_before"],
                                                r["torch"]["loadavg_before"]]})  # fmt: skip
    first = next(iter(results.values()))["batches"]["1"]
    versions = {"jax": first["jax"]["jax"], "torch": first["torch"]["torch"],
                "torchvision": first["torch"]["torchvision"],
                "xla_flags": first["jax"]["xla_flags"], "cpus": os.cpu_count()}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "imagenet_models" + args.tag
    doc = {"rows": rows, "runs": results, "versions": versions, "limit_gib": args.limit_gib,
           "reps": args.reps, "reps_large": args.reps_large, "argv": sys.argv[1:]}  # fmt: skip
    (OUT / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    lines = [
        "| model | batch | pass | sparsejax ms/image | torchvision ms/image "
        "| sparsejax / torchvision | sparsejax peak GiB | torchvision peak GiB "
        "| sparsejax first call s | load before (sparsejax, torchvision) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, t = r["sparsejax_ms_per_image"], r["torchvision_ms_per_image"]
        la, lb = r["loadavg_before"]
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['pass']} | {s:.3g} | {t:.3g} | {s / t:.2f} "
            f"| {r['sparsejax_peak_gib']:.2f} | {r['torchvision_peak_gib']:.2f} "
            f"| {r['sparsejax_first_call_s']:.1f} | {la:.1f}, {lb:.1f} |"
        )
    (OUT / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
