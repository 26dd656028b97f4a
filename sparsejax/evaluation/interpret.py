"""Which perturbed pixels obscure the true class and which lead to the adversarial one
(Lin et al. §5.3's "obscuring" and "leading" noise), from saliency maps.

Lin et al. draw boxes by eye on Grad-CAM maps. The rule here is stated and computed: the
saliency of class c at image x is s_c(x)[h, w] = Σ_channels |∂z_c/∂x[h, w, ·]| (the plain
input-gradient map of Simonyan et al.; no Grad-CAM, which needs a chosen feature layer per
architecture). A perturbed pixel is

- **obscuring** if it is among the top ``top`` fraction of pixels of s_y(x), the true
  class's evidence on the clean image;
- **leading** if it is among the top ``top`` fraction of s_a(x_adv), the adversarial
  class's evidence on the adversarial image;
- both, or neither, otherwise (each pixel is counted once, in one of the four).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import plots

CATEGORIES = ("obscuring", "leading", "both", "neither")


def saliency(logits_fn, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """float32[N, H, W]: Σ_channels |∂z_c/∂x| of each image's class ``classes[i]``."""

    def one(xi, c):
        g = jax.grad(lambda v: logits_fn(v[None])[0, c])(xi)
        return jnp.sum(jnp.abs(g), axis=-1)

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(x), jnp.asarray(classes)))


def _top(s: np.ndarray, top: float) -> np.ndarray:
    """bool[N, H, W]: the ``top`` fraction of each map's pixels (at least one), ties broken
    by position (a stable sort)."""
    n, h, w = s.shape
    count = max(1, int(round(top * h * w)))
    order = np.argsort(-s.reshape(n, -1), axis=1, kind="stable")[:, :count]
    mask = np.zeros((n, h * w), bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask.reshape(n, h, w)


def classify_noise(
    logits_fn, x: np.ndarray, x_adv: np.ndarray, y: np.ndarray, top: float = 0.2
) -> dict:
    """The module's rule on every image: per-image pixel counts of each category, the
    saliency maps and the category map (int8[N, H, W]: 0 obscuring, 1 leading, 2 both,
    3 neither, -1 unperturbed), the fractions over all perturbed pixels, and their chance
    level (each category's share of all pixels of the same images)."""
    if not 0 < top <= 1:
        raise ValueError(f"top must be a fraction in (0, 1], got {top}")
    adv_class = np.asarray(jnp.argmax(logits_fn(jnp.asarray(x_adv)), axis=-1))
    clean_map = saliency(logits_fn, x, y)
    adv_map = saliency(logits_fn, x_adv, adv_class)
    perturbed = np.any(x_adv != x, axis=-1)
    obscuring, leading = _top(clean_map, top), _top(adv_map, top)
    category = np.full(perturbed.shape, -1, np.int8)
    category[perturbed & obscuring & ~leading] = 0
    category[perturbed & leading & ~obscuring] = 1
    category[perturbed & obscuring & leading] = 2
    category[perturbed & ~obscuring & ~leading] = 3
    counts = {c: (category == i).sum((1, 2)) for i, c in enumerate(CATEGORIES)}
    total = int(perturbed.sum())
    # The chance level: the share of each category among all pixels, weighted as the
    # perturbed pixels are (what pixels placed at random on these images would give).
    every = [obscuring & ~leading, leading & ~obscuring, obscuring & leading]
    every.append(~obscuring & ~leading)
    weight = perturbed.sum((1, 2)) / max(total, 1)
    area = {
        c: float(np.sum(weight * m.mean((1, 2)))) for c, m in zip(CATEGORIES, every, strict=True)
    }
    return {
        "top": top,
        "adv_class": adv_class,
        "counts": counts,
        "fractions": {c: (float(v.sum() / total) if total else None) for c, v in counts.items()},
        "chance": area,
        "clean_saliency": clean_map,
        "adv_saliency": adv_map,
        "category": category,
    }


def figure(x, x_adv, y, noise: dict, path: Path, class_names=None, n: int = 4) -> Path:
    """Per row: clean image, the true class's saliency, the adversarial image, the
    adversarial class's saliency, and the perturbed pixels by category (red obscuring,
    green leading, yellow both, grey neither)."""
    plt = plots._plt()
    name = (lambda c: class_names[c]) if class_names is not None else str
    colours = np.array([[0.85, 0.1, 0.1], [0.1, 0.7, 0.1], [0.95, 0.85, 0.1], [0.6, 0.6, 0.6]])
    n = min(n, len(x))
    fig, axes = plt.subplots(n, 5, figsize=(10.0, 2.2 * n), squeeze=False)
    for i in range(n):
        plots._show(axes[i, 0], x[i])
        axes[i, 0].set_title(f"clean: {name(int(y[i]))}", fontsize=8)
        axes[i, 1].imshow(noise["clean_saliency"][i], cmap="inferno")
        axes[i, 1].set_title("saliency, true class", fontsize=8)
        plots._show(axes[i, 2], x_adv[i])
        axes[i, 2].set_title(f"adversarial: {name(int(noise['adv_class'][i]))}", fontsize=8)
        axes[i, 3].imshow(noise["adv_saliency"][i], cmap="inferno")
        axes[i, 3].set_title("saliency, adversarial class", fontsize=8)
        cat = noise["category"][i]
        img = np.ones((*cat.shape, 3))
        img[cat >= 0] = colours[cat[cat >= 0]]
        axes[i, 4].imshow(img, interpolation="nearest")
        c = {k: int(v[i]) for k, v in noise["counts"].items()}
        axes[i, 4].set_title(
            f"obsc. {c['obscuring']}, lead. {c['leading']}, both {c['both']}, "
            f"neither {c['neither']}",
            fontsize=7,
        )
        for ax in axes[i, 1:]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        f"perturbed pixels in the top {100 * noise['top']:.0f}% of each saliency map", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
