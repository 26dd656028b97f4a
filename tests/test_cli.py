"""The command line: one-line errors with exit status 2 before any compilation; eval; port."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparsejax import cli, models
from sparsejax.models import checkpoint
from tests.helpers import count_compilations


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    m = models.create("lenet5-digits", seed=0)
    checkpoint.save(d / "digits.msgpack", m.name, m.variables)
    return d / "digits.msgpack"


def _run(argv, capsys):
    with count_compilations() as c:
        rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err, c["n"]


def _npz(tmp_path, name, **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return f"npz:{p}"


def test_bad_inputs_stop_with_one_line_before_compilation(tmp_path, capsys, digits_ckpt):
    ok_x = (np.random.default_rng(0).uniform(0, 1, (4, 8, 8)) * 255).astype(np.uint8)
    cases = {
        "unknown model": (
            ["--model", "lenet9", "--weights", str(digits_ckpt), "--dataset", "digits"],
            "unknown model 'lenet9'",
        ),
        "unknown dataset": (
            ["--model", "lenet5-digits", "--weights", str(digits_ckpt), "--dataset", "imagenet"],
            "unknown dataset 'imagenet'",
        ),
        "missing weights": (
            [
                "--model",
                "lenet5-digits",
                "--weights",
                str(tmp_path / "no.pt"),
                "--dataset",
                "digits",
            ],
            "no.pt: no such file",
        ),
        "wrong weights": (
            ["--model", "lenet5-mnist", "--weights", str(digits_ckpt), "--dataset", "mnist"],
            "holds a 'lenet5-digits' checkpoint",
        ),
        "wrong shape": (
            [
                "--model",
                "lenet5-digits",
                "--weights",
                str(digits_ckpt),
                "--dataset",
                _npz(tmp_path, "s.npz", x=np.zeros((2, 9, 9), np.uint8), y=[0, 1]),
            ],
            r"(9, 9, 1) per image does not fit model lenet5-digits",
        ),
        "wrong dtype": (
            [
                "--model",
                "lenet5-digits",
                "--weights",
                str(digits_ckpt),
                "--dataset",
                _npz(tmp_path, "d.npz", x=ok_x.astype(np.int32), y=[0, 1, 2, 3]),
            ],
            "dtype must be uint8 or float",
        ),
        "wrong range": (
            [
                "--model",
                "lenet5-digits",
                "--weights",
                str(digits_ckpt),
                "--dataset",
                _npz(tmp_path, "r.npz", x=ok_x / 100.0, y=[0, 1, 2, 3]),
            ],
            "float images must lie in [0, 1]",
        ),
        "label out of range": (
            [
                "--model",
                "lenet5-digits",
                "--weights",
                str(digits_ckpt),
                "--dataset",
                _npz(tmp_path, "l.npz", x=ok_x, y=[0, 1, 2, 12]),
            ],
            "must lie in [0, 9] for a 10-class model, got [0, 12]",
        ),
        "bad n": (
            [
                "--model",
                "lenet5-digits",
                "--weights",
                str(digits_ckpt),
                "--dataset",
                "digits",
                "--n",
                "0",
            ],
            "--n must be >= 1",
        ),
    }
    for what, (argv, needle) in cases.items():
        rc, err, compiles = _run(["eval", *argv], capsys)
        assert rc == 2, what
        assert err.startswith("sparsejax: error: ") and "\n" not in err, (what, err)
        assert needle in err, (what, err)
        assert compiles == 0, what


def test_eval_reports_accuracy(tmp_path, capsys, digits_ckpt):
    out = tmp_path / "eval.json"
    rc = cli.main(
        [
            "eval",
            "--model",
            "lenet5-digits",
            "--weights",
            str(digits_ckpt),
            "--dataset",
            "digits",
            "--n",
            "50",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    m = models.load("lenet5-digits", digits_ckpt)
    from sparsejax import data

    ds = data.load_dataset("digits", n=50)
    assert res["n"] == 50
    assert res["accuracy"] == pytest.approx(float((m.predict(ds.x).argmax(1) == ds.y).mean()))
    assert res["predictions"] == m.predict(ds.x).argmax(1).tolist()  # dataset order
    assert res["labels"] == ds.y.tolist() and res["indices"] == list(range(50))
    assert "clean accuracy" in capsys.readouterr().out


def test_port_command(tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="porting needs torch")
    from tests.torch_reference import LeNet5

    torch.manual_seed(0)
    torch.save(LeNet5(spatial=8).state_dict(), tmp_path / "w.pt")
    rc = cli.main(
        [
            "port",
            "--model",
            "lenet5-digits",
            "--weights",
            str(tmp_path / "w.pt"),
            "--out",
            str(tmp_path / "w.msgpack"),
        ]
    )
    assert rc == 0 and checkpoint.read(tmp_path / "w.msgpack")[0] == "lenet5-digits"
    rc = cli.main(
        [
            "port",
            "--model",
            "lenet5-digits",
            "--weights",
            str(tmp_path / "w.msgpack"),
            "--out",
            str(tmp_path / "x.msgpack"),
        ]
    )
    assert rc == 2 and "not a PyTorch checkpoint" in capsys.readouterr().err


def test_models_listing(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet110-cifar10" in out and "lenet5-digits" in out


def test_evaluate_refuses_bad_requests_before_any_work(tmp_path, capsys, digits_ckpt):
    base = ["evaluate", "--model", "lenet5-digits", "--weights", str(digits_ckpt)]
    base += ["--dataset", "digits", "--n", "4"]
    cases = {
        "unknown attack": (["--attacks", "sparsefool,spdg"], "unknown attack 'spdg'"),
        "bad budgets": (["--attacks", "spgd", "--budgets", "1,x"], "--budgets must be whole"),
        "decreasing": (["--attacks", "spgd", "--budgets", "5,2"], "increasing"),
        "budgets subset": (
            ["--attacks", "spgd", "--budgets", "1,2", "--set", "spgd.budgets=3"],
            "increasing subset of --budgets",
        ),
        "set form": (["--attacks", "spgd", "--set", "steps=3"], "write ATTACK.KEY=VALUE"),
        "set field": (["--attacks", "spgd", "--set", "spgd.stepz=3"], "stepz"),
        "set other": (["--attacks", "spgd", "--set", "sparsefool.lambda_=2"], "not among"),
    }
    for what, (argv, needle) in cases.items():
        out = tmp_path / what.replace(" ", "_")
        rc, err, compiles = _run([*base, *argv, "--out", str(out)], capsys)
        assert rc == 2, what
        assert err.startswith("sparsejax: error: ") and "\n" not in err, (what, err)
        assert needle in err, (what, err)
        assert compiles == 0, what
        assert not out.exists(), what


def test_evaluate_command_writes_the_evaluation(tmp_path, capsys, digits_ckpt):
    out = tmp_path / "ev"
    argv = ["evaluate", "--model", "lenet5-digits", "--weights", str(digits_ckpt)]
    argv += ["--dataset", "digits", "--n", "6", "--attacks", "sparsefool,sparse-rs"]
    argv += ["--budgets", "1,3", "--set", "sparse-rs.queries=20", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| **ensemble** |" in printed and "evaluation.json" in printed
    doc = json.loads((out / "evaluation.json").read_text())
    assert set(doc["attacks"]) == {"sparsefool", "sparse-rs"}
    assert (out / "sparse-rs" / "k3" / "results.json").is_file()
    assert doc["attacks"]["sparse-rs"]["robust_accuracy"]["k"] == [0, 1, 3]
