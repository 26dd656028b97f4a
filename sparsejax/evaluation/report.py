"""The evaluation's figures and report.md: robust accuracy against k, the ensemble's
sparsest examples, and the tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparsejax import io, plots


def _fmt(v, digits: int = 1) -> str:
    if v is None or not np.isfinite(v):
        return "∞" if v is not None else "–"
    return f"{v:.{digits}f}" if v != int(v) else f"{int(v)}"


def robust_accuracy_figure(ev, path: Path) -> Path:
    """``robust_accuracy.png``: RA(k) in both units, one line per attack and the ensemble."""
    plt = plots._plt()
    units = (ev.unit, "elements" if ev.unit == "pixels" else "pixels")
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), squeeze=False)
    ks = np.array([0, *ev.budgets])
    for ax, unit in zip(axes[0], units, strict=True):
        lines = [*ev.attacks.items(), ("ensemble", ev.ensemble)]
        for name, a in lines:
            ra = a.robust_accuracy if unit == ev.unit else a.robust_accuracy_other_unit
            style = dict(color="black", lw=2.2, ls="--") if name == "ensemble" else dict(lw=1.4)
            # Points at the budgets only: a fixed-k attack was run there and nowhere between.
            ax.plot(ks, 100 * ra, marker="o", ms=3, label=name, **style)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel(f"k ({unit} changed)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.set_title(f"ℓ0 in {unit}" + (" (the budgets' unit)" if unit == ev.unit else ""))
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{ev.model} on {ev.dataset}, N = {len(ev.indices)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def examples_figure(ev, model, ds, out: Path, n: int = 6) -> Path | None:
    """``examples.png``: the n samples with the sparsest ensemble adversarials (clean,
    adversarial, perturbation map), each from the attack that found it."""
    d_star = ev.distances("ensemble")
    broken = np.flatnonzero((d_star > 0) & np.isfinite(d_star))
    if not broken.size:
        return None
    chosen = broken[np.argsort(d_star[broken], kind="stable")[:n]]
    x_adv, found_by = [], []
    for i in chosen:
        name = next(a for a in ev.attacks if ev.distances(a)[i] == d_star[i])
        adv = np.load(out / name / "adversarials.npz")
        row = int(np.flatnonzero(adv["index"] == ds.indices[i])[0])
        x_adv.append(adv["x_adv"][row])
        found_by.append(name)
    x_adv = np.stack(x_adv)
    path = out / "examples.png"
    plots.examples_figure(
        ds.x[chosen],
        x_adv,
        ds.y[chosen],
        model.predict(x_adv).argmax(1),
        path,
        class_names=ds.class_names,
        title=f"the ensemble's sparsest (top to bottom: {', '.join(found_by)})",
    )
    return path


def report_markdown(ev) -> str:
    """``report.md``: the robust-accuracy table and the per-attack scores."""
    ks = [0, *ev.budgets]
    rows = [*ev.attacks.items(), ("**ensemble**", ev.ensemble)]
    lines = [
        f"# {ev.model} on {ev.dataset}: robustness to k changed {ev.unit}",
        "",
        f"N = {len(ev.indices)} samples, clean accuracy {100 * ev.clean_accuracy:.1f}%."
        + ("" if ev.complete else " **Incomplete: some runs are unfinished.**"),
        "",
        f"Robust accuracy (%) at k {ev.unit}:",
        "",
        "| attack | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for name, a in rows:
        lines.append(
            f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in a.robust_accuracy) + " |"
        )
    lines += [
        "",
        f"| attack | median ℓ0 ({ev.unit}, failures ∞) | median over successes | "
        "optimality | q (passes/sample) | s (seconds/sample) |",
        "|---|---|---|---|---|---|",
    ]
    for name, a in rows:
        lines.append(
            f"| {name} | {_fmt(a.median_l0)} | {_fmt(a.median_l0_successes)} | "
            f"{_fmt(a.optimality, 3) if a.optimality is not None else '–'} | {a.q:.0f} | "
            f"{a.s:.3f} |"
        )
    lines += [
        "",
        "Robust accuracy counts all N samples (a misclassified clean input is not robust at "
        "any k); the ensemble is the per-sample best of the attacks; optimality is "
        "AttackBench's, against that ensemble. Figures: `robust_accuracy.png`, "
        "`examples.png`; per-sample distances: `evaluation.json`.",
        "",
    ]
    return "\n".join(lines)


def write_all(ev, model, ds, out: Path) -> None:
    robust_accuracy_figure(ev, out / "robust_accuracy.png")
    examples_figure(ev, model, ds, out)
    io.write_bytes(out / "report.md", report_markdown(ev).encode())
