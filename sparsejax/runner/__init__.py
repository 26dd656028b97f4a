"""Running an attack over a dataset (SPEC §5), in four parts:

- :mod:`.plan`: what will be attacked (items, targets, batches, keys), checked first;
- :mod:`.store`: the run folder, checked against the run and resumable;
- :mod:`.execute`: one compiled executable per attack and shapes, batches side by side;
- :mod:`.report`: results.json, the printed tables and the examples figure;
- :mod:`.processes`: several processes on one run (each its share of the batches).

Everything that can be wrong with the request (attack, config, target mode, seed, batch
size, output folder) is checked before the model sees the dataset and before anything is
compiled.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np

from sparsejax import metrics
from sparsejax.runner import execute, memory, processes, report, store
from sparsejax.runner.execute import Interrupted, default_workers
from sparsejax.runner.plan import (
    TARGET_MODES,
    check_request,
    device_count,
    fingerprint,
    fingerprint_hash,
    get_attack,
    make_config,
    make_plan,
    probe_plan,
    schedule_for,
)
from sparsejax.runner.report import cases_table, examples_figure, table1_row

__all__ = [
    "TARGET_MODES",
    "Interrupted",
    "cases_table",
    "default_workers",
    "examples_figure",
    "get_attack",
    "make_config",
    "run_attack",
    "table1_row",
]


def _record(plan, b: int, r, seconds: float) -> tuple[int, int, dict]:
    first, stop = plan.item_range(b)
    real = stop - first
    items = np.arange(first, stop)
    pos = plan.positions[items]
    x_adv = np.asarray(r["x_adv"])[:real]
    rec = {k: np.asarray(r[k])[:real] for k in store.RESULT_FIELDS}
    rec.update({k: np.asarray(v) for k, v in metrics.lp_norms(x_adv, plan.ds.x[pos]).items()})
    rec.update(
        index=plan.ds.indices[pos],
        pos=pos,
        label=plan.ds.y[pos],
        target=np.full(real, -1) if plan.targets is None else plan.targets[items],
        x_adv=x_adv,
        seconds=np.full(real, seconds / max(real, 1)),
    )
    return first, stop, rec


def run_attack(
    spec,
    config,
    model,
    ds,
    out_dir: str | Path,
    batch_size: int = 50,
    slots: int | None = None,
    target_mode: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    workers: int | None = None,
    label: str | None = None,
    devices: int | None = None,
    job: processes.Processes | None = None,
    poll_s: float = 1.0,
    memory_budget: int | None = None,
) -> dict:
    """Attacks every example of ``ds`` (or every image-target pair) and writes the results.

    Args:
      spec: an :class:`~sparsejax.attacks.AttackSpec` (``sparsejax.attacks.get(name)``).
      config: its config object.
      model, ds: a :class:`~sparsejax.models.Model` and a :class:`~sparsejax.data.Dataset`.
      out_dir: the run folder (see :mod:`.store`).
      batch_size: items per compiled call; results are saved after each batch.
      slots: lanes of the refill queue of an early-stopping attack (default
        :func:`~sparsejax.attacks.engine.default_queue_width` of ``batch_size``).
      target_mode: None (untargeted), ``least-likely``, ``random`` or ``all``.
      seed: for random targets and the attacks that draw random numbers.
      overwrite: replace a different, damaged or unknown run in ``out_dir``.
      workers: compiled calls at the same time (default :func:`default_workers`).
      label: the progress bar's label (default the attack's name).
      devices: local devices each batch is split over (default all; execute.py).
      job: this process's place in a job of several (default :func:`processes.current`):
        it attacks its share of the batches; process 0 then waits for the others' batch
        files (polling every ``poll_s`` seconds) and writes the merged results.json.
      memory_budget: bytes the compiled attack may hold at its peak: the lanes (queue) or
        the chunk (lockstep) are capped to fit (memory.py; default: 8 GiB, applied to
        examples of 65,536 elements or more). results.json records the measured cost.

    Returns the ``results.json`` content (in a process other than 0: of this process's
    batches so far, not written). A KeyboardInterrupt saves what finished, writes
    results.json and raises :class:`Interrupted`; the same call resumes.
    ``time_per_sample_s`` is the wall time of the attack phases (compilation excluded,
    summed over sessions up to each session's last finished batch) per attacked item.
    """
    from tqdm.auto import tqdm

    check_request(
        spec, config, target_mode=target_mode, seed=seed, batch_size=batch_size, slots=slots,
        workers=workers, devices=devices,
    )  # fmt: skip
    if spec.algorithm.check_shape is not None:
        spec.algorithm.check_shape(config, model.input_shape)
    n_items = len(ds) * (model.num_classes - 1 if target_mode == "all" else 1)
    bs = min(batch_size, n_items)
    schedule = schedule_for(spec, slots, bs)
    probe = probe_plan(spec, config, model, ds, target_mode=target_mode, seed=seed,
                       batch_size=bs, schedule=schedule)  # fmt: skip
    schedule, lane_cost = memory.fit(probe, memory_budget)
    n_devices = device_count(devices)
    job = processes.current() if job is None else job
    fp = fingerprint(spec, config, model, ds, target_mode, seed, bs, schedule, n_devices)
    run = store.RunStore(out_dir, fp, fingerprint_hash(fp), -(-n_items // bs), job)
    run.open(overwrite)  # before the model sees the dataset

    clean_logits = model.predict(ds.x)
    clean_acc = float((clean_logits.argmax(1) == ds.y).mean())
    plan = make_plan(
        spec, config, model, ds, target_mode=target_mode, seed=seed, batch_size=bs,
        schedule=schedule, fp=fp, clean_logits=clean_logits, devices=n_devices,
    )  # fmt: skip
    if lane_cost is not None:
        plan = dataclasses.replace(plan, memory=lane_cost.describe(memory_budget, schedule))
    batches = run.load_batches(plan.item_range)
    sessions = run.load_timing()
    todo = [b for b in range(plan.n_batches) if b not in batches and job.owns(b)]
    workers = min(default_workers() if workers is None else workers, max(len(todo), 1))
    bar = tqdm(
        total=plan.n_batches, initial=len(batches), desc=label or spec.name, unit="batch",
        disable=not progress,
    )  # fmt: skip
    if todo:
        compiled, compile_s = execute.compiled_attack(plan, plan.batch_inputs(todo[0]))
        session = dict(compile_seconds=compile_s, attack_seconds=0.0, batches=0, workers=workers)
        sessions.append(session)
        start = time.perf_counter()
        stop = threading.Event()
        try:
            with execute.ctrl_c_sets(stop):
                for b, r, seconds in execute.run_batches(plan, todo, compiled, workers, stop):
                    first, last, rec = _record(plan, b, r, seconds)
                    run.save_batch(b, first, last, rec)
                    batches[b] = rec
                    session["attack_seconds"] = time.perf_counter() - start
                    session["batches"] += 1
                    run.save_timing(sessions)
                    if store.due(session["batches"]) and job.merges:
                        _write_merged(run, plan, batches, clean_acc, job)
                    bar.update(1)
                    attacked = rec["clean_pred"] == rec["label"]
                    if attacked.any():
                        bar.set_postfix(batch_success=f"{rec['success'][attacked].mean():.3f}")
        except Interrupted:
            bar.close()
            with execute.ctrl_c_sets(stop):  # a second Ctrl-C must not break the saving
                if job.merges:
                    _write_merged(run, plan, batches, clean_acc, job)
            raise Interrupted(len(batches), plan.n_batches) from None
    if job.count > 1 and not job.merges:  # process 0 merges
        bar.close()
        return report.results(plan, batches, [dict(s, process=job.index) for s in sessions],
                              clean_acc)  # fmt: skip
    if job.count > 1:
        batches = _wait_for_the_others(run, plan, batches, bar, job, poll_s, clean_acc)
    bar.close()
    return _write_merged(run, plan, batches, clean_acc, job)


def _write_merged(run, plan, batches: dict, clean_acc: float, job) -> dict:
    """results.json and adversarials.npz of every finished batch, written by process 0
    (in a job of several, the batch files of every process, read again)."""
    if job.count > 1:
        batches = {**run.load_batches(plan.item_range), **batches}
    res = report.results(plan, batches, run.load_all_timing(), clean_acc)
    run.write_results(res, report.concatenate(batches))
    return res


def _wait_for_the_others(run, plan, batches, bar, job, poll_s: float, clean_acc) -> dict:
    """Process 0, its share done: the batches of every process, once all are on disk."""
    stop = threading.Event()
    with execute.ctrl_c_sets(stop):
        while True:
            batches = {**run.load_batches(plan.item_range), **batches}
            bar.n = len(batches)
            missing = sorted({b % job.count for b in range(plan.n_batches) if b not in batches})
            if not missing:
                bar.set_postfix_str("")
                return batches
            bar.set_postfix_str(
                f"waiting for process {', '.join(map(str, missing))} (rerun one that stopped)"
            )
            if stop.wait(poll_s):  # Ctrl-C: what is there so far, merged
                bar.close()
                _write_merged(run, plan, batches, clean_acc, job)
                raise Interrupted(len(batches), plan.n_batches)
