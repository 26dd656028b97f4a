"""Execute: compiled calls over the batches of a plan.

One executable per (attack, static config, schedule, input shapes, model structure) is
compiled once per process and cached; with the persistent compilation cache on, a later
process loads the traced program and its compiled code from disk. On CPU, ``workers``
calls run side by side (XLA:CPU uses the second core poorly inside one call on these small
models). Ctrl-C during a run cancels the batches not yet started and raises
:class:`Interrupted` between batches; the caller keeps the finished ones.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import jax
import numpy as np

from sparsejax.runner.plan import Plan

_COMPILED: dict = {}


class Interrupted(KeyboardInterrupt):
    """Raised when a run was interrupted; its finished batches are saved."""

    def __init__(self, done: int, total: int):
        super().__init__(f"interrupted: {done} of {total} batches saved")
        self.done, self.total = done, total


@contextlib.contextmanager
def ctrl_c_sets(stop: threading.Event):
    """Within the block, Ctrl-C (SIGINT) sets ``stop`` instead of raising anywhere it
    happens to land: the run stops between batches, with everything finished saved. Outside
    the main thread signals are not ours, and nothing changes."""
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def default_workers() -> int:
    """Compiled calls side by side: one per core on CPU, one on an accelerator."""
    if jax.default_backend() != "cpu":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


FIELDS = ("x_adv", "success", "l0_pixels", "l0_elements", "iterations", "status",
          "model_evals", "forwards", "backwards", "clean_pred", "adv_pred")  # fmt: skip


def _flat_inputs(plan: Plan, inputs: dict) -> tuple[list, object]:
    """The leaves and structure of one call's arguments (keys as raw uint32 data)."""
    args = (
        plan.model.logits_fn, inputs["x"], inputs["y"], plan.config, inputs["targets"],
        inputs["mask"], jax.random.key_data(inputs["key"]), inputs["extras"],
    )  # fmt: skip
    return jax.tree.flatten(args)


def _program(plan: Plan, treedef) -> Callable:
    """The attack as a function of flat arrays, returning the fields the runner keeps."""
    spec, schedule = plan.spec, plan.schedule

    def attack(fn, x, y, config, targets, mask, key_data, extras):
        r = spec.fn(
            fn, x, y, config, targets=targets, mask=mask, key=jax.random.wrap_key_data(key_data),
            schedule=schedule, **extras,
        )  # fmt: skip
        return {k: getattr(r, k) for k in FIELDS}

    if plan.devices > 1:
        attack = _split_over_devices(attack, plan.devices)

    def flat(*leaves):
        return attack(*jax.tree.unflatten(treedef, leaves))

    return flat


def _split_over_devices(attack: Callable, devices: int) -> Callable:
    """The attack on a batch split into equal shares over a 1-D mesh of the first
    ``devices`` local devices (axis ``batch``): every device runs the unchanged per-batch
    attack on its share (a refill queue: its own lanes), the model and the config
    replicated. The sharding lives here, at the batch boundary; the attacks know nothing
    of it."""
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("batch",))  # Auto axis: GSPMD
    share, whole = PartitionSpec("batch"), PartitionSpec()
    # (model, x, y, config, targets, mask, key data, extras)
    in_specs = (whole, share, share, whole, share, share, share, share)
    return jax.shard_map(attack, mesh=mesh, in_specs=in_specs, out_specs=share, check_vma=False)


@functools.cache
def _source_digest() -> str:
    """A digest of the library's source: an exported program is reused only by the same code."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()


def _disk_key(plan: Plan, treedef, leaves) -> str:
    """What the traced program depends on, stable across processes (no object addresses)."""
    import jaxlib

    avals = [(tuple(np.shape(v)), str(getattr(v, "dtype", type(v)))) for v in leaves]
    text = "|".join(
        [
            _source_digest(), jax.__version__, jaxlib.__version__, jax.default_backend(),
            plan.spec.name, str(getattr(plan.model, "name", "")), repr(plan.schedule),
            f"devices={plan.devices}",
            re.sub(r"0x[0-9a-f]+", "0x", str(treedef)),
            repr(avals),
        ]
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@functools.cache
def _can_serialize() -> bool:
    try:
        import flatbuffers  # noqa: F401  (jax.export's serialisation needs it)
    except ImportError:
        return False
    return True


def compiled_attack(plan: Plan, example: dict) -> tuple[Callable, float]:
    """The compiled attack of a plan (``call(inputs) -> {field: array}``) and the seconds it
    took to get it (0 when this process has it already).

    With JAX's persistent compilation cache on (the command line turns it on), the traced
    program is also kept there, serialised with ``jax.export``: a later process of the same
    code skips the Python tracing of the attack and the model, and XLA's compilation comes
    from the cache, so a warm start costs a fraction of a cold one.
    """
    leaves, treedef = _flat_inputs(plan, example)
    key = (plan.spec.name, plan.schedule, plan.devices, treedef, _signature(leaves))
    if key not in _COMPILED:
        t0 = time.perf_counter()
        program = jax.jit(_program(plan, treedef))
        cache_dir = jax.config.jax_compilation_cache_dir
        # A program split over devices is not exported: its call would need the mesh
        # around it (XLA's own cache still keeps its compiled code).
        if cache_dir and _can_serialize() and plan.devices == 1:
            path = (
                Path(cache_dir) / "sparsejax-programs" / f"{_disk_key(plan, treedef, leaves)}.bin"
            )
            if path.is_file():
                exported = jax.export.deserialize(bytearray(path.read_bytes()))
            else:
                exported = jax.export.export(program)(*leaves)
                from sparsejax import io

                io.write_bytes(path, exported.serialize())
            program = jax.jit(exported.call)
        _COMPILED[key] = (program.lower(*leaves).compile(), time.perf_counter() - t0)
        seconds = _COMPILED[key][1]
    else:
        seconds = 0.0
    compiled = _COMPILED[key][0]
    return (lambda inputs: compiled(*_flat_inputs(plan, inputs)[0])), seconds


def _signature(leaves) -> tuple:
    return tuple((getattr(v, "shape", None), str(getattr(v, "dtype", type(v)))) for v in leaves)


def run_batches(
    plan: Plan, todo: list[int], compiled: Callable, workers: int, stop: threading.Event
) -> Iterator[tuple]:
    """Yields (batch, result, seconds) as batches finish, ``workers`` calls at a time. When
    ``stop`` is set, the batches not yet started are cancelled and :class:`Interrupted` is
    raised (the running calls finish in the background; their results are dropped)."""

    def one(b):
        inputs = plan.batch_inputs(b)
        t0 = time.perf_counter()
        r = jax.block_until_ready(compiled(inputs))
        return b, r, time.perf_counter() - t0

    pool = ThreadPoolExecutor(max_workers=workers)
    pending = {pool.submit(one, b) for b in todo}
    finished_count = 0
    while pending:
        if stop.is_set():
            pool.shutdown(wait=False, cancel_futures=True)
            raise Interrupted(finished_count, len(todo))
        finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        for fut in finished:
            finished_count += 1
            yield fut.result()
    pool.shutdown(wait=True)
