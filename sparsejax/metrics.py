"""Perturbation sizes in named units, success criteria and Table-1 style summaries.

ℓ0 is reported both ways (SPEC §1): ``l0_pixels`` counts the (h, w) positions where any
channel changed (SparseFool's "perturbation %" is l0_pixels / (H·W)); ``l0_elements`` counts
changed channel values (Lin et al., SAPF, foolbox, adv_lib). On RGB they differ by up to 3×.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np


def changed(x_adv, x):
    """bool[..., H, W, C]: which values differ (exactly: no tolerance, ℓ0 is a count)."""
    return x_adv != x


def l0_pixels(x_adv, x):
    """int32[...]: number of (h, w) positions where any channel changed."""
    return jnp.sum(jnp.any(changed(x_adv, x), axis=-1), axis=(-2, -1), dtype=jnp.int32)


def l0_elements(x_adv, x):
    """int32[...]: number of changed channel values."""
    return jnp.sum(changed(x_adv, x), axis=(-3, -2, -1), dtype=jnp.int32)


def lp_norms(x_adv, x) -> dict[str, jnp.ndarray]:
    """ℓ1, ℓ2, ℓ∞ of the perturbation, per example (pixel units, [0, 1] scale)."""
    r = (x_adv - x).astype(jnp.float32)
    axes = (-3, -2, -1)
    return {
        "l1": jnp.sum(jnp.abs(r), axis=axes),
        "l2": jnp.sqrt(jnp.sum(r * r, axis=axes)),
        "linf": jnp.max(jnp.abs(r), axis=axes),
    }


def is_adversarial(pred, label, target=None):
    """Untargeted: pred != label. Targeted: pred == target (SPEC §1)."""
    if target is None:
        return pred != label
    return pred == target


def summarize(
    success: np.ndarray,
    clean_correct: np.ndarray,
    l0_pixels: np.ndarray,
    l0_elements: np.ndarray,
    image_shape: tuple[int, int, int],
    extra: Mapping[str, np.ndarray] | None = None,
) -> dict:
    """Summary in the units of SparseFool Table 1 (and both ℓ0 units).

    The success rate is over correctly classified inputs; medians are over successful
    examples among them (an already-misclassified input is not a success of the attack).
    """
    success = np.asarray(success, bool)
    clean_correct = np.asarray(clean_correct, bool)
    ok = success & clean_correct
    h, w, c = image_shape
    n_attacked = int(clean_correct.sum())
    out = {
        "n_attacked": n_attacked,
        "n_success": int(ok.sum()),
        "success_rate": float(ok.sum() / n_attacked) if n_attacked else None,
    }

    def med(a):
        a = np.asarray(a)[ok]
        return float(np.median(a)) if a.size else None

    def mean(a):
        a = np.asarray(a)[ok]
        return float(np.mean(a)) if a.size else None

    out["median_l0_pixels"] = med(l0_pixels)
    mp = out["median_l0_pixels"]
    out["median_l0_pixels_pct"] = None if mp is None else 100.0 * mp / (h * w)
    out["median_l0_elements"] = med(l0_elements)
    me = out["median_l0_elements"]
    out["median_l0_elements_pct"] = None if me is None else 100.0 * me / (h * w * c)
    out["mean_l0_pixels"] = mean(l0_pixels)
    out["mean_l0_elements"] = mean(l0_elements)
    for k, v in (extra or {}).items():
        out[f"mean_{k}"] = mean(v)
    return out


def all_target_pairs(labels, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(image index int64[M], target int32[M]): every image once per class but its label,
    in image order, targets ascending (the pairs of SAPF's Table 1 protocol)."""
    labels = np.asarray(labels)
    pairs = [(i, t) for i, y in enumerate(labels) for t in range(num_classes) if t != y]
    image, target = zip(*pairs, strict=True) if pairs else ((), ())
    return np.asarray(image, np.int64), np.asarray(target, np.int32)


def target_cases(
    image: np.ndarray,
    success: np.ndarray,
    clean_correct: np.ndarray,
    norms: Mapping[str, np.ndarray],
    by: str = "l2",
) -> dict:
    """Best, average and worst case over the targets of each image (Carlini & Wagner; the
    protocol of SAPF Table 1), for a targeted run over every class but the true one.

    Only images the model classifies correctly count. Per image, the targets are ranked by
    the norm ``by`` of their perturbation (failures rank last):

    - best case: the easiest target; its success rate is the fraction of images with at least
      one successful target; its norms are averaged over those images;
    - average case: every (image, target) pair; norms averaged over the successful pairs;
    - worst case: the hardest target; its success rate is the fraction of images whose every
      target succeeded; its norms are averaged over those images.

    Args:
      image: int[P] image index of each pair.
      success: bool[P].
      clean_correct: bool[P], whether the pair's image is correctly classified.
      norms: name -> float[P] (e.g. l0_elements, l1, l2, linf).
      by: the norm that ranks the targets of an image.
    """
    image = np.asarray(image)
    success = np.asarray(success, bool)
    keep = np.asarray(clean_correct, bool)
    norms = {k: np.asarray(v, np.float64) for k, v in norms.items()}
    images = np.unique(image[keep])
    best_rows, worst_rows, n_best, n_worst = [], [], 0, 0
    for i in images:
        sel = np.flatnonzero((image == i) & keep)
        ok = sel[success[sel]]
        if ok.size:
            n_best += 1
            best_rows.append(ok[np.argmin(norms[by][ok])])
        if ok.size == sel.size:
            n_worst += 1
            worst_rows.append(ok[np.argmax(norms[by][ok])])
    pairs = np.flatnonzero(keep)
    ok_pairs = pairs[success[pairs]]

    def means(rows):
        rows = np.asarray(rows, int)
        return {k: (float(v[rows].mean()) if rows.size else None) for k, v in norms.items()}

    n_img = len(images)
    return {
        "n_images": n_img,
        "n_pairs": int(pairs.size),
        "ranked_by": by,
        "best": {"success_rate": n_best / n_img if n_img else None, **means(best_rows)},
        "average": {
            "success_rate": float(success[pairs].mean()) if pairs.size else None,
            **means(ok_pairs),
        },
        "worst": {"success_rate": n_worst / n_img if n_img else None, **means(worst_rows)},
    }


def clean_evaluation(model, ds, batch_size: int = 500, progress: bool = True) -> dict:
    """Clean accuracy of ``model`` on ``ds``, with where both came from (``eval.json``).

    ``predictions``, ``labels`` and ``indices`` hold one entry per example in dataset order:
    the argmax class, the true label and the example's position in its split.
    """
    import time

    t0 = time.perf_counter()
    logits = model.predict(ds.x, batch_size=batch_size, progress=progress)
    pred = logits.argmax(1)
    return {
        "model": model.name,
        "weights": model.weights,
        "dataset": ds.name,
        "split": ds.split,
        "source": ds.source,
        "n": len(ds),
        "accuracy": float((pred == ds.y).mean()),
        "seconds": time.perf_counter() - t0,
        "predictions": [int(c) for c in pred],
        "labels": [int(c) for c in ds.y],
        "indices": [int(i) for i in ds.indices],
    }
