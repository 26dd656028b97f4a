"""The notebooks run top to bottom (on a small batch) and produce their figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the dev extra (nbformat, nbclient)")
nbclient = pytest.importorskip("nbclient", reason="needs the dev extra (nbformat, nbclient)")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sparsefool.ipynb"])
def test_notebook_executes(name, tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    monkeypatch.setenv("SPARSEJAX_NOTEBOOK_N", "8")
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
    assert (tmp_path / "sparsefool_examples.png").is_file()
    assert (tmp_path / "sparsefool_lambda.png").is_file()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "fooling rate" in text and "the queued sweep agrees on success" in text
