"""The input-gradient of a convolution on XLA:CPU: XLA's transposed convolution against one
matrix product and a sum of taps (``col2im``), per layer and in whole models.

COMMAND: .venv/bin/python benchmarks/bench_conv_input_grad.py [--reps 5]   # about 4 minutes

Writes benchmarks/results/conv_input_grad.{json,md}.

- Per layer: the six convolution shapes of ResNet-20 at a batch of 94 (CIFAR-10 test images,
  as many as the σ-zero benchmark attacks), forward pass and input-gradient by each route,
  median of ``--reps`` × 10 calls.
- Whole models: a compiled loop of forward + input-gradient steps (the inner loop of every
  white-box attack), with ``sparsejax.models.common``'s choice of route (col2im where the
  layer is strided or has fewer than 8 input channels) against XLA's transposed
  convolution everywhere; both programs compiled in the same process and timed
  alternately, ``--reps`` times each (this VM's speed drifts between minutes, so the two
  are compared round by round). Weights: the shared checkpoints where they exist
  (``--assets``), seeded ones otherwise (the time does not depend on the values).
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

from sparsejax import models  # noqa: E402
from sparsejax.models import common  # noqa: E402

# ResNet-20's convolutions: (side, C_in, C_out, stride), 3x3, padding 1.
RESNET20_LAYERS = [
    (32, 3, 16, 1),
    (32, 16, 16, 1),
    (32, 16, 32, 2),
    (16, 32, 32, 1),
    (16, 32, 64, 2),
    (8, 64, 64, 1),
]
# name: (registry name, checkpoint under --assets or None, input shape, batch, steps)
MODELS = {
    "lenet5": (
        "lenet5-mnist",
        "weights/mnist/advertorch_mnist_lenet5_clntrained.pt",
        (28, 28, 1),
        100,
        20,
    ),
    "smallcnn": (
        "smallcnn-mnist",
        "weights/mnist/sigmazero_mnist_smallcnn_robust_ddn.pth",
        (28, 28, 1),
        100,
        20,
    ),
    "resnet20": ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", (32, 32, 3), 94, 20),
    "resnet18": ("resnet18", None, (224, 224, 3), 8, 3),
    "mobilenet_v2": ("mobilenet_v2", None, (224, 224, 3), 8, 3),
    "vgg16": ("vgg16", None, (224, 224, 3), 4, 3),
}
ROUTES = {"chosen": common._input_grad_by_col2im, "transposed conv": lambda *a: False}


def _median_ms(fn, *args, calls: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _routed(rule):
    """``common._conv2d`` with its VJP taking dx by ``rule`` (a fresh bwd function, so that
    no rule traced earlier is reused from JAX's tracing caches)."""

    def bwd(*args):
        chosen, common._input_grad_by_col2im = common._input_grad_by_col2im, rule
        try:
            return common._conv2d_bwd(*args)
        finally:
            common._input_grad_by_col2im = chosen

    common._conv2d.defvjp(common._conv2d_fwd, bwd)
    jax.clear_caches()


def _transposed_conv_grad(g, kernel, strides, padding, x_shape):
    """dx by XLA's transposed convolution: the route common._conv2d_bwd takes otherwise."""
    x = jnp.zeros(x_shape, g.dtype)
    return jax.vjp(lambda x: common.conv2d(x, kernel, strides, padding), x)[1](g)[0]


def per_layer(batch: int, reps: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for side, cin, cout, stride in RESNET20_LAYERS:
        x = rng.random((batch, side, side, cin), np.float32)
        k = rng.normal(0, 0.1, (3, 3, cin, cout)).astype(np.float32)
        g = rng.normal(size=(batch, side // stride, side // stride, cout)).astype(np.float32)
        s = (stride, stride)
        fwd = jax.jit(lambda x, k, s=s: common.conv2d(x, k, s, common.PAD1))
        col = jax.jit(
            lambda g, k, s=s, sh=x.shape: common._col2im_input_grad(g, k, s, common.PAD1, sh)
        )
        _routed(ROUTES["transposed conv"])  # compiled now: _routed clears JAX's caches
        conv = (
            jax.jit(lambda g, k, s=s, sh=x.shape: _transposed_conv_grad(g, k, s, common.PAD1, sh))
            .lower(g, k)
            .compile()
        )
        _routed(ROUTES["chosen"])
        np.testing.assert_allclose(col(g, k), conv(g, k), rtol=1e-4, atol=1e-4)
        row = {
            "layer": f"{side}x{side}, {cin}->{cout}, stride {stride}",
            "forward_ms": _median_ms(fwd, x, k, calls=10 * reps),
            "dx_transposed_conv_ms": _median_ms(conv, g, k, calls=10 * reps),
            "dx_col2im_ms": _median_ms(col, g, k, calls=10 * reps),
            "chosen": "col2im" if common._input_grad_by_col2im(x.shape, s, 1) else "conv",
        }
        rows.append(row)
        print(row, flush=True)
    return rows


def whole_model(name: str, assets: Path, reps: int) -> dict:
    registry_name, ckpt, shape, batch, steps = MODELS[name]
    path = assets / ckpt if ckpt else None
    model = models.load(registry_name, path) if path and path.exists() else None
    model = model or models.create(registry_name)
    logits = model.logits_fn
    x = np.random.default_rng(0).random((batch, *shape), np.float32)
    y = np.arange(batch) % 10

    def loss(x):
        z = logits(x)
        return jnp.sum(z[jnp.arange(batch), y] - jnp.max(z, -1))

    def step_loop(x):
        def body(_, carry):
            x, acc = carry
            value, grad = jax.value_and_grad(loss)(x)
            return x + 1e-3 * jnp.sign(grad), acc + value

        return jax.lax.fori_loop(0, steps, body, (x, 0.0))

    programs = {}
    for route, rule in ROUTES.items():
        _routed(rule)
        programs[route] = jax.jit(step_loop).lower(x).compile()
    _routed(ROUTES["chosen"])
    times = {route: [] for route in programs}
    for _ in range(reps):
        for route, program in programs.items():
            jax.block_until_ready(program(x))
            t0 = time.perf_counter()
            jax.block_until_ready(program(x))
            times[route].append((time.perf_counter() - t0) / steps / batch * 1e3)
    ratios = [a / b for a, b in zip(times["chosen"], times["transposed conv"], strict=True)]
    row = {
        "model": name,
        "weights": str(ckpt) if model is not None and path and path.exists() else "seeded",
        "batch": batch,
        "steps": steps,
        "ms_per_image_step_chosen": float(np.median(times["chosen"])),
        "ms_per_image_step_transposed_conv": float(np.median(times["transposed conv"])),
        "ratio_median": float(np.median(ratios)),
        "ratio_per_round": ratios,
    }
    print(row, flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--assets", type=Path, default=ROOT.parent / "shared" / "assets")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    layers = per_layer(94, args.reps)
    whole = [whole_model(name, args.assets, args.reps) for name in args.models.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "layers": layers,
        "models": whole,
    }
    (args.out / "conv_input_grad.json").write_text(json.dumps(result, indent=1))
    md = (
        [
            "| ResNet-20 layer (batch 94) | forward ms | dx, transposed conv ms | dx, col2im ms "
            "| route taken |",
            "|---|---|---|---|---|",
        ]
        + [
            f"| {r['layer']} | {r['forward_ms']:.2f} | {r['dx_transposed_conv_ms']:.2f} | "
            f"{r['dx_col2im_ms']:.2f} | {r['chosen']} |"
            for r in layers
        ]
        + [
            "",
            "| model | batch | ms per image and step, chosen routes | transposed conv only "
            "| ratio (median of rounds) |",
            "|---|---|---|---|---|",
        ]
        + [
            f"| {r['model']} ({r['weights']}) | {r['batch']} | {r['ms_per_image_step_chosen']:.3f} "
            f"| {r['ms_per_image_step_transposed_conv']:.3f} | {r['ratio_median']:.3f} |"
            for r in whole
        ]
    )
    (args.out / "conv_input_grad.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
