"""SparseFool against an independent batch-1 PyTorch implementation of Algorithms 1-2
(``benchmarks/torch_sparsefool.py``, written from the paper and the released code's
conventions), image by image, on the shared real models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import data, models
from sparsejax.attacks import SparseFoolConfig, sparsefool
from tests.helpers import XLA_DEFAULT

torch = pytest.importorskip("torch", reason="needs the port extra (torch)")
pytestmark = [pytest.mark.slow, pytest.mark.shared]

CASES = [
    ("lenet5-mnist", "weights/mnist/advertorch_mnist_lenet5_clntrained.pt", "mnist", 1.0),
    ("resnet20-cifar10", "weights/cifar10/resnet20-12fca82f.th", "cifar10", 3.0),
]


def _torch_model(name, path):
    from tests.torch_reference import CifarResNet, LeNet5

    sd = torch.load(path, map_location="cpu", weights_only=True)
    if name.startswith("resnet"):
        net = CifarResNet(3)
        sd = {k.removeprefix("module."): v for k, v in sd["state_dict"].items()}
    else:
        net = LeNet5()
    net.load_state_dict(sd)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.mark.parametrize("name,weights,dataset,lam", CASES, ids=["lenet5", "resnet20"])
def test_same_path_as_the_pytorch_implementation(assets, name, weights, dataset, lam):
    from benchmarks.torch_sparsefool import sparsefool as torch_sparsefool

    torch.set_num_threads(2)
    model = models.load(name, assets / weights)
    net = _torch_model(name, assets / weights)
    ds = data.load_dataset(dataset, n=10)
    # XLA's default build: at LLVM's cheapest level one ResNet-20 image takes another path.
    r = jax.jit(sparsefool, compiler_options=XLA_DEFAULT)(
        model.logits_fn, jnp.asarray(ds.x), jnp.asarray(ds.y), SparseFoolConfig(lambda_=lam)
    )
    same = 0
    for i in range(len(ds)):
        xi = torch.from_numpy(ds.x[i : i + 1].transpose(0, 3, 1, 2).copy())
        xa, loops, _ = torch_sparsefool(
            xi, net, int(ds.y[i]), torch.zeros_like(xi), torch.ones_like(xi), lambda_=lam
        )
        ref = xa.numpy().transpose(0, 2, 3, 1)[0]
        mine = np.asarray(r.x_adv[i])
        changed = mine != ds.x[i]
        same += int(
            np.array_equal(changed, ref != ds.x[i])
            and np.max(np.abs(mine - ref)) < 1e-4
            and int(r.iterations[i]) == int(loops)
        )
    # Float rounding at a ReLU kink can send a DeepFool step to another linear piece
    # (README, "Independent check"); at most one image of ten may take another path.
    print(f"\n[torch parity] {name}: {same}/10 images on the same path")
    assert same >= 9
