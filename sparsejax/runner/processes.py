"""Several processes on one run (SPEC §7): which batches are this process's, and the start
of a multi-process job through ``jax.distributed``.

A run's batches are shared out **strided**: batch ``b`` belongs to process ``b % count``,
so that easy and hard stretches of a dataset fall on every process alike. Each process
attacks its own batches and writes them into the shared run folder (one file per batch, as
a single process does); process 0, once its own share is done, waits for the others' batch
files and merges them into ``results.json``. Nothing else crosses processes: a batch's
results do not depend on which process ran it, so the merged run equals a one-process run
with the same arguments.

A process that stops (killed, preempted) loses only its unfinished batch: rerunning the
same command with the same ``--process-id`` resumes its share, while the others go on
(``jax_enable_recoverability``: without it JAX's coordination service ends every process
when one stops sending heartbeats, and refuses the restarted one). A process started with
other arguments is refused by the run folder, whose ``run.json`` fingerprint every
process checks (store.py).
"""

from __future__ import annotations

import dataclasses
import os
import re

from sparsejax.errors import SparsejaxError

# The flags' environment variables: ours first, then the names JAX's own launchers use.
ENV = {
    "coordinator": ("SPARSEJAX_COORDINATOR", "JAX_COORDINATOR_ADDRESS"),
    "count": ("SPARSEJAX_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "index": ("SPARSEJAX_PROCESS_ID", "JAX_PROCESS_ID"),
}
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:(\d{1,5})$")


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place in a job.

    Attributes:
      count: processes sharing each run (1: a single-process job).
      index: this process, in [0, count); process 0 merges the results.
      coordinator: ``HOST:PORT`` of process 0's coordination service (None when count is 1).
    """

    count: int = 1
    index: int = 0
    coordinator: str | None = None

    def owns(self, batch: int) -> bool:
        """Whether batch ``batch`` of a run is this process's (strided)."""
        return batch % self.count == self.index

    @property
    def merges(self) -> bool:
        """Whether this process writes the merged results (process 0)."""
        return self.index == 0


SINGLE = Processes()


FLAGS = {"coordinator": "--coordinator", "count": "--num-processes", "index": "--process-id"}


def from_flags(
    coordinator: str | None = None,
    num_processes: int | str | None = None,
    process_id: int | str | None = None,
    environ: dict[str, str] | None = None,
) -> Processes:
    """The job described by the command-line flags, each falling back to its environment
    variables (:data:`ENV`); all three or none. Raises SparsejaxError naming the problem."""
    env = os.environ if environ is None else environ
    given: dict[str, tuple[str, str]] = {}  # field -> (value, where it came from)
    for field, value in (("coordinator", coordinator), ("count", num_processes),
                         ("index", process_id)):  # fmt: skip
        if value is not None:
            given[field] = (str(value).strip(), FLAGS[field])
            continue
        for name in ENV[field]:
            if env.get(name, "").strip():
                given[field] = (env[name].strip(), name)
                break
    if not given:
        return SINGLE
    missing = [FLAGS[f] for f in FLAGS if f not in given]
    if missing:
        raise SparsejaxError(
            "a multi-process job needs --coordinator, --num-processes and --process-id "
            f"(or their environment variables); missing {', '.join(missing)}"
        )
    numbers = {}
    for field in ("count", "index"):
        value, source = given[field]
        try:
            numbers[field] = int(value)
        except ValueError:
            raise SparsejaxError(f"{source} must be a whole number, got {value!r}") from None
    count, index = numbers["count"], numbers["index"]
    if count < 1:
        raise SparsejaxError(f"{given['count'][1]} must be >= 1, got {count}")
    if not 0 <= index < count:
        raise SparsejaxError(
            f"{given['index'][1]} must be in [0, {count - 1}] for {count} processes, got {index}"
        )
    address, source = given["coordinator"]
    found = _HOST_PORT.match(address)
    if not found or not 0 < int(found.group(1)) < 65536:
        raise SparsejaxError(f"{source} must be HOST:PORT, got {address!r}")
    return SINGLE if count == 1 else Processes(count, index, address)


def initialize(processes: Processes, timeout_s: int = 300) -> None:
    """Joins the job through ``jax.distributed`` (before JAX starts its backend: call it
    before any computation). A single-process job does nothing. Waits up to ``timeout_s``
    for every process to join."""
    if processes.count == 1:
        return
    import jax

    # A stopped process must not end the others, and its rerun must be let back in.
    jax.config.update("jax_enable_recoverability", True)
    try:
        jax.distributed.initialize(
            processes.coordinator,
            num_processes=processes.count,
            process_id=processes.index,
            initialization_timeout=timeout_s,
        )
    except Exception as e:  # noqa: BLE001 - whatever the runtime raises, one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SparsejaxError(
            f"could not join the job at {processes.coordinator} as process "
            f"{processes.index} of {processes.count}: {first[:300]}"
        ) from None


def current() -> Processes:
    """The job JAX runs in: ``jax.process_count()`` processes after
    ``jax.distributed.initialize`` (by the caller or by :func:`initialize`), else one.
    The coordinator's address is not needed past the start."""
    import jax

    count = jax.process_count()
    return SINGLE if count == 1 else Processes(count, jax.process_index())
