"""Behaviour of the Lin et al. attack on the shared real models, 50 images each.

At the defaults (Algorithm 1 with the released loss scale; the paper's ε = 4/255,
α = 1/255, 10 I-FGSM steps, a = 0.1, τ = 0.3, λ = 1e-2, 100 SGD steps) the attack fools
ResNet-20 on CIFAR-10 with a few tens of elements at most. On MNIST the box of Eq. (22),
Ω = min(x/ε, (1 - x)/ε), is zero at every pixel at 0 or 1, i.e. the whole background and
the saturated strokes, so only anti-aliased edge pixels may move (experiments/RESULTS.md
has the rates). There the tests pin that property, and check the attack with the
directional box (Ω = room along sign(δ), which satisfies Proposition 2 as well).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import data, models
from sparsejax.attacks import SparseL0Config, sparse_l0
from tests.helpers import XLA_DEFAULT

pytestmark = [pytest.mark.slow, pytest.mark.shared]

CLEAN = "weights/mnist/advertorch_mnist_lenet5_clntrained.pt"
ADV = "weights/mnist/advertorch_mnist_lenet5_advtrained.pt"


def _run(assets, name, weights, dataset, config):
    model = models.load(name, assets / weights)
    ds = data.load_dataset(dataset, n=50)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    r = jax.jit(sparse_l0, compiler_options=XLA_DEFAULT)(model.logits_fn, x, y, config)
    ok = np.asarray(r.clean_pred) == ds.y
    rate = float(np.asarray(r.success)[ok].mean())
    succ = np.asarray(r.success)
    med = np.median(np.asarray(r.l0_elements)[succ]) if succ.any() else None
    print(
        f"\n[behaviour] sparse-l0 {name} {weights.split('/')[-1]} box={config.box}: "
        f"success {rate:.3f}, median l0 {med} elements"
    )
    assert bool(jnp.all((r.x_adv >= 0) & (r.x_adv <= 1)))
    return ds, r, rate


def test_resnet20_defaults_are_sparse(assets):
    _, r, rate = _run(
        assets,
        "resnet20-cifar10",
        "weights/cifar10/resnet20-12fca82f.th",
        "cifar10",
        SparseL0Config(),
    )
    assert rate >= 0.95
    assert np.median(np.asarray(r.l0_elements)[np.asarray(r.success)]) <= 40


# The default's loss scale β/λ = 1e4 leaves the clean LeNet-5's cross-entropy steps short of
# the threshold τ/ε (RESULTS.md); β = 1e3 clears it. The PGD-trained one needs hundreds of
# elements, which Algorithm 1's threshold does not keep: Eq. (20) with a free w does.
DIRECTIONAL = {
    "clean": (CLEAN, SparseL0Config(box="directional", beta=1e3)),
    "pgd": (ADV, SparseL0Config(box="directional", update="eq20", loss_scale="paper")),
}


@pytest.mark.parametrize("which,floor", [("clean", 0.95), ("pgd", 0.85)])
def test_lenet5_directional_box(assets, which, floor):
    weights, config = DIRECTIONAL[which]
    _, _, rate = _run(assets, "lenet5-mnist", weights, "mnist", config)
    assert rate >= floor


def test_lenet5_paper_box_never_moves_background_or_saturated_pixels(assets):
    ds, r, rate = _run(assets, "lenet5-mnist", CLEAN, "mnist", SparseL0Config())
    changed = np.asarray(r.x_adv) != ds.x
    assert not np.any(changed & ((ds.x == 0) | (ds.x == 1)))
    assert rate < 0.5  # the limitation documented above
