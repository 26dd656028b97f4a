"""Nothing false, nothing lost, every failure one clear line: the cases a probe of 0.1 found
(each failed on 0.1). NaN logits, x outside its bounds and the accounting of untouched
inputs are properties of every attack, asserted in tests/test_conformance.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from sparsejax import cli, models
from sparsejax.models import checkpoint
from tests.helpers import count_compilations

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, digits_model):
    p = tmp_path_factory.mktemp("w") / "digits.msgpack"
    checkpoint.save(p, digits_model.name, digits_model.variables)
    return p


def _argv(ckpt, out, *extra, dataset="digits", n="12", attack="sparsefool"):
    argv = ["attack", "--attack", attack, "--model", "lenet5-digits", "--weights", str(ckpt)]
    argv += ["--dataset", dataset, "--n", n, "--batch-size", "4", "--out", str(out)]
    return argv + list(extra)


def _main(argv, capsys):
    with count_compilations() as c:
        rc = cli.main(argv)
    captured = capsys.readouterr()
    return rc, captured.err.strip(), c["n"]


def _one_line_error(rc, err, needle):
    assert rc == 2, err
    assert err.startswith("sparsejax: error: ") and "\n" not in err, err
    assert needle in err, err


# --------------------------------------------------------------------------- wrong results


def test_nan_weights_are_refused_at_load_naming_the_tensor(tmp_path, digits_model):
    bad = jax.tree.map(np.asarray, digits_model.variables)
    bad["params"]["conv1"]["kernel"] = np.array(bad["params"]["conv1"]["kernel"])
    bad["params"]["conv1"]["kernel"].flat[3] = np.nan
    p = tmp_path / "nan.msgpack"
    checkpoint.save(p, digits_model.name, bad)
    with pytest.raises(Exception, match=r"nan.msgpack: tensor params/conv1/kernel holds 1 NaN"):
        models.load("lenet5-digits", p)


def test_a_dataset_where_nothing_is_correctly_classified(tmp_path, capsys, ckpt, digits_model):
    from sparsejax import data

    ds = data.load_dataset("digits", n=8)
    wrong = (digits_model.predict(ds.x).argmax(1) + 1) % 10
    npz = tmp_path / "wrong.npz"
    np.savez(npz, x=ds.x[..., 0], y=wrong)
    out = tmp_path / "run"
    rc, err, _ = _main(_argv(ckpt, out, dataset=f"npz:{npz}", n="8"), capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())  # valid JSON: null, not NaN
    assert res["summary"]["success_rate"] is None and res["summary"]["n_attacked"] == 0


def test_damaged_run_folders_are_refused(tmp_path, capsys, ckpt):
    out = tmp_path / "run"
    assert cli.main(_argv(ckpt, out)) == 0
    capsys.readouterr()
    batches = out / "batches"
    # A batch file replaced by another's content.
    (batches / "batch_00001.npz").write_bytes((batches / "batch_00000.npz").read_bytes())
    rc, err, _ = _main(_argv(ckpt, out), capsys)
    _one_line_error(rc, err, "batch_00001.npz: holds batch 0 (items 0-4)")
    # run.json deleted, a rerun with another λ: refused, not adopted.
    (out / "run.json").unlink()
    rc, err, _ = _main(_argv(ckpt, out, "--set", "lambda_=2.0"), capsys)
    _one_line_error(rc, err, "holds batch files but no run.json")
    assert cli.main(_argv(ckpt, out, "--set", "lambda_=2.0", "--overwrite")) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["lambda_"] == 2.0 and res["complete"]


@pytest.mark.parametrize("damage", ["truncated", "directory", "wrong keys"])
def test_a_broken_run_json_or_batch_is_one_line_and_overwrite_repairs_it(
    tmp_path, capsys, ckpt, damage
):
    out = tmp_path / "run"
    assert cli.main(_argv(ckpt, out, "--n", "4")) == 0
    capsys.readouterr()
    if damage == "truncated":
        text = (out / "run.json").read_text()
        (out / "run.json").write_text(text[: len(text) // 2])
        needle = "unreadable run.json"
    elif damage == "directory":
        (out / "run.json").unlink()
        (out / "run.json").mkdir()
        needle = "run.json that is not a file"
    else:
        np.savez(out / "batches" / "batch_00000.npz", x_adv=np.zeros(3))
        needle = "not a batch file of this version (missing run"
    rc, err, _ = _main(_argv(ckpt, out, "--n", "4"), capsys)
    _one_line_error(rc, err, needle)
    assert cli.main(_argv(ckpt, out, "--n", "4", "--overwrite")) == 0
    assert json.loads((out / "results.json").read_text())["complete"]


# --------------------------------------------------------------------------- interruption


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """One persistent compilation cache for the runs below, as a user's reruns have (the
    first run compiles, the reruns load)."""
    return tmp_path_factory.mktemp("compile-cache")


def _start(tmp_path, ckpt, out, cache, n="300"):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SPARSEJAX_CACHE_DIR": str(cache)}
    argv = [sys.executable, "-m", "sparsejax.cli", *_argv(ckpt, out, "--n", n)]
    argv[argv.index("--batch-size") + 1] = "2"
    argv += ["--workers", "1"]
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_batches(out, k, proc, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if len(list((out / "batches").glob("batch_*.npz"))) >= k:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no batch finished in time")


@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 3])
def test_ctrl_c_keeps_the_finished_batches_and_says_so_in_one_line(
    tmp_path, ckpt, signals, compile_cache
):
    out = tmp_path / "run"
    proc = _start(tmp_path, ckpt, out, compile_cache)
    _wait_for_batches(out, 2, proc)
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and "run the same command to resume" in lines[0], stderr[-2000:]
    assert "Traceback" not in stderr and "terminate called" not in stderr
    saved = len(list((out / "batches").glob("batch_*.npz")))
    assert f"interrupted: {saved} of 150 batches saved" in lines[0]
    res = json.loads((out / "results.json").read_text())  # written on the interrupt
    assert not res["complete"] and res["batches_done"] == saved
    assert (out / "adversarials.npz").is_file()
    if signals > 1:
        return  # the resumption is checked once, after one Ctrl-C
    # A rerun resumes: the saved batches are kept, the rest is done, the result is that of
    # an uninterrupted run (bit for bit).
    kept = {f.name: f.read_bytes() for f in (out / "batches").iterdir()}
    proc = _start(tmp_path, ckpt, out, compile_cache)
    proc.communicate(timeout=600)
    assert proc.returncode == 0
    assert all((out / "batches" / k).read_bytes() == v for k, v in kept.items())
    ref = tmp_path / "ref"
    proc = _start(tmp_path, ckpt, ref, compile_cache)
    proc.communicate(timeout=600)
    a, b = np.load(out / "adversarials.npz"), np.load(ref / "adversarials.npz")
    np.testing.assert_array_equal(a["x_adv"], b["x_adv"])
    sessions = json.loads((out / "timing.json").read_text())["sessions"]
    assert len(sessions) == 2 and sum(s["batches"] for s in sessions) == 150


def test_stale_temporary_files_are_removed_and_results_written_early(tmp_path, capsys, ckpt):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".results.json.x1y2.tmp").write_text("{")  # left by a writer killed mid-write
    assert cli.main(_argv(ckpt, out)) == 0
    assert not list(out.glob(".*.tmp"))
    from sparsejax.runner import store

    assert [n for n in range(1, 20) if store.due(n)] == [1, 2, 4, 8, 16]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "arrays,needle",
    [
        (
            dict(x=np.zeros((3, 8, 8), np.uint8), y=np.array(["1", "2", "3"])),
            "labels y must be integers",
        ),
        (
            dict(x=np.zeros((3, 8, 8), np.uint8), y=np.array([1, "a", None], object)),
            "holds Python objects",
        ),
        (dict(), "missing array(s) ['x', 'y']"),
    ],
)
def test_bad_npz_datasets_are_one_line(tmp_path, capsys, ckpt, arrays, needle):
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    rc, err, n_compiled = _main(_argv(ckpt, tmp_path / "o", dataset=f"npz:{p}"), capsys)
    _one_line_error(rc, err, needle)
    assert n_compiled == 0


@pytest.mark.parametrize(
    "content,needle", [(b"", "empty file"), (b"\x13" * 300, "not an .npz archive")]
)
def test_unreadable_npz_files_are_one_line(tmp_path, capsys, ckpt, content, needle):
    p = tmp_path / "d.npz"
    p.write_bytes(content)
    rc, err, _ = _main(_argv(ckpt, tmp_path / "o", dataset=f"npz:{p}"), capsys)
    _one_line_error(rc, err, needle)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--set", "max_iter=3000000000"], "max_iter must lie in [1, 100,000]"),
        (["--seed", str(2**70)], "--seed must be a whole number in [0, 4294967295]"),
        (["--set", "lambda_=0.5"], "lambda_ must be >= 1"),
        (["--set", "delta=2"], "delta must be <= 1"),
    ],
)
def test_bad_values_write_nothing(tmp_path, capsys, ckpt, extra, needle):
    out = tmp_path / "o"
    rc, err, n_compiled = _main(_argv(ckpt, out, *extra), capsys)
    _one_line_error(rc, err, needle)
    assert n_compiled == 0 and not out.exists()


def test_an_empty_out_and_unwritable_eval_outputs(tmp_path, capsys, ckpt):
    rc, err, _ = _main(_argv(ckpt, ""), capsys)
    _one_line_error(rc, err, "--out: give a folder name")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    base = ["eval", "--model", "lenet5-digits", "--weights", str(ckpt), "--dataset", "digits"]
    for out, needle in (
        (tmp_path, "is a directory"),
        (blocker / "res.json", "exists and is not a directory"),
        (Path("/proc/sparsejax-eval.json"), "cannot write there"),
    ):
        rc, err, n_compiled = _main([*base, "--out", str(out)], capsys)
        _one_line_error(rc, err, needle)
        assert n_compiled == 0  # refused before the evaluation ran


def test_sapf_k_larger_than_the_image_is_refused(tmp_path, capsys, ckpt):
    argv = _argv(ckpt, tmp_path / "o", "--targeted", "all", "--set", "k=65", attack="sapf")
    rc, err, n_compiled = _main(argv, capsys)
    _one_line_error(rc, err, "k must be <= 64")
    assert n_compiled == 0 and not (tmp_path / "o" / "run.json").exists()


@pytest.mark.parametrize(
    "content,needle",
    [(b"", "empty file"), (b"0123456789", "not a PyTorch checkpoint (neither a zip archive")],
)
def test_unreadable_pt_files(tmp_path, content, needle):
    p = tmp_path / "w.pt"
    p.write_bytes(content)
    with pytest.raises(Exception, match=re.escape(needle)):
        models.load("lenet5-mnist", p)


def test_a_pickled_torch_module_is_one_clear_line(tmp_path):
    torch = pytest.importorskip("torch", reason="needs the port extra (torch)")
    p = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), p)  # the whole module, not its state_dict
    with pytest.raises(Exception) as e:
        models.load("lenet5-mnist", p)
    msg = str(e.value)
    assert "holds pickled Python objects" in msg and "\n" not in msg and "\x1b[" not in msg


# --------------------------------------------------------------------------- small things


def test_overwrite_removes_the_old_figure_and_files_follow_the_umask(tmp_path, capsys, ckpt):
    out = tmp_path / "run"
    assert cli.main(_argv(ckpt, out, "--n", "4", "--figure")) == 0
    assert (out / "examples.png").is_file()
    assert cli.main(_argv(ckpt, out, "--n", "4", "--set", "lambda_=2.0", "--overwrite")) == 0
    assert not (out / "examples.png").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "results.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_folder_is_checked_before_the_model_sees_the_dataset(tmp_path, capsys, ckpt):
    out = tmp_path / "run"
    assert cli.main(_argv(ckpt, out, "--n", "4")) == 0
    capsys.readouterr()
    rc, err, n_compiled = _main(_argv(ckpt, out, "--n", "4", "--set", "lambda_=2.0"), capsys)
    _one_line_error(rc, err, "holds a different run (differs in: config)")
    assert n_compiled == 0  # no forward pass over the dataset was compiled
