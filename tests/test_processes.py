"""Several processes on one run (SPEC §7, runner/processes.py): the flags, the strided
share, and two real processes on localhost through ``jax.distributed`` whose merged results
equal a one-process run, also after one of them is killed mid-run and rerun."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sparsejax.errors import SparsejaxError
from sparsejax.models import checkpoint
from sparsejax.runner import processes
from sparsejax.runner.processes import Processes
from sparsejax.runner.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def test_flags_all_three_or_none_and_env_fallback():
    assert processes.from_flags(environ={}) == processes.SINGLE
    assert processes.from_flags("h:1", 2, 1, environ={}) == Processes(2, 1, "h:1")
    env = {"SPARSEJAX_COORDINATOR": "10.0.0.1:9000", "JAX_NUM_PROCESSES": "4",
           "SPARSEJAX_PROCESS_ID": "3"}  # fmt: skip
    assert processes.from_flags(environ=env) == Processes(4, 3, "10.0.0.1:9000")
    # A flag wins over its environment variable.
    assert processes.from_flags(process_id=0, environ=env).index == 0
    assert processes.from_flags("h:1", 1, 0, environ={}) == processes.SINGLE
    for kwargs, message in (
        (dict(coordinator="h:1"), "missing --num-processes, --process-id"),
        (dict(coordinator="h:1", num_processes="two", process_id=0), "whole number"),
        (dict(coordinator="h:1", num_processes=2, process_id=2), r"in \[0, 1\]"),
        (dict(coordinator="h:1", num_processes=0, process_id=0), ">= 1"),
        (dict(coordinator="nohost", num_processes=2, process_id=0), "HOST:PORT"),
        (dict(coordinator="h:70000", num_processes=2, process_id=0), "HOST:PORT"),
    ):
        with pytest.raises(SparsejaxError, match=message):
            processes.from_flags(**kwargs, environ={})


def test_the_share_is_strided_and_covers_every_batch_once():
    jobs = [Processes(3, i, "h:1") for i in range(3)]
    owners = [[j.index for j in jobs if j.owns(b)] for b in range(10)]
    assert owners == [[b % 3] for b in range(10)]
    assert [j.merges for j in jobs] == [True, False, False]


def test_processes_checking_one_out_folder_at_once_do_not_trip_each_other(tmp_path):
    """Every process of a run checks that --out is writable as it starts; a probe file
    shared by name was removed by one process under another ("cannot write there")."""
    from concurrent.futures import ThreadPoolExecutor

    from sparsejax.runner.store import check_writable

    def check_many(_):
        for _ in range(300):
            check_writable(tmp_path / "out")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check_many, range(4)))  # re-raises a SparsejaxError from any thread
    assert list((tmp_path / "out").iterdir()) == []  # no probe left behind


def test_a_process_removes_only_the_temporary_files_it_writes(tmp_path):
    (tmp_path / "batches").mkdir()
    names = {
        "batches/.batch_00000.npz.a.tmp": (True, False),  # (process 0, process 1) removes it
        "batches/.batch_00001.npz.b.tmp": (False, True),
        ".results.json.c.tmp": (True, False),
        ".timing.json.d.tmp": (True, False),
        ".timing.p1.json.e.tmp": (False, True),
    }
    for index in (0, 1):
        for name in names:
            (tmp_path / name).write_bytes(b"")
        store = RunStore(tmp_path, {"a": 1}, "h", 4, Processes(2, index, "h:1"))
        store.open(overwrite=False)
        left = {n: not (tmp_path / n).exists() for n in names}
        assert left == {n: who[index] for n, who in names.items()}, index
    with pytest.raises(SparsejaxError, match="only process 0"):
        RunStore(tmp_path, {"a": 1}, "h", 4, Processes(2, 1, "h:1")).open(overwrite=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ckpt(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "digits.msgpack"
    checkpoint.save(path, digits_model.name, digits_model.variables)
    return path


def _command(ckpt, out, *extra):
    # σ-zero, 8 batches of 4 digits: slow enough per batch to kill a process mid-run.
    return [
        sys.executable, "-m", "sparsejax.cli", "attack", "--attack", "sigma-zero",
        "--model", "lenet5-digits", "--weights", str(ckpt), "--dataset", "digits",
        "--n", "32", "--batch-size", "4", "--set", "steps=1500", "--out", str(out), *extra,
    ]  # fmt: skip


def _start(ckpt, out, port, index, log):
    job = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id"]
    return subprocess.Popen(
        _command(ckpt, out, *job, str(index)), cwd=ROOT, env=dict(os.environ),
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _records(out: Path) -> tuple[list, np.ndarray]:
    res = json.loads((out / "results.json").read_text())
    with np.load(out / "adversarials.npz") as d:
        return res["examples"], d["x_adv"]


@pytest.mark.slow
def test_two_processes_merge_to_the_one_process_run_even_after_a_kill(ckpt, tmp_path):
    single = tmp_path / "single"
    done = subprocess.run(_command(ckpt, single), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    examples, x_adv = _records(single)

    # Two processes; process 1 is killed once its first batch (batch 1) is on disk.
    out, port = tmp_path / "two", _free_port()
    logs = [open(tmp_path / f"p{i}.log", "w") for i in (0, 1)]  # noqa: SIM115
    p0 = _start(ckpt, out, port, 0, logs[0])
    p1 = _start(ckpt, out, port, 1, logs[1])
    deadline = time.time() + 300

    def both_logs():
        return "\n".join(f"--- p{i}.log\n" + (tmp_path / f"p{i}.log").read_text()[-3000:]
                         for i in (0, 1))  # fmt: skip

    while not (out / "batches" / "batch_00001.npz").exists():
        # Both logs: p1 dying at start-up may be the coordinator (p0) going first.
        assert p1.poll() is None and time.time() < deadline, both_logs()
        time.sleep(0.05)
    p1.send_signal(signal.SIGKILL)
    p1.wait(timeout=60)
    mine = {f.name for f in (out / "batches").glob("batch_*.npz")}
    assert not {"batch_00003.npz", "batch_00005.npz", "batch_00007.npz"} <= mine  # mid-run

    # Process 0 does its share and waits (the killed process does not end it); the rerun
    # of process 1 resumes its share, and process 0 merges.
    time.sleep(2)
    assert p0.poll() is None, (tmp_path / "p0.log").read_text()
    p1 = _start(ckpt, out, port, 1, logs[1])
    assert p1.wait(timeout=600) == 0, (tmp_path / "p1.log").read_text()
    assert p0.wait(timeout=600) == 0, (tmp_path / "p0.log").read_text()
    for f in logs:
        f.close()
    assert "its share of" in (tmp_path / "p1.log").read_text()

    merged_examples, merged_x = _records(out)
    assert merged_examples == examples  # every per-example record, in dataset order
    np.testing.assert_array_equal(merged_x, x_adv)  # bit for bit: the same programs
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and res["summary"]["processes"] == 2
    assert res["summary"]["items_per_second"] > 0

    # A process with other arguments is refused by the folder it would share.
    other = subprocess.run(
        _command(ckpt, out, "--set", "steps=1400"), cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert other.returncode == 2 and "holds a different run (differs in: config)" in other.stderr


@pytest.mark.slow
def test_two_processes_write_the_one_process_evaluation(ckpt, tmp_path):
    def command(out, *extra):
        return [
            sys.executable, "-m", "sparsejax.cli", "evaluate", "--model", "lenet5-digits",
            "--weights", str(ckpt), "--dataset", "digits", "--n", "24", "--batch-size", "8",
            "--attacks", "sparsefool,sparse-rs", "--budgets", "1,2", "--set",
            "sparse-rs.queries=50", "--out", str(out), *extra,
        ]  # fmt: skip

    done = subprocess.run(command(tmp_path / "one"), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    port = _free_port()
    ps = [
        subprocess.Popen(
            command(
                tmp_path / "two",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in (0, 1)
    ]
    outs = [p.communicate(timeout=600) for p in ps]
    assert [p.returncode for p in ps] == [0, 0], [o[1][-2000:] for o in outs]
    assert "evaluation:" in outs[0][0] and "its share of every run" in outs[1][0]
    one, two = (json.loads((tmp_path / d / "evaluation.json").read_text()) for d in ("one", "two"))
    for doc in (one, two):
        for block in (*doc["attacks"].values(), doc["ensemble"]):
            block.pop("s")  # seconds differ; everything else is the same evaluation
        doc.pop("versions")
    assert one == two
