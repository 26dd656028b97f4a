"""The float reconstruction `mobilenet_v2-tflite` beside the official TFLite interpreter, on
the 200 shared ImageNet validation images.

COMMAND: .venv/bin/python experiments/imagenet_tflite_check.py \\
             [--litert-python /work/litert-venv/bin/python] [--n 200]
    → results/imagenet_tflite_check.json

The interpreter (PyPI ``ai-edge-litert``) lives in a virtualenv of its own, outside the
project's (``python -m venv /work/litert-venv && /work/litert-venv/bin/pip install
ai-edge-litert``); this script runs it in a subprocess (``--worker``) that imports only
NumPy and the interpreter. Both models see the same preprocessed images: the
``tf-slim-inception`` preprocessing of ``sparsejax.data`` (central 87.5% crop, PIL
bilinear resize to 224×224), uint8 ``p``. The quantized model takes ``p`` as is (its input
stands for ``(p − 128) / 128``); the float model takes ``u = p / 255`` and normalizes to
``2u − 1`` inside. The interpreter's class is the argmax of its uint8 softmax output
(1001 entries, background first; ties go to the lower index, and how many images have a
tie at the top is reported) and, as a second reading, of its quantized logits. A third
reading feeds the float model ``u = p / 256``, whose ``2u − 1`` is exactly the quantized
model's ``(p − 128) / 128``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
WEIGHTS = "weights/imagenet/mobilenet_v2_1.0_224_quant.tflite"
DATA = "data/imagenet_val200"


def worker(model_path: str, images_npz: str, out_npz: str) -> None:
    """Runs in the interpreter's virtualenv: uint8 images -> softmax and logits (uint8).

    The softmax comes from the interpreter as users run it (default options, XNNPACK on
    CPU); the logits from a second interpreter that keeps intermediate tensors, whose own
    softmax is stored too, to show whether keeping them changed the arithmetic.
    """
    from ai_edge_litert.interpreter import Interpreter

    plain = Interpreter(model_path=model_path)
    debug = Interpreter(model_path=model_path, experimental_preserve_all_tensors=True)
    for it in (plain, debug):
        it.allocate_tensors()
    inp, out = plain.get_input_details()[0], plain.get_output_details()[0]
    # the quantized logits: the uint8 [1, 1001] tensor that feeds the softmax
    logits_d = next(
        d
        for d in debug.get_tensor_details()
        if tuple(d["shape"]) == (1, 1001) and d["index"] != out["index"]
    )
    p = np.load(images_npz)["p"]
    probs, probs_debug, logits = [], [], []
    for img in p:
        for it in (plain, debug):
            it.set_tensor(inp["index"], img[None])
            it.invoke()
        probs.append(plain.get_tensor(out["index"])[0].copy())
        probs_debug.append(debug.get_tensor(out["index"])[0].copy())
        logits.append(debug.get_tensor(logits_d["index"])[0].copy())
    np.savez(
        out_npz,
        probs=np.stack(probs),
        probs_debug=np.stack(probs_debug),
        logits=np.stack(logits),
        logits_quantization=np.asarray(logits_d["quantization"], np.float64),
        input_quantization=np.asarray(inp["quantization"], np.float64),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--litert-python", default="/work/litert-venv/bin/python")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "IMAGES", "OUT"))
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    from sparsejax import data, io, models

    assets = data.require_assets()
    model = models.load("mobilenet_v2-tflite", assets / WEIGHTS)
    t0 = time.perf_counter()
    ds = data.load_dataset(
        f"imagenet:{assets / DATA}", n=args.n, preprocessing=model.spec.preprocessing
    )
    t_data = time.perf_counter() - t0
    p = np.rint(ds.x * 255).astype(np.uint8)  # exact: the dataset holds uint8 / 255
    t0 = time.perf_counter()
    ours = model.predict(ds.x, batch_size=50)  # [N, 1000]
    t_ours = time.perf_counter() - t0
    # The quantized input stands for (p - 128) / 128, not 2p/255 - 1: the float model fed
    # u = p / 256 sees exactly that (a reading of the comparison, not the model's contract).
    ours_256 = model.predict((p / np.float32(256.0)).astype(np.float32), batch_size=50)

    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "p.npz", p=p)
        t0 = time.perf_counter()
        subprocess.run(
            [args.litert_python, __file__, "--worker", str(assets / WEIGHTS),
             str(Path(tmp) / "p.npz"), str(Path(tmp) / "out.npz")],
            check=True,
        )  # fmt: skip
        t_interp = time.perf_counter() - t0
        ref = dict(np.load(Path(tmp) / "out.npz"))

    y = ds.y
    pred_ours = ours.argmax(1)
    probs = ref["probs"].astype(np.int64)  # [N, 1001] uint8 softmax, background at 0
    pred_interp = probs.argmax(1) - 1  # -1: background
    top = probs.max(1, keepdims=True)
    ties = int(((probs == top).sum(1) > 1).sum())
    qlogits = ref["logits"].astype(np.int64)
    pred_interp_logits = qlogits.argmax(1) - 1
    logit_ties = int(((qlogits == qlogits.max(1, keepdims=True)).sum(1) > 1).sum())
    res = {
        "n": len(ds),
        "dataset": ds.name,
        "source": ds.source,
        "weights": str(assets / WEIGHTS),
        "top1_float_reconstruction": float((pred_ours == y).mean()),
        "top1_interpreter_softmax": float((pred_interp == y).mean()),
        "top1_interpreter_logits": float((pred_interp_logits == y).mean()),
        "agreement_softmax": float((pred_ours == pred_interp).mean()),
        "agreement_logits": float((pred_ours == pred_interp_logits).mean()),
        "top1_float_fed_p_over_256": float((ours_256.argmax(1) == y).mean()),
        "agreement_float_fed_p_over_256": float((ours_256.argmax(1) == pred_interp).mean()),
        "interpreter_top_ties_softmax": ties,
        "interpreter_top_ties_logits": logit_ties,
        "interpreter_background_top1": int((pred_interp == -1).sum()),
        "interpreter_input_quantization": ref["input_quantization"].tolist(),
        "interpreter_softmax_differs_when_keeping_tensors": int(
            (ref["probs"] != ref["probs_debug"]).any(axis=1).sum()
        ),
        "readme_reference": {"float": 0.765, "interpreter": 0.760, "agreement": 0.98},
        "seconds": {"preprocessing": t_data, "float_model": t_ours, "interpreter": t_interp},
        "labels": y.tolist(),
        "predictions_float": pred_ours.tolist(),
        "predictions_interpreter": pred_interp.tolist(),
        "versions": io.versions(),
    }
    out = RESULTS / "imagenet_tflite_check.json"
    io.write_json(out, res)
    print(
        f"{len(ds)} images: top-1 float {res['top1_float_reconstruction']:.3f}, interpreter "
        f"{res['top1_interpreter_softmax']:.3f} (softmax; {ties} tied tops) / "
        f"{res['top1_interpreter_logits']:.3f} (logits); agreement "
        f"{res['agreement_softmax']:.3f} / {res['agreement_logits']:.3f} -> {out}"
    )


if __name__ == "__main__":
    sys.exit(main())
