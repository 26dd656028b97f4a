"""SAPF figures on ResNet-20 / CIFAR-10: ℓp norms against k (paper Fig. 4), group sparsity
on and off (Fig. 3), and the visual-imperceptibility weightings (Fig. 5). Each sweep is ONE
compiled call (``vmap`` over k, over λ2, or over the stacked weight maps).

COMMAND: .venv/bin/python experiments/sapf_figures.py [--n 10]
Writes experiments/results/sapf_figures.json and experiments/figures/sapf_k_sweep.png,
sapf_group_sparsity.png, sapf_visual_weights.png. About 25 minutes on 2 CPU cores.

Pairs: the first n CIFAR-10 test images, each towards 3 targets (label + 1, + 4, + 7 mod 10).
Library defaults otherwise (k = 200, C&W loss, exact cardinality, 200/200/100 steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import sparsejax
from sparsejax import data, metrics, models, plots
from sparsejax.attacks import SAPFConfig, SAPFGSConfig, SAPFVIConfig, sapf, sapf_gs, sapf_vi
from sparsejax.attacks._sapf_weights import local_mean_std, slic_segments, visual_weights

HERE = Path(__file__).parent
WEIGHTS = "weights/cifar10/resnet20-12fca82f.th"
K_VALUES = [25, 50, 100, 200, 400, 800]
LAMBDA2 = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0]
KINDS = ["uniform", "variance", "variance_mean"]


def make_pairs(ds, shifts=(1, 4, 7)):
    idx = np.repeat(np.arange(len(ds)), len(shifts))
    tgt = np.concatenate([[(int(y) + s) % 10 for s in shifts] for y in ds.y]).astype(np.int32)
    return idx, tgt


def summary(r, x, y, j=None):
    """ASR over the pairs of correctly classified images, norms over the successes."""
    pick = (lambda a: np.asarray(a)) if j is None else (lambda a: np.asarray(a)[j])
    ok = pick(r.success)
    correct = pick(r.clean_pred) == np.asarray(y)
    norms = {
        k: np.asarray(v)
        for k, v in metrics.lp_norms(jnp.asarray(pick(r.x_adv)), jnp.asarray(x)).items()
    }
    mean = lambda a: float(np.mean(a[ok])) if ok.any() else None
    return {
        "asr": float(ok[correct].mean()),
        "l0_elements": mean(pick(r.l0_elements)),
        "l0_pixels": mean(pick(r.l0_pixels)),
        "l1": mean(norms["l1"]),
        "l2": mean(norms["l2"]),
        "linf": mean(norms["linf"]),
    }


def k_sweep(model, xs, ys, ts):
    t0 = time.perf_counter()
    r = jax.block_until_ready(
        sparsejax.sweep(
            sapf, model.logits_fn, xs, ys, SAPFConfig(), values={"k": K_VALUES}, targets=ts
        )
    )
    rows = [{"k": k, **summary(r, xs, ys, j)} for j, k in enumerate(K_VALUES)]
    return rows, time.perf_counter() - t0


def group_sparsity(model, xs, ys, ts, seg):
    fn = jax.jit(
        lambda v: sparsejax.sweep(
            sapf_gs, model.logits_fn, xs, ys, SAPFGSConfig(), values={"lambda2": v},
            targets=ts, segments=seg,
        )
    )  # fmt: skip
    t0 = time.perf_counter()
    r = jax.block_until_ready(fn(jnp.asarray(LAMBDA2)))
    seconds = time.perf_counter() - t0
    rows = []
    for j, lam2 in enumerate(LAMBDA2):
        changed = np.any(np.asarray(r.x_adv[j]) != np.asarray(xs), axis=-1)  # [P, H, W]
        segs = [len(np.unique(np.asarray(seg[p])[changed[p]])) for p in range(len(xs))]
        ok = np.asarray(r.success[j])
        rows.append(
            {
                "lambda2": lam2,
                **summary(r, xs, ys, j),
                "segments_touched": float(np.mean(np.asarray(segs)[ok])) if ok.any() else None,
            }
        )
    return rows, seconds, r


def visual_imperceptibility(model, xs, ys, ts):
    fn = jax.jit(
        lambda wi: sapf_vi(model.logits_fn, xs, ys, SAPFVIConfig(), targets=ts, weights=wi)
    )
    t0 = time.perf_counter()
    runs = [fn(jnp.asarray(visual_weights(np.asarray(xs), kind))) for kind in KINDS]
    r = jax.block_until_ready(jax.tree.map(lambda *a: jnp.stack(a), *runs))
    seconds = time.perf_counter() - t0
    _, std = local_mean_std(np.asarray(xs))  # texture around each element
    flat = std < np.median(std, axis=(1, 2, 3), keepdims=True)
    rows = []
    for j, kind in enumerate(KINDS):
        e = np.abs(np.asarray(r.x_adv[j]) - np.asarray(xs))
        ok = np.asarray(r.success[j])
        energy = (e**2).sum(axis=(1, 2, 3))
        on_flat = ((e**2) * flat).sum(axis=(1, 2, 3)) / np.maximum(energy, 1e-12)
        rows.append(
            {
                "weighting": kind,
                **summary(r, xs, ys, j),
                "perturbation_energy_on_flat_half": float(on_flat[ok].mean()),
                "mean_local_std_at_changes": float((std * (e > 0)).sum() / max((e > 0).sum(), 1)),
            }
        )
    return rows, seconds, r


def maps_figure(path, x, panels, title):
    """x and, per panel, the |perturbation| summed over channels."""
    plt = plots._plt()
    n = len(panels) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.6))
    plots._show(axes[0], x)
    axes[0].set_title("clean", fontsize=8)
    for ax, (name, delta) in zip(axes[1:], panels.items(), strict=True):
        m = np.abs(delta).sum(-1)
        ax.imshow(m, cmap="magma", vmin=0, vmax=max(float(m.max()), 1e-6), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    args = ap.parse_args()
    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / WEIGHTS)
    ds = data.load_dataset("cifar10", n=args.n)
    idx, tgt = make_pairs(ds)
    xs, ys, ts = jnp.asarray(ds.x[idx]), jnp.asarray(ds.y[idx]), jnp.asarray(tgt)
    out = {"n_images": args.n, "n_pairs": len(idx), "config": dataclasses.asdict(SAPFConfig())}

    rows, secs = k_sweep(model, xs, ys, ts)
    out["k_sweep"] = {"rows": rows, "seconds": secs}
    for r in rows:
        print("k", r, flush=True)
    plots.sweep_figure(
        K_VALUES,
        {
            "ASR (%)": [100 * r["asr"] for r in rows],
            "mean ℓ1": [r["l1"] for r in rows],
            "mean ℓ2": [r["l2"] for r in rows],
            "mean ℓ∞": [r["linf"] for r in rows],
        },
        "k (elements)",
        HERE / "figures" / "sapf_k_sweep.png",
        title=f"SAPF: ℓp norms against k (Fig. 4), ResNet-20, {len(idx)} CIFAR-10 pairs",
    )

    seg = jnp.asarray(slic_segments(np.asarray(xs), 150, 10.0))
    rows, secs, r = group_sparsity(model, xs, ys, ts, seg)
    out["group_sparsity"] = {"rows": rows, "seconds": secs, "n_segments": 150}
    for row in rows:
        print("gs", row, flush=True)
    best = max(range(len(LAMBDA2)), key=lambda j: (rows[j]["asr"] >= 0.95, LAMBDA2[j]))
    ok = np.flatnonzero(np.asarray(r.success[0]) & np.asarray(r.success[best]))[:1]
    for p in ok:
        maps_figure(
            HERE / "figures" / "sapf_group_sparsity.png",
            np.asarray(xs[p]),
            {
                f"λ2 = 0 ({rows[0]['lambda2']})": np.asarray(r.x_adv[0, p] - xs[p]),
                f"λ2 = {LAMBDA2[best]:g}": np.asarray(r.x_adv[best, p] - xs[p]),
            },
            f"SAPF-GS (Fig. 3): |perturbation|, k = 200, target {int(ts[p])}",
        )

    rows, secs, r = visual_imperceptibility(model, xs, ys, ts)
    out["visual_imperceptibility"] = {"rows": rows, "seconds": secs}
    for row in rows:
        print("vi", row, flush=True)
    ok = np.flatnonzero(np.all(np.asarray(r.success), axis=0))[:1]
    for p in ok:
        maps_figure(
            HERE / "figures" / "sapf_visual_weights.png",
            np.asarray(xs[p]),
            {kind: np.asarray(r.x_adv[j, p] - xs[p]) for j, kind in enumerate(KINDS)},
            f"SAPF-VI (Fig. 5): |perturbation| by weighting, target {int(ts[p])}",
        )
    (HERE / "results" / "sapf_figures.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
