"""sparsejax σ-zero, FMN-ℓ0, sPGD and Sparse-RS beside their reference code, and beside
sparsejax SparseFool, same images, same budget, in one run: adv_lib 0.2.8's ``sigma_zero``
and ``fmn(norm=0)``, the official sPGD (CityU-MLO/sPGD, ``autoattack/spgd.py``) and Sparse-RS
(fra31/sparse-rs, ``rs_attacks.py``).

COMMAND:
  .venv/bin/python -m pip download --no-deps adv-lib==0.2.8 -d /tmp/advlib   # the wheel
  cd /tmp/advlib && python -m zipfile -e adv_lib-0.2.8-py3-none-any.whl x && cd -
  # the official repositories, brought with the search tool's fetch and cloned outside:
  git clone <mirror of CityU-MLO/sPGD> /tmp/ref/spgd
  git clone <mirror of fra31/sparse-rs> /tmp/ref/sparse-rs
  .venv/bin/python benchmarks/bench_l0_attacks.py --adv-lib /tmp/advlib/x \
      --spgd /tmp/ref/spgd --sparse-rs /tmp/ref/sparse-rs [--model resnet20] [--n 20] \
      [--k 10] [--only sigma,fmn,spgd,rs,sparsefool] [--rounds 1]

Writes benchmarks/results/l0_attacks_{model}_k{k}.{json,md}, with ``_{only}`` appended for
a run of some of the attacks (``--only spgd,rs``: ``..._k2_spgd_rs``) (``resnet20``: the shared
ResNet-20 on CIFAR-10; ``lenet5``, ``lenet5-pgd``: the clean and the PGD-trained LeNet-5 on
MNIST; ``smallcnn-ddn``: the DDN SmallCNN). The first n test images (the misclassified ones
are skipped by both sides), CPU, one batch per side. The reference code is loaded by file
from those folders (adv_lib's package ``__init__`` imports visdom and torchvision for other
attacks; nothing is copied here). The PyTorch models are ``tests/torch_reference.py``'s with
the same weights.

Budgets: σ-zero 1000 steps (adv_lib's default), FMN 1000 steps (AttackBench's; adv_lib's
default is 10), sPGD k pixels and 300 iterations (``evaluate.py``'s default) per gradient
rule, Sparse-RS k pixels and 1000 queries (α_init 0.3, margin loss, the README's untargeted
ℓ0 run at a smaller budget), SparseFool its defaults (λ = 3).

``--rounds R``: σ-zero and FMN run ours and the reference alternately, R times each (this
VM's speed drifts between minutes; a paired round compares runs of the same minutes); the
rows give the median time, the JSON every round and the per-round ratios.

Each sparsejax row also gives wall/floor: the floor is Σ_examples (forwards · t_F + backward
rows · t_B), with t_F and t_B measured by ``bench_sparsefool.pass_costs`` on as many lanes as
the attack's schedule runs (lockstep: the batch; the refill queue: its default width) right
after it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sigma_zero import load_adv_lib_sigma_zero, summary  # noqa: E402
from benchmarks.bench_sparsefool import pass_costs  # noqa: E402
from sparsejax import attacks, data, models  # noqa: E402
from sparsejax.attacks import engine  # noqa: E402

MODELS = {
    # key: (sparsejax model, weights under the assets folder, dataset, torch reference class)
    "resnet20": ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10",
                 "CifarResNet"),
    "lenet5": ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_clntrained.pt", "mnist",
               "LeNet5"),
    "lenet5-pgd": ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_advtrained.pt",
                   "mnist", "LeNet5"),
    "smallcnn-ddn": ("smallcnn-mnist", "weights/mnist/sigmazero_mnist_smallcnn_robust_ddn.pth",
                     "mnist", "SmallCNN"),
}  # fmt: skip


def load_by_file(name, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def adv_lib_fmn(root: Path):
    for name in ("adv_lib", "adv_lib.utils", "adv_lib.attacks"):
        sys.modules.setdefault(name, types.ModuleType(name))
    load_by_file("adv_lib.utils.losses", root / "adv_lib/utils/losses.py")
    load_by_file("adv_lib.utils.projections", root / "adv_lib/utils/projections.py")
    return load_by_file("adv_lib.attacks.fmn", root / "adv_lib/attacks/fast_minimum_norm.py").fmn


def torch_model(cls_name: str, weights: Path):
    """``tests/torch_reference.<cls_name>`` with the checkpoint's weights, eval mode, frozen."""
    import torch

    from tests import torch_reference

    class DefaultLayout(torch.nn.Module):
        """The model on a copy of its input in the default memory format: the official sPGD
        hands over a 1-channel tensor whose strides send the convolutions to channels-last,
        and LeNet-5's ``view`` (as advertorch wrote it) cannot flatten that."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(torch.empty_like(x, memory_format=torch.contiguous_format).copy_(x))

    net = getattr(torch_reference, cls_name)(*((3,) if cls_name == "CifarResNet" else ()))
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()}, strict=True)
    for p in net.parameters():
        p.requires_grad_(False)
    # eval() on the wrapper too: the official sPGD saves ``model.training`` and calls
    # ``model.train()`` at its end if it was set, which would put the BatchNorm layers inside
    # in train mode for every later forward (batch statistics, running statistics updated).
    return DefaultLayout(net).eval()


def side_by_side(key: str, n: int):
    """(Flax model, PyTorch model, x, y) of ``MODELS[key]``: the first n test images that
    the Flax model classifies correctly (both sides attack the same ones)."""
    name, weights, dataset, torch_cls = MODELS[key]
    assets = data.require_assets()
    model = models.load(name, assets / weights)
    ds = data.load_dataset(dataset, n=n)
    ok = np.asarray(jnp.argmax(model.logits_fn(jnp.asarray(ds.x)), axis=1)) == ds.y
    return model, torch_model(torch_cls, assets / weights), ds.x[ok], ds.y[ok]


def timed(run):
    t0 = time.perf_counter()
    out = run()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adv-lib", type=Path)
    ap.add_argument("--spgd", type=Path, help="a clone of CityU-MLO/sPGD")
    ap.add_argument("--sparse-rs", type=Path, help="a clone of fra31/sparse-rs")
    ap.add_argument("--model", choices=sorted(MODELS), default="resnet20")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--k", type=int, default=10, help="pixels, for sPGD and Sparse-RS")
    ap.add_argument("--only", default="sigma,fmn,spgd,rs,sparsefool")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="σ-zero and FMN: run ours and the reference alternately this many times each "
        "(rows give the median; the JSON every round and the paired ratios)",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    unknown = only - {"sigma", "fmn", "spgd", "rs", "sparsefool"}
    if unknown:
        ap.error(f"unknown --only entries {sorted(unknown)}")
    for flag, needs in (("adv_lib", {"sigma", "fmn"}), ("spgd", {"spgd"}), ("sparse_rs", {"rs"})):
        if only & needs and getattr(args, flag) is None:
            ap.error(f"--{flag.replace('_', '-')} is needed for {sorted(only & needs)}")

    import torch

    torch.set_num_threads(2)
    model, net, x_np, y_np = side_by_side(args.model, args.n)
    n = len(y_np)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    xt = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y_np.astype(np.int64))
    key = jax.random.key(0)
    rows, costs = [], {}

    def floor_costs(slots):
        if slots not in costs:
            costs[slots] = pass_costs(model, x_np, slots, k=1)
        return costs[slots]

    def ours(label, fn, cfg, rounds=1, between=None, **kw):
        """Our row; with ``rounds`` > 1 the compiled call runs that many times, ``between()``
        (the reference's run) after each, and the row's time is the median."""
        compiled = jax.jit(fn).lower(model.logits_fn, x, y, cfg, **kw).compile()
        times = []
        for _ in range(rounds):
            seconds, r = timed(
                lambda: jax.block_until_ready(compiled(model.logits_fn, x, y, cfg, **kw))
            )
            times.append(seconds)
            if between is not None:
                between()
        seconds = float(np.median(times))
        row = summary(label, x_np, r.x_adv, np.asarray(r.success), seconds, n)
        if rounds > 1:
            row["seconds_per_round"] = times
        row["passes_per_image"] = float(np.mean(np.asarray(r.model_evals)))
        early_stop = attacks.get(fn.__name__.replace("_", "-")).algorithm.early_stop
        slots = engine.default_queue_width(n) if early_stop else n
        t_f, t_b = floor_costs(slots)
        floor = float(np.sum(r.forwards) * t_f + np.sum(r.backwards) * t_b)
        row.update(pass_cost_ms={"lanes": slots, "forward": 1e3 * t_f, "backward": 1e3 * t_b})
        row["wall_over_floor"] = seconds / floor
        rows.append(row)
        print(row, flush=True)
        return r

    def theirs(label, run, passes_per_image=None, runs=None):
        """The reference's row. ``runs``: its (seconds, images) from rounds already run (the
        row's time is their median, its images the last run's); None: run it once here."""
        runs = runs or [timed(run)]
        times, adv_t = [t for t, _ in runs], runs[-1][1]
        assert not any(m.training for m in net.modules()), f"{label} left the model in train mode"
        with torch.no_grad():
            pred = net(adv_t).argmax(1).numpy()
        adv = adv_t.numpy().transpose(0, 2, 3, 1)
        rows.append(summary(label, x_np, adv, pred != y_np, float(np.median(times)), n))
        if len(times) > 1:
            rows[-1]["seconds_per_round"] = times
            ours_times = rows[-2]["seconds_per_round"]
            rows[-1]["ratio_sparsejax_over_reference_per_round"] = [
                a / b for a, b in zip(ours_times, times, strict=True)
            ]
        if passes_per_image is not None:
            rows[-1]["passes_per_image"] = passes_per_image
        print(rows[-1], flush=True)
        return adv, pred != y_np

    def paired(ours_label, fn, cfg, their_label, run):
        """Ours and the reference alternately, ``--rounds`` times each (one batch per call)."""
        their_runs = []
        r = ours(
            ours_label, fn, cfg, rounds=args.rounds, between=lambda: their_runs.append(timed(run))
        )
        adv, success = theirs(their_label, run, 2000.0, runs=their_runs)
        agreement(r, adv, success)

    def agreement(r, adv, success):
        """How often the two sides end at the same ℓ0 (elements) on images both fool."""
        ours_l0 = np.asarray(r.l0_elements)
        theirs_l0 = (adv != x_np).reshape(n, -1).sum(1)
        both = np.asarray(r.success) & success
        rows[-1]["both_successful"] = int(both.sum())
        rows[-1]["same_l0_as_sparsejax"] = int(np.sum(ours_l0[both] == theirs_l0[both]))
        rows[-1]["within_10pct_of_sparsejax"] = int(
            np.sum(np.abs(ours_l0[both] - theirs_l0[both]) <= 0.1 * theirs_l0[both])
        )

    if "sigma" in only:
        sigma_zero = load_adv_lib_sigma_zero(args.adv_lib)
        paired(
            "sparsejax sigma-zero (1000 steps)",
            attacks.sigma_zero,
            attacks.SigmaZeroConfig(),
            "adv_lib 0.2.8 sigma_zero (1000 steps)",
            lambda: sigma_zero(net, xt, yt),
        )

    if "fmn" in only:
        fmn = adv_lib_fmn(args.adv_lib)
        paired(
            "sparsejax fmn-l0 (1000 steps)",
            attacks.fmn_l0,
            attacks.FMNConfig(steps=1000),
            "adv_lib 0.2.8 fmn(norm=0) (1000 steps)",
            lambda: fmn(net, xt, yt, norm=0, steps=1000),
        )

    if "spgd" in only:
        sys.path.insert(0, str(args.spgd / "autoattack"))
        official = load_by_file("official_spgd", args.spgd / "autoattack" / "spgd.py")
        for rule in ("projected", "unprojected"):
            cfg = attacks.SPGDConfig(k=float(args.k), steps=300, gradient=rule)
            ours(f"sparsejax spgd {rule} (k={args.k} px, 300 it.)", attacks.spgd, cfg, key=key)
            att = official.SparsePGD(
                net, epsilon=1.0, k=args.k, t=300, unprojected_gradient=rule == "unprojected"
            )
            torch.manual_seed(0)
            theirs(
                f"official sPGD {rule} (k={args.k} px, 300 it.)",
                lambda: att(xt, yt)[0],  # noqa: B023
            )

    if "rs" in only:
        sys.path.insert(0, str(args.sparse_rs))
        official = load_by_file("official_rs", args.sparse_rs / "rs_attacks.py")
        cfg = attacks.SparseRSConfig(k=float(args.k), queries=1000)
        ours(f"sparsejax sparse-rs (k={args.k} px, 1000 q.)", attacks.sparse_rs, cfg, key=key)
        rs = official.RSAttack(
            net, norm="L0", eps=args.k, n_queries=1000, p_init=0.3, loss="margin",
            verbose=False, seed=0, device=torch.device("cpu"),
        )  # fmt: skip
        theirs(f"official Sparse-RS (k={args.k} px, 1000 q.)", lambda: rs.perturb(xt, yt)[1])

    if "sparsefool" in only:
        ours("sparsejax sparsefool (λ = 3)", attacks.sparsefool, attacks.SparseFoolConfig())

    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": args.model,
        "n": args.n,
        "n_attacked": n,
        "k_pixels": args.k,
        "torch": torch.__version__,
        "jax": jax.__version__,
        "rows": rows,
    }
    stem = f"l0_attacks_{args.model}_k{args.k}"
    if args.only != ap.get_default("only"):  # a partial run does not overwrite the full table
        stem += "_" + args.only.replace(",", "_")
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = markdown_table(rows)
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def markdown_table(rows) -> list[str]:
    """The Markdown lines of this benchmark's rows (passes and wall/floor added to
    :func:`bench_sigma_zero.markdown_table`'s columns)."""
    fmt = lambda v, s: "–" if v is None else format(v, s)
    return [
        "| implementation | s/image | success | median ℓ0 el. | mean ℓ0 el. | median ℓ0 px "
        "| passes/image | wall/floor | same ℓ0 (≤10%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ] + [
        f"| {r['implementation']} | {r['seconds_per_image']:.2f} | "
        f"{100 * r['success_rate']:.1f}% | {fmt(r['median_l0_elements'], 'g')} | "
        f"{fmt(r['mean_l0_elements'], '.1f')} | {fmt(r['median_l0_pixels'], 'g')} | "
        f"{fmt(r.get('passes_per_image'), '.0f')} | {fmt(r.get('wall_over_floor'), '.2f')} | "
        + (
            f"{r['same_l0_as_sparsejax']}/{r['both_successful']} ({r['within_10pct_of_sparsejax']})"
            if "both_successful" in r
            else "–"
        )
        + " |"
        for r in rows
    ]


if __name__ == "__main__":
    main()
