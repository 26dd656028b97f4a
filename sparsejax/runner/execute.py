"""Execute: compiled calls over the batches of a plan.

One executable per (attack, static config, schedule, input shapes, model structure) is
compiled once per process and cached (with the persistent compilation cache on, a later
process loads it from disk). On CPU, ``workers`` calls run side by side (XLA:CPU uses the
second core poorly inside one call on these small models). Ctrl-C during a run cancels the
batches not yet started and raises :class:`Interrupted` between batches; the caller keeps
the finished ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import jax

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


def _signature(tree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(
        (getattr(v, "shape", None), str(getattr(v, "dtype", type(v)))) for v in leaves
    )


def compiled_attack(plan: Plan, example: dict) -> tuple[Callable, float]:
    """The compiled attack of a plan and the seconds compiling took (0 when cached)."""
    spec, schedule = plan.spec, plan.schedule
    args = (plan.model.logits_fn, example["x"], example["y"], plan.config)
    args += tuple(example[k] for k in ("targets", "mask", "key"))
    key = (spec.name, schedule, _signature(args))
    if key in _COMPILED:
        return _COMPILED[key], 0.0

    def attack(logits_fn, x, y, config, targets, mask, key):
        return spec.fn(
            logits_fn, x, y, config, targets=targets, mask=mask, key=key, schedule=schedule
        )

    t0 = time.perf_counter()
    compiled = jax.jit(attack).lower(*args).compile()
    _COMPILED[key] = compiled
    return compiled, time.perf_counter() - t0


def run_batches(
    plan: Plan, todo: list[int], compiled: Callable, workers: int, stop: threading.Event
) -> Iterator[tuple]:
    """Yields (batch, result, seconds) as batches finish, ``workers`` calls at a time. When
    ``stop`` is set, the batches not yet started are cancelled and :class:`Interrupted` is
    raised (the running calls finish in the background; their results are dropped)."""

    def one(b):
        inputs = plan.batch_inputs(b)
        t0 = time.perf_counter()
        r = jax.block_until_ready(
            compiled(plan.model.logits_fn, inputs["x"], inputs["y"], plan.config,
                     inputs["targets"], inputs["mask"], inputs["key"])
        )  # fmt: skip
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
