"""sparsejax's one-pixel attack beside torchattacks 3.5.1's ``OnePixel`` (after DebangLi's
PyTorch port of Su et al.), same images, same population and generations, in one run.

COMMAND:
  make bench-setup      # torchattacks 3.5.1 (no dependencies) and scipy into .venv
  .venv/bin/python benchmarks/bench_one_pixel.py [--model resnet20] [--n 20]
Writes benchmarks/results/one_pixel_{model}.{json,md}.

Both sides: untargeted, k = 1 pixel, 400 candidates (torchattacks' ``popsize`` is per
parameter: 80 x 5 parameters), 100 generations, stop once the best candidate is
adversarial, the true class's probability as the fitness, CPU. They differ where the
reference differs from the paper, and this is stated, not aligned: torchattacks runs
scipy's DE/best/1 with binomial crossover at CR = 1 (every parameter from the mutant) from
a uniform initial population; sparsejax runs the paper's DE/rand/1 (F = 0.5, no crossover)
from N(128, 127) values. Ours: one compiled call on the whole batch (the refill queue),
compilation excluded; theirs: one image at a time (its loop), 2 PyTorch threads. The
first n test images the Flax model classifies correctly, on the Flax model and the PyTorch
one of ``tests/torch_reference.py`` with the same weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_l0_attacks import MODELS, side_by_side, timed  # noqa: E402
from benchmarks.bench_sigma_zero import summary  # noqa: E402
from sparsejax import attacks  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="resnet20")
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()

    import torch
    import torchattacks

    torch.set_num_threads(2)
    model, net, x_np, y_np = side_by_side(args.model, args.n)
    n = len(y_np)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    cfg = attacks.OnePixelConfig(pixels=1, population=400, generations=100)
    key = jax.random.key(0)
    rows = []

    compiled = jax.jit(attacks.one_pixel).lower(model.logits_fn, x, y, cfg, key=key).compile()
    seconds, r = timed(lambda: jax.block_until_ready(compiled(model.logits_fn, x, y, cfg, key=key)))
    rows.append(summary("sparsejax one-pixel", x_np, r.x_adv, np.asarray(r.success), seconds, n))
    rows[-1]["passes_per_image"] = float(np.mean(np.asarray(r.model_evals)))
    rows[-1]["generations_per_image"] = float(np.mean(np.asarray(r.iterations)))
    print(rows[-1], flush=True)

    atk = torchattacks.OnePixel(net, pixels=1, steps=100, popsize=400, inf_batch=400)
    xt = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y_np.astype(np.int64))
    np.random.seed(0)  # scipy's DE draws from NumPy's global state here
    seconds, adv_t = timed(lambda: atk(xt, yt))
    with torch.no_grad():
        pred = net(adv_t).argmax(1).numpy()
    adv = adv_t.numpy().transpose(0, 2, 3, 1)
    rows.append(summary("torchattacks 3.5.1 OnePixel", x_np, adv, pred != y_np, seconds, n))
    both = np.asarray(r.success) & (pred != y_np)
    rows[-1]["fooled_by_both"] = int(both.sum())
    print(rows[-1], flush=True)

    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(model=args.model, n=args.n, n_attacked=n, pixels=1, population=400)
    payload.update(generations=100, torch=torch.__version__, jax=jax.__version__, rows=rows)
    (out / f"one_pixel_{args.model}.json").write_text(json.dumps(payload, indent=2) + "\n")
    fmt = lambda v, s: "–" if v is None else format(v, s)
    lines = [
        "| implementation | s/image | success | median ℓ0 px | median ℓ0 el. | fooled by both |",
        "|---|---|---|---|---|---|",
    ] + [
        f"| {q['implementation']} | {q['seconds_per_image']:.2f} | "
        f"{100 * q['success_rate']:.1f}% | {fmt(q['median_l0_pixels'], 'g')} | "
        f"{fmt(q['median_l0_elements'], 'g')} | {q.get('fooled_by_both', '–')} |"
        for q in rows
    ]
    (out / f"one_pixel_{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
