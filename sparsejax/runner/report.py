"""Report: results.json (valid JSON always: null where a value does not exist), the tables
printed at the end of a run, and the examples figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sparsejax import io, metrics
from sparsejax.attacks.engine import Status
from sparsejax.runner.plan import Plan, config_dict

UNITS = {
    "l0_pixels": "(h, w) positions with any channel changed",
    "l0_elements": "changed channel values",
    "l1/l2/linf": "of x_adv - x in [0, 1] pixel units",
}


def concatenate(batches: dict[int, dict]) -> dict:
    """The per-item records of the finished batches, in batch order."""
    keys = sorted(batches)
    if not keys:
        return {}
    per_item = [k for k in batches[keys[0]] if np.ndim(batches[keys[0]][k]) >= 1 and k != "run"]
    return {k: np.concatenate([batches[b][k] for b in keys]) for k in per_item}


def _examples(cat: dict) -> list[dict]:
    out = []
    for i in range(len(cat.get("index", []))):
        out.append(
            {
                "index": int(cat["index"][i]),
                "label": int(cat["label"][i]),
                "target": None if cat["target"][i] < 0 else int(cat["target"][i]),
                "clean_pred": int(cat["clean_pred"][i]),
                "adv_pred": int(cat["adv_pred"][i]),
                "success": bool(cat["success"][i]),
                "l0_pixels": int(cat["l0_pixels"][i]),
                "l0_elements": int(cat["l0_elements"][i]),
                "l1": float(cat["l1"][i]),
                "l2": float(cat["l2"][i]),
                "linf": float(cat["linf"][i]),
                "iterations": int(cat["iterations"][i]),
                "model_evals": int(cat["model_evals"][i]),
                "forwards": int(cat["forwards"][i]),
                "backwards": int(cat["backwards"][i]),
                "status": Status(int(cat["status"][i])).name,
            }
        )
    return out


def results(plan: Plan, batches: dict, sessions: list[dict], clean_accuracy: float) -> dict:
    """The content of results.json (SPEC §5) from the finished batches and the sessions
    of every process that ran them (each tagged ``process``; untagged: process 0)."""
    cat = concatenate(batches)
    attack_s = float(sum(s["attack_seconds"] for s in sessions))  # compute seconds, summed
    per_process: dict[int, float] = {}
    for s in sessions:
        p = int(s.get("process", 0))
        per_process[p] = per_process.get(p, 0.0) + s["attack_seconds"]
    wall_s = max(per_process.values(), default=0.0)  # processes run side by side
    summary: dict[str, Any] = {}
    if cat:
        attacked = cat["clean_pred"] == cat["label"]
        summary = metrics.summarize(
            cat["success"],
            attacked,
            cat["l0_pixels"],
            cat["l0_elements"],
            plan.model.input_shape,
            extra={"l1": cat["l1"], "l2": cat["l2"], "linf": cat["linf"]},
        )
        n_att = int(attacked.sum())
        summary["time_per_sample_s"] = attack_s / n_att if n_att else None
        # Throughput over every item of the finished batches (a misclassified one costs
        # its clean pass too): in total (the items over the busiest process's attack
        # seconds) and per device (every process's batches split over plan.devices).
        per_s = len(cat["index"]) / wall_s if wall_s > 0 else None
        n_devices = plan.devices * max(len(per_process), 1)
        summary["devices"] = plan.devices
        summary["processes"] = max(len(per_process), 1)
        summary["items_per_second"] = per_s
        summary["items_per_second_per_device"] = per_s / n_devices if per_s else None
        summary["model_evals_per_sample"] = (
            float(cat["model_evals"][attacked].mean()) if n_att else None
        )
        if plan.target_mode == "all":  # best / average / worst case over the targets
            summary["cases"] = metrics.target_cases(
                cat["index"],
                cat["success"],
                attacked,
                {k: cat[k] for k in ("l0_elements", "l0_pixels", "l1", "l2", "linf")},
                by="l2",
            )
        summary["status_counts"] = {
            Status(int(c)).name: int(n)
            for c, n in zip(*np.unique(cat["status"], return_counts=True), strict=True)
        }
    if plan.memory is not None:
        summary["memory"] = plan.memory  # memory.py: the compiled program's cost per lane
    summary["attack_seconds"] = attack_s
    summary["compile_s"] = sessions[-1]["compile_seconds"] if sessions else None
    summary["workers"] = sessions[-1]["workers"] if sessions else None
    spec = plan.spec
    return {
        "attack": spec.name,
        "paper": spec.paper,
        "unit": spec.unit,
        "budget": spec.budget,
        "model": plan.model.name,
        "weights": plan.model.weights,
        "dataset": plan.ds.name,
        "split": plan.ds.split,
        "source": plan.ds.source,
        "config": config_dict(plan.config),
        "targeted": plan.target_mode,
        "seed": plan.seed,
        "n": len(plan.ds),
        "n_items": int(len(cat.get("index", []))),
        "clean_accuracy": clean_accuracy,
        "units": UNITS,
        "complete": len(batches) == plan.n_batches,
        "batches_done": len(batches),
        "batches_total": plan.n_batches,
        "schedule": {"kind": plan.schedule.kind, "width": plan.schedule.width},
        "summary": summary,
        "examples": _examples(cat),
        "versions": io.versions(),
    }


def table1_row(res: dict) -> str:
    """One line in the columns of SparseFool's Table 1, with both ℓ0 units named."""
    s = res["summary"]
    if not s.get("n_attacked"):
        return f"{res['model']}: nothing attacked (no correctly classified input)"
    mp = s.get("median_l0_pixels")
    if mp is None:
        return f"{res['model']}: no success on {s['n_attacked']} attacked inputs"
    return (
        f"{res['dataset']:>10s} {res['model']:>18s}  acc {100 * res['clean_accuracy']:6.2f}%  "
        f"fooling rate {100 * s['success_rate']:6.2f}%  "
        f"median l0 {mp} pixels ({s['median_l0_pixels_pct']:.2f}% of pixels) / "
        f"{s['median_l0_elements']} elements  "
        f"time {s['time_per_sample_s']:.4f} s/sample  "
        f"evals {s['model_evals_per_sample']:.1f}/sample"
    )


def cases_table(res: dict) -> str:
    """The best / average / worst-case rows of a ``--targeted all`` run (SAPF Table 1)."""
    c = res["summary"].get("cases")
    if not c:
        return ""

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    lines = [f"{'case':8s} {'ASR':>7s} {'l0 el':>8s} {'l1':>8s} {'l2':>7s} {'linf':>7s}"]
    for name in ("best", "average", "worst"):
        r = c[name]
        rate = None if r["success_rate"] is None else 100 * r["success_rate"]
        lines.append(
            f"{name:8s} {f(rate, '6.1f')}% {f(r['l0_elements'], '8.1f')} {f(r['l1'], '8.3f')} "
            f"{f(r['l2'], '7.3f')} {f(r['linf'], '7.3f')}"
        )
    lines.append(f"({c['n_images']} images x their targets; cases ranked by {c['ranked_by']})")
    return "\n".join(lines)


def examples_figure(res: dict, ds, out: str | Path, n: int = 6) -> Path | None:
    """``out/examples.png``: up to n successful examples (clean, adversarial, perturbation)."""
    from sparsejax import plots

    out = Path(out)
    ok = [i for i, e in enumerate(res["examples"]) if e["success"]][:n]
    if not ok:
        return None
    adv = np.load(out / "adversarials.npz")
    pos = {int(v): i for i, v in enumerate(ds.indices)}
    rows = [pos[res["examples"][i]["index"]] for i in ok]
    path = out / "examples.png"
    plots.examples_figure(
        ds.x[rows],
        adv["x_adv"][ok],
        ds.y[rows],
        [res["examples"][i]["adv_pred"] for i in ok],
        path,
        class_names=ds.class_names,
        title=f"{res['attack']} on {res['model']} ({res['dataset']})",
    )
    return path
