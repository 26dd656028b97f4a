"""sparsejax σ-zero beside adv_lib's ``sigma_zero`` (the reference), same images, same budget,
in one run.

COMMAND:
  .venv/bin/python -m pip download --no-deps adv-lib==0.2.8 -d /tmp/advlib   # the wheel
  cd /tmp/advlib && python -m zipfile -e adv_lib-0.2.8-py3-none-any.whl x && cd -
  .venv/bin/python benchmarks/bench_sigma_zero.py --adv-lib /tmp/advlib/x [--n 20]

Writes benchmarks/results/sigma_zero_resnet20.{json,md}. Shared ResNet-20, the first n
CIFAR-10 test images (the misclassified ones are skipped by both), CPU, adv_lib's defaults
(1000 steps), both as one batched call. adv_lib's package ``__init__`` imports visdom and
torchvision for other attacks, so only its ``utils/losses.py`` and ``attacks/sigma_zero.py``
are loaded (by file; nothing of it is copied here). The PyTorch ResNet-20 is
``tests/torch_reference.CifarResNet`` with the same weights (logit parity is tested in
``tests/test_port_real.py``). Best of ``--reps`` runs each.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sparsefool import best_of, torch_resnet20  # noqa: E402
from sparsejax import attacks, data, models  # noqa: E402

WEIGHTS = "weights/cifar10/resnet20-12fca82f.th"


def load_adv_lib_sigma_zero(root: Path):
    """adv_lib.attacks.sigma_zero.sigma_zero, loaded without the package's __init__."""
    for name in ("adv_lib", "adv_lib.utils", "adv_lib.attacks"):
        sys.modules.setdefault(name, types.ModuleType(name))
    for name, rel in (
        ("adv_lib.utils.losses", "adv_lib/utils/losses.py"),
        ("adv_lib.attacks.sigma_zero", "adv_lib/attacks/sigma_zero.py"),
    ):
        spec = importlib.util.spec_from_file_location(name, root / rel)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules["adv_lib.attacks.sigma_zero"].sigma_zero


def summary(name, x, x_adv, success, seconds, n):
    changed = (np.asarray(x_adv) != np.asarray(x)).reshape(len(x), -1, x.shape[-1])
    el = changed.sum(axis=(1, 2))[success]
    px = changed.any(-1).sum(axis=1)[success]
    return {
        "implementation": name,
        "n_attacked": n,
        "success_rate": float(success.mean()),
        "median_l0_elements": float(np.median(el)) if el.size else None,
        "mean_l0_elements": float(el.mean()) if el.size else None,
        "median_l0_pixels": float(np.median(px)) if px.size else None,
        "seconds_per_image": seconds / n,
    }


def markdown_table(rows) -> list[str]:
    """The Markdown lines of :func:`summary` rows."""
    fmt = lambda v, s: "–" if v is None else format(v, s)
    return [
        "| implementation | s/image | success | median ℓ0 el. | mean ℓ0 el. | median ℓ0 px |",
        "|---|---|---|---|---|---|",
    ] + [
        f"| {r['implementation']} | {r['seconds_per_image']:.2f} | "
        f"{100 * r['success_rate']:.1f}% | {fmt(r['median_l0_elements'], 'g')} | "
        f"{fmt(r['mean_l0_elements'], '.1f')} | {fmt(r['median_l0_pixels'], 'g')} |"
        for r in rows
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adv-lib", type=Path, required=True, help="the unpacked adv_lib wheel")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    adv_lib_sigma_zero = load_adv_lib_sigma_zero(args.adv_lib)
    assets = data.require_assets()
    model = models.load("resnet20-cifar10", assets / WEIGHTS)
    ds = data.load_dataset("cifar10", n=args.n)
    ok = np.asarray(jnp.argmax(model.logits_fn(jnp.asarray(ds.x)), axis=1)) == ds.y
    x_np, y_np = ds.x[ok], ds.y[ok]
    n = len(y_np)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)

    compiled = jax.jit(attacks.sigma_zero).lower(model.logits_fn, x, y).compile()
    seconds, r, _, times = best_of(
        args.reps, lambda: jax.block_until_ready(compiled(model.logits_fn, x, y))
    )
    name = "sparsejax σ-zero (one compiled call)"
    rows = [summary(name, x_np, r.x_adv, np.asarray(r.success), seconds, n)]
    rows[-1]["all_seconds"] = times
    print(rows[-1], flush=True)

    net = torch_resnet20(assets / WEIGHTS)
    xt = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y_np.astype(np.int64))
    seconds, adv_t, _, times = best_of(args.reps, lambda: adv_lib_sigma_zero(net, xt, yt))
    adv = adv_t.numpy().transpose(0, 2, 3, 1)
    with torch.no_grad():
        pred = net(adv_t).argmax(1).numpy()
    name = "adv_lib 0.2.8 sigma_zero (PyTorch, one batch)"
    rows.append(summary(name, x_np, adv, pred != y_np, seconds, n))
    rows[-1]["all_seconds"] = times
    print(rows[-1], flush=True)

    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "n": args.n,
        "n_attacked": n,
        "steps": 1000,
        "torch": torch.__version__,
        "rows": rows,
    }
    (out / "sigma_zero_resnet20.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = markdown_table(rows)
    (out / "sigma_zero_resnet20.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
