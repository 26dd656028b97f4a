"""``sparsejax transfer``: adversarials made on one model fed to others (SparseFool Table 3,
Lin et al. Table 3), as a fooling-rate matrix.

Fooling rate of source run S on target model T: among the images S's attack fooled on its
own model (its re-checked ``success``) that T classifies correctly when clean, the fraction
that T misclassifies once perturbed. The diagonal (T is S's own model) re-checks S's
success: 1 unless T's weights differ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sparsejax import io, plots
from sparsejax.errors import SparsejaxError


def load_source(run_dir: str | Path) -> dict:
    """One attack run folder (``results.json`` and ``adversarials.npz``, as written by
    ``sparsejax attack`` or by ``sparsejax evaluate`` for a min-norm attack)."""
    run_dir = Path(run_dir)
    for f in ("results.json", "adversarials.npz"):
        if not (run_dir / f).is_file():
            raise SparsejaxError(f"--adversarials {run_dir}: no {f} (not an attack run folder)")
    res = json.loads((run_dir / "results.json").read_text())
    if res.get("targeted"):
        raise SparsejaxError(f"--adversarials {run_dir}: a targeted run; transfer is untargeted")
    adv = np.load(run_dir / "adversarials.npz")
    by_index = {e["index"]: e for e in res["examples"]}
    index = np.asarray(adv["index"])
    if set(by_index) != set(index.tolist()):
        raise SparsejaxError(f"--adversarials {run_dir}: results.json and adversarials.npz differ")
    return {
        "name": f"{res['attack']} on {res['model']}",
        "attack": res["attack"],
        "model": res["model"],
        "weights": res["weights"],
        "dataset": res["dataset"],
        "split": res["split"],
        "index": index,
        "x_adv": np.asarray(adv["x_adv"]),
        "success": np.array([by_index[int(i)]["success"] for i in index], bool),
        "label": np.array([by_index[int(i)]["label"] for i in index], np.int64),
    }


def name_sources(sources: list[dict]) -> None:
    """Source names "attack on model", with the weights' file name where two would clash."""
    names = [s["name"] for s in sources]
    for s in sources:
        if names.count(s["name"]) > 1:
            s["name"] = f"{s['attack']} on {s['model']}:{Path(s['weights']).stem}"
    if len({s["name"] for s in sources}) != len(sources):
        raise SparsejaxError("--adversarials names the same run twice")


def transfer_matrix(sources: Sequence[dict], targets: Mapping[str, object], clean: Mapping) -> dict:
    """The fooling-rate matrix [source, target] (module doc) and its counts.

    ``clean[(dataset, split, preprocessing)]``: a :class:`~sparsejax.data.Dataset` holding
    every index the sources use (``preprocessing``: the source model's for ``imagenet:DIR``,
    else None); ``targets``: name -> :class:`~sparsejax.models.Model`.
    """
    rate = np.full((len(sources), len(targets)), np.nan)
    fooled = np.zeros((len(sources), len(targets)), np.int64)
    eligible = np.zeros_like(fooled)
    for i, s in enumerate(sources):
        ds = clean[(s["dataset"], s["split"], s.get("preprocessing"))]
        pos = {int(v): p for p, v in enumerate(ds.indices)}
        x = ds.x[[pos[int(v)] for v in s["index"]]]
        for j, model in enumerate(targets.values()):
            clean_ok = model.predict(x).argmax(1) == s["label"]
            wrong = model.predict(s["x_adv"]).argmax(1) != s["label"]
            use = s["success"] & clean_ok
            eligible[i, j] = int(use.sum())
            fooled[i, j] = int((use & wrong).sum())
            if eligible[i, j]:
                rate[i, j] = fooled[i, j] / eligible[i, j]
    return {
        "sources": [s["name"] for s in sources],
        "targets": list(targets),
        "fooling_rate": [[None if np.isnan(v) else float(v) for v in row] for row in rate],
        "fooled": fooled.tolist(),
        "eligible": eligible.tolist(),
        "convention": "fooling rate = #{fooled the source model and T misclassifies x_adv} / "
        "#{fooled the source model and T classifies the clean image correctly}",
    }


def heatmap(matrix: dict, path: Path) -> Path:
    """``transfer.png``: the fooling-rate matrix as a heat map, the rates written in."""
    plt = plots._plt()
    rate = np.array([[np.nan if v is None else v for v in r] for r in matrix["fooling_rate"]])
    rows, cols = rate.shape
    label = max(len(n) for n in matrix["sources"])  # the row labels take room on the left
    fig, ax = plt.subplots(figsize=(2.5 + 0.065 * label + 1.4 * cols, 2.2 + 0.45 * rows))
    im = ax.imshow(100 * rate, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(rows):
        for j in range(cols):
            text = "–" if np.isnan(rate[i, j]) else f"{100 * rate[i, j]:.1f}"
            dark = np.isnan(rate[i, j]) or rate[i, j] < 0.6  # viridis: dark below 60%
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(cols), matrix["targets"], rotation=25, ha="right", fontsize=7)
    ax.set_yticks(range(rows), matrix["sources"], fontsize=8)
    ax.set_xlabel("target model")
    fig.colorbar(im, ax=ax, label="fooling rate (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(matrix: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    io.write_json(out / "transfer.json", {**matrix, "versions": io.versions()})
    heatmap(matrix, out / "transfer.png")


def table(matrix: dict) -> str:
    head = "| source \\ target | " + " | ".join(matrix["targets"]) + " |"
    lines = [head, "|---|" + "---|" * len(matrix["targets"])]
    for name, rates, f, e in zip(
        matrix["sources"], matrix["fooling_rate"], matrix["fooled"], matrix["eligible"],
        strict=True,
    ):  # fmt: skip
        cells = [
            "–" if r is None else f"{100 * r:.1f}% ({a}/{b})"
            for r, a, b in zip(rates, f, e, strict=True)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
