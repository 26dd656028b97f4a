"""Parity of the ported real checkpoints against the independent PyTorch models (SPEC §4).

ResNet-20 on the 500 shared CIFAR-10 test images, both LeNet-5s on all 10,000 MNIST test
images: identical predictions and max |logit difference| <= 1e-4. Run with ``-s`` to see
the measured numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity needs torch (pip install '.[port]')")

from sparsejax import data, models  # noqa: E402
from tests import torch_reference as ref  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.shared]

CASES = [
    # name, weights, dataset, n, torch model, expected accuracy range
    (
        "resnet20-cifar10",
        "weights/cifar10/resnet20-12fca82f.th",
        "cifar10",
        500,
        lambda: ref.CifarResNet(3),
        (0.89, 0.94),
    ),
    (
        "lenet5-mnist",
        "weights/mnist/advertorch_mnist_lenet5_clntrained.pt",
        "mnist",
        10000,
        ref.LeNet5,
        (0.985, 1.0),
    ),
    (
        "lenet5-mnist",
        "weights/mnist/advertorch_mnist_lenet5_advtrained.pt",
        "mnist",
        10000,
        ref.LeNet5,
        (0.98, 1.0),
    ),
]


@pytest.mark.parametrize(
    "name,weights,dataset,n,make,acc_range", CASES, ids=["resnet20", "lenet5-clean", "lenet5-adv"]
)
def test_real_checkpoint_parity(assets, name, weights, dataset, n, make, acc_range):
    path = assets / weights
    model = models.load(name, path)
    ds = data.load_dataset(dataset, n=n)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    net = make()
    net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()}, strict=True)
    net.eval()
    with torch.no_grad():
        want = net(torch.from_numpy(ds.x.transpose(0, 3, 1, 2).copy())).numpy()
    got = model.predict(ds.x)
    diff = float(np.abs(got - want).max())
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    acc = float((got.argmax(1) == ds.y).mean())
    acc_torch = float((want.argmax(1) == ds.y).mean())
    print(
        f"\n[parity] {name} {path.name}: n={n} max|dlogit|={diff:.2e} "
        f"prediction agreement={agree:.4f} accuracy={acc:.4f} (torch {acc_torch:.4f})"
    )
    assert diff <= 1e-4
    assert agree == 1.0
    assert acc_range[0] <= acc <= acc_range[1]
