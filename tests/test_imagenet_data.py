"""ImageNet data: the three layouts of ``imagenet:DIR``, the preprocessings (torchvision's
arithmetic by hand, torchvision's own transforms through a fixture), one-line errors before
any compilation on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparsejax import cli, data
from sparsejax.errors import SparsejaxError, UnknownNameError
from tests.helpers import count_compilations

FIXTURE = Path(__file__).parent / "fixtures" / "imagenet_preprocessing.npz"
WNIDS = [f"n{i:08d}" for i in range(1000)]  # fake WNIDs, already in sorted order


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)  # lossless: pixel values survive exactly


def _synsets(root: Path) -> None:
    (root / "synset_words.txt").write_text(
        "".join(f"{w} class{i}, synonym\n" for i, w in enumerate(WNIDS))
    )


def _list_dir(tmp_path: Path, n: int = 5, size=(256, 256)) -> tuple[Path, np.ndarray, list]:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, size[1], size[0], 3), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 1000, n)]
    root = tmp_path / "inet"
    for k in range(n):
        _png(root / "images" / f"img_{k}.png", imgs[k])
    (root / "labels.txt").write_text("".join(f"img_{k}.png {labels[k]}\n" for k in range(n)))
    return root, imgs, labels


def test_list_layout_loads_in_file_order_exactly(tmp_path):
    root, imgs, labels = _list_dir(tmp_path)
    ds = data.load_dataset(f"imagenet:{root}", preprocessing="torchvision-256-224")
    assert ds.x.dtype == np.float32 and ds.x.shape == (5, 224, 224, 3)
    # a 256x256 image: Resize(256) keeps it, CenterCrop(224) starts at (16, 16)
    np.testing.assert_array_equal(ds.x, imgs[:, 16:240, 16:240].astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.num_classes == 1000 and ds.class_names is None
    assert "preprocessing torchvision-256-224" in ds.source
    part = data.load_dataset(f"imagenet:{root}", n=2, offset=3, preprocessing="tf-slim-inception")
    assert part.x.shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(part.indices, [3, 4])
    np.testing.assert_array_equal(part.y, labels[3:5])


def test_only_the_requested_images_are_decoded(tmp_path, monkeypatch):
    root, _, _ = _list_dir(tmp_path)
    seen = []
    decode = data._decode
    monkeypatch.setattr(data, "_decode", lambda p: seen.append(p.name) or decode(p))
    data.load_dataset(f"imagenet:{root}", n=2, offset=1, preprocessing="tf-slim-inception")
    assert seen == ["img_1.png", "img_2.png"]


def test_folder_layout_labels_by_sorted_wnid(tmp_path):
    root = tmp_path / "inet"
    rng = np.random.default_rng(1)
    # file names decide the order (ILSVRC2012_val_* is the official order), not the folders
    files = {"ILSVRC2012_val_00000003.JPEG": WNIDS[7], "ILSVRC2012_val_00000001.JPEG": WNIDS[999],
             "ILSVRC2012_val_00000002.JPEG": WNIDS[0]}  # fmt: skip
    for name, wnid in files.items():
        (root / "val" / wnid).mkdir(parents=True)
        img = Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8))
        img.save(root / "val" / wnid / name, format="JPEG")
    with pytest.raises(SparsejaxError, match="3 class folders, not 1000; put the WNID list"):
        data.load_dataset(f"imagenet:{root}", preprocessing="torchvision-342-299")
    _synsets(root)
    ds = data.load_dataset(f"imagenet:{root}", preprocessing="torchvision-342-299")
    assert ds.x.shape == (3, 299, 299, 3)
    np.testing.assert_array_equal(ds.y, [999, 0, 7])
    assert ds.class_names[7] == "class7" and len(ds.class_names) == 1000
    with pytest.raises(SparsejaxError, match="no train/ folder"):
        data.load_dataset(f"imagenet:{root}", split="train", preprocessing="tf-slim-inception")
    (root / "val" / "not_a_wnid").mkdir()
    with pytest.raises(SparsejaxError, match=r"folder\(s\) \['not_a_wnid'\] are not WNIDs"):
        data.load_dataset(f"imagenet:{root}", preprocessing="tf-slim-inception")


def test_tfds_imagenet2012_layout(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    (tmp_path / "imagenet2012").mkdir()
    with tfds.testing.mock_data(num_examples=5):
        full = data.load_dataset(f"imagenet:{tmp_path}", preprocessing="torchvision-256-224")
        part = data.load_dataset(f"imagenet:{tmp_path}", n=2, offset=2,
                                 preprocessing="torchvision-256-224")  # fmt: skip
    assert full.source.startswith("tfds:imagenet2012") and len(full) == 5
    assert full.x.shape == (5, 224, 224, 3) and 0 <= full.y.min() and full.y.max() < 1000
    np.testing.assert_array_equal(part.x, full.x[2:4])
    np.testing.assert_array_equal(part.y, full.y[2:4])


def test_bad_folders_and_arguments_say_what_is_wrong(tmp_path):
    root, _, _ = _list_dir(tmp_path, n=2)
    name = f"imagenet:{root}"
    cases = [
        (lambda: data.check_dataset_name(f"imagenet:{tmp_path / 'nope'}"), "no such directory"),
        (lambda: data.check_dataset_name(f"imagenet:{tmp_path}"), "holds neither images/"),
        (lambda: data.load_dataset(name), "need a preprocessing"),
        (lambda: data.load_dataset("digits", preprocessing="tf-slim-inception"),
         "applies to imagenet:DIR only"),
        (lambda: data.load_dataset(name, preprocessing="bicubic"), "unknown preprocessing"),
        (lambda: data.load_dataset(name, split="train", preprocessing="tf-slim-inception"),
         "one split"),
        (lambda: data.load_dataset(name, n=3, preprocessing="tf-slim-inception"),
         "has 2 examples; asked for 3"),
        (lambda: data.load_dataset(name, data_dir=tmp_path, preprocessing="tf-slim-inception"),
         "--data-dir does not apply"),
    ]  # fmt: skip
    for fn, needle in cases:
        with pytest.raises(SparsejaxError) as e:
            fn()
        assert needle in str(e.value) and "\n" not in str(e.value), (needle, str(e.value))
    with pytest.raises(UnknownNameError):
        data.load_dataset(name, preprocessing="bicubic")

    (root / "labels.txt").write_text("img_0.png 1\nimg_9.png 2\n")
    with pytest.raises(SparsejaxError, match=r"names 1 file\(s\) missing .*img_9.png"):
        data.load_dataset(name, preprocessing="tf-slim-inception")
    (root / "labels.txt").write_text("img_0.png cat\n")
    with pytest.raises(SparsejaxError, match="line 1 is not 'FILE LABEL'"):
        data.load_dataset(name, preprocessing="tf-slim-inception")
    (root / "labels.txt").write_text("img_0.png 1000\n")
    with pytest.raises(SparsejaxError, match=r"labels must lie in \[0, 999\]"):
        data.load_dataset(name, preprocessing="tf-slim-inception")
    (root / "labels.txt").unlink()
    with pytest.raises(SparsejaxError, match="has no labels file .*labels.txt"):
        data.check_dataset_name(name)


def test_torchvision_arithmetic_on_coordinate_images():
    """Resize(256) truncates the long side; CenterCrop rounds half to even. Images whose
    pixels encode their coordinates show where each output pixel came from."""
    assert data.resize_shorter(Image.new("RGB", (107, 100)), 256).size == (273, 256)  # 273.92
    assert data.resize_shorter(Image.new("RGB", (100, 102)), 342).size == (342, 348)  # 348.84
    yy, xx = np.mgrid[0:256, 0:273]
    coords = np.stack([xx % 256, yy, xx // 256], -1).astype(np.uint8)  # R, G: x, y
    out = np.asarray(data.center_crop(Image.fromarray(coords), 224))
    assert (int(out[0, 0, 0]), int(out[0, 0, 1])) == (24, 16)  # round(24.5) = 24, not 25
    yy, xx = np.mgrid[0:227, 0:227]
    coords = np.stack([xx, yy, np.zeros_like(xx)], -1).astype(np.uint8)
    out = np.asarray(data.center_crop(Image.fromarray(coords), 224))
    assert (int(out[0, 0, 0]), int(out[0, 0, 1])) == (2, 2)  # round(1.5) = 2
    with pytest.raises(SparsejaxError, match="smaller"):
        data.center_crop(Image.new("RGB", (200, 300)), 224)


def test_tf_slim_central_crop_box():
    assert data.tf_central_crop_box(227, 227, 0.875) == (14, 14, 213, 213)  # assets README
    assert data.tf_central_crop_box(500, 375, 0.875) == (31, 23, 469, 352)  # int(31.25), ...
    assert data.tf_central_crop_box(224, 224, 1.0) == (0, 0, 224, 224)
    out = data.PREPROCESSING["tf-slim-inception"](Image.new("RGB", (500, 375), (10, 20, 30)))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert (out == np.array([10, 20, 30], np.uint8)).all()


@pytest.mark.shared
def test_preprocessing_matches_torchvision_on_real_jpegs(assets, tmp_path):
    """Our pipeline against torchvision's own transforms (the committed fixture, made by
    tests/fixtures/make_imagenet_preprocessing_fixture.py): within 1/255 everywhere."""
    fx = np.load(FIXTURE)
    s = int(fx["stride"])
    images = assets / "data" / "imagenet_val200" / "images"
    full = [str(f) for f, b in zip(fx["files"], fx["boxes"], strict=True) if b[0] < 0]
    root = tmp_path / "inet"
    (root / "images").mkdir(parents=True)
    for f in full:  # the dataset path itself, on links to the shared JPEGs
        (root / "images" / f).symlink_to(images / f)
    (root / "labels.txt").write_text("".join(f"{f} 0\n" for f in full))
    for name in ("torchvision-256-224", "torchvision-342-299"):
        want = fx[name].astype(np.int16)
        ds = data.load_dataset(f"imagenet:{root}", preprocessing=name)
        got = [np.rint(x * 255).astype(np.int16)[::s, ::s] for x in ds.x]
        for f, box in zip(fx["files"][len(full) :], fx["boxes"][len(full) :], strict=True):
            img = data._decode(images / str(f)).crop(tuple(int(v) for v in box))
            got.append(data.PREPROCESSING[name](img).astype(np.int16)[::s, ::s])
        for k, g in enumerate(got):
            assert g.shape == want[k].shape, (name, k)
            assert np.abs(g - want[k]).max() <= 1, (name, k, np.abs(g - want[k]).max())


@pytest.mark.shared
def test_real_imagenet_val200(assets):
    ds = data.load_dataset(
        f"imagenet:{assets / 'data' / 'imagenet_val200'}", n=3, preprocessing="tf-slim-inception"
    )
    np.testing.assert_array_equal(ds.y, [472, 260, 300])  # labels.txt's first lines
    assert ds.class_names[0] == "tench" and len(ds.class_names) == 1000
    assert ds.x.shape == (3, 224, 224, 3)


def _cli(argv, capsys):
    with count_compilations() as c:
        rc = cli.main(argv)
    return rc, capsys.readouterr().err.strip(), c["n"]


def test_cli_imagenet_errors_before_compilation(tmp_path, capsys):
    root, _, _ = _list_dir(tmp_path, n=2)
    weights = tmp_path / "w.tflite"
    weights.write_bytes(b"\xff\xff\x00\x00TFL3" + bytes(64))  # root table past the end
    (tmp_path / "noinet" / "images").mkdir(parents=True)
    base = ["--model", "mobilenet_v2-tflite", "--weights", str(weights), "--n", "1"]
    cases = {
        "model without preprocessing": (
            ["--model", "resnet20-cifar10", "--weights", str(weights),
             "--dataset", f"imagenet:{root}"],
            "resnet20-cifar10 names no preprocessing for ImageNet images",
        ),
        "bad dir": (base + ["--dataset", f"imagenet:{tmp_path / 'nope'}"], "no such directory"),
        "missing labels": (base + ["--dataset", f"imagenet:{tmp_path / 'noinet'}"],
                           "has no labels file"),
        "bad weights": (base + ["--dataset", f"imagenet:{root}"], "corrupt TFLite flatbuffer"),
    }  # fmt: skip
    for what, (argv, needle) in cases.items():
        for cmd in (["eval"], ["attack", "--attack", "sparsefool", "--out", str(tmp_path / "o")]):
            rc, err, compiles = _cli([*cmd, *argv], capsys)
            assert rc == 2, (what, cmd, err)
            assert err.startswith("sparsejax: error: ") and "\n" not in err, (what, err)
            assert needle in err, (what, err)
            assert compiles == 0, what


@pytest.mark.shared
def test_cli_eval_on_imagenet_writes_predictions(assets, tmp_path, capsys):
    out = tmp_path / "eval.json"
    weights = assets / "weights" / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
    rc = cli.main(
        ["eval", "--model", "mobilenet_v2-tflite", "--weights", str(weights), "--dataset",
         f"imagenet:{assets / 'data' / 'imagenet_val200'}", "--n", "4", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    assert len(res["predictions"]) == 4 and res["labels"] == [472, 260, 300, 133]
    assert res["accuracy"] == np.mean(np.equal(res["predictions"], res["labels"]))
    assert "preprocessing tf-slim-inception" in res["source"]
    assert "clean accuracy" in capsys.readouterr().out
