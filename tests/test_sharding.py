"""Batches split over devices (SPEC §7): every row of the conformance table gives the same
results on 8 simulated CPU devices as on 1 (tests/sharding_check.py runs them in a process
of its own, where JAX starts with 8 devices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsejax import cli
from sparsejax.models import checkpoint
from tests.sharding_check import FLOAT64
from tests.test_conformance import ROWS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "digits.msgpack"
    checkpoint.save(path, digits_model.name, digits_model.variables)
    return path


@pytest.fixture(scope="module")
def reports(ckpt):
    proc = subprocess.run(
        [sys.executable, "-m", "tests.sharding_check", str(ckpt)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"row"')]  # not the CLI's
    return {r["row"]: r for r in map(json.loads, lines)}


@pytest.mark.slow
@pytest.mark.parametrize("row", [r.id for r in ROWS])
def test_eight_devices_give_the_one_device_results(reports, row):
    r = reports[row]
    assert r["summary_devices"] == [1, 8]
    assert r["fingerprint_devices"] == [None, 8]  # a 1-device run keeps its fingerprint
    assert r["success_1"] > 0  # something to compare
    if row in FLOAT64:
        # float32: the split program rounds differently and a few paths move; float64:
        # the same attack, split or not, agrees to rounding and on every success.
        f = r["float64"]
        assert f["dtype"] == "float64" and f["split_devices"] == 8
        assert f["max_abs_diff"] <= 1e-12 and f["success_equal"]
        assert r["success_1"] == r["success_8"]
    else:
        assert r["records_equal"] == r["images_equal"] == r["n"], r


@pytest.mark.slow
def test_the_command_line_splits_over_devices_with_the_cache_on(reports):
    r = reports["cli"]
    assert r["rcs"] == [0, 0] and r["devices"] == 8
    assert r["refused_rc"] == 2  # 9 of 8 devices


def test_more_devices_than_present_are_refused_before_any_work(tmp_path, capsys, ckpt):
    argv = ["attack", "--attack", "spgd", "--model", "lenet5-digits", "--weights"]
    argv += [str(ckpt), "--dataset", "digits", "--n", "4", "--devices", "2"]
    out = tmp_path / "run"
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--devices must be a whole number in [1, 1]" in err, err
    assert not out.exists()
