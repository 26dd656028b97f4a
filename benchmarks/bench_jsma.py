"""sparsejax JSMA beside torchattacks 3.5.1's ``JSMA`` (a PyTorch port of the same pair
search, one image at a time), same images, same targets, same θ and γ, in one run.

COMMAND:
  make bench-setup        # torchattacks 3.5.1 (no dependencies) into .venv
  .venv/bin/python benchmarks/bench_jsma.py [--model lenet5|resnet20] [--n 20] [--gamma 1]

Writes benchmarks/results/jsma_{model}.{json,md}. The first n test images (the misclassified
ones skipped by both), each with a random target ≠ label (seed 0), targeted on both sides
(success: the prediction is the target). θ = 1. torchattacks differs from CleverHans (and
sparsejax) in three small ways, stated rather than aligned: its search domain is x < 0.99
(ours: x < upper), its cap is ⌈d·γ/2⌉ (ours ⌊d·γ/2⌋; equal for γ = 1 on both datasets), and
it keeps searching when no pair passes the test (the pair (0, 0)); it computes all K rows
of the Jacobian per step, ours the two it needs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_l0_attacks import side_by_side  # noqa: E402
from benchmarks.bench_sigma_zero import summary  # noqa: E402
from sparsejax import attacks  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["lenet5", "resnet20", "lenet5-pgd"], default="lenet5")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--gamma", type=float, default=1.0)
    args = ap.parse_args()

    import torch
    import torchattacks

    torch.set_num_threads(2)
    model, net, x_np, y_np = side_by_side(args.model, args.n)
    n = len(y_np)
    rng = np.random.default_rng(0)
    t_np = ((y_np + rng.integers(1, 10, size=n)) % 10).astype(np.int32)
    x, y, t = jnp.asarray(x_np), jnp.asarray(y_np), jnp.asarray(t_np)
    cfg = attacks.JSMAConfig(theta=1.0, gamma=args.gamma)
    rows = []

    fn = jax.jit(attacks.jsma)
    compiled = fn.lower(model.logits_fn, x, y, cfg, targets=t, key=jax.random.key(0)).compile()
    t0 = time.perf_counter()
    r = jax.block_until_ready(
        compiled(model.logits_fn, x, y, cfg, targets=t, key=jax.random.key(0))
    )
    seconds = time.perf_counter() - t0
    rows.append(summary("sparsejax jsma", x_np, r.x_adv, np.asarray(r.success), seconds, n))
    rows[-1]["passes_per_image"] = float(np.mean(np.asarray(r.model_evals)))
    rows[-1]["pairs_per_image"] = float(np.mean(np.asarray(r.iterations)))
    print(rows[-1], flush=True)

    atk = torchattacks.JSMA(net, theta=1.0, gamma=args.gamma)
    atk.set_mode_targeted_by_function(lambda images, labels: torch.from_numpy(t_np).long())
    xt = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y_np.astype(np.int64))
    t0 = time.perf_counter()
    adv_t = atk(xt, yt)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        pred = net(adv_t).argmax(1).numpy()
    adv = adv_t.numpy().transpose(0, 2, 3, 1)
    rows.append(summary("torchattacks 3.5.1 JSMA", x_np, adv, pred == t_np, seconds, n))
    ours = np.asarray(r.x_adv) != x_np
    theirs = adv != x_np
    rows[-1]["same_changed_elements_as_sparsejax"] = int(
        np.sum(np.all((ours == theirs).reshape(n, -1), axis=1))
    )
    print(rows[-1], flush=True)

    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(model=args.model, n=args.n, n_attacked=n, theta=1.0, gamma=args.gamma)
    payload.update(torch=torch.__version__, jax=jax.__version__, rows=rows)
    (out / f"jsma_{args.model}.json").write_text(json.dumps(payload, indent=2) + "\n")
    fmt = lambda v, s: "–" if v is None else format(v, s)
    lines = [
        "| implementation | s/image | success | median ℓ0 el. | mean ℓ0 el. | median ℓ0 px "
        "| same changed elements |",
        "|---|---|---|---|---|---|---|",
    ] + [
        f"| {q['implementation']} | {q['seconds_per_image']:.3f} | "
        f"{100 * q['success_rate']:.1f}% | {fmt(q['median_l0_elements'], 'g')} | "
        f"{fmt(q['mean_l0_elements'], '.1f')} | {fmt(q['median_l0_pixels'], 'g')} | "
        f"{q.get('same_changed_elements_as_sparsejax', '–')} |"
        for q in rows
    ]
    (out / f"jsma_{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
