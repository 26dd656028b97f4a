"""Lin et al. Table 4: the attack's time per ImageNet image on VGG-16/19 and
ResNet-101/152, on this CPU.

COMMAND: .venv/bin/python experiments/lin_table4.py [--n 1] → results/lin_table4.{json,md}
    (run it alone: it times)

Lin et al.'s attack runs a fixed number of steps (10 I-FGSM steps, then 200 steps of
Algorithm 1 at the paper's ImageNet settings, λ = 1e-3, each with the forward pass that
keeps the sparsest fooling iterate), so its time per image does not depend on the weights:
623 model passes whatever the model decides. The shared assets hold no weights for these
four architectures, so they run here with seeded random weights (``models.create``), and
each image is labelled with the random model's own prediction, so that every image is
attacked (not skipped as misclassified); only the times mean anything, not the success.
The first n shared ImageNet images with torchvision's eval preprocessing, through
``sparsejax.runner`` (one batch, the lockstep schedule), compilation excluded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from sparsejax import attacks, data, models, runner

HERE = Path(__file__).parent
ARCHS = ("vgg16", "vgg19", "resnet101", "resnet152")
# Lin et al. Table 4, "Time Cost (s)" of their attack on ImageNet (their hardware, not stated
# in the table; white-box attacks).
PAPER = {"vgg16": 4.6, "vgg19": 5.3, "resnet101": 18.7, "resnet152": 27.5}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1)
    args = ap.parse_args()
    assets = data.require_assets()
    spec = attacks.get("sparse-l0")
    config = runner.make_config(spec, ["lambda_=0.001", "steps=200"])
    rows = {}
    for arch in ARCHS:
        model = models.create(arch, seed=0)
        ds = data.load_dataset(
            f"imagenet:{assets / 'data/imagenet_val200'}", n=args.n,
            preprocessing=model.spec.preprocessing,
        )  # fmt: skip
        ds = dataclasses.replace(ds, y=model.predict(ds.x, batch_size=args.n).argmax(1))
        with tempfile.TemporaryDirectory() as out:
            res = runner.run_attack(spec, config, model, ds, out, batch_size=args.n)
        s = res["summary"]
        rows[arch] = {
            "images": args.n,
            "time_per_sample_s": s["time_per_sample_s"],
            "model_evals_per_sample": s["model_evals_per_sample"],
            "compile_s": s["compile_s"],
        }
        print(arch, json.dumps(rows[arch]), flush=True)
    out = HERE / "results" / "lin_table4"
    out.with_suffix(".json").write_text(
        json.dumps(
            {"config": ["lambda_=0.001", "steps=200"], "paper": PAPER, "rows": rows}, indent=1
        )
        + "\n"  # fmt: skip
    )
    lines = ["| model (random weights) | s/image (this CPU) | passes/image | compile s | "
             "Table 4 (s) |", "|---|---|---|---|---|"]  # fmt: skip
    for arch, r in rows.items():
        lines.append(
            f"| {arch} | {r['time_per_sample_s']:.1f} | {r['model_evals_per_sample']:.0f} | "
            f"{r['compile_s']:.0f} | {PAPER[arch]} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
