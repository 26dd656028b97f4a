"""Plan: what a run will attack, checked before anything is read, written or compiled.

A run's work items are the dataset's examples (untargeted) or (example, target) pairs, cut
into batches of ``batch_size`` items; the last batch is padded with copies and masked out
(SKIPPED), never dropped, so every batch has the same shapes and one compiled call serves
them all. Every item gets its own PRNG key, ``fold_in(key(seed), item)``, so results do not
depend on the batch size or on how the items are spread over workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import attacks, metrics
from sparsejax.attacks import _config
from sparsejax.attacks.engine import Schedule, default_schedule
from sparsejax.attacks.registry import AttackSpec
from sparsejax.errors import SparsejaxError
from sparsejax.overrides import apply_overrides

TARGET_MODES = ("least-likely", "random", "all")
MAX_SEED = 2**32 - 1


def get_attack(name: str) -> AttackSpec:
    return attacks.get(name)


def make_config(spec: AttackSpec, overrides: list[str] | None, targeted: bool = False):
    """The attack's default config with ``--set KEY=VALUE`` overrides, validated (the command
    line's path; Python callers build the config object directly)."""
    config = apply_overrides(spec.config_cls(), overrides)
    check_request(spec, config, target_mode="all" if targeted else None)
    return config


def check_request(
    spec: AttackSpec,
    config,
    *,
    target_mode: str | None = None,
    seed: int = 0,
    batch_size: int = 1,
    slots: int | None = None,
    workers: int | None = None,
    devices: int | None = None,
) -> None:
    """Everything about a request that can be wrong, checked on the host first."""
    if not isinstance(config, spec.config_cls):
        raise SparsejaxError(
            f"attack {spec.name!r} takes a {spec.config_cls.__name__}, got {type(config).__name__}"
        )
    _config.validate(config)
    if target_mode is not None and target_mode not in TARGET_MODES:
        raise SparsejaxError(f"--targeted {target_mode!r}: choose one of {', '.join(TARGET_MODES)}")
    if spec.targeted == "required" and target_mode is None:
        raise SparsejaxError(
            f"attack {spec.name!r} is targeted only: pass --targeted all|least-likely|random"
        )
    if spec.targeted == "no" and target_mode is not None:
        raise SparsejaxError(f"attack {spec.name!r} has no targeted variant")
    for name, value, lo in (("--batch-size", batch_size, 1), ("--slots", slots, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise SparsejaxError(f"{name} must be a whole number, got {value!r}")
        if value is not None and value < lo:
            raise SparsejaxError(f"{name} must be >= {lo}, got {value}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise SparsejaxError(f"--workers must be >= 1, got {workers}")
    if devices is not None:
        device_count(devices)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SparsejaxError(f"--seed must be a whole number in [0, {MAX_SEED}], got {seed!r}")


def device_count(devices: int | None = None) -> int:
    """The local devices a batch is split over: all of them unless ``devices`` says fewer."""
    available = jax.local_device_count()
    if devices is None:
        return available
    if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= available:
        raise SparsejaxError(
            f"--devices must be a whole number in [1, {available}] (the local devices), "
            f"got {devices!r}"
        )
    return devices


def config_dict(config) -> dict:
    """A config as plain JSON values (nested configs as dicts, tuples as lists: what
    run.json reads back, so that a resumed run's fingerprint equals the stored one)."""

    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, np.ndarray | jax.Array):
            return np.asarray(v).tolist()
        if isinstance(v, tuple | list):
            return [conv(e) for e in v]
        return v

    return conv(config)


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def schedule_for(spec: AttackSpec, slots: int | None, batch_size: int) -> Schedule:
    """The schedule of a run: lockstep for fixed-length attacks (``slots`` does not apply),
    a refill queue of ``slots`` lanes (default: per backend and batch) for early-stopping
    ones."""
    default = default_schedule(spec.algorithm, batch_size)
    if default.kind == "lockstep":
        return default
    width = default.width if slots is None else slots
    return Schedule("queue", max(1, min(width, batch_size)))


def fingerprint(
    spec, config, model, ds, target_mode, seed, batch_size, schedule, devices: int = 1
) -> dict:
    """What identifies a run's results, and nothing else: a rerun with the same fingerprint
    resumes. The batch size lays out the batch files; the number of lanes of a refill queue
    changes float rounding (XLA batches the model over the lanes); the seed matters only
    where something is drawn. ``--workers`` and, for lockstep attacks, ``--slots`` do not
    change results and are not part of it. Splitting a batch over devices gives the same
    results bit for bit for most attacks and float32 rounding for some (SAPF-VI), so the
    device count is part of it when above 1 (a 1-device run keeps its old fingerprint)."""
    out = {
        "attack": spec.name,
        "config": config_dict(config),
        "model": model.name,
        "weights_digest": digest(*jax.tree.leaves(model.variables)),
        "dataset": ds.name,
        "split": ds.split,
        "indices": [int(ds.indices[0]), int(ds.indices[-1]) + 1],
        "data_digest": digest(ds.x, ds.y),
        "targeted": target_mode,
        "batch_size": batch_size,
    }
    if schedule.kind == "queue":
        out["lanes"] = schedule.width
    elif schedule.width is not None and schedule.width < batch_size:
        out["chunk"] = schedule.width  # lockstep in chunks (memory.py): other batch shapes
    if target_mode == "random" or spec.needs_key:
        out["seed"] = seed
    if devices > 1:
        out["devices"] = devices
    return out


def fingerprint_hash(fp: dict) -> str:
    import json

    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def plan_targets(mode: str | None, labels: np.ndarray, clean_logits: np.ndarray, seed: int):
    """(image positions, targets or None) of the work items.

    ``least-likely``: argmin of the clean logits (Lin et al.); ``random``: a uniformly drawn
    class other than the label, from ``seed``; ``all``: every class but the label (SAPF).
    """
    n, k = clean_logits.shape
    pos = np.arange(n)
    if mode is None:
        return pos, None
    if mode == "least-likely":
        return pos, np.argmin(clean_logits, axis=1).astype(np.int32)
    if mode == "random":
        shift = np.asarray(jax.random.randint(jax.random.key(seed), (n,), 1, k))  # 1..K-1
        return pos, ((labels + shift) % k).astype(np.int32)
    return metrics.all_target_pairs(labels, k)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The work of a run. Items are numbered 0..n_items-1 in plan order; batch b holds items
    [b·batch_size, (b+1)·batch_size)."""

    spec: AttackSpec
    config: Any
    model: Any
    ds: Any
    target_mode: str | None
    seed: int
    positions: np.ndarray  # int[M] dataset position of each item
    targets: np.ndarray | None  # int32[M]
    batch_size: int
    schedule: Schedule
    fingerprint: dict
    devices: int = 1  # local devices each batch is split over (execute.py)
    memory: dict | None = None  # the lane cost and cap of memory.py, when it probed

    @property
    def n_items(self) -> int:
        return len(self.positions)

    @property
    def padded_size(self) -> int:
        """The rows of one compiled call: the batch size, rounded up to a multiple of the
        devices (an equal share each; the extra rows are masked out)."""
        return -(-self.batch_size // self.devices) * self.devices

    @property
    def n_batches(self) -> int:
        return -(-self.n_items // self.batch_size)

    def item_range(self, b: int) -> tuple[int, int]:
        return b * self.batch_size, min((b + 1) * self.batch_size, self.n_items)

    def batch_inputs(self, b: int) -> dict:
        """The arrays of batch b, padded to ``padded_size`` (padding masked out)."""
        start, stop = self.item_range(b)
        real = stop - start
        items = np.arange(start, stop)
        items = np.concatenate([items, np.repeat(items[-1:], self.padded_size - real)])
        pos = self.positions[items]
        base = jax.random.key(self.seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(items, jnp.uint32))
        x = jnp.asarray(self.ds.x[pos])
        prepare = self.spec.algorithm.prepare_extras
        return {
            "x": x,
            "y": jnp.asarray(self.ds.y[pos]),
            "targets": None if self.targets is None else jnp.asarray(self.targets[items]),
            "mask": jnp.asarray(np.arange(self.padded_size) < real),
            "key": keys,
            # SAPF-GS / VI inputs, computed here on the host (no callback in the program).
            "extras": {} if prepare is None else prepare(x, self.config, {}),
        }


def probe_plan(spec, config, model, ds, *, target_mode, seed, batch_size, schedule) -> Plan:
    """A plan of the run's shapes before the clean pass (for memory.py's probe): the first
    example, with a stand-in target where the run is targeted."""
    targets = None
    if target_mode is not None:
        targets = np.asarray([(int(ds.y[0]) + 1) % model.num_classes], np.int32)
    return Plan(
        spec=spec, config=config, model=model, ds=ds, target_mode=target_mode, seed=seed,
        positions=np.zeros(1, int), targets=targets, batch_size=batch_size, schedule=schedule,
        fingerprint={},
    )  # fmt: skip


def make_plan(
    spec, config, model, ds, *, target_mode, seed, batch_size, schedule, fp, clean_logits,
    devices=1,
):  # fmt: skip
    positions, targets = plan_targets(target_mode, ds.y, clean_logits, seed)
    if len(positions) == 0:
        raise SparsejaxError("nothing to attack: the dataset is empty")
    return Plan(
        spec=spec,
        config=config,
        model=model,
        ds=ds,
        target_mode=target_mode,
        seed=seed,
        positions=positions,
        targets=targets,
        batch_size=min(batch_size, len(positions)),
        schedule=schedule,
        fingerprint=fp,
        devices=devices,
    )
