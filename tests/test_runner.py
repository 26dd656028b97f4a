"""`sparsejax attack`: validation before compilation, result files, resumption."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from sparsejax import cli
from sparsejax.models import checkpoint
from tests.helpers import count_compilations


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, digits_model):
    p = tmp_path_factory.mktemp("w") / "digits.msgpack"
    checkpoint.save(p, digits_model.name, digits_model.variables)
    return p


def _argv(ckpt, out, *extra):
    return [
        "attack",
        "--attack",
        "sparsefool",
        "--model",
        "lenet5-digits",
        "--weights",
        str(ckpt),
        "--dataset",
        "digits",
        "--n",
        "12",
        "--batch-size",
        "5",
        "--out",
        str(out),
        "--set",
        "lambda_=1.0",
        *extra,
    ]


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--set", "lamda=2"], "SparseFoolConfig has no field 'lamda'"),
        (["--set", "lambda_=big"], "expected a number, got 'big'"),
        (["--set", "lambda_=-1"], "sparsefool lambda_ must be >= 1"),
        (["--set", "max_iter=0"], "sparsefool max_iter must lie in [1, 100,000]"),
        (["--set", "deepfool.num_candidates=1"], "num_candidates must lie in [2,"),
        (["--set", "deepfool.nope=1"], "DeepFoolConfig has no field 'nope'"),
        (["--set", "targeted=true"], "SparseFoolConfig has no field 'targeted'"),
        (["--set", "deepfool=3"], "set the sub-fields of deepfool"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--slots", "0"], "--slots must be >= 1"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--attack", "sparse-l0", "--set", "update=alg2"], "must be one of algorithm1, eq20"),
        (["--attack", "sparse-l0", "--set", "a=0"], "sparse-l0 a must be > 0"),
        (["--attack", "sparse-l0", "--set", "steps=ten"], "expected an integer, got 'ten'"),
        (["--attack", "sparse-l0", "--set", "lambda_=1.0", "--set", "mu=1"], "no field 'mu'"),
        (["--attack", "sapf"], "'sapf' is targeted only: pass --targeted"),
        (["--attack", "sapf", "--targeted", "all", "--set", "k=2.5"], "whole number"),
        (
            ["--attack", "sapf-vi", "--targeted", "all", "--set", "weighting=x"],
            "weighting=x': must be one of uniform",
        ),
        (["--attack", "sapf-gs", "--targeted", "all", "--set", "n_segments=999"], "n_segments"),
    ],
)
def test_bad_attack_arguments_stop_before_compilation(tmp_path, capsys, ckpt, extra, needle):
    argv = _argv(ckpt, tmp_path / "o", *extra)
    if extra[:1] == ["--attack"]:  # the later --attack wins; drop SparseFool's lambda_=1.0
        i = argv.index("lambda_=1.0")
        del argv[i - 1 : i + 1]
    with count_compilations() as c:
        rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("sparsejax: error: ") and "\n" not in err
    assert needle in err, err
    assert c["n"] == 0


def test_unknown_attack(tmp_path, capsys, ckpt):
    argv = _argv(ckpt, tmp_path / "o")
    argv[argv.index("sparsefool")] = "sparsfool"
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    known = (
        "cw-l0, fmn-l0, jsma, one-pixel, random-subset, saa, sapf, sapf-gs, sapf-vi, "
        "sigma-zero, sparse-l0, sparse-rs, sparsefool, spgd"
    )
    assert f"unknown attack 'sparsfool'; known: {known}" in err


def test_results_file_and_resumption(tmp_path, capsys, ckpt):
    out = tmp_path / "run"
    assert cli.main(_argv(ckpt, out, "--figure", "--workers", "2")) == 0
    res = json.loads((out / "results.json").read_text())
    for key in (
        "attack",
        "model",
        "dataset",
        "config",
        "n",
        "clean_accuracy",
        "summary",
        "examples",
        "versions",
    ):
        assert key in res
    for key in (
        "success_rate",
        "median_l0_pixels",
        "median_l0_pixels_pct",
        "median_l0_elements",
        "mean_l2",
        "mean_linf",
        "time_per_sample_s",
        "model_evals_per_sample",
    ):
        assert key in res["summary"]
    assert res["n"] == 12 and len(res["examples"]) == 12 and res["complete"]
    assert res["config"]["lambda_"] == 1.0 and res["batches_total"] == 3
    assert res["summary"]["workers"] == 2 and res["summary"]["attack_seconds"] > 0
    ex = res["examples"][0]
    assert set(ex) >= {
        "index",
        "label",
        "target",
        "clean_pred",
        "adv_pred",
        "success",
        "l0_pixels",
        "l0_elements",
        "l1",
        "l2",
        "linf",
        "iterations",
        "status",
        "model_evals",
        "forwards",
        "backwards",
    }
    assert all(e["model_evals"] == e["forwards"] + e["backwards"] for e in res["examples"])
    adv = np.load(out / "adversarials.npz")
    assert adv["x_adv"].shape == (12, 8, 8, 1)
    np.testing.assert_array_equal(adv["index"], np.arange(12))
    # The recorded per-example numbers are those of the saved images.
    from sparsejax import data

    x = data.load_dataset("digits", n=12).x
    np.testing.assert_array_equal(
        [e["l0_elements"] for e in res["examples"]], (adv["x_adv"] != x).sum(axis=(1, 2, 3))
    )
    assert (out / "examples.png").is_file()

    # An interrupted run: the last batch is missing; a rerun redoes only that batch.
    (out / "batches" / "batch_00002.npz").unlink()
    before = {f.name: f.stat().st_mtime_ns for f in (out / "batches").iterdir()}
    assert cli.main(_argv(ckpt, out)) == 0
    after = {f.name: f.stat().st_mtime_ns for f in (out / "batches").iterdir()}
    assert after["batch_00000.npz"] == before["batch_00000.npz"]
    assert "batch_00002.npz" in after
    again = json.loads((out / "results.json").read_text())
    assert [e["l0_pixels"] for e in again["examples"]] == [e["l0_pixels"] for e in res["examples"]]

    # A different run into the same folder is refused, then allowed with --overwrite.
    capsys.readouterr()
    assert cli.main(_argv(ckpt, out, "--set", "lambda_=2.0")) == 2
    assert "holds a different run (differs in: config)" in capsys.readouterr().err
    assert cli.main(_argv(ckpt, out, "--set", "lambda_=2.0", "--overwrite")) == 0
    assert json.loads((out / "results.json").read_text())["config"]["lambda_"] == 2.0


def test_a_config_with_a_tuple_resumes(tmp_path, ckpt):
    """run.json stores a tuple field (the random subset's channel_k = ()) as a list; the
    rerun's fingerprint must still match it."""
    argv = [
        "attack", "--attack", "random-subset", "--model", "lenet5-digits", "--weights",
        str(ckpt), "--dataset", "digits", "--n", "6", "--batch-size", "3", "--out",
        str(tmp_path / "run"),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    (tmp_path / "run" / "batches" / "batch_00001.npz").unlink()
    assert cli.main(argv) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["config"]["channel_k"] == [] and res["complete"]


@pytest.mark.parametrize("mode", ["least-likely", "random", "all"])
def test_targeted_modes(tmp_path, ckpt, mode):
    out = tmp_path / mode
    argv = _argv(ckpt, out, "--targeted", mode, "--set", "max_iter=30")
    argv[argv.index("--n") + 1] = "4"
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    ex = res["examples"]
    assert len(ex) == (4 * 9 if mode == "all" else 4)
    for e in ex:
        assert e["target"] is not None and e["target"] != e["label"]
        assert e["success"] == (e["adv_pred"] == e["target"] and e["clean_pred"] == e["label"])
    if mode == "all":
        assert sorted({(e["index"], e["target"]) for e in ex}) == sorted(
            (e["index"], t) for e in ex[::9] for t in range(10) if t != e["label"]
        )


@pytest.mark.parametrize("targeted", [None, "least-likely"])
def test_sparse_l0_from_the_command_line(tmp_path, ckpt, targeted):
    out = tmp_path / "lin"
    argv = _argv(ckpt, out, "--set", "steps=40", "--set", "box=directional")
    argv[argv.index("sparsefool")] = "sparse-l0"
    i = argv.index("lambda_=1.0")
    del argv[i - 1 : i + 1]
    if targeted:
        argv += ["--targeted", targeted]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["attack"] == "sparse-l0" and res["config"]["steps"] == 40
    assert res["config"]["box"] == "directional" and res["targeted"] == targeted
    adv = np.load(out / "adversarials.npz")["x_adv"]
    assert np.all((adv >= 0) & (adv <= 1))
    for e in res["examples"]:
        if targeted:
            assert e["success"] == (e["adv_pred"] == e["target"] and e["clean_pred"] == e["label"])
        else:
            assert e["success"] == (e["adv_pred"] != e["label"] and e["clean_pred"] == e["label"])
    # (least-likely targets on 8x8 digits in 40 steps: 5/12 measured)
    assert res["summary"]["success_rate"] > (0.3 if targeted else 0.6)


SAPF_BUDGET = ["k=10", "delta_steps=40", "g_steps=40", "finetune_steps=20", "max_iter=3"]


@pytest.mark.parametrize("attack", ["sapf", "sapf-gs", "sapf-vi"])
def test_sapf_all_targets_from_the_command_line(tmp_path, capsys, ckpt, attack):
    """--targeted all: one record per (image, target), the best/average/worst summary."""
    out = tmp_path / attack
    argv = _argv(ckpt, out, "--targeted", "all", "--batch-size", "9")
    argv[argv.index("sparsefool")] = attack
    i = argv.index("lambda_=1.0")
    argv[i - 1 : i + 1] = [a for s in SAPF_BUDGET for a in ("--set", s)]
    argv[argv.index("--n") + 1] = "2"
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "best" in printed and "worst" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["attack"] == attack and len(res["examples"]) == 2 * 9
    cases = res["summary"]["cases"]
    assert cases["n_images"] == 2 and cases["ranked_by"] == "l2"
    assert cases["best"]["success_rate"] >= cases["average"]["success_rate"]
    assert cases["average"]["success_rate"] >= cases["worst"]["success_rate"]
    for e in res["examples"]:
        assert e["success"] == (e["adv_pred"] == e["target"] and e["clean_pred"] == e["label"])
        assert e["l0_elements"] <= 10  # exact cardinality: l0 <= k
    assert res["summary"]["success_rate"] > 0.6


def test_a_second_run_loads_the_traced_program_from_the_cache(tmp_path, monkeypatch, ckpt):
    """With the compilation cache on, the first run keeps the traced attack (jax.export) and
    a later process reuses it; the results are the same bit for bit."""
    from sparsejax.runner import execute

    monkeypatch.setenv("SPARSEJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(execute, "_COMPILED", {})  # as a new process
    traced = []
    export = jax.export.export
    monkeypatch.setattr(jax.export, "export", lambda f: traced.append(f) or export(f))
    assert cli.main(_argv(ckpt, tmp_path / "a")) == 0
    programs = list((tmp_path / "cache" / "sparsejax-programs").glob("*.bin"))
    assert len(programs) == 1 and len(traced) == 1
    monkeypatch.setattr(execute, "_COMPILED", {})
    assert cli.main(_argv(ckpt, tmp_path / "b")) == 0
    assert len(traced) == 1  # not traced again: loaded from the file
    assert list((tmp_path / "cache" / "sparsejax-programs").glob("*.bin")) == programs
    a, b = (
        np.load(tmp_path / "a" / "adversarials.npz"),
        np.load(tmp_path / "b" / "adversarials.npz"),
    )
    np.testing.assert_array_equal(a["x_adv"], b["x_adv"])
