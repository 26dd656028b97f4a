"""Training the embedded default: reproducible from the seed; the demo reaches real accuracy."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from sparsejax import cli, data, train


def _leaves(m):
    return [np.asarray(v) for v in jax.tree.leaves(m.variables)]


def test_training_is_reproducible_from_the_seed():
    tr = data.load_dataset("digits", split="train", n=256)
    cfg = train.TrainConfig(epochs=2, batch_size=32, seed=3)
    a, ra = train.train_classifier("lenet5-digits", tr, cfg, progress=False)
    b, _ = train.train_classifier("lenet5-digits", tr, cfg, progress=False)
    c, _ = train.train_classifier(
        "lenet5-digits", tr, train.TrainConfig(2, 32, seed=4), progress=False
    )
    assert all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(c), strict=True))
    assert ra.losses[1] < ra.losses[0]


@pytest.mark.slow
def test_demo_trains_a_real_model_and_reuses_it(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["n"] == 359 and res["accuracy"] >= 0.97
    ev = json.loads((tmp_path / "evaluate" / "evaluation.json").read_text())
    assert ev["clean_accuracy"] == res["accuracy"] and ev["n"] == 359
    assert set(ev["attacks"]) == {"sparsefool", "spgd", "sparse-rs"}
    assert ev["ensemble"]["robust_accuracy"]["ra"][0] == res["accuracy"]
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    assert "reusing" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == res["accuracy"]
