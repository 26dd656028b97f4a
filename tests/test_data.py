"""Datasets: formats, conversions, deterministic subsets, the tfds path, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from sparsejax import data
from sparsejax.errors import DatasetUnavailableError, SparsejaxError, UnknownNameError
from tests.helpers import write_idx


def _mnist_dir(tmp_path, n=7, gz=True):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", x)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", y)
    return x, y


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    x, y = _mnist_dir(tmp_path, gz=gz)
    ds = data.load_dataset("mnist", data_dir=tmp_path, use_tfds=False)
    assert ds.x.dtype == np.float32 and ds.x.shape == (7, 28, 28, 1)
    np.testing.assert_array_equal(ds.x[..., 0], x.astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.y.dtype == np.int32
    assert ds.source.startswith("idx:")


def test_subsets_are_consecutive_and_deterministic(tmp_path):
    _mnist_dir(tmp_path, n=10)
    full = data.load_dataset("mnist", data_dir=tmp_path, use_tfds=False)
    part = data.load_dataset("mnist", data_dir=tmp_path, use_tfds=False, n=3, offset=4)
    np.testing.assert_array_equal(part.x, full.x[4:7])
    np.testing.assert_array_equal(part.indices, [4, 5, 6])
    with pytest.raises(SparsejaxError, match="has 10 examples; asked for 8 from offset 4"):
        data.load_dataset("mnist", data_dir=tmp_path, use_tfds=False, n=8, offset=4)
    with pytest.raises(SparsejaxError, match="offset 10 is past its 10 examples"):
        data.load_dataset("mnist", data_dir=tmp_path, use_tfds=False, offset=10)


def test_bad_idx_files(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04rest")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(SparsejaxError, match="not an IDX file"):
        data.load_dataset("mnist", data_dir=tmp_path, use_tfds=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(SparsejaxError, match="IDX header says"):
        data.read_idx(tmp_path / "t10k-images-idx3-ubyte")


def test_digits_split_is_fixed_and_disjoint():
    tr, te = data.load_dataset("digits", split="train"), data.load_dataset("digits")
    assert (len(tr), len(te)) == (1438, 359)
    assert tr.x.shape[1:] == (8, 8, 1) and 0 <= tr.x.min() and tr.x.max() <= 1
    flat = lambda d: {a.tobytes() for a in d.x}
    # a few digits images are exact duplicates in scikit-learn's set; the split is by index
    assert len(flat(tr) & flat(te)) <= 3
    again = data.load_dataset("digits")
    np.testing.assert_array_equal(again.x, te.x)
    assert set(np.unique(te.y)) == set(range(10))


def test_npz_sources(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (5, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(5))
    ds = data.load_dataset(f"npz:{tmp_path / 'a.npz'}", n=2, offset=1)
    assert ds.x.shape == (2, 6, 6, 1) and ds.num_classes == 5
    np.testing.assert_array_equal(ds.y, [1, 2])

    np.savez(tmp_path / "b.npz", x=x.astype(np.float32) * 2.0, y=np.arange(5))
    with pytest.raises(SparsejaxError, match=r"float images must lie in \[0, 1\]"):
        data.load_dataset(f"npz:{tmp_path / 'b.npz'}")
    np.savez(tmp_path / "c.npz", x=x)
    with pytest.raises(SparsejaxError, match=r"missing array\(s\) \['y'\]"):
        data.load_dataset(f"npz:{tmp_path / 'c.npz'}")
    np.savez(tmp_path / "d.npz", x=x.astype(np.int16), y=np.arange(5))
    with pytest.raises(SparsejaxError, match="dtype must be uint8 or float"):
        data.load_dataset(f"npz:{tmp_path / 'd.npz'}")
    np.savez(tmp_path / "e.npz", x=x, y=np.array([0, 1, 2, 3, 4]), class_names=np.array(["a", "b"]))
    with pytest.raises(SparsejaxError, match=r"labels must lie in \[0, 1\]"):
        data.load_dataset(f"npz:{tmp_path / 'e.npz'}")
    with pytest.raises(SparsejaxError, match="no such file"):
        data.load_dataset(f"npz:{tmp_path / 'missing.npz'}")
    (tmp_path / "f.npz").write_bytes(b"garbage")
    with pytest.raises(SparsejaxError, match="not an .npz archive"):
        data.load_dataset(f"npz:{tmp_path / 'f.npz'}")


def test_unknown_names_and_paths(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown dataset 'cifar100'"):
        data.load_dataset("cifar100")
    with pytest.raises(SparsejaxError, match="no such directory"):
        data.load_dataset("mnist", data_dir=tmp_path / "nope")
    with pytest.raises(SparsejaxError, match="unknown split 'val'"):
        data.load_dataset("mnist", split="val")


def test_unavailable_dataset_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "assets_dir", lambda: None)
    with pytest.raises(DatasetUnavailableError) as e:
        data.load_dataset("cifar10", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "tfds: tensorflow-datasets has no prepared copy" in msg
    assert "cannot download without network" in msg
    assert "local files: no CIFAR-10 python batches" in msg


def test_require_assets_names_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "assets_dir", lambda: None)
    with pytest.raises(SparsejaxError, match="SPARSEJAX_ASSETS"):
        data.require_assets()
    monkeypatch.setattr(data, "assets_dir", lambda: tmp_path)
    assert data.require_assets() == tmp_path


def test_cifar10_python_batches(tmp_path):
    import pickle

    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": raw, b"labels": [3, 8, 8, 0]}, f)
    ds = data.load_dataset("cifar10", data_dir=tmp_path, use_tfds=False)
    assert ds.x.shape == (4, 32, 32, 3)
    # CIFAR rows are channel-major: the first 1024 bytes are the red plane.
    np.testing.assert_array_equal(ds.x[0, :, :, 0].ravel() * 255, raw[0, :1024].astype(np.float32))
    np.testing.assert_array_equal(ds.y, [3, 8, 8, 0])


def test_tfds_path_serves_prepared_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        full = data.load_dataset("mnist", data_dir=tmp_path)
        part = data.load_dataset("mnist", data_dir=tmp_path, n=4, offset=3)
    assert full.source.startswith("tfds:mnist") and len(full) == 12
    assert full.x.dtype == np.float32 and full.x.shape == (12, 28, 28, 1)
    assert 0 <= full.x.min() and full.x.max() <= 1 and full.x.max() > 0
    np.testing.assert_array_equal(part.x, full.x[3:7])
    np.testing.assert_array_equal(part.y, full.y[3:7])


@pytest.mark.shared
def test_real_mnist_from_shared_assets(assets):
    ds = data.load_dataset("mnist", data_dir=assets / "data" / "mnist", use_tfds=False)
    assert len(ds) == 10000 and ds.x.shape[1:] == (28, 28, 1)
    np.testing.assert_array_equal(ds.y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])  # the official order


@pytest.mark.shared
def test_real_cifar10_from_shared_assets(assets):
    ds = data.load_dataset("cifar10", use_tfds=False)
    assert len(ds) == 500 and ds.x.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(ds.y[:10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])


def test_real_fashion_mnist_from_debian():
    if not data.FASHION_MNIST_DEBIAN_DIR.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed on this machine")
    te = data.load_dataset("fashion_mnist", use_tfds=False)
    tr = data.load_dataset("fashion_mnist", split="train", n=100, use_tfds=False)
    assert len(te) == 10000 and te.x.shape[1:] == (28, 28, 1) and len(tr) == 100
    assert np.bincount(te.y).tolist() == [1000] * 10
