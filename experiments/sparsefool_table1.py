"""SparseFool's Table 1 on the shared real models (both ℓ0 units): SparseFool beside its
baselines, JSMA (SparseFool's untargeted variant: a random target, success on any other
class) and, as in §4.1 for ImageNet, the random subset at SparseFool's per-channel median.

COMMAND: .venv/bin/python experiments/sparsefool_table1.py [--n 500] [--no-baselines]
Writes experiments/results/sparsefool_table1.json and .md (with the baselines:
sparsefool_table1_baselines.json and .md), experiments/figures/
sparsefool_examples_{mnist,cifar10}.png; full per-example results under experiments/runs/
(not committed). The one-pixel attack runs on --one-pixel-n images (the paper: 100).

Settings: λ = 1 for MNIST and λ = 3 for CIFAR-10 (paper §4.1), released defaults otherwise
(max_iter 20, overshoot 0.02, top-10 DeepFool candidates). The adversarially trained LeNet-5
(paper §4.2, last paragraph: there a PGD-trained ResNet-18 on CIFAR-10) is run at λ = 1 and 3.
JSMA: CleverHans' defaults θ = 1, γ = 1. Random subset: one draw, k_c = the median over the
fooled images of SparseFool's changed elements in channel c (§4.1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sparsejax import attacks, data, models, plots, runner

HERE = Path(__file__).parent
ROWS = [
    (
        "LeNet-5 (clean)",
        "lenet5-mnist",
        "weights/mnist/advertorch_mnist_lenet5_clntrained.pt",
        "mnist",
        1.0,
    ),
    ("ResNet-20", "resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10", 3.0),
    (
        "LeNet-5 (PGD-trained)",
        "lenet5-mnist",
        "weights/mnist/advertorch_mnist_lenet5_advtrained.pt",
        "mnist",
        1.0,
    ),
    (
        "LeNet-5 (PGD-trained)",
        "lenet5-mnist",
        "weights/mnist/advertorch_mnist_lenet5_advtrained.pt",
        "mnist",
        3.0,
    ),
]
PAPER = {  # Table 1 of the paper (their models): fooling rate, perturbation %, time
    "mnist": "LeNet 99.93% / 1.66% / 0.14 s",
    "cifar10": "ResNet-18 100% / 1.27% / 0.69 s; VGG-19 100% / 1.07% / 0.34 s",
}
PAPER_JSMA = {  # (fooling rate %, perturbation %, s) of SparseFool and JSMA, Table 1
    "mnist": {"sparsefool": (99.93, 1.66, 0.14), "jsma": (95.73, 4.85, 0.66)},
    "cifar10": {"sparsefool": (100, 1.27, 0.69), "jsma": (100, 3.91, 8.73)},  # ResNet-18
}
BASELINES = [  # (network, attack) pairs run beside SparseFool
    ("LeNet-5 (clean)", "jsma"),
    ("ResNet-20", "jsma"),
    ("ResNet-20", "random-subset"),
    ("LeNet-5 (clean)", "one-pixel"),
    ("ResNet-20", "one-pixel"),
]


SUMMARY_FIELDS = (
    "n_attacked", "success_rate", "median_l0_pixels", "median_l0_pixels_pct",
    "median_l0_elements", "median_l0_elements_pct", "mean_l0_pixels", "mean_l2", "mean_linf",
    "time_per_sample_s", "model_evals_per_sample", "compile_s",
)  # fmt: skip


def run(label, name, weights, dataset, attack, config, n, tag, batch_size=100):
    """One runner job; (the table row, the results, the dataset, the run folder)."""
    assets = data.require_assets()
    model = models.load(name, assets / weights)
    ds = data.load_dataset(dataset, n=n)
    out = HERE / "runs" / f"{attack}_{Path(weights).stem}_{tag}"
    res = runner.run_attack(
        attacks.get(attack), config, model, ds, out, batch_size=batch_size, overwrite=True
    )
    s = res["summary"]
    attacked = [e for e in res["examples"] if e["clean_pred"] == e["label"]]
    row = {
        "network": label,
        "attack": attack,
        "setting": tag,
        "model": name,
        "weights": Path(weights).name,
        "dataset": dataset,
        "n": len(ds),
        "clean_accuracy": res["clean_accuracy"],
        **{k: s[k] for k in SUMMARY_FIELDS},
        "iterations_mean": sum(e["iterations"] for e in attacked) / max(len(attacked), 1),
        "statuses": {
            st: sum(e["status"] == st for e in res["examples"])
            for st in sorted({e["status"] for e in res["examples"]})
        },
    }
    print(runner.table1_row(res), flush=True)
    return row, res, ds, out


def channel_medians(ds, res, out) -> tuple[int, ...]:
    """SparseFool's per-channel median of changed elements over the fooled images (§4.1)."""
    adv = np.load(out / "adversarials.npz")["x_adv"]
    ok = np.asarray([e["success"] for e in res["examples"]])
    changed = (adv != ds.x)[ok].sum(axis=(1, 2))  # [fooled, C]
    return tuple(int(round(v)) for v in np.median(changed, axis=0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--no-baselines", action="store_true", help="SparseFool's rows only")
    ap.add_argument(
        "--one-pixel-n", type=int, default=10, help="images for the one-pixel attack (the "
        "paper: 100; about a minute per ResNet-20 image and round on this CPU)",
    )  # fmt: skip
    ap.add_argument("--one-pixel-max", type=int, default=1, help="largest k of its protocol")
    args = ap.parse_args()
    rows, medians = [], {}
    for label, name, weights, dataset, lam in ROWS:
        config = attacks.SparseFoolConfig(lambda_=lam)
        row, res, ds, out = run(
            label, name, weights, dataset, "sparsefool", config, args.n, f"lambda{lam:g}"
        )
        row["lambda"] = lam
        rows.append(row)
        medians[label] = channel_medians(ds, res, out)
        if label != "LeNet-5 (PGD-trained)" or lam == 3.0:
            adv = np.load(out / "adversarials.npz")
            ok = [i for i, e in enumerate(res["examples"]) if e["success"]][:5]
            tag = dataset if "PGD" not in label else "mnist_pgd"
            plots.examples_figure(
                ds.x[ok],
                adv["x_adv"][ok],
                ds.y[ok],
                [res["examples"][i]["adv_pred"] for i in ok],
                HERE / "figures" / f"sparsefool_examples_{tag}.png",
                class_names=ds.class_names,
                title=f"SparseFool λ={lam:g}, {label}",
            )
    for label, attack in [] if args.no_baselines else BASELINES:
        _, name, weights, dataset, _ = next(r for r in ROWS if r[0] == label)
        n = args.n
        if attack == "jsma":
            config, tag = attacks.JSMAConfig(), "theta1_gamma1"
        elif attack == "one-pixel":  # the paper's population and generations
            config = attacks.OnePixelConfig(pixels=1, max_pixels=args.one_pixel_max)
            tag, n = f"k1-{args.one_pixel_max}_P400_G100", args.one_pixel_n
        else:
            config = attacks.RandomSubsetConfig(channel_k=medians[label])
            tag = "k" + "-".join(map(str, medians[label]))
        row, *_ = run(label, name, weights, dataset, attack, config, n, tag)
        rows.append(row)
    stem = "sparsefool_table1" if args.no_baselines else "sparsefool_table1_baselines"
    (HERE / "results" / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = table(rows)
    (HERE / "results" / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def table(rows) -> list[str]:
    fmt = lambda v, spec, pre="", post="": "–" if v is None else f"{pre}{v:{spec}}{post}"
    lines = [
        "| network | dataset | attack | setting | n | acc | fooling rate | median ℓ0 pixels "
        "(% of H·W) | median ℓ0 elements (% of H·W·C) | mean iterations | time/sample | "
        "passes/sample |",
        "|---" * 12 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['dataset']} | {r['attack']} | {r['setting']} | {r['n']} | "
            f"{100 * r['clean_accuracy']:.1f}% | {100 * r['success_rate']:.2f}% | "
            f"{fmt(r['median_l0_pixels'], 'g')} ({fmt(r['median_l0_pixels_pct'], '.2f')}%) | "
            f"{fmt(r['median_l0_elements'], 'g')} ({fmt(r['median_l0_elements_pct'], '.2f')}%) | "
            f"{r['iterations_mean']:.2f} | {r['time_per_sample_s']:.3f} s | "
            f"{r['model_evals_per_sample']:.0f} |"
        )
    # SparseFool against JSMA as the paper puts it: how much sparser, how much faster.
    by = {(r["network"], r["attack"]): r for r in rows}
    for label, dataset in (("LeNet-5 (clean)", "mnist"), ("ResNet-20", "cifar10")):
        sf, js = by.get((label, "sparsefool")), by.get((label, "jsma"))
        if not (sf and js and sf["median_l0_pixels"] and js["median_l0_pixels"]):
            continue
        paper = PAPER_JSMA[dataset]
        lines.append("")
        lines.append(
            f"{label}: SparseFool {js['median_l0_pixels'] / sf['median_l0_pixels']:.1f}x "
            f"sparser and {js['time_per_sample_s'] / sf['time_per_sample_s']:.1f}x faster "
            f"than JSMA (paper, {dataset}: "
            f"{paper['jsma'][1] / paper['sparsefool'][1]:.1f}x and "
            f"{paper['jsma'][2] / paper['sparsefool'][2]:.1f}x)"
        )
    return lines


if __name__ == "__main__":
    main()
