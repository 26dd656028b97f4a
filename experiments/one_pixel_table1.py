"""The one-pixel attack (1-PA) column of SparseFool's Table 1 on 100 images, as the paper
ran it: the first 100 test images of the clean LeNet-5 (MNIST) and ResNet-20 (CIFAR-10),
the paper's population (400) and generations (100), k = 1 first and, with --max-pixels > 1,
k + 1 after each failed round (SparseFool's protocol, ``OnePixelConfig.max_pixels``).

COMMAND: .venv/bin/python experiments/one_pixel_table1.py [--n 100] [--max-pixels 1]
    [--models lenet5,resnet20]
Writes experiments/results/one_pixel_table1.{json,md}; the runs under experiments/runs/
(not committed). Batches of n/2, so that both cores of this machine run one batch each.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sparsefool_table1 import run, table

from sparsejax import attacks

HERE = Path(__file__).parent
MODELS = {
    "lenet5": ("LeNet-5 (clean)", "lenet5-mnist",
               "weights/mnist/advertorch_mnist_lenet5_clntrained.pt", "mnist"),
    "resnet20": ("ResNet-20", "resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th",
                 "cifar10"),
}  # fmt: skip
PAPER_1PA = {  # SparseFool Table 1, the 1-PA column: fooling rate, % of the pixels, s/image
    "mnist": "LeNet: 100% at 9.43% of the pixels, 310.2 s",
    "cifar10": "ResNet-18: 100% at 0.2% of the pixels, 167.4 s",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--max-pixels", type=int, default=1, help="largest k of the protocol")
    ap.add_argument("--models", default="lenet5,resnet20")
    args = ap.parse_args()
    rows = []
    for key in args.models.split(","):
        label, name, weights, dataset = MODELS[key]
        config = attacks.OnePixelConfig(pixels=1, max_pixels=args.max_pixels)
        tag = f"k1-{args.max_pixels}_P400_G100"
        row, res, _, _ = run(
            label, name, weights, dataset, "one-pixel", config, args.n, tag,
            batch_size=max(args.n // 2, 1),
        )  # fmt: skip
        fooled = [e for e in res["examples"] if e["success"]]
        pixels, counts = np.unique([e["l0_pixels"] for e in fooled], return_counts=True)
        row["fooled_by_pixels"] = {int(k): int(v) for k, v in zip(pixels, counts, strict=True)}
        row["paper_1pa"] = PAPER_1PA[dataset]
        rows.append(row)
    (HERE / "results" / "one_pixel_table1.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = table(rows)
    lines += ["", "Fooled images by their changed pixels, and the paper's 1-PA column:", ""]
    lines += [f"- {r['network']}: {r['fooled_by_pixels']}; paper {r['paper_1pa']}" for r in rows]
    (HERE / "results" / "one_pixel_table1.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
