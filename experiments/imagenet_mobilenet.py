"""The founding papers' ImageNet protocols on the one real ImageNet model here: Google's
MobileNetV2 (TFLite, float reconstruction: ``mobilenet_v2-tflite``) on the 200 shared
validation images.

COMMAND: .venv/bin/python experiments/imagenet_mobilenet.py [--n 20] [--only a,b,solver]
    → results/imagenet_mobilenet.{json,md}, figures/imagenet_<attack>_examples.png
    (runs, resumable, in experiments/runs/imagenet/; run it alone: it times)

The first n images (in labels.txt order), through ``sparsejax.runner`` (batches of n, the
CPU's default schedule), each attack at:

- SparseFool (Table 2): λ = 3, max_iter = 50 (the reference's demo scripts; its code's
  default is 20, which breaks off before success on ImageNet), DeepFool's defaults;
- the random subset (SparseFool §4.1): per channel as many elements as SparseFool's median
  over the images of its changed elements in that channel, values in {0, 1}, one draw;
- Lin et al.: Algorithm 1 with the released loss scale at the paper's ImageNet settings
  (λ = 1e-3, 200 steps; §5.1), untargeted; and at its CIFAR-10 settings (the library's
  defaults: λ = 1e-2, 100 steps) as ``sparse-l0@cifar-defaults``;
- σ-zero: adv_lib's defaults (1000 steps);
- Sparse-RS at k = 50 pixels (the fixed-k protocol of Croce et al.'s ImageNet table),
  1000 queries, not the reference's 10,000 (CPU time; stated in the table).

Per attack: success over the correctly classified images, median ℓ0 in pixels, % of the
224×224 pixels and elements (over successes), mean ℓ0, seconds and model passes per
attacked image, and the process's peak resident memory during the attack (VmHWM, reset
before each attack through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np

from sparsejax import attacks, data, models, runner

HERE = Path(__file__).parent
WEIGHTS = "weights/imagenet/mobilenet_v2_1.0_224_quant.tflite"
DATASET = "data/imagenet_val200"
ATTACKS = {
    "sparsefool": ["lambda_=3.0", "max_iter=50"],
    "random-subset": [],  # channel_k from SparseFool's results
    "sparse-l0": ["lambda_=0.001", "steps=200"],  # the paper's ImageNet settings (§5.1)
    "sparse-l0@cifar-defaults": [],  # its CIFAR-10 settings, the library's defaults
    "sigma-zero": [],
    "sparse-rs": ["k=50", "unit=pixels", "queries=1000"],
}
# SparseFool Table 2 (PyTorch models, GPU): fooling rate %, perturbation % of pixels, s.
PAPER_TABLE2 = {
    "VGG-16": (100, 0.18, 5.09),
    "ResNet-101": (100, 0.23, 8.07),
    "DenseNet-161": (100, 0.29, 10.07),
    "Inception-v3": (100, 0.14, 4.94),
}
PAPER_RANDOM = "18.2 / 13.2 / 14.5 / 9.6% (the random subset on the four models)"


def peak_rss_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def peak_rss_gib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def channel_medians(out: Path, ds) -> list[int]:
    """SparseFool's per-channel median count of changed elements over its successes."""
    res = json.loads((out / "results.json").read_text())
    x_adv = np.load(out / "adversarials.npz")["x_adv"]
    pos = {int(v): i for i, v in enumerate(ds.indices)}
    ok = [i for i, e in enumerate(res["examples"]) if e["success"]]
    counts = np.array(
        [(x_adv[i] != ds.x[pos[res["examples"][i]["index"]]]).sum(axis=(0, 1)) for i in ok]
    )  # [successes, C]
    return [int(np.median(counts[:, c])) for c in range(counts.shape[1])]


def solver_on_imagenet(model, ds, n_images: int = 5, reps: int = 3) -> dict:
    """The LinearSolver (Algorithm 1) alone on 150,528 coordinates: for each of the first
    ``n_images`` correctly classified images the plane of its first SparseFool iteration
    (the normal w = ∇(f_k − f_label) at x toward the runner-up class k, the boundary point
    x + 1.02 r of the linearised minimal ℓ2 step r), the solver jitted, its coordinates
    moved and its time (best of ``reps``, compilation excluded)."""
    import jax
    import jax.numpy as jnp

    from sparsejax.attacks._linear_solver import linear_solver

    solve = jax.jit(linear_solver)
    rows = []
    correct = np.flatnonzero(model.predict(ds.x).argmax(1) == ds.y)[:n_images]
    for i in correct:
        x = jnp.asarray(ds.x[i])
        logits = model.logits_fn(x[None])[0]
        label = int(ds.y[i])
        k = int(jnp.argsort(-logits)[1])  # the runner-up class
        margin = lambda z, k=k, label=label: (  # noqa: E731
            model.logits_fn(z[None])[0, k] - model.logits_fn(z[None])[0, label]
        )
        f, w = jax.value_and_grad(margin)(x)
        r = -f / jnp.sum(w * w) * w  # the linearised minimal step onto f = 0
        args = (x, w, x + 1.02 * r, jnp.zeros_like(x), jnp.ones_like(x))
        sol = jax.block_until_ready(solve(*args))
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(solve(*args))
            best = min(best, time.perf_counter() - t0)
        rows.append({"image": int(ds.indices[i]), "coordinates_moved": int(sol.iterations),
                     "reached": bool(sol.reached), "seconds": best})  # fmt: skip
    return {
        "coordinates": int(np.prod(model.input_shape)),
        "images": rows,
        "median_coordinates_moved": float(np.median([r["coordinates_moved"] for r in rows])),
        "median_seconds": float(np.median([r["seconds"] for r in rows])),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--only", default=",".join([*ATTACKS, "solver"]))
    args = ap.parse_args()
    assets = data.require_assets()
    model = models.load("mobilenet_v2-tflite", assets / WEIGHTS)
    ds = data.load_dataset(
        f"imagenet:{assets / DATASET}", n=args.n, preprocessing=model.spec.preprocessing
    )
    runs = HERE / "runs" / "imagenet"
    table_file = HERE / "results" / "imagenet_mobilenet.json"
    table = json.loads(table_file.read_text()) if table_file.exists() else {}
    table.setdefault("attacks", {})
    for name in [a for a in args.only.split(",") if a != "solver"]:
        spec = attacks.get(name.split("@")[0])  # label: attack[@variant]
        overrides = list(ATTACKS[name])
        config = runner.make_config(spec, overrides)
        if name == "random-subset":  # a tuple field: not settable as a --set string
            medians = channel_medians(runs / "sparsefool", ds)
            config = dataclasses.replace(config, channel_k=tuple(float(m) for m in medians))
            overrides.append("channel_k=" + ",".join(map(str, medians)))
        out = runs / name
        peak_rss_reset()
        t0 = time.perf_counter()
        res = runner.run_attack(spec, config, model, ds, out, batch_size=args.n)
        wall = time.perf_counter() - t0
        s = res["summary"]
        hw = model.input_shape[0] * model.input_shape[1]
        row = {
            "config": overrides,
            "success_rate": s["success_rate"],
            "median_l0_pixels": s["median_l0_pixels"],
            "median_l0_pixels_pct": s["median_l0_pixels_pct"],
            "median_l0_elements": s["median_l0_elements"],
            "mean_l0_pixels": s["mean_l0_pixels"],
            "mean_l0_pixels_pct": None if s["mean_l0_pixels"] is None
            else 100 * s["mean_l0_pixels"] / hw,
            "time_per_sample_s": s["time_per_sample_s"],
            "model_evals_per_sample": s["model_evals_per_sample"],
            "compile_s": s["compile_s"],
            "wall_s_this_session": wall,
            "peak_rss_gib": peak_rss_gib(),
        }  # fmt: skip
        table["attacks"][name] = row
        fig = runner.examples_figure(res, ds, out)
        if fig:
            shutil.copy(fig, HERE / "figures" / f"imagenet_{name}_examples.png")
        print(name, json.dumps(row), flush=True)
    if "solver" in args.only.split(","):
        table["linear_solver"] = solver_on_imagenet(model, ds)
        print("linear solver", json.dumps(table["linear_solver"]), flush=True)
    table.update(
        model="mobilenet_v2-tflite", weights=WEIGHTS, n=args.n,
        clean_accuracy=float((model.predict(ds.x).argmax(1) == ds.y).mean()),
        paper_table2=PAPER_TABLE2,
    )  # fmt: skip
    table_file.write_text(json.dumps(table, indent=1) + "\n")
    lines = [
        "| attack | success | median ℓ0 px (% of pixels) | median ℓ0 elements | mean ℓ0 px "
        "(%) | s/image | passes/image | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in table["attacks"].items():
        f = lambda v, fmt: "–" if v is None else format(v, fmt)  # noqa: E731
        lines.append(
            f"| {name} ({', '.join(r['config']) or 'defaults'}) | "
            f"{f(100 * r['success_rate'], '.1f')}% | {f(r['median_l0_pixels'], 'g')} "
            f"({f(r['median_l0_pixels_pct'], '.2f')}%) | {f(r['median_l0_elements'], 'g')} | "
            f"{f(r['mean_l0_pixels'], '.1f')} ({f(r['mean_l0_pixels_pct'], '.2f')}%) | "
            f"{f(r['time_per_sample_s'], '.2f')} | {f(r['model_evals_per_sample'], '.0f')} | "
            f"{f(r['peak_rss_gib'], '.2f')} |"
        )
    (HERE / "results" / "imagenet_mobilenet.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
