"""Host-side inputs of the SAPF extensions (Fan et al., ECCV 2020, §3.4 and §4.3).

* :func:`slic_segments`: SLIC superpixel ids for SAPF-GS (Eq. 16), one int32[H, W] map per
  image, ids 0..m-1. The released code calls ``slic(image, n_segments=150, compactness=10)``
  and indexes its masks by the raw label; scikit-image >= 0.19 numbers labels from 1, which
  makes that code fail (IndexError) — we pass ``start_label=0`` and renumber the labels
  consecutively, so the ids can index ``jax.ops.segment_sum`` directly.
* :func:`visual_weights`: the per-element weights w ∈ [0, 1] of SAPF-VI (Eq. 17, §4.3):
  "uniform" (w = 1), "variance" (w ∝ 1 / var(x_i)) and "variance_mean"
  (w ∝ 1 / (var(x_i)·μ_i)), with μ_i and var(x_i) = sqrt(Σ_j (x_j − μ_i)² / n²) — a standard
  deviation — over the n×n neighbourhood of position i in the same channel, n = 3 (§4.3).

Normalisation to [0, 1] (Eq. 17 requires w ∈ [0, 1]; the paper does not say how). We divide
by the largest raw weight of the image (``normalize="max"``, default): w_i = r_i / max_j r_j,
r_i = 1 / (var(x_i) + eps) (or 1 / (var(x_i)·μ_i + eps)). This keeps the paper's definition
up to one common factor (w_i / w_j = r_i / r_j, the factor being absorbed by λ1), and every
weight stays > 0, so no element's perturbation escapes the ℓ2 term. The released code
instead min–max normalises each channel, (r − min) / (max − min), which sends the most
textured element of every channel to w = 0 (a free perturbation there) and changes the
ratios between channels; it is available as ``normalize="minmax"``. Both use the code's
eps = 1e-4, so a perfectly flat neighbourhood (σ = 0) gets the largest weight, and windows
are truncated at the image border (mean over the pixels inside, as the code's clipped
windows), so the n² of the formula becomes the number of pixels in the window there.
"""

from __future__ import annotations

import numpy as np

from sparsejax.errors import SparsejaxError

WEIGHT_KINDS = ("uniform", "variance", "variance_mean")
NORMALIZATIONS = ("max", "minmax")


def _as_images(x) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], False
    if x.ndim == 4:
        return x, True
    raise SparsejaxError(f"expected an image [H, W, C] or a batch [N, H, W, C], got {x.shape}")


def slic_segments(x, n_segments: int = 150, compactness: float = 10.0, **slic_kwargs) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012) of one image or a batch, ids from 0.

    Args:
      x: float[H, W, C] or [N, H, W, C] in [0, 1] (C = 1 or 3).
      n_segments, compactness: SLIC settings (released code: 150 and 10; the paper uses 350
        regions on ImageNet, §4.3). On grey images (C = 1) the intensities are not converted
        to Lab, so compactness 10 weighs space more than on RGB.
      **slic_kwargs: passed to ``skimage.segmentation.slic``.

    Returns:
      int32[H, W] or [N, H, W]: segment ids 0..m-1 per image (m may differ per image and
      from ``n_segments``); use ``max_segments`` > max id + 1 in
      :class:`~sparsejax.attacks.sapf.SAPFConfig`.
    """
    from skimage.segmentation import slic

    imgs, batched = _as_images(x)
    out = np.empty(imgs.shape[:3], np.int32)
    for i, img in enumerate(imgs):
        img = np.asarray(img, np.float64)
        if img.shape[-1] == 1:
            img, axis = img[..., 0], None
        else:
            axis = -1
        labels = slic(
            img,
            n_segments=n_segments,
            compactness=compactness,
            start_label=0,
            channel_axis=axis,
            **slic_kwargs,
        )
        _, ids = np.unique(labels, return_inverse=True)  # consecutive 0..m-1
        out[i] = ids.reshape(labels.shape)
    return out if batched else out[0]


def local_mean_std(x, size: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation over the size×size window
    around each position, truncated at the border. x: float[N, H, W, C]; returns two
    float64 arrays of the same shape."""
    x = np.asarray(x, np.float64)
    r = size // 2
    pad = ((0, 0), (r, r), (r, r), (0, 0))
    xp = np.pad(x, pad)
    inside = np.pad(np.ones_like(x), pad)
    h, w = x.shape[1:3]
    total = np.zeros_like(x)
    total_sq = np.zeros_like(x)
    count = np.zeros_like(x)
    for dy in range(size):
        for dx in range(size):
            window = (slice(None), slice(dy, dy + h), slice(dx, dx + w), slice(None))
            total += xp[window]
            total_sq += xp[window] ** 2
            count += inside[window]
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    return mean, np.sqrt(var)


def visual_weights(
    x, kind: str = "variance", size: int = 3, eps: float = 1e-4, normalize: str = "max"
) -> np.ndarray:
    """SAPF-VI weights w ∈ [0, 1] (Eq. 17, §4.3), one per element of x.

    Args:
      x: float[H, W, C] or [N, H, W, C] in [0, 1].
      kind: "uniform", "variance" (w ∝ 1/σ) or "variance_mean" (w ∝ 1/(σ·μ)).
      size: the neighbourhood n (paper: 3).
      eps: added to σ (or σ·μ) before inverting (released code: 1e-4).
      normalize: "max" (w = r / max r over the image, default) or "minmax" (per channel,
        the released code). See the module doc.

    Returns:
      float32 array of x's shape, values in [0, 1].
    """
    if kind not in WEIGHT_KINDS:
        raise SparsejaxError(f"visual weights kind must be one of {WEIGHT_KINDS}, got {kind!r}")
    if normalize not in NORMALIZATIONS:
        raise SparsejaxError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if size < 1 or size % 2 == 0:
        raise SparsejaxError(f"neighbourhood size must be odd and >= 1, got {size}")
    imgs, batched = _as_images(x)
    if kind == "uniform":
        w = np.ones(imgs.shape, np.float32)
        return w if batched else w[0]
    mean, std = local_mean_std(imgs, size)
    raw = 1.0 / ((std if kind == "variance" else std * mean) + eps)
    if normalize == "max":
        w = raw / raw.max(axis=(1, 2, 3), keepdims=True)
    else:
        lo = raw.min(axis=(1, 2), keepdims=True)
        span = raw.max(axis=(1, 2), keepdims=True) - lo
        w = np.where(span > 0, (raw - lo) / np.where(span > 0, span, 1.0), 1.0)
    w = np.clip(w, 0.0, 1.0).astype(np.float32)
    return w if batched else w[0]
