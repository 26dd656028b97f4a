"""Porting PyTorch checkpoints: logit parity with independent PyTorch models (random weights,
non-identity BatchNorm), wrappers, and one-line errors for checkpoints that do not fit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="porting tests need torch (pip install '.[port]')")

from sparsejax import models  # noqa: E402
from sparsejax.errors import CheckpointError  # noqa: E402
from sparsejax.models import checkpoint  # noqa: E402
from tests import torch_reference as ref  # noqa: E402

ATOL = 1e-4  # SPEC §4: ported logits within 1e-4 of PyTorch on CPU


def _torch_model(name: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if name.startswith("resnet"):
        depth = int(name[len("resnet") :].split("-")[0])
        net = ref.CifarResNet((depth - 2) // 6)
        ref.randomize_batchnorm(net, g)
    elif name == "lenet5-mnist":
        net = ref.LeNet5()
    elif name == "lenet5-digits":
        net = ref.LeNet5(spatial=8)
    elif name == "smallcnn-mnist":
        net = ref.SmallCNN()
    else:
        raise ValueError(name)
    return net.eval()


def _parity(net, model, x_nhwc: np.ndarray):
    with torch.no_grad():
        want = net(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())).numpy()
    got = model.predict(x_nhwc)
    return want, got


@pytest.mark.parametrize(
    "name",
    [
        "lenet5-mnist",
        "lenet5-digits",
        "smallcnn-mnist",
        "resnet20-cifar10",
        "resnet32-cifar10",
        "resnet44-cifar10",
        "resnet56-cifar10",
        "resnet110-cifar10",
    ],
)
def test_random_weight_parity(name, tmp_path, rng):
    net = _torch_model(name, seed=1)
    state = net.state_dict()
    if name.startswith("resnet"):  # the shared checkpoint's wrapper and prefix
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "best_prec1": 0.0}
    path = tmp_path / "w.pt"
    torch.save(state, path)
    model = models.load(name, path)
    x = rng.uniform(0, 1, (6,) + model.input_shape).astype(np.float32)
    want, got = _parity(net, model, x)
    assert got.shape == (6, 10)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_batchnorm_statistics_are_not_identity():
    # Guards the parity test above: with identity BN a wrong mean/var mapping would pass.
    net = _torch_model("resnet20-cifar10", seed=1)
    bn = net.layer2[0].bn1
    assert float(bn.running_mean.abs().max()) > 0.1
    assert float((bn.running_var - 1).abs().max()) > 0.1


def test_nchw_flatten_reordering_matters(tmp_path, rng):
    # Without the NCHW -> NHWC row permutation of linear1 the logits differ: the test can fail.
    net = _torch_model("lenet5-mnist", seed=2)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    spec = models.get_spec("lenet5-mnist")
    from sparsejax.models import port

    good = port.state_dict_to_variables(sd, spec)
    naive = {
        **good,
        "params": {
            **good["params"],
            "linear1": {"kernel": sd["linear1.weight"].T, "bias": sd["linear1.bias"]},
        },
    }
    x = rng.uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    ok = models.Model(spec, good, "t").predict(x)
    bad = models.Model(spec, naive, "t").predict(x)
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(ok, want, atol=ATOL)
    assert np.abs(bad - want).max() > 1e-2


def test_flax_checkpoint_roundtrip_loads_without_torch(tmp_path):
    net = _torch_model("smallcnn-mnist", seed=3)
    pt = tmp_path / "w.pt"
    torch.save(net.state_dict(), pt)
    model = models.load("smallcnn-mnist", pt)
    out = tmp_path / "w.msgpack"
    checkpoint.save(out, model.name, model.variables, {"source": str(pt)})
    assert checkpoint.sniff(out) == "flax"
    x = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", model.predict(x))
    # A fresh interpreter in which `import torch` fails.
    code = textwrap.dedent(f"""
        import sys; sys.modules['torch'] = None
        import numpy as np
        from sparsejax import models
        m = models.load('smallcnn-mnist', {str(out)!r})
        got = m.predict(np.load({str(tmp_path / "x.npy")!r}))
        np.testing.assert_array_equal(got, np.load({str(tmp_path / "want.npy")!r}))
        assert 'torch' not in {{k for k, v in sys.modules.items() if v is not None}}
        print('ok')
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_architecture_mismatch_lists_missing_and_unexpected_keys(tmp_path):
    torch.save(_torch_model("lenet5-mnist", 0).state_dict(), tmp_path / "lenet.pt")
    with pytest.raises(CheckpointError) as e:
        models.load("smallcnn-mnist", tmp_path / "lenet.pt")
    msg = str(e.value)
    assert "\n" not in msg
    assert "missing key(s)" in msg and "feature_extractor.conv1.weight" in msg
    assert "unexpected key(s)" in msg and "linear1.weight" in msg


def test_depth_mismatch_lists_missing_blocks(tmp_path):
    torch.save(_torch_model("resnet20-cifar10", 0).state_dict(), tmp_path / "r20.pt")
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \[layer1\.3\.bn1"):
        models.load("resnet32-cifar10", tmp_path / "r20.pt")


def test_shape_mismatch_is_named(tmp_path):
    torch.save(_torch_model("lenet5-mnist", 0).state_dict(), tmp_path / "lenet.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch: linear1\.weight \(200, 3136\)"):
        models.load("lenet5-digits", tmp_path / "lenet.pt")


def test_flax_checkpoint_for_another_model_is_refused(tmp_path):
    m = models.create("lenet5-digits")
    checkpoint.save(tmp_path / "d.msgpack", m.name, m.variables)
    with pytest.raises(
        CheckpointError, match="holds a 'lenet5-digits' checkpoint, not 'lenet5-mnist'"
    ):
        models.load("lenet5-mnist", tmp_path / "d.msgpack")


def test_tampered_flax_checkpoint_is_refused(tmp_path):
    m = models.create("lenet5-digits")
    v = {"params": dict(m.variables["params"])}
    del v["params"]["linear2"]
    checkpoint.save(tmp_path / "d.msgpack", m.name, v)
    with pytest.raises(
        CheckpointError, match=r"2 missing key\(s\) \[params/linear2/bias, params/linear2/kernel\]"
    ):
        models.load("lenet5-digits", tmp_path / "d.msgpack")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"not a checkpoint at all", "not a sparsejax Flax checkpoint"),
        (b"\x80\x02garbage", "torch.load failed"),
    ],
)
def test_unreadable_weights_files(tmp_path, content, match):
    p = tmp_path / "bad.bin"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        models.load("lenet5-mnist", p)


def test_missing_weights_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        models.load("lenet5-mnist", tmp_path / "nope.pt")
