"""sparsejax C&W-ℓ0 beside Carlini & Wagner's own ``l0_attack.py`` (carlini/nn_robust_attacks,
TensorFlow 1), same MNIST images, same model weights, same budget, in one run.

COMMAND:
  python3 -m venv /tmp/tfenv       # TensorFlow lives outside the project's venv
  /tmp/tfenv/bin/pip install tensorflow-cpu==2.20.0 numpy    # or a downloaded wheel of it
  # the reference repository, brought with the search tool's fetch (a git directory, or a
  # folder or file holding l0_attack.py):
  .venv/bin/python benchmarks/bench_cw_l0.py \
      --reference /work/.mirror/carlini+nn_robust_attacks/repo --tf-python /tmp/tfenv/bin/python \
      [--n 10] [--steps 1000] [--learning-rate 1e-2] [--initial-const 1e-3] \
      [--largest-const 2e6]

Writes benchmarks/results/cw_l0_lenet5.{json,md}. The clean LeNet-5
(``advertorch_mnist_lenet5_clntrained.pt``), the first n MNIST test images (the misclassified
ones skipped by both sides), untargeted on both sides, pixels (the reference's
``independent_channels=False``), abort_early on, reduce_const off (its defaults).

The reference runs unchanged in a second process (``--tf-python``; this same file in its
``--worker`` mode, which imports no JAX): its source is read from ``--reference`` at run
time and executed with ``sys.modules['tensorflow']`` set to ``tf.compat.v1`` (after
``disable_v2_behavior()``), so its ``tf.placeholder``, ``tf.Session`` and
``tf.train.AdamOptimizer`` are TF1's graph API under TF 2.x. Nothing of it is copied here.
Its model is the same LeNet-5 built from TF1 ops on the checkpoint's weights (exported to an
``.npz`` by this process, with torch), taking the reference's [-0.5, 0.5] images (+0.5
inside). The logits of both models on the attacked images are compared.

The reference attacks one image at a time (``attack_single``, called directly: its
``attack()`` cannot take the ``None`` a failed image returns); its time is the wall time of
each call, the graph building excluded, its printing sent to /dev/null. Its session runs on
2 threads. Ours is one compiled call on the batch, compilation excluded. The reference's
images are re-checked with sparsejax's ``logits_fn`` (argmax ≠ label, on the image it
returns, +0.5), and a pixel counts as changed there when |x_adv - x| ≥ 1e-4 (its own test;
its unchanged values come back as (x - 0.5) + 0.5, off by a float32 rounding), in ours when
x_adv ≠ x (it snaps values within 1e-4 back to x). Adam steps and successful ℓ2 solves are
counted on the reference's side through a thin wrapper around its session and its ``grad``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "weights/mnist/advertorch_mnist_lenet5_clntrained.pt"
DEFAULT_REFERENCE = Path("/work/.mirror/carlini+nn_robust_attacks/repo")
EQUAL = 1e-4  # the reference's test for an unchanged value


# ------------------------------------------------------------------ the TensorFlow side


def reference_source(ref: Path) -> tuple[str, str]:
    """(source of ``l0_attack.py``, where it came from): a file, a folder holding it, or a
    git directory (its HEAD)."""
    if ref.is_file():
        return ref.read_text(), str(ref)
    if (ref / "l0_attack.py").is_file():
        return (ref / "l0_attack.py").read_text(), str(ref / "l0_attack.py")
    git = lambda *a: (
        subprocess.run(
            ["git", "-C", str(ref), *a], capture_output=True, text=True, check=True
        ).stdout
    )
    commit = git("rev-parse", "HEAD").strip()
    return git("show", "HEAD:l0_attack.py"), f"{ref} @ {commit}: l0_attack.py"


def tf_lenet5(tf, weights):
    """The advertorch LeNet-5 in TF1 ops, on the reference's [-0.5, 0.5] NHWC images."""
    c = {k: tf.constant(v) for k, v in weights.items()}

    class Model:
        image_size, num_channels, num_labels = 28, 1, 10

        def predict(self, x):
            h = x + 0.5
            for i in (1, 2):
                kernel = tf.transpose(c[f"conv{i}.weight"], [2, 3, 1, 0])  # OIHW -> HWIO
                h = tf.nn.relu(tf.nn.conv2d(h, kernel, [1, 1, 1, 1], "SAME") + c[f"conv{i}.bias"])
                h = tf.nn.max_pool2d(h, 2, 2, "VALID")
            h = tf.reshape(tf.transpose(h, [0, 3, 1, 2]), [-1, 7 * 7 * 64])  # torch's NCHW view
            h = tf.nn.relu(tf.matmul(h, c["linear1.weight"], transpose_b=True) + c["linear1.bias"])
            return tf.matmul(h, c["linear2.weight"], transpose_b=True) + c["linear2.bias"]

    return Model()


def worker(work: Path, reference: Path, stable_argsort: bool = False):
    """Runs the reference on ``work/inputs.npz``; writes ``work/reference.npz``. With
    ``stable_argsort`` its ``np.argsort`` is NumPy's stable sort (ties in unit order, as
    sparsejax's): a diagnostic, not the reference as released."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    tf = tensorflow.compat.v1
    tf.disable_v2_behavior()
    sys.modules["tensorflow"] = tf  # the reference's ``import tensorflow as tf``
    source, origin = reference_source(reference)
    namespace = {"__name__": "l0_attack"}
    exec(compile(source, origin, "exec"), namespace)
    if stable_argsort:
        stable = types.ModuleType("numpy_with_stable_argsort")
        stable.__dict__.update(np.__dict__)
        stable.argsort = lambda a: np.argsort(a, kind="stable")
        namespace["np"] = stable

    inputs = np.load(work / "inputs.npz")
    weights = dict(np.load(work / "weights.npz"))
    x = inputs["x"] - np.float32(0.5)  # the reference's box
    y = inputs["y"]
    budget = json.loads(str(inputs["budget"]))
    n, k = len(y), 10
    onehot = np.eye(k, dtype=np.float32)[y]

    config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
    sess = tf.Session(config=config)
    counts = {"steps": 0, "solves": 0, "rounds": 0}

    class CountingSession:
        """The session, counting the runs that take an Adam step."""

        def run(self, fetches, feed_dict=None):
            if isinstance(fetches, list) and any(
                isinstance(f, tf.Operation) and f.name.startswith("Adam") for f in fetches
            ):
                counts["steps"] += 1
            return sess.run(fetches, feed_dict)

    model = tf_lenet5(tf, weights)
    xin = tf.placeholder(tf.float32, (None, 28, 28, 1))
    logits = sess.run(model.predict(xin), {xin: x})
    t0 = time.perf_counter()
    attack = namespace["CarliniL0"](
        CountingSession(), model, targeted=False, learning_rate=budget["learning_rate"],
        max_iterations=budget["steps"], initial_const=budget["initial_const"],
        largest_const=budget["largest_const"],
    )  # fmt: skip
    build_seconds = time.perf_counter() - t0
    solve = attack.grad

    def counted(*args):
        res = solve(*args)
        counts["solves"] += 1
        counts["rounds"] += res is not None
        return res

    attack.grad = counted

    x_adv = np.zeros_like(x)
    found = np.zeros(n, bool)
    seconds, steps, rounds = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
    with open(os.devnull, "w") as devnull:
        for i in range(n):
            for key in counts:
                counts[key] = 0
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(devnull):
                adv = attack.attack_single(x[i], onehot[i])
            seconds[i] = time.perf_counter() - t0
            steps[i], rounds[i] = counts["steps"], counts["rounds"]
            found[i] = adv is not None
            x_adv[i] = x[i] if adv is None else np.asarray(adv, np.float32).reshape(x[i].shape)
            print(
                f"reference image {i}: {seconds[i]:.1f} s, found {found[i]}, "
                f"{steps[i]} steps, {rounds[i]} rounds",
                flush=True,
            )
    np.savez(
        work / "reference.npz",
        x_adv=x_adv + np.float32(0.5),
        found=found,
        seconds=seconds,
        steps=steps,
        rounds=rounds,
        logits=logits,
        build_seconds=build_seconds,
        origin=origin,
        tensorflow=tensorflow.__version__,
    )


# ------------------------------------------------------------------ the sparsejax side


def export_weights(path: Path, out: Path):
    """The PyTorch state dict as float32 arrays in an .npz."""
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    np.savez(
        out, **{k.removeprefix("module."): v.numpy().astype(np.float32) for k, v in sd.items()}
    )


def rate_row(name, success, l0, seconds, steps, rounds):
    px = l0[success]
    return {
        "implementation": name,
        "n_attacked": int(success.size),
        "success_rate": float(success.mean()),
        "median_l0_pixels": float(np.median(px)) if px.size else None,
        "mean_l0_pixels": float(px.mean()) if px.size else None,
        "seconds_per_image": float(seconds / success.size),
        "adam_steps_per_image": float(np.mean(steps)),
        "rounds_per_image": float(np.mean(rounds)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    ap.add_argument("--tf-python", default="/tmp/tfenv/bin/python")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--learning-rate", type=float, default=1e-2)
    ap.add_argument("--initial-const", type=float, default=1e-3)
    ap.add_argument("--largest-const", type=float, default=2e6)
    ap.add_argument(
        "--stable-argsort", action="store_true",
        help="diagnostic: the reference's np.argsort made stable (ties in unit order, as ours)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.reference, args.stable_argsort)

    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp

    from sparsejax import attacks, data, models

    assets = data.require_assets()
    model = models.load("lenet5-mnist", assets / WEIGHTS)
    ds = data.load_dataset("mnist", n=args.n)
    ok = np.asarray(jnp.argmax(model.logits_fn(jnp.asarray(ds.x)), axis=1)) == ds.y
    x_np, y_np = ds.x[ok], ds.y[ok].astype(np.int32)
    n = len(y_np)
    budget = dict(
        steps=args.steps,
        learning_rate=args.learning_rate,
        initial_const=args.initial_const,
        largest_const=args.largest_const,
    )
    print(f"{n} of {args.n} images classified correctly; budget {budget}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_cw_l0_") as tmp:
        work = Path(tmp)
        export_weights(assets / WEIGHTS, work / "weights.npz")
        np.savez(work / "inputs.npz", x=x_np, y=y_np, budget=json.dumps(budget))
        cmd = [args.tf_python, str(Path(__file__).resolve()), "--worker", str(work)]
        cmd += ["--reference", str(args.reference)] + ["--stable-argsort"] * args.stable_argsort
        subprocess.run(cmd, check=True)
        ref = dict(np.load(work / "reference.npz"))

    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    clean_logits = np.asarray(model.logits_fn(x))
    logits_diff = float(np.max(np.abs(ref["logits"] - clean_logits)))
    print(f"TF vs Flax logits on the {n} images: max |diff| = {logits_diff:.2e}", flush=True)

    cfg = attacks.CWL0Config(
        steps=args.steps,
        learning_rate=args.learning_rate,
        initial_const=args.initial_const,
        largest_const=args.largest_const,
    )
    fn = jax.jit(lambda x, y: attacks.cw_l0(model.logits_fn, x, y, cfg))
    t0 = time.perf_counter()
    compiled = fn.lower(x, y).compile()
    compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = jax.block_until_ready(compiled(x, y))
    ours_seconds = time.perf_counter() - t0

    ours_ok = np.asarray(r.success)
    ours_changed = np.any(np.asarray(r.x_adv) != x_np, axis=-1).reshape(n, -1)
    ours_l0 = np.asarray(r.l0_pixels)
    assert np.array_equal(ours_changed.sum(1), ours_l0)

    ref_adv = ref["x_adv"]
    ref_pred = np.asarray(jnp.argmax(model.logits_fn(jnp.asarray(ref_adv)), axis=1))
    ref_ok = ref["found"] & (ref_pred != y_np)
    ref_changed = np.any(np.abs(ref_adv - x_np) >= EQUAL, axis=-1).reshape(n, -1)
    ref_l0 = ref_changed.sum(1)

    ref_name = f"reference l0_attack.py (TF {ref['tensorflow']} compat.v1, 2 threads, one image "
    ref_name += f"at a time{', stable argsort' * args.stable_argsort})"
    rows = [
        rate_row(
            f"sparsejax cw-l0 (one compiled call on {n})", ours_ok, ours_l0, ours_seconds,
            np.asarray(r.iterations), np.asarray(r.stats.rounds),
        ),
        rate_row(
            ref_name, ref_ok, ref_l0, ref["seconds"].sum(), ref["steps"], ref["rounds"]
        ),
    ]  # fmt: skip
    rows[0]["compile_seconds"] = compile_seconds
    rows[1]["graph_build_seconds"] = float(ref["build_seconds"])
    rows[1]["found_by_reference"] = int(ref["found"].sum())
    both = ours_ok & ref_ok
    agreement = {
        "both_successful": int(both.sum()),
        "same_l0": int(np.sum(both & (ours_l0 == ref_l0))),
        "same_changed_pixels": int(np.sum(both & np.all(ours_changed == ref_changed, axis=1))),
        "same_adam_steps": int(np.sum(np.asarray(r.iterations) == ref["steps"])),
        "same_rounds": int(np.sum(np.asarray(r.stats.rounds) == ref["rounds"])),
    }
    per_image = {
        "label": y_np.tolist(),
        "ours_success": ours_ok.tolist(),
        "ours_l0_pixels": ours_l0.tolist(),
        "ours_adam_steps": np.asarray(r.iterations).tolist(),
        "ours_rounds": np.asarray(r.stats.rounds).tolist(),
        "reference_found": ref["found"].tolist(),
        "reference_success": ref_ok.tolist(),
        "reference_l0_pixels": ref_l0.tolist(),
        "reference_adam_steps": ref["steps"].tolist(),
        "reference_rounds": ref["rounds"].tolist(),
        "reference_seconds": ref["seconds"].tolist(),
    }
    for q in rows:
        print(q, flush=True)
    print(agreement, flush=True)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(model="lenet5", n=args.n, n_attacked=n, budget=budget)
    payload.update(reference_stable_argsort=args.stable_argsort)
    payload.update(
        reference=str(ref["origin"]),
        tensorflow=str(ref["tensorflow"]),
        jax=jax.__version__,
        logits_max_abs_diff=logits_diff,
        rows=rows,
        agreement=agreement,
        per_image=per_image,
    )
    (out / "cw_l0_lenet5.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = markdown(payload)
    (out / "cw_l0_lenet5.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def markdown(payload) -> list[str]:
    """The Markdown lines of a results payload (``cw_l0_lenet5.json``)."""
    fmt = lambda v, s: "–" if v is None else format(v, s)
    b, a, n = payload["budget"], payload["agreement"], payload["n_attacked"]
    lines = [
        f"{b['steps']} Adam steps per constant, lr {b['learning_rate']:g}, c from "
        f"{b['initial_const']:g} doubling to {b['largest_const']:g}; untargeted, pixels; "
        f"the first {payload['n']} MNIST test images ({n} attacked), the clean LeNet-5.",
        "",
        "| implementation | s/image | success | median ℓ0 px | mean ℓ0 px | Adam steps/image "
        "| ℓ2 solves kept/image |",
        "|---|---|---|---|---|---|---|",
    ] + [
        f"| {q['implementation']} | {q['seconds_per_image']:.2f} | "
        f"{100 * q['success_rate']:.1f}% | {fmt(q['median_l0_pixels'], 'g')} | "
        f"{fmt(q['mean_l0_pixels'], '.1f')} | {q['adam_steps_per_image']:.0f} | "
        f"{q['rounds_per_image']:.1f} |"
        for q in payload["rows"]
    ]
    return lines + [
        "",
        f"Both successful on {a['both_successful']}/{n}; the same ℓ0 on {a['same_l0']}, the "
        f"same changed pixels on {a['same_changed_pixels']}; the same Adam steps on "
        f"{a['same_adam_steps']}/{n}, the same rounds on {a['same_rounds']}/{n}. TF vs Flax "
        f"logits on the attacked images: max |diff| {payload['logits_max_abs_diff']:.1e}.",
    ]


if __name__ == "__main__":
    main()
