"""Why the default loss scale of the Lin et al. attack fits ResNet-20 and not the LeNet-5:
how many elements' first Algorithm-1 step clears the threshold τ/ε.

COMMAND: .venv/bin/python experiments/sparse_l0_gradients.py [--n 50]
Prints, per model, the median over images of: the median |∂CE/∂x| at the clean image
(towards y_adv), and the number of elements j whose step lr · (β/λ) · |∂J/∂w_j| at the first
step (w = w_init everywhere, x + w ⊙ δ) exceeds τ/ε, and the same for ten times that step
(the limit momentum 0.9 reaches on a steady gradient). About a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import data, models
from sparsejax.attacks import SparseL0Config
from sparsejax.attacks._sparse_l0 import ifgsm
from sparsejax.attacks.engine import Classifier
from sparsejax.attacks.losses import cross_entropy, strongest_other

MODELS = [
    ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10"),
    ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_clntrained.pt", "mnist"),
    ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_advtrained.pt", "mnist"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    c = SparseL0Config()
    assets = data.require_assets()
    for name, weights, dataset in MODELS:
        model = models.load(name, assets / weights)
        ds = data.load_dataset(dataset, n=args.n)
        f = Classifier(model.logits_fn, ds.x.shape[1:], jnp.float32)

        def one(x, y, f=f):
            delta = ifgsm(f, x, y, c.epsilon, c.alpha, c.fgsm_steps, 0.0, 1.0, False)
            y_adv = strongest_other(f.logits(x + delta), y)
            ce = lambda v: cross_entropy(f.logits(x + v * delta), y_adv)
            g = jax.grad(ce)(jnp.full_like(x, c.w_init))
            step = c.learning_rate * (c.beta / c.lambda_) * jnp.abs(g)
            g_x = jax.grad(lambda z: cross_entropy(f.logits(z), y_adv))(x)
            threshold = c.tau / c.epsilon
            return (
                jnp.median(jnp.abs(g_x)),
                jnp.sum(step > threshold),
                jnp.sum(10 * step > threshold),
            )

        med, first, limit = jax.jit(jax.vmap(one))(jnp.asarray(ds.x), jnp.asarray(ds.y))
        print(
            f"{name} {weights.split('/')[-1]}: median |dCE/dx| {np.median(med):.3g}; elements "
            f"whose first step clears tau/eps: {np.median(first):g}; at 10x: {np.median(limit):g}",
            flush=True,
        )


if __name__ == "__main__":
    main()
