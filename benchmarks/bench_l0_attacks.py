"""sparsejax FMN-ℓ0, sPGD and Sparse-RS beside their reference code, same images, same budget,
in one run: adv_lib 0.2.8's ``fmn(norm=0)``, the official sPGD (CityU-MLO/sPGD,
``autoattack/spgd.py``) and Sparse-RS (fra31/sparse-rs, ``rs_attacks.py``).

COMMAND:
  .venv/bin/python -m pip download --no-deps adv-lib==0.2.8 -d /tmp/advlib   # the wheel
  cd /tmp/advlib && python -m zipfile -e adv_lib-0.2.8-py3-none-any.whl x && cd -
  # the official repositories, brought with the search tool's fetch and cloned outside:
  git clone <mirror of CityU-MLO/sPGD> /tmp/ref/spgd
  git clone <mirror of fra31/sparse-rs> /tmp/ref/sparse-rs
  .venv/bin/python benchmarks/bench_l0_attacks.py --adv-lib /tmp/advlib/x \
      --spgd /tmp/ref/spgd --sparse-rs /tmp/ref/sparse-rs [--n 20] [--only fmn,spgd,rs]

Writes benchmarks/results/l0_attacks_resnet20_k{k}.{json,md}. Shared ResNet-20, the first n
CIFAR-10 test images (the misclassified ones are skipped by both sides), CPU, one batch per
side. The reference code is loaded by file from those folders (adv_lib's package
``__init__`` imports visdom and torchvision for other attacks; nothing is copied here). The
PyTorch ResNet-20 is ``tests/torch_reference.CifarResNet`` with the same weights.

Budgets: FMN 1000 steps (AttackBench's; adv_lib's default is 10), sPGD k = 10 pixels and
300 iterations (``evaluate.py``'s default) per gradient rule, Sparse-RS k = 10 pixels and
1000 queries (α_init 0.3, margin loss, the README's untargeted ℓ0 run at a smaller budget).
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

from benchmarks.bench_sigma_zero import markdown_table, summary  # noqa: E402
from benchmarks.bench_sparsefool import torch_resnet20  # noqa: E402
from sparsejax import attacks, data, models  # noqa: E402

WEIGHTS = "weights/cifar10/resnet20-12fca82f.th"


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


def timed(run):
    t0 = time.perf_counter()
    out = run()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adv-lib", type=Path)
    ap.add_argument("--spgd", type=Path, help="a clone of CityU-MLO/sPGD")
    ap.add_argument("--sparse-rs", type=Path, help="a clone of fra31/sparse-rs")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--k", type=int, default=10, help="pixels, for sPGD and Sparse-RS")
    ap.add_argument("--only", default="fmn,spgd,rs")
    args = ap.parse_args()
    only = set(args.only.split(","))

    import torch

    torch.set_num_threads(2)
    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / WEIGHTS)
    ds = data.load_dataset("cifar10", n=args.n)
    ok = np.asarray(jnp.argmax(model.logits_fn(jnp.asarray(ds.x)), axis=1)) == ds.y
    x_np, y_np = ds.x[ok], ds.y[ok]
    n = len(y_np)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    net = torch_resnet20(assets / WEIGHTS)
    xt = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y_np.astype(np.int64))
    key = jax.random.key(0)
    rows = []

    def ours(label, fn, cfg, **kw):
        compiled = jax.jit(fn).lower(model.logits_fn, x, y, cfg, **kw).compile()
        seconds, r = timed(
            lambda: jax.block_until_ready(compiled(model.logits_fn, x, y, cfg, **kw))
        )
        row = summary(label, x_np, r.x_adv, np.asarray(r.success), seconds, n)
        row["passes_per_image"] = float(np.mean(np.asarray(r.model_evals)))
        rows.append(row)
        print(row, flush=True)
        return r

    def theirs(label, run):
        seconds, adv_t = timed(run)
        with torch.no_grad():
            pred = net(adv_t).argmax(1).numpy()
        adv = adv_t.numpy().transpose(0, 2, 3, 1)
        rows.append(summary(label, x_np, adv, pred != y_np, seconds, n))
        print(rows[-1], flush=True)
        return adv, pred != y_np

    if "fmn" in only:
        fmn = adv_lib_fmn(args.adv_lib)
        r = ours("sparsejax fmn-l0 (1000 steps)", attacks.fmn_l0, attacks.FMNConfig(steps=1000))
        adv, success = theirs(
            "adv_lib 0.2.8 fmn(norm=0) (1000 steps)",
            lambda: fmn(net, xt, yt, norm=0, steps=1000),
        )
        ours_l0 = np.asarray(r.l0_elements)
        theirs_l0 = (adv != x_np).reshape(n, -1).sum(1)
        both = np.asarray(r.success) & success
        rows[-1]["same_l0_as_sparsejax"] = int(np.sum(ours_l0[both] == theirs_l0[both]))
        rows[-1]["within_10pct_of_sparsejax"] = int(
            np.sum(np.abs(ours_l0[both] - theirs_l0[both]) <= 0.1 * theirs_l0[both])
        )
        rows[-1]["both_successful"] = int(both.sum())

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

    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = {"n": args.n, "n_attacked": n, "k_pixels": args.k, "torch": torch.__version__}
    payload["rows"] = rows
    (out / f"l0_attacks_resnet20_k{args.k}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = markdown_table(rows)
    (out / f"l0_attacks_resnet20_k{args.k}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
