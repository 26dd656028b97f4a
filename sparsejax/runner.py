"""Running an attack over a dataset: batches, targets, result files, resumption (SPEC §5).

Everything that can be wrong with the request (attack name, config values, target mode,
output folder) is checked before anything is compiled. Results are written per batch,
atomically, under ``OUT/batches/``; ``OUT/results.json`` and ``OUT/adversarials.npz`` are
rewritten after every batch, so an interrupted run keeps what it finished, and a rerun with
the same arguments skips the finished batches. A rerun with different arguments into the
same folder is refused (or, with ``overwrite``, starts afresh).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import io, metrics
from sparsejax.attacks.common import Status
from sparsejax.errors import SparsejaxError, UnknownNameError
from sparsejax.overrides import apply_overrides

TARGET_MODES = ("least-likely", "random", "all")
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


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """An attack the runner and the command line know by name."""

    name: str
    config_cls: type
    batch_fn: Callable  # (logits_fn, x, labels, config, targets, lower, upper, mask, slots)
    description: str
    paper: str
    targeted_only: bool = False  # needs --targeted (SAPF)
    # Host-side per-batch inputs: (x: np.ndarray [B, H, W, C], config) -> extra keyword
    # arrays for batch_fn (SLIC segments of SAPF-GS, the weights of SAPF-VI).
    prepare: Callable[[np.ndarray, Any], dict[str, np.ndarray]] | None = None


def _attacks() -> dict[str, AttackSpec]:
    from sparsejax.attacks import sapf
    from sparsejax.attacks.sparse_l0 import SparseL0Config, sparse_l0_batch
    from sparsejax.attacks.sparsefool import SparseFoolConfig, sparsefool_batch

    sapf_paper = "Fan et al., ECCV 2020"
    return {
        "sparsefool": AttackSpec(
            "sparsefool",
            SparseFoolConfig,
            sparsefool_batch,
            "SparseFool: DeepFool linearization + box-constrained l1 LinearSolver",
            "Modas et al., CVPR 2019",
        ),
        "sparse-l0": AttackSpec(
            "sparse-l0",
            SparseL0Config,
            sparse_l0_batch,
            "Lin et al.: I-FGSM start, shifted-ReLU weight mask, Heaviside with a Gaussian "
            "surrogate derivative, Omega box",
            "Lin, Lou, Wang, Jalaian, Yuan, 'Towards Interpretable Adversarial Examples via "
            "Sparse Adversarial Attack'",
        ),
        "sapf": AttackSpec(
            "sapf",
            sapf.SAPFConfig,
            sapf.sapf_batch,
            "SAPF: perturbation = magnitude x binary selection, cardinality k, lp-box ADMM",
            sapf_paper,
            targeted_only=True,
        ),
        "sapf-gs": AttackSpec(
            "sapf-gs",
            sapf.SAPFGSConfig,
            sapf.sapf_batch,
            "SAPF-GS: SAPF with group sparsity over SLIC superpixels (Eq. 16)",
            sapf_paper,
            targeted_only=True,
            prepare=sapf.prepare_gs,
        ),
        "sapf-vi": AttackSpec(
            "sapf-vi",
            sapf.SAPFVIConfig,
            sapf.sapf_batch,
            "SAPF-VI: SAPF with visual-imperceptibility weights in the l2 term (Eq. 17)",
            sapf_paper,
            targeted_only=True,
            prepare=sapf.prepare_vi,
        ),
    }


def attack_names() -> list[str]:
    return sorted(_attacks())


def get_attack(name: str) -> AttackSpec:
    attacks = _attacks()
    if name not in attacks:
        raise UnknownNameError(f"unknown attack {name!r}; known: {', '.join(sorted(attacks))}")
    return attacks[name]


def make_config(spec: AttackSpec, overrides: list[str] | None, targeted: bool):
    """The attack's default config with ``--set`` overrides and the targeted flag, validated."""
    config = apply_overrides(spec.config_cls(), overrides, forbidden=("targeted",))
    if spec.targeted_only and not targeted:
        raise SparsejaxError(
            f"attack {spec.name!r} is targeted only: pass --targeted all|least-likely|random"
        )
    if (
        targeted
        and not spec.targeted_only
        and not any(f.name == "targeted" for f in dataclasses.fields(config))
    ):
        raise SparsejaxError(f"attack {spec.name!r} has no targeted variant")
    if any(f.name == "targeted" for f in dataclasses.fields(config)):
        config = dataclasses.replace(config, targeted=targeted)
    config.validate()
    return config


def config_dict(config) -> dict:
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (np.ndarray, jax.Array)):
            return np.asarray(v).tolist()
        return v

    return conv(config)


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
        key = jax.random.key(seed)
        shift = np.asarray(jax.random.randint(key, (n,), 1, k))  # label + [1, K-1] mod K
        return pos, ((labels + shift) % k).astype(np.int32)
    if mode == "all":
        return metrics.all_target_pairs(labels, k)
    raise SparsejaxError(f"--targeted {mode!r}: choose one of {', '.join(TARGET_MODES)}")


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _fingerprint(spec, config, model, ds, target_mode, seed, batch_size, slots) -> dict:
    return {
        "attack": spec.name,
        "config": config_dict(config),
        "model": model.name,
        "weights_digest": _digest(*jax.tree.leaves(model.variables)),
        "dataset": ds.name,
        "split": ds.split,
        "indices": [int(ds.indices[0]), int(ds.indices[-1]) + 1],
        "data_digest": _digest(ds.x, ds.y),
        "targeted": target_mode,
        "seed": seed,
        "batch_size": batch_size,
        "slots": slots,
    }


def _prepare_out(out: Path, fingerprint: dict, overwrite: bool) -> None:
    run_file = out / "run.json"
    if run_file.is_file():
        old = json.loads(run_file.read_text())
        if old.get("fingerprint") != fingerprint:
            if not overwrite:
                diff = sorted(
                    k for k in fingerprint if old.get("fingerprint", {}).get(k) != fingerprint[k]
                )
                raise SparsejaxError(
                    f"--out {out} holds a different run (differs in: {', '.join(diff)}); "
                    "use another --out, or --overwrite"
                )
            shutil.rmtree(out / "batches", ignore_errors=True)
            for f in ("results.json", "adversarials.npz", "timing.json"):
                (out / f).unlink(missing_ok=True)
    elif out.exists() and not out.is_dir():
        raise SparsejaxError(f"--out {out}: exists and is not a directory")
    try:
        (out / "batches").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SparsejaxError(f"--out {out}: cannot create ({e.strerror})") from None
    io.write_json(run_file, {"fingerprint": fingerprint})


def _load_batches(batch_dir: Path, n_batches: int) -> dict[int, dict]:
    done = {}
    for b in range(n_batches):
        f = batch_dir / f"batch_{b:05d}.npz"
        if f.is_file():
            try:
                with np.load(f) as d:
                    done[b] = {k: d[k] for k in d.files}
            except Exception:  # a torn file cannot exist (atomic writes), but be safe
                f.unlink()
    return done


def _examples(ds, records: dict, class_names) -> list[dict]:
    out = []
    for i in range(len(records["index"])):
        out.append(
            {
                "index": int(records["index"][i]),
                "label": int(records["label"][i]),
                "target": None if records["target"][i] < 0 else int(records["target"][i]),
                "clean_pred": int(records["clean_pred"][i]),
                "adv_pred": int(records["adv_pred"][i]),
                "success": bool(records["success"][i]),
                "l0_pixels": int(records["l0_pixels"][i]),
                "l0_elements": int(records["l0_elements"][i]),
                "l1": float(records["l1"][i]),
                "l2": float(records["l2"][i]),
                "linf": float(records["linf"][i]),
                "iterations": int(records["iterations"][i]),
                "model_evals": int(records["model_evals"][i]),
                "status": Status(int(records["status"][i])).name,
            }
        )
    return out


def _results(
    spec,
    config,
    model,
    ds,
    target_mode,
    batches: dict,
    n_batches: int,
    clean_acc: float,
    timing: dict,
    slots: int,
) -> tuple[dict, dict]:
    keys = sorted(batches)
    per_item = [k for k in (batches[keys[0]] if keys else {}) if k != "seconds"]
    cat = {k: np.concatenate([batches[b][k] for b in keys]) for k in per_item}
    seconds = float(timing.get("attack_wall_seconds", 0.0))
    summary: dict[str, Any] = {}
    if keys:
        attacked = cat["clean_pred"] == cat["label"]
        summary = metrics.summarize(
            cat["success"],
            attacked,
            cat["l0_pixels"],
            cat["l0_elements"],
            model.input_shape,
            extra={"l1": cat["l1"], "l2": cat["l2"], "linf": cat["linf"]},
        )
        n_att = max(int(attacked.sum()), 1)
        summary["time_per_sample_s"] = seconds / n_att
        summary["model_evals_per_sample"] = (
            float(cat["model_evals"][attacked].mean()) if attacked.any() else None
        )
        if target_mode == "all":  # best / average / worst case over the targets of an image
            summary["cases"] = metrics.target_cases(
                cat["index"],
                cat["success"],
                attacked,
                {k: cat[k] for k in ("l0_elements", "l0_pixels", "l1", "l2", "linf")},
                by="l2",
            )
    summary["attack_seconds"] = seconds
    summary["compile_seconds"] = timing.get("compile_seconds")
    summary["workers"] = timing.get("workers")
    res = {
        "attack": spec.name,
        "paper": spec.paper,
        "model": model.name,
        "weights": model.weights,
        "dataset": ds.name,
        "split": ds.split,
        "source": ds.source,
        "config": config_dict(config),
        "targeted": target_mode,
        "n": len(ds),
        "n_items": int(len(cat.get("index", []))),
        "clean_accuracy": clean_acc,
        "units": {
            "l0_pixels": "(h, w) positions with any channel changed",
            "l0_elements": "changed channel values",
            "l1/l2/linf": "of x_adv - x in [0, 1] pixel units",
        },
        "complete": len(keys) == n_batches,
        "batches_done": len(keys),
        "batches_total": n_batches,
        "slots": slots,
        "summary": summary,
        "examples": _examples(ds, cat, ds.class_names) if keys else [],
        "versions": io.versions(),
    }
    return res, cat


def default_workers() -> int:
    """Compiled calls run side by side on CPU: one per core. XLA:CPU uses the second core
    poorly inside one call on these small models (measured on 2 cores, ResNet-20:
    SparseFool 0.146 s/image with one call, 0.095 with two concurrent calls); accelerators
    run one call at a time."""
    import os

    if jax.default_backend() != "cpu":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _batch_arrays(ds, pos, targets, b, bs, spec, config):
    sel = pos[b * bs : (b + 1) * bs]
    real = len(sel)
    pad = bs - real  # pad the last batch with copies, masked out: no recompilation
    idx = np.concatenate([sel, np.repeat(sel[-1:], pad)])
    tb = None if targets is None else targets[b * bs : (b + 1) * bs]
    t = None if tb is None else jnp.asarray(np.concatenate([tb, np.repeat(tb[-1:], pad)]))
    mask = jnp.asarray(np.arange(bs) < real)
    extras = {} if spec.prepare is None else spec.prepare(ds.x[idx], config)
    extras = {k: jnp.asarray(v) for k, v in extras.items()}
    return sel, tb, (jnp.asarray(ds.x[idx]), jnp.asarray(ds.y[idx]), t, mask, extras)


def run_attack(
    spec: AttackSpec,
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
) -> dict:
    """Attacks every example of ``ds`` (or every image-target pair) and writes the results.

    Each batch is one call of the compiled attack; ``workers`` calls run at the same time
    (default :func:`default_workers`). ``time_per_sample_s`` is the wall time of the attack
    phase (compilation excluded, summed over resumed sessions) per attacked example.

    Returns the ``results.json`` content.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm.auto import tqdm

    from sparsejax.attacks.common import default_slots

    if batch_size < 1:
        raise SparsejaxError(f"--batch-size must be >= 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise SparsejaxError(f"--workers must be >= 1, got {workers}")
    if target_mode is not None and target_mode not in TARGET_MODES:
        raise SparsejaxError(f"--targeted {target_mode!r}: choose one of {', '.join(TARGET_MODES)}")
    out = Path(out_dir)
    clean_logits = model.predict(ds.x)
    clean_pred = clean_logits.argmax(1)
    clean_acc = float((clean_pred == ds.y).mean())
    pos, targets = plan_targets(target_mode, ds.y, clean_logits, seed)
    n_items = len(pos)
    bs = min(batch_size, n_items)
    slots = default_slots(bs) if slots is None else max(1, min(slots, bs))
    n_batches = -(-n_items // bs)
    fingerprint = _fingerprint(spec, config, model, ds, target_mode, seed, bs, slots)
    _prepare_out(out, fingerprint, overwrite)
    batches = _load_batches(out / "batches", n_batches)
    timing_file = out / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() and batches else {}
    past_wall = float(timing.get("attack_wall_seconds", 0.0))
    compile_s = timing.get("compile_seconds")

    todo = [b for b in range(n_batches) if b not in batches]
    workers = min(default_workers() if workers is None else workers, max(len(todo), 1))
    bar = tqdm(
        total=n_batches,
        initial=n_batches - len(todo),
        desc=spec.name,
        unit="batch",
        disable=not progress,
    )
    if todo:
        fn = jax.jit(
            lambda f, x, y, c, t, m, e: spec.batch_fn(
                f, x, y, c, targets=t, mask=m, slots=slots, **e
            )
        )
        t0 = time.perf_counter()
        _, _, args = _batch_arrays(ds, pos, targets, todo[0], bs, spec, config)
        compiled = fn.lower(model.logits_fn, args[0], args[1], config, *args[2:]).compile()
        compile_s = time.perf_counter() - t0

        def attack_batch(b):
            sel, tb, args = _batch_arrays(ds, pos, targets, b, bs, spec, config)
            t_b = time.perf_counter()
            r = jax.block_until_ready(
                compiled(model.logits_fn, args[0], args[1], config, *args[2:])
            )
            return b, sel, tb, r, time.perf_counter() - t_b

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(attack_batch, b) for b in todo]
            for fut in as_completed(futures):
                b, sel, tb, r, seconds = fut.result()
                real = len(sel)
                x_adv = np.asarray(r.x_adv)[:real]
                rec = {k: np.asarray(getattr(r, k))[:real] for k in RESULT_FIELDS}
                rec.update(
                    {k: np.asarray(v) for k, v in metrics.lp_norms(x_adv, ds.x[sel]).items()}
                )
                rec.update(
                    index=ds.indices[sel],
                    pos=sel,
                    label=ds.y[sel],
                    target=np.full(real, -1) if tb is None else tb,
                    x_adv=x_adv,
                    seconds=np.float64(seconds),
                )  # padding is masked: ~free
                io.write_npz(out / "batches" / f"batch_{b:05d}.npz", **rec)
                batches[b] = rec
                timing = {
                    "attack_wall_seconds": past_wall + time.perf_counter() - start,
                    "compile_seconds": compile_s,
                    "workers": workers,
                }
                io.write_json(timing_file, timing)
                res, _ = _results(
                    spec,
                    config,
                    model,
                    ds,
                    target_mode,
                    batches,
                    n_batches,
                    clean_acc,
                    timing,
                    slots,
                )
                io.write_json(out / "results.json", res)
                bar.update(1)
                s = res["summary"]
                bar.set_postfix(
                    success=f"{s.get('success_rate', float('nan')):.3f}",
                    s_per_img=f"{s.get('time_per_sample_s', 0):.3f}",
                )
    bar.close()
    res, cat = _results(
        spec, config, model, ds, target_mode, batches, n_batches, clean_acc, timing, slots
    )
    io.write_json(out / "results.json", res)
    if cat:
        io.write_npz(
            out / "adversarials.npz", x_adv=cat["x_adv"], index=cat["index"], target=cat["target"]
        )
    return res


def table1_row(res: dict) -> str:
    """One line in the columns of SparseFool's Table 1, with both ℓ0 units named."""
    s = res["summary"]
    if not s.get("n_attacked"):
        return f"{res['model']}: nothing attacked"
    mp = s.get("median_l0_pixels")
    return (
        f"{res['dataset']:>10s} {res['model']:>18s}  acc {100 * res['clean_accuracy']:6.2f}%  "
        f"fooling rate {100 * s['success_rate']:6.2f}%  "
        f"median l0 {mp} pixels ({s['median_l0_pixels_pct']:.2f}% of pixels) / "
        f"{s['median_l0_elements']} elements  "
        f"time {s['time_per_sample_s']:.4f} s/sample  "
        f"evals {s['model_evals_per_sample']:.1f}/sample"
        if mp is not None
        else f"{res['model']}: no success"
    )


def cases_table(res: dict) -> str:
    """The best / average / worst-case rows of a ``--targeted all`` run (SAPF Table 1)."""
    c = res["summary"].get("cases")
    if not c:
        return ""

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    lines = [f"{'case':8s} {'ASR':>7s} {'l0 el':>8s} {'l1':>8s} {'l2':>7s} {'linf':>7s}"]
    for name in ("best", "average", "worst"):
        r = c[name]
        rate = None if r["success_rate"] is None else 100 * r["success_rate"]
        lines.append(
            f"{name:8s} {f(rate, '6.1f')}% {f(r['l0_elements'], '8.1f')} {f(r['l1'], '8.3f')} "
            f"{f(r['l2'], '7.3f')} {f(r['linf'], '7.3f')}"
        )
    lines.append(f"({c['n_images']} images x their targets; cases ranked by {c['ranked_by']})")
    return "\n".join(lines)
