"""Store: a run folder that survives interruption and is never trusted blindly.

Layout of ``OUT/``:

- ``run.json``: the run's fingerprint (what identifies its results) and its hash;
- ``batches/batch_NNNNN.npz``: one file per finished batch, written atomically, carrying
  its identity (the run's fingerprint hash, the batch index, the item range); a file whose
  identity or keys do not match is refused by name, never merged;
- ``timing.json``: the attack and compile seconds of every session (in a job of several
  processes, process ``I > 0`` keeps its own in ``timing.pI.json``; processes.py);
- ``results.json`` and ``adversarials.npz``: rewritten after 1, 2, 4, 8, ... batches, at the
  end and on an interruption (so the I/O stays linear in the run's length), always valid.

A folder that holds another run, batches without a ``run.json``, or an unreadable
``run.json`` is refused; ``overwrite`` clears the folder's run files and starts afresh.
Temporary files left by a killed writer are removed (with several processes on one folder,
each removes only those of the files it writes: its batches and its timing file, and
process 0 the results).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from sparsejax import io
from sparsejax.errors import SparsejaxError
from sparsejax.runner.processes import SINGLE, Processes

RESULT_FIELDS = (
    "success",
    "l0_pixels",
    "l0_elements",
    "iterations",
    "status",
    "model_evals",
    "forwards",
    "backwards",
    "clean_pred",
    "adv_pred",
)
RECORD_FIELDS = (
    *RESULT_FIELDS,
    "l1",
    "l2",
    "linf",
    "index",
    "pos",
    "label",
    "target",
    "x_adv",
    "seconds",
)
IDENTITY = ("run", "batch", "first_item", "stop_item")
OUTPUTS = ("results.json", "adversarials.npz", "timing.json", "examples.png")


def check_writable(out: str | Path, what: str = "--out") -> None:
    """A folder we can create and write into (checked before any work)."""
    if isinstance(out, str) and not out.strip():  # Path("") would be the working directory
        raise SparsejaxError(f"{what}: give a folder name")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SparsejaxError(f"{what} {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A probe of its own: the processes of one run check the same folder at once.
        with tempfile.NamedTemporaryFile(dir=out, prefix=".sparsejax-write-test-"):
            pass
    except OSError as e:
        raise SparsejaxError(f"{what} {out}: cannot write there ({e.strerror})") from None


class RunStore:
    """The files of one run in ``out`` (see the module doc)."""

    def __init__(
        self,
        out: str | Path,
        fingerprint: dict,
        run_hash: str,
        n_batches: int,
        processes: Processes = SINGLE,
    ):
        self.given = out  # as given: "" must not become the working directory
        self.processes = processes
        self.out = Path(out)
        self.fingerprint = fingerprint
        self.run_hash = run_hash
        self.n_batches = n_batches
        self.batch_dir = self.out / "batches"

    # ----------------------------------------------------------------------- opening

    def open(self, overwrite: bool) -> None:
        """Checks the folder against this run (refusing a different or damaged one;
        ``overwrite`` clears it first), removes stale temporary files, writes ``run.json``."""
        check_writable(self.given)
        if overwrite and not self.processes.merges:
            raise SparsejaxError(
                f"--overwrite: only process 0 clears a run folder (this is process "
                f"{self.processes.index}); start process 0 with --overwrite first"
            )
        for tmp in [*self.out.glob(".*.tmp"), *self.batch_dir.glob(".*.tmp")]:
            if self._writes(tmp.name):
                tmp.unlink(missing_ok=True)  # left by a writer killed mid-write
        if overwrite:  # start afresh, whatever the folder holds
            self.clear()
        problem = self._problem()
        if problem is not None:
            raise SparsejaxError(f"--out {self.out} {problem}; use another --out, or --overwrite")
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        io.write_json(
            self.out / "run.json", {"fingerprint": self.fingerprint, "run": self.run_hash}
        )

    def _writes(self, tmp_name: str) -> bool:
        """Whether this process writes the file a temporary ``.NAME.XXXX.tmp`` belongs to."""
        p = self.processes
        if p.count == 1:
            return True
        batch = re.match(r"^\.batch_(\d+)\.npz\.", tmp_name)
        if batch:
            return p.owns(int(batch.group(1)))
        if tmp_name.startswith(f".{self._timing_file().name}."):
            return True
        return p.merges and tmp_name.startswith(tuple(f".{n}." for n in OUTPUTS))

    def _problem(self) -> str | None:
        run_file = self.out / "run.json"
        has_batches = self.batch_dir.is_dir() and any(self.batch_dir.glob("batch_*.npz"))
        if not run_file.exists():
            return "holds batch files but no run.json (of an unknown run)" if has_batches else None
        if not run_file.is_file():
            return "has a run.json that is not a file"
        try:
            old = json.loads(run_file.read_text())
            old_fp = old["fingerprint"]
        except (ValueError, KeyError, TypeError, OSError):
            return "has an unreadable run.json (truncated or not JSON)"
        if old_fp != self.fingerprint:
            diff = sorted(
                k for k in {*old_fp, *self.fingerprint} if old_fp.get(k) != self.fingerprint.get(k)
            )
            return f"holds a different run (differs in: {', '.join(diff)})"
        return None

    def clear(self) -> None:
        run_file = self.out / "run.json"
        if run_file.is_dir():
            shutil.rmtree(run_file)
        run_file.unlink(missing_ok=True)
        shutil.rmtree(self.batch_dir, ignore_errors=True)
        for name in OUTPUTS:
            (self.out / name).unlink(missing_ok=True)
        for f in self.out.glob("timing.p*.json"):
            f.unlink(missing_ok=True)

    # ----------------------------------------------------------------------- batches

    def batch_file(self, b: int) -> Path:
        return self.batch_dir / f"batch_{b:05d}.npz"

    def load_batches(self, item_range) -> dict[int, dict]:
        """The finished batches, each checked: it must belong to this run, be the batch its
        name says, cover its item range and hold every field."""
        done = {}
        for b in range(self.n_batches):
            f = self.batch_file(b)
            if not f.exists():
                continue
            try:
                with np.load(f, allow_pickle=False) as d:
                    rec = {k: d[k] for k in d.files}
            except Exception as e:  # noqa: BLE001 - any unreadable file is reported by name
                raise SparsejaxError(
                    f"{f}: unreadable batch file ({type(e).__name__}); "
                    "use --overwrite to start afresh"
                ) from None
            missing = [k for k in (*IDENTITY, *RECORD_FIELDS) if k not in rec]
            if missing:
                raise SparsejaxError(
                    f"{f}: not a batch file of this version (missing {', '.join(missing)}); "
                    "use --overwrite"
                )
            first, stop = item_range(b)
            got = (
                str(rec["run"]),
                int(rec["batch"]),
                int(rec["first_item"]),
                int(rec["stop_item"]),
            )
            if got != (self.run_hash, b, first, stop):
                raise SparsejaxError(
                    f"{f}: holds batch {got[1]} (items {got[2]}-{got[3]}) of run {got[0]}, not "
                    f"batch {b} (items {first}-{stop}) of run {self.run_hash}; use --overwrite"
                )
            done[b] = rec
        return done

    def save_batch(self, b: int, first: int, stop: int, record: dict) -> None:
        identity = dict(run=self.run_hash, batch=b, first_item=first, stop_item=stop)
        io.write_npz(self.batch_file(b), **identity, **record)

    # ----------------------------------------------------------------------- timing and results

    def _timing_file(self, index: int | None = None) -> Path:
        index = self.processes.index if index is None else index
        return self.out / ("timing.json" if index == 0 else f"timing.p{index}.json")

    def load_timing(self, index: int | None = None) -> list[dict]:
        """The sessions of process ``index`` (default this one)."""
        f = self._timing_file(index)
        try:
            return list(json.loads(f.read_text())["sessions"]) if f.is_file() else []
        except (ValueError, KeyError, TypeError):
            return []  # a damaged timing file only loses the earlier sessions' seconds

    def load_all_timing(self) -> list[dict]:
        """Every process's sessions, each tagged with its ``process``."""
        indices = [0] + sorted(
            int(m.group(1))
            for f in self.out.glob("timing.p*.json")
            if (m := re.fullmatch(r"timing\.p(\d+)\.json", f.name)) and int(m.group(1)) > 0
        )
        return [dict(s, process=i) for i in indices for s in self.load_timing(i)]

    def save_timing(self, sessions: list[dict]) -> None:
        io.write_json(self._timing_file(), {"sessions": sessions})

    def write_results(self, results: dict, records: dict) -> None:
        io.write_json(self.out / "results.json", results)
        if records:
            io.write_npz(
                self.out / "adversarials.npz",
                x_adv=records["x_adv"],
                index=records["index"],
                target=records["target"],
            )


def due(n_done: int) -> bool:
    """Whether to rewrite results.json after the n-th finished batch of a session: at 1, 2,
    4, 8, ... (the total I/O stays within twice the final file's size per doubling)."""
    return n_done > 0 and (n_done & (n_done - 1)) == 0
