"""The notebooks run top to bottom (on a small batch) and produce their figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the dev extra (nbformat, nbclient)")
nbclient = pytest.importorskip("nbclient", reason="needs the dev extra (nbformat, nbclient)")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


NOTEBOOK_OUTPUTS = {  # figures each notebook writes, and text its outputs must contain
    "evaluate.ipynb": (
        ["evaluate_out/robust_accuracy.png", "evaluate_out/examples.png", "evaluate_out/report.md"],
        ["ensemble <= every attack per sample: True", "optimality 1.000", "evaluation.json:"],
    ),
    "l0_attacks.ipynb": (
        ["l0_attacks_ra.png"],
        ["max l0 =", "robust accuracy at k = 10 elements", "stage (0 sPGD-proj"],
    ),
    "sparsefool.ipynb": (
        ["sparsefool_examples.png", "sparsefool_lambda.png"],
        ["fooling rate", "separate runs agree on success"],
    ),
    "sapf.ipynb": (
        ["sapf_examples.png", "sapf_k.png"],
        ["targeted attack success rate", "sweep over 3 values of k", "worst"],
    ),
    "sparse_l0.ipynb": (
        ["sparse_l0_examples.png", "sparse_l0_lambda.png"],
        ["fooling rate", "inside [0, 1] without clipping: True", "vmapped sweep over 4 values"],
    ),
}


def test_every_notebook_is_executed_in_ci():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NOTEBOOK_OUTPUTS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOK_OUTPUTS))
def test_notebook_executes(name, tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    monkeypatch.setenv("SPARSEJAX_NOTEBOOK_N", "4")
    monkeypatch.setenv(
        "SPARSEJAX_ASSETS",
        os.environ.get(
            "SPARSEJAX_ASSETS", str(Path(__file__).resolve().parents[2] / "shared" / "assets")
        ),
    )
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    figures, needles = NOTEBOOK_OUTPUTS[name]
    for f in figures:
        assert (tmp_path / f).is_file(), f
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    for needle in needles:
        assert needle in text, needle
