"""The torchvision ImageNet architectures against torchvision's own modules (SPEC §4).

CI has no torchvision, so the reference is a committed fixture written by
``tests/fixtures/make_torchvision_fixtures.py`` with torchvision itself: per architecture,
its state-dict keys and shapes, and its logits, under seeded random weights (non-identity
BatchNorm), on two real ImageNet validation images (uint8 crops of torchvision's eval
transforms, stored) and one seeded random image (regenerated). Here the same weights are
regenerated from the keys and the seed, ported by the registry's path
(``sparsejax.models.port.state_dict_to_variables``), and the logits of the three images,
in one batch, must be torchvision's: max |Δ| <= 1e-4 x max(1, max |logit|), the same
top-1 per image. The port itself checks that the keys and shapes torchvision lists are
exactly the Flax module's.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from sparsejax import models
from sparsejax.errors import CheckpointError
from sparsejax.models.port import state_dict_to_variables
from tests.reference.seeded_torchvision_weights import (
    fingerprint,
    random_image,
    seeded_state_dict,
)

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
ARCHS = [
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet50",
    "resnet101",
    "resnet152",
    "densenet161",
    "inception_v3",
    "mobilenet_v2",
]
RTOL = 1e-4  # SPEC §4: 1e-4, relative for logits above 1


@pytest.fixture(scope="module")
def fixture():
    with gzip.open(FIXTURES / "torchvision_imagenet.json.gz", "rt", encoding="utf-8") as f:
        meta = json.load(f)
    with np.load(FIXTURES / "torchvision_imagenet.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def _state_dict(meta, name):
    arch = meta["architectures"][name]
    kw = {"bn_weight": tuple(arch["bn_weight"])} if arch["bn_weight"] else {}
    sd = seeded_state_dict(arch["keys"], meta["seed"], **kw)
    # Another NumPy stream would make other weights: say so, rather than fail on the logits.
    assert fingerprint(sd) == arch["fingerprint"], "the seeded weights differ from the fixture's"
    return sd


def _inputs(meta, arrays, side):
    """float32[3, side, side, 3] in [0, 1]: the two real crops, then the random image."""
    real = arrays[f"crops_{side}"].astype(np.float32) / np.float32(255)
    return np.concatenate([real, random_image(meta["seed"], side)[None]])


def test_fixture_is_torchvisions_and_small(fixture):
    meta, arrays = fixture
    assert set(meta["architectures"]) == set(ARCHS)
    assert meta["torchvision"].split(".")[0] == "0" and meta["torch"]
    assert arrays["crops_224"].shape == (2, 224, 224, 3) and arrays["crops_224"].dtype == np.uint8
    assert arrays["crops_299"].shape == (2, 299, 299, 3)
    size = sum(p.stat().st_size for p in FIXTURES.glob("torchvision_imagenet.*"))
    assert size < 2**20


@pytest.mark.parametrize("name", ARCHS)
def test_logits_match_torchvision(name, fixture):
    meta, arrays = fixture
    spec = models.get_spec(name)
    side = meta["architectures"][name]["side"]
    assert spec.input_shape == (side, side, 3) and spec.num_classes == 1000
    sd = _state_dict(meta, name)
    variables = state_dict_to_variables(sd, spec, source=f"seeded {name}")
    if name.startswith("vgg"):  # classifier.0's rows follow torchvision's NCHW flatten
        kernel, w = variables["params"]["classifier.0"]["kernel"], sd["classifier.0.weight"]
        c, h, x = 17, 3, 5  # torch column c*49 + h*7 + x is Flax row (h*7 + x)*512 + c
        np.testing.assert_array_equal(kernel[(h * 7 + x) * 512 + c], w[:, c * 49 + h * 7 + x])
    del sd
    want = arrays[f"logits_{name}"]
    got = models.Model(spec, variables, weights="seeded").predict(_inputs(meta, arrays, side))
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= RTOL * scale, f"{name}: max |Δlogit| {err:.3g} > {RTOL * scale:.3g}"
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    # The test's power: the three images' logits differ by far more than the tolerance, so
    # a wrong input path (normalization, resize, layout) cannot pass by accident.
    spread = min(np.abs(want[i] - want[j]).max() for i, j in ((0, 1), (0, 2), (1, 2)))
    assert spread > 100 * RTOL * scale, f"{name}: the inputs barely move the logits"


def test_inception_drops_only_the_auxiliary_classifier(fixture):
    meta, _ = fixture
    spec = models.get_spec("inception_v3")
    sd = _state_dict(meta, "inception_v3")
    aux = [k for k in sd if k.startswith("AuxLogits.")]
    assert len(aux) == 12  # conv0, conv1 (a conv and 4 BN tensors each), fc weight and bias
    without = {k: v for k, v in sd.items() if not k.startswith("AuxLogits.")}
    a, b = state_dict_to_variables(sd, spec), state_dict_to_variables(without, spec)
    assert a["params"]["fc"]["kernel"].shape == (2048, 1000)
    np.testing.assert_array_equal(a["params"]["fc"]["kernel"], b["params"]["fc"]["kernel"])
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\) \[Mixed_5b\.extra\.weight\]"):
        state_dict_to_variables({**sd, "Mixed_5b.extra.weight": sd["fc.bias"]}, spec)


def test_resnet50_as_resnet101_names_the_missing_blocks(fixture):
    meta, _ = fixture
    sd = _state_dict(meta, "resnet50")
    with pytest.raises(CheckpointError) as e:
        state_dict_to_variables(sd, models.get_spec("resnet101"), source="resnet50 weights")
    msg = str(e.value)
    # ResNet-101's stage 3 has blocks 0-22, ResNet-50's 0-5: 17 blocks x 15 tensors.
    assert msg.startswith("resnet50 weights does not fit resnet101: 255 missing key(s) [")
    assert "layer3.10.bn1.bias" in msg and "0 unexpected key(s)" in msg and "\n" not in msg


def test_wrong_shape_is_named(fixture):
    meta, _ = fixture
    sd = _state_dict(meta, "resnet18")
    sd["fc.weight"] = sd["fc.weight"][:10]  # a 10-class head
    with pytest.raises(CheckpointError, match=r"shape mismatch: fc\.weight \(10, 512\)"):
        state_dict_to_variables(sd, models.get_spec("resnet18"))
