"""Figures people would rather look at than read: adversarial examples and sweep curves."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _show(ax, img):
    img = np.clip(img, 0, 1)
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def examples_figure(
    x: np.ndarray,
    x_adv: np.ndarray,
    labels: Sequence[int],
    adv_pred: Sequence[int],
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Image, adversarial image and perturbation map per row (as SparseFool Fig. 5).

    The map shows the signed perturbation summed over channels (red up, blue down); the
    caption gives the labels and ℓ0 in pixels and elements.
    """
    plt = _plt()
    n = len(x)
    name = (lambda c: class_names[c]) if class_names is not None else str
    fig, axes = plt.subplots(n, 3, figsize=(6.0, 2.1 * n), squeeze=False)
    for i in range(n):
        r = (x_adv[i] - x[i]).astype(np.float64)
        changed = r != 0
        l0p, l0e = int(changed.any(-1).sum()), int(changed.sum())
        _show(axes[i, 0], x[i])
        axes[i, 0].set_title(f"clean: {name(int(labels[i]))}", fontsize=8)
        _show(axes[i, 1], x_adv[i])
        axes[i, 1].set_title(f"adversarial: {name(int(adv_pred[i]))}", fontsize=8)
        m = r.sum(-1)
        lim = max(float(np.abs(m).max()), 1e-6)
        axes[i, 2].imshow(m, cmap="seismic", vmin=-lim, vmax=lim, interpolation="nearest")
        axes[i, 2].set_xticks([])
        axes[i, 2].set_yticks([])
        hw = x.shape[1] * x.shape[2]
        axes[i, 2].set_title(f"{l0p} px ({100 * l0p / hw:.2f}%), {l0e} el", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep_figure(
    values: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    xlabel: str,
    path: str | os.PathLike,
    title: str | None = None,
) -> None:
    """One panel per metric against the swept parameter (SparseFool Figs. 4 and 6)."""
    plt = _plt()
    k = len(curves)
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 2.8), squeeze=False)
    for ax, (name, ys) in zip(axes[0], curves.items(), strict=True):
        ax.plot(values, ys, marker="o")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablation_grid(
    panels: Mapping[str, tuple[Sequence[float], Mapping[str, Sequence[float]]]],
    path: str | os.PathLike,
    title: str | None = None,
    log_x: set[str] | frozenset[str] = frozenset(),
) -> None:
    """One row per swept parameter, one column per metric (e.g. Lin et al. Fig. 7).

    Args:
      panels: parameter label -> (values, {metric name: values}); every row has the same
        metric names.
      log_x: parameter labels to draw on a logarithmic axis.
    """
    plt = _plt()
    rows = list(panels.items())
    k = len(rows[0][1][1])
    fig, axes = plt.subplots(len(rows), k, figsize=(3.2 * k, 2.5 * len(rows)), squeeze=False)
    for i, (label, (values, curves)) in enumerate(rows):
        for j, (name, ys) in enumerate(curves.items()):
            ax = axes[i, j]
            ax.plot(values, ys, marker="o")
            if label in log_x:
                ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(name, fontsize=8)
            ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
