"""Behaviour on the shared real models: SparseFool leaves (almost) nothing correctly classified.

Settings: λ = 1 on the clean LeNet-5 (the paper's MNIST value), λ = 3 on the PGD-trained
LeNet-5 and on ResNet-20 (the paper's CIFAR-10 value). max_iter is the released default 20,
except 50 for ResNet-20, as the released demo scripts pass: with 20, one of these 50 CIFAR-10
images is still correctly classified (measured; 2% adversarial accuracy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import data, models
from sparsejax.attacks import SparseFoolConfig, sparsefool
from tests.helpers import XLA_DEFAULT

pytestmark = [pytest.mark.slow, pytest.mark.shared]

CASES = [
    ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_clntrained.pt", "mnist", 1.0, 20),
    ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_advtrained.pt", "mnist", 3.0, 20),
    ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10", 3.0, 50),
]


@pytest.mark.parametrize(
    "name,weights,dataset,lam,max_iter", CASES, ids=["lenet5-clean", "lenet5-adv", "resnet20"]
)
def test_adversarial_accuracy_at_most_one_percent(assets, name, weights, dataset, lam, max_iter):
    model = models.load(name, assets / weights)
    ds = data.load_dataset(dataset, n=50)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    config = SparseFoolConfig(lambda_=lam, max_iter=max_iter)
    r = jax.jit(sparsefool, compiler_options=XLA_DEFAULT)(model.logits_fn, x, y, config)
    adv_pred = np.asarray(jnp.argmax(model.logits_fn(r.x_adv), axis=1))
    adv_acc = float((adv_pred == ds.y).mean())
    print(
        f"\n[behaviour] {name} {weights.split('/')[-1]} lambda={lam}: adversarial accuracy "
        f"{adv_acc:.3f}, median l0 {np.median(np.asarray(r.l0_pixels)[np.asarray(r.success)])}"
        " pixels"
    )
    assert adv_acc <= 0.01
    assert bool(jnp.all((r.x_adv >= 0) & (r.x_adv <= 1)))
