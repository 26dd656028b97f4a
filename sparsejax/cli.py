"""The ``sparsejax`` command (SPEC §5).

Sub-commands: ``attack``, ``attacks``, ``models``, ``datasets``, ``port``, ``eval``,
``train`` and ``demo`` (the README's main job). Bad input (names, paths, shapes, labels,
``--set`` values) stops with a one-line ``sparsejax: error: ...`` and exit status 2, before
anything is compiled. Ctrl-C keeps the finished batches of a run, says so in one line and
exits with status 130. JAX's persistent compilation cache is on (``--no-compile-cache`` or
``SPARSEJAX_NO_COMPILE_CACHE=1`` turns it off), so a second run of the same job does not
compile again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

from sparsejax.errors import SparsejaxError

DEFAULT_MODEL = "lenet5-digits"
DEFAULT_DATASET = "digits"


def _add_data_args(p: argparse.ArgumentParser, default_dataset: str | None = None) -> None:
    p.add_argument(
        "--dataset",
        required=default_dataset is None,
        default=default_dataset,
        help="registered name (mnist, fashion_mnist, cifar10, digits), npz:PATH or "
        "imagenet:DIR (images preprocessed as the model names)",
    )
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--n", type=int, default=None, help="number of examples (default: all)")
    p.add_argument("--offset", type=int, default=0, help="index of the first example")
    p.add_argument(
        "--data-dir",
        default=None,
        help="tensorflow-datasets data dir and/or folder of local dataset files",
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_dataset(dataset: str, model_name: str) -> str | None:
    """Checks a dataset name against a model (no weights or images read) and returns the
    preprocessing to load it with: the model's own for ``imagenet:DIR``, else None."""
    from sparsejax import data, models

    spec = models.get_spec(model_name)
    data.check_dataset_name(dataset)
    if not data.is_imagenet(dataset):
        return None
    if spec.preprocessing is None:
        raise SparsejaxError(
            f"model {spec.name} names no preprocessing for ImageNet images, so it cannot take "
            f"dataset {dataset!r} (give an npz:PATH of {spec.input_shape} images instead)"
        )
    data.get_preprocessing(spec.preprocessing)
    return spec.preprocessing


def _load_model_and_data(args):
    """Resolves and checks model, weights and data; nothing is compiled here."""
    from sparsejax import data, models
    from sparsejax.validation import check_images, check_labels

    # unknown names and a model that cannot take the dataset fail before weights are read
    preprocessing = _check_dataset(args.dataset, args.model)
    model = models.load(args.model, args.weights)
    ds = data.load_dataset(
        args.dataset, split=args.split, n=args.n, offset=args.offset, data_dir=args.data_dir,
        preprocessing=preprocessing,
    )  # fmt: skip
    check_images(ds.x, model, what=f"dataset {args.dataset!r}")
    check_labels(ds.y, len(ds), model.num_classes, what=f"labels of dataset {args.dataset!r}")
    return model, ds


def cmd_models(args) -> int:
    from sparsejax import models

    for name in models.model_names():
        s = models.get_spec(name)
        print(f"{name:20s} input {s.input_shape} classes {s.num_classes}  {s.description}")
    return 0


def cmd_datasets(args) -> int:
    from sparsejax import data

    for name in data.dataset_names():
        print(name)
    print("npz:PATH  (x uint8 (N,H,W[,C]) or float in [0,1], y integer labels)")
    print(
        "imagenet:DIR  (DIR/images/ + DIR/labels.txt, DIR/val/<wnid>/, or a tensorflow-datasets "
        "dir with imagenet2012; preprocessed as the model names)"
    )
    return 0


def cmd_port(args) -> int:
    from sparsejax import models
    from sparsejax.models import checkpoint

    spec = models.get_spec(args.model)
    src = Path(args.weights)
    if src.is_file() and checkpoint.sniff(src) != "torch":
        raise SparsejaxError(f"weights file {src}: not a PyTorch checkpoint (nothing to port)")
    model = models.load(args.model, src)
    n_params = sum(int(v.size) for v in __import__("jax").tree.leaves(model.variables))
    out = Path(args.out)
    checkpoint.save(
        out, spec.name, model.variables, {"source": str(src), "source_sha256": _sha256(src)}
    )
    print(f"ported {src} -> {out} ({spec.name}, {n_params:,} values)")
    if args.check_dataset:
        from sparsejax import data

        ds = data.load_dataset(
            args.check_dataset, n=args.n, data_dir=args.data_dir,
            preprocessing=_check_dataset(args.check_dataset, spec.name),
        )  # fmt: skip
        ported = models.load(spec.name, out)
        acc = float((ported.predict(ds.x, progress=True).argmax(1) == ds.y).mean())
        print(f"accuracy of the ported checkpoint on {len(ds)} {ds.name} images: {acc:.4f}")
    return 0


def _check_out_file(path: str) -> Path:
    """A file we can write (checked before any work): its folder is created if needed."""
    from sparsejax.runner.store import check_writable

    out = Path(path)
    if out.is_dir():
        raise SparsejaxError(f"--out {out}: is a directory; give a file name")
    check_writable(out.parent if str(out.parent) else Path("."), what=f"--out {out}: folder")
    return out


def cmd_eval(args) -> int:
    from sparsejax import io, metrics

    if args.out:
        _check_out_file(args.out)
    model, ds = _load_model_and_data(args)
    res = metrics.clean_evaluation(model, ds, args.batch_size)
    print(
        f"{model.name} on {res['n']} {ds.name}/{ds.split} images ({ds.source}): "
        f"clean accuracy {res['accuracy']:.4f}"
    )
    if args.out:
        io.write_json(args.out, {**res, "versions": io.versions()})
    return 0


def cmd_train(args) -> int:
    from sparsejax import data, models, train

    models.get_spec(args.model)
    data.check_dataset_name(args.dataset)
    _check_out_file(args.out)
    train.train_or_reuse(args.model, args.dataset, args.out, args.epochs, args.seed, args.force)
    return 0


DEMO_EVALUATION = ("sparsefool", "spgd", "sparse-rs")
DEMO_OVERRIDES = {
    "sparsefool": ["lambda_=1.0"],
    "spgd": ["steps=100"],
    "sparse-rs": ["queries=300"],
}


def cmd_demo(args) -> int:
    """The main job: train the embedded default model on real offline data, evaluate it,
    attack it with SparseFool (λ = 1, as the paper on MNIST), report as Table 1, and
    evaluate its robustness to k changed pixels (SparseFool, sPGD, Sparse-RS, ensemble)."""
    from sparsejax import attacks, data, evaluation, io, metrics, runner, train

    t0 = time.perf_counter()
    out = Path(args.out)
    model = train.train_or_reuse(
        DEFAULT_MODEL, DEFAULT_DATASET, out / f"{DEFAULT_MODEL}.msgpack", args.epochs,
        args.seed, args.force,
    )  # fmt: skip
    ds = data.load_dataset(DEFAULT_DATASET, split="test")
    res = metrics.clean_evaluation(model, ds)
    io.write_json(out / "eval.json", {**res, "versions": io.versions()})
    print(
        f"{model.name} on {res['n']} held-out {ds.name} images: clean accuracy "
        f"{res['accuracy']:.4f}"
    )
    spec = attacks.get("sparsefool")
    attack_out = out / "sparsefool"
    att = runner.run_attack(
        spec, attacks.SparseFoolConfig(lambda_=1.0), model, ds, attack_out,
        batch_size=len(ds), overwrite=True,
    )  # fmt: skip
    print("SparseFool (Modas et al., CVPR 2019), Table 1 columns:")
    print(runner.table1_row(att))
    print(f"compilation {att['summary']['compile_s']:.1f} s (cached across runs)")
    fig = runner.examples_figure(att, ds, attack_out)
    if fig:
        print(f"examples figure: {fig}")
    # The evaluation (SPEC §6) at small budgets: SparseFool beside sPGD and Sparse-RS.
    ev = evaluation.evaluate(
        model, ds, DEMO_EVALUATION, budgets=(1, 2, 4, 8), unit="pixels",
        out=out / "evaluate", overrides=DEMO_OVERRIDES, batch_size=len(ds), overwrite=True,
    )  # fmt: skip
    print("robust accuracy (%) at k = 0, 1, 2, 4, 8 changed pixels:")
    for name, a in [*ev.attacks.items(), ("ensemble", ev.ensemble)]:
        print(f"  {name:10s} " + " ".join(f"{100 * v:5.1f}" for v in a.robust_accuracy))
    print(
        f"evaluation: {out / 'evaluate' / 'report.md'}, {out / 'evaluate' / 'robust_accuracy.png'}"
    )
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; results in {out}/")
    return 0


def _exit_interrupted(saved: str) -> None:
    """After a Ctrl-C that the runner has handled (finished batches saved): one line, exit
    status 130, no waiting for the compiled calls still running (their work is lost)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # another Ctrl-C changes nothing now
    print(
        f"\nsparsejax: interrupted: {saved}; run the same command to resume",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os._exit(130)


def _join(args):
    """This process's place in the job the flags (or their environment variables) name;
    a job of several joins ``jax.distributed`` here, before JAX starts its backend."""
    from sparsejax.runner import processes

    job = processes.from_flags(args.coordinator, args.num_processes, args.process_id)
    processes.initialize(job)
    return job


def _memory_budget(args) -> int | None:
    """--memory-budget in bytes (None: the default of sparsejax.runner.memory)."""
    from sparsejax.runner import memory

    if args.memory_budget is None:
        memory.default_budget()  # a bad $SPARSEJAX_MEMORY_BUDGET_GIB fails here
        return None
    return memory.check_budget(args.memory_budget * memory.GIB)


def _process_line(job, what: str) -> None:
    print(
        f"process {job.index} of {job.count}: its share of {what} is done; "
        "process 0 merges the results"
    )


def cmd_attack(args) -> int:
    from sparsejax import attacks, runner

    job = _join(args)
    budget = _memory_budget(args)
    spec = attacks.get(args.attack)
    _check_dataset(args.dataset, args.model)
    config = runner.make_config(spec, args.set, targeted=args.targeted is not None)
    runner.plan.check_request(
        spec, config, target_mode=args.targeted, seed=args.seed, batch_size=args.batch_size,
        slots=args.slots, workers=args.workers, devices=args.devices,
    )  # fmt: skip
    runner.store.check_writable(args.out)
    model, ds = _load_model_and_data(args)
    try:
        res = runner.run_attack(
            spec, config, model, ds, args.out, batch_size=args.batch_size, slots=args.slots,
            target_mode=args.targeted, seed=args.seed, overwrite=args.overwrite,
            workers=args.workers, devices=args.devices, job=job, memory_budget=budget,
        )  # fmt: skip
    except runner.Interrupted as e:
        _exit_interrupted(f"{e.done} of {e.total} batches saved in {args.out}")
    if not job.merges:
        _process_line(job, args.out)
        return 0
    print(runner.table1_row(res))
    if res["summary"].get("cases"):
        print(runner.cases_table(res))
    s = res["summary"]
    if s.get("compile_s") is not None:
        print(f"compilation {s['compile_s']:.1f} s, attack {s['attack_seconds']:.1f} s")
    if args.figure and res["examples"]:
        fig = runner.examples_figure(res, ds, Path(args.out))
        if fig:
            print(f"examples figure: {fig}")
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def _evaluation_request(args):
    """The attacks, budgets and per-attack ``--set`` overrides of ``sparsejax evaluate``."""
    from sparsejax import evaluation, models

    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    try:
        budgets = [int(k) for k in args.budgets.split(",") if k.strip()]
    except ValueError:
        raise SparsejaxError(f"--budgets must be whole numbers, got {args.budgets!r}") from None
    overrides: dict[str, list[str]] = {}
    for item in args.set:
        attack, dot, rest = item.partition(".")
        if not dot or "=" not in rest:
            raise SparsejaxError(f"--set {item!r}: write ATTACK.KEY=VALUE, e.g. spgd.steps=300")
        overrides.setdefault(attack, []).append(rest)
    shape = models.get_spec(args.model).input_shape
    evaluation.check_evaluation_request(
        names, budgets, args.unit, overrides, shape, batch_size=args.batch_size,
        seed=args.seed, workers=args.workers, devices=args.devices,
    )  # fmt: skip
    return names, budgets, overrides


def cmd_evaluate(args) -> int:
    from sparsejax import evaluation, runner

    job = _join(args)
    budget = _memory_budget(args)
    names, budgets, overrides = _evaluation_request(args)
    _check_dataset(args.dataset, args.model)
    runner.store.check_writable(args.out)
    model, ds = _load_model_and_data(args)
    try:
        evaluation.evaluate(
            model, ds, names, budgets, args.unit, args.out, overrides=overrides,
            batch_size=args.batch_size, seed=args.seed, overwrite=args.overwrite,
            workers=args.workers, devices=args.devices, job=job, memory_budget=budget,
        )  # fmt: skip
    except runner.Interrupted as e:
        _exit_interrupted(
            f"{e.done} of {e.total} batches of the current attack saved in {args.out}"
        )
    if not job.merges:
        _process_line(job, f"every run of {args.out}")
        return 0
    out = Path(args.out)
    print((out / "report.md").read_text())
    print(f"evaluation: {out / 'evaluation.json'}; figures: {out / 'robust_accuracy.png'}")
    return 0


def cmd_transfer(args) -> int:
    from sparsejax import data, models
    from sparsejax.evaluation import transfer
    from sparsejax.runner import store

    if len(args.model) != len(args.weights):
        raise SparsejaxError(
            f"give one --weights per --model ({len(args.model)} models, {len(args.weights)} "
            "weights)"
        )
    sources = [transfer.load_source(d) for d in args.adversarials]
    transfer.name_sources(sources)
    names = [f"{m}:{Path(w).stem}" for m, w in zip(args.model, args.weights, strict=True)]
    if len(set(args.model)) == len(args.model):
        names = list(args.model)
    if len(set(names)) != len(names):
        raise SparsejaxError("the same --model and --weights pair is given twice")
    for m in args.model:
        shape = models.get_spec(m).input_shape
        for s in sources:
            if tuple(s["x_adv"].shape[1:]) != tuple(shape):
                raise SparsejaxError(
                    f"{s['name']}: images of shape {tuple(s['x_adv'].shape[1:])} do not fit "
                    f"model {m} {tuple(shape)}"
                )
    for s in sources:
        data.check_dataset_name(s["dataset"])
    store.check_writable(args.out)
    targets = {
        n: models.load(m, w) for n, m, w in zip(names, args.model, args.weights, strict=True)
    }
    # per (dataset, split, preprocessing): the largest index used. An ImageNet source's
    # clean images are those its own model saw: that model's preprocessing.
    last: dict[tuple[str, str, str | None], int] = {}
    for s in sources:
        s["preprocessing"] = _check_dataset(s["dataset"], s["model"])
        key = (s["dataset"], s["split"], s["preprocessing"])
        last[key] = max(last.get(key, 0), int(s["index"].max()))
    clean = {
        key: data.load_dataset(
            key[0], split=key[1], n=stop + 1, data_dir=None if key[2] else args.data_dir,
            preprocessing=key[2],
        )
        for key, stop in last.items()
    }  # fmt: skip
    matrix = transfer.transfer_matrix(sources, targets, clean)
    out = Path(args.out)
    transfer.write(matrix, out)
    print(transfer.table(matrix))
    print(f"transfer: {out / 'transfer.json'}, {out / 'transfer.png'}")
    return 0


def cmd_attacks(args) -> int:
    from sparsejax import attacks

    for name in attacks.names():
        s = attacks.get(name)
        print(
            f"{name:12s} {s.budget:8s} {s.unit:8s} targeted: {s.targeted:8s} "
            f"{s.config_cls.__name__:14s} {s.paper.split(',')[0]}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsejax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (also: SPARSEJAX_NO_COMPILE_CACHE=1)",
    )
    sub.add_parser("attacks", help="list the registered attacks").set_defaults(fn=cmd_attacks)
    sub.add_parser("models", help="list the registered models").set_defaults(fn=cmd_models)
    sub.add_parser("datasets", help="list the registered datasets").set_defaults(fn=cmd_datasets)

    p = sub.add_parser("port", help="port a PyTorch checkpoint to a Flax checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", required=True, help="PyTorch checkpoint (.pt/.pth/.th)")
    p.add_argument("--out", required=True, help="Flax checkpoint to write (.msgpack)")
    p.add_argument("--check-dataset", default=None, help="report accuracy on this dataset")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(fn=cmd_port)

    p = sub.add_parser("eval", help="clean accuracy of a model on a dataset")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", required=True, help="PyTorch or sparsejax Flax checkpoint")
    _add_data_args(p)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("attack", help="attack a model on a dataset; writes results.json")
    p.add_argument("--attack", required=True, help="attack name (sparsejax attacks lists them)")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", required=True, help="PyTorch or sparsejax Flax checkpoint")
    _add_data_args(p)
    p.add_argument(
        "--batch-size",
        type=int,
        default=50,
        help="examples per compiled call; results are saved after each batch",
    )
    p.add_argument(
        "--slots",
        type=int,
        default=None,
        help="examples attacked side by side inside a batch (default: on CPU 8 for a batch "
        "of 16 or more, else 1; 64 on accelerators)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="compiled calls run at the same time (default: one per CPU core)",
    )
    _add_devices_arg(p)
    p.add_argument(
        "--targeted",
        default=None,
        choices=["least-likely", "random", "all"],
        help="targeted attack and how targets are chosen (default: untargeted)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --targeted random")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. lambda_=1.0 or deepfool.max_iter=30",
    )
    p.add_argument("--out", required=True, help="folder for results.json, adversarials.npz")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a different earlier run in --out (default: refuse)",
    )
    p.add_argument("--figure", action="store_true", help="also write examples.png")
    p.set_defaults(fn=cmd_attack)

    p = sub.add_parser(
        "evaluate", help="robust accuracy vs k changed pixels, several attacks and their ensemble"
    )
    p.add_argument("--model", required=True)
    p.add_argument("--weights", required=True, help="PyTorch or sparsejax Flax checkpoint")
    _add_data_args(p)
    p.add_argument(
        "--attacks",
        required=True,
        help="comma-separated attack names (sparsejax attacks lists them); a min-norm attack "
        "runs once, a fixed-k one at every budget",
    )
    p.add_argument("--budgets", default="1,2,5,10,20,50,100", help="k values, increasing")
    p.add_argument("--unit", default="pixels", choices=["pixels", "elements"])
    p.add_argument("--batch-size", type=int, default=50, help="examples per compiled call")
    p.add_argument("--workers", type=int, default=None)
    _add_devices_arg(p)
    p.add_argument("--seed", type=int, default=0, help="for the attacks that draw numbers")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ATTACK.KEY=VALUE",
        help="override one attack's config field, e.g. sigma-zero.steps=100; "
        "ATTACK.budgets=1,2 runs a fixed-k attack at that subset of --budgets only",
    )
    p.add_argument("--out", required=True, help="folder for evaluation.json and the runs")
    p.add_argument("--overwrite", action="store_true", help="replace different earlier runs")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser(
        "transfer", help="fooling rates of one model's adversarials on other models (matrix)"
    )
    p.add_argument(
        "--adversarials",
        action="append",
        required=True,
        help="an attack run folder (results.json, adversarials.npz); repeat for more sources",
    )
    p.add_argument("--model", action="append", required=True, help="target model; repeat")
    p.add_argument("--weights", action="append", required=True, help="its weights; repeat")
    p.add_argument("--data-dir", default=None, help="where the runs' dataset is found")
    p.add_argument("--out", required=True, help="folder for transfer.json and transfer.png")
    p.set_defaults(fn=cmd_transfer)

    p = sub.add_parser("train", help="train a model from scratch (optax, seeded)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument("--out", required=True, help="Flax checkpoint to write")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="retrain even if --out matches")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("demo", help="the main job on the embedded default (no network)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_demo)
    return parser


def _positive(args, *names):
    for name in names:
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise SparsejaxError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def compile_cache_dir() -> Path:
    """Where the persistent compilation cache lives: ``$SPARSEJAX_CACHE_DIR``, else the
    user cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``) / sparsejax / jax."""
    if os.environ.get("SPARSEJAX_CACHE_DIR"):
        return Path(os.environ["SPARSEJAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sparsejax" / "jax"


def enable_compile_cache() -> Path | None:
    """Turns on JAX's persistent compilation cache for this process (every executable, so
    that a second run of the same job compiles nothing); None if it cannot be created."""
    import jax

    path = compile_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _add_devices_arg(p) -> None:
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        help="local devices each batch is split over (default: all of them)",
    )
    p.add_argument(
        "--memory-budget",
        type=float,
        metavar="GIB",
        default=None,
        help="GiB the compiled attack may hold: its lanes are capped to fit (default 8, "
        "applied to inputs of 65,536 elements or more; env SPARSEJAX_MEMORY_BUDGET_GIB)",
    )
    g = p.add_argument_group(
        "several processes (jax.distributed; each attacks every P-th batch, process 0 merges)"
    )
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="process 0's address (env SPARSEJAX_COORDINATOR)")  # fmt: skip
    g.add_argument("--num-processes", metavar="P", default=None,
                   help="processes in the job (env SPARSEJAX_NUM_PROCESSES)")  # fmt: skip
    g.add_argument("--process-id", metavar="I", default=None,
                   help="this process, 0..P-1 (env SPARSEJAX_PROCESS_ID)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _positive(args, "n", "batch_size", "epochs", "slots", "workers", "devices")
        if not (args.no_compile_cache or os.environ.get("SPARSEJAX_NO_COMPILE_CACHE") == "1"):
            enable_compile_cache()
        return args.fn(args)

    except SparsejaxError as e:
        print(f"sparsejax: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
