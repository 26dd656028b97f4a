"""Datasets as float32 NHWC images in [0, 1] with integer labels (SPEC §1).

One entry point, :func:`load_dataset`, serves a registered name (``mnist``,
``fashion_mnist``, ``cifar10``, ``digits``) or ``npz:PATH``. For a registered name the
sources are tried in order and the first that can serve wins:

1. tensorflow-datasets, through ``tfds.data_source`` on a copy already prepared in
   ``data_dir`` (or ``$TFDS_DATA_DIR``, or ``~/tensorflow_datasets``). tensorflow-datasets
   cannot download without network, so it serves only what was prepared before; a copy
   prepared in the TFRecord format is read with ``tfds.load`` when TensorFlow is installed.
2. Local files: IDX files (MNIST, Fashion-MNIST), CIFAR-10 python batches or the shared
   500-image CIFAR-10 test npz, scikit-learn's bundled digits.

When no source can serve, :class:`~sparsejax.errors.DatasetUnavailableError` says what was
tried and why each failed. Subsets are deterministic: ``offset`` and ``n`` pick
consecutive examples in the split's own order (the papers attack "the first N test images").

``imagenet:DIR`` serves ImageNet images of any size, brought to a model's input by the
preprocessing that the model names (``ModelSpec.preprocessing``, a key of
:data:`PREPROCESSING`), once, on the host (see :func:`load_imagenet_items`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import logging
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparsejax.errors import DatasetUnavailableError, SparsejaxError, UnknownNameError

ASSETS_ENV = "SPARSEJAX_ASSETS"
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# The digits split: a fixed permutation of scikit-learn's 1797 images, 80% train / 20% test.
DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN_FRACTION = 0.8


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled image set in the library's conventions.

    Attributes:
      name: the name it was loaded under (``mnist``, ``npz:/path/x.npz``, ...).
      split: ``test`` or ``train``.
      x: float32[N, H, W, C] in [0, 1].
      y: int32[N] class labels.
      indices: int64[N] position of each example in the split (for result files).
      num_classes: number of classes of the task (not ``max(y) + 1`` of a subset).
      source: where the arrays came from, in words (for result files and logs).
      class_names: optional names of the classes.
    """

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    indices: np.ndarray
    num_classes: int
    source: str
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


def assets_dir() -> Path | None:
    """The shared real assets (``$SPARSEJAX_ASSETS``, else ``../shared/assets``), or None."""
    env = os.environ.get(ASSETS_ENV)
    candidates = [Path(env)] if env else []
    candidates += [
        Path.cwd().parent / "shared" / "assets",
        Path(__file__).resolve().parents[2] / "shared" / "assets",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def require_assets() -> Path:
    """:func:`assets_dir`, for scripts that cannot run without the real weights."""
    found = assets_dir()
    if found is None:
        raise SparsejaxError(
            f"needs the shared real assets: set ${ASSETS_ENV} or put them in ../shared/assets"
        )
    return found


# ----------------------------------------------------------------------------------------
# Conversions and file readers
# ----------------------------------------------------------------------------------------


def to_float_images(x: np.ndarray, what: str = "images") -> np.ndarray:
    """uint8 (N,H,W[,C]) in 0..255, or floats already in [0, 1] -> float32 (N,H,W,C) in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise SparsejaxError(f"{what}: expected shape (N,H,W) or (N,H,W,C), got {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(x.dtype, np.floating):
        lo, hi = (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)
        if not np.isfinite(x).all() or lo < 0.0 or hi > 1.0:
            raise SparsejaxError(
                f"{what}: float images must lie in [0, 1], got range [{lo:g}, {hi:g}]"
            )
        return x.astype(np.float32)
    raise SparsejaxError(f"{what}: dtype must be uint8 or float in [0, 1], got {x.dtype}")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not, as a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise SparsejaxError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise SparsejaxError(f"{path}: IDX dtype 0x{dtype_code:02x} is not uint8")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise SparsejaxError(f"{path}: IDX header says {shape}, file holds {body.size} values")
    return body.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


_IDX_STEMS = {
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
}


def _load_idx_pair(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    img_stem, lab_stem = _IDX_STEMS[split]
    img, lab = _find_idx(directory, img_stem), _find_idx(directory, lab_stem)
    if img is None or lab is None:
        raise FileNotFoundError(f"no {img_stem}[.gz] / {lab_stem}[.gz] in {directory}")
    x, y = read_idx(img), read_idx(lab)
    if x.shape[0] != y.shape[0]:
        raise SparsejaxError(f"{directory}: {x.shape[0]} images but {y.shape[0]} labels")
    return x, y, f"idx:{img}"


def _load_cifar10_local(directory: Path | None, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    tried = []
    if directory is not None:
        for sub in (directory / "cifar-10-batches-py", directory):
            names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
            if all((sub / n).is_file() for n in names):
                xs, ys = [], []
                for n in names:
                    with open(sub / n, "rb") as f:
                        d = pickle.load(f, encoding="bytes")
                    xs.append(np.asarray(d[b"data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                    ys.append(np.asarray(d[b"labels"]))
                return np.concatenate(xs), np.concatenate(ys), f"cifar-python:{sub}"
            tried.append(str(sub))
    assets = assets_dir()
    npz = assets / "data" / "cifar10" / "cifar10_test_first500.npz" if assets else None
    if split == "test" and npz is not None and npz.is_file():
        d = np.load(npz)
        return d["x"], d["y"], f"npz:{npz} (first 500 test images)"
    tried.append("shared assets cifar10_test_first500.npz" + ("" if assets else " (no assets dir)"))
    raise FileNotFoundError(
        "no CIFAR-10 python batches or shared npz (looked in " + ", ".join(tried) + ")"
    )


def _digits(split: str) -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # 8x8, integer levels 0..16 -> [0, 1]
    y = d.target.astype(np.int32)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    n_train = int(round(DIGITS_TRAIN_FRACTION * len(y)))
    idx = perm[:n_train] if split == "train" else perm[n_train:]
    return x[idx], y[idx], f"sklearn.datasets.load_digits (seed-{DIGITS_SPLIT_SEED} split)"


# ----------------------------------------------------------------------------------------
# tensorflow-datasets
# ----------------------------------------------------------------------------------------


def _load_tfds(
    tfds_name: str, split: str, data_dir: Path | None, start: int, stop: int | None
) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Reads examples [start, stop) of a prepared TFDS copy. Returns x, y, source, split size."""
    import tensorflow_datasets as tfds

    kw = {"data_dir": str(data_dir)} if data_dir is not None else {}
    with _quiet_absl():
        return _read_tfds(tfds, tfds_name, split, kw, start, stop)


@contextlib.contextmanager
def _quiet_absl():
    """tfds logs a warning for every unprepared dataset it probes; the caller reports instead."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_tfds(tfds, tfds_name, split, kw, start, stop):
    try:
        src = tfds.data_source(tfds_name, split=split, download=False, **kw)
        total = len(src)
        stop = total if stop is None else min(stop, total)
        rows = [src[i] for i in range(start, stop)]
        x = np.stack([np.asarray(r["image"]) for r in rows]) if rows else None
        y = np.asarray([int(r["label"]) for r in rows], dtype=np.int64)
        return x, y, f"tfds:{tfds_name} (data_source)", total
    except Exception as first_error:  # not prepared, or prepared as TFRecord
        builder = tfds.builder(tfds_name, **kw)
        if not builder.is_prepared():
            raise FileNotFoundError(
                f"tensorflow-datasets has no prepared copy in {builder.data_dir} "
                "(it cannot download without network)"
            ) from first_error
        try:
            import tensorflow  # noqa: F401
        except ImportError as e:
            reason = str(first_error).splitlines()[0] if str(first_error) else type(first_error)
            raise FileNotFoundError(
                f"tensorflow-datasets copy in {builder.data_dir} cannot be read without "
                f"tensorflow, which is not installed ({reason})"
            ) from e
        arr = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        total = int(arr["label"].shape[0])
        stop = total if stop is None else min(stop, total)
        return arr["image"][start:stop], arr["label"][start:stop], f"tfds:{tfds_name}", total


# ----------------------------------------------------------------------------------------
# ImageNet: image files of any size, preprocessed on the host for the model at hand
# ----------------------------------------------------------------------------------------

IMAGENET_PREFIX = "imagenet:"
IMAGENET_NUM_CLASSES = 1000
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """A deterministic host-side transform from a decoded RGB image to a model input.

    Attributes:
      name: its key in :data:`PREPROCESSING` (what ``ModelSpec.preprocessing`` names).
      fn: ``PIL.Image.Image (RGB, any size) -> uint8[H, W, 3]`` of ``output_shape``.
      output_shape: (H, W, 3) of every output.
      description: one line for listings and result files.
    """

    name: str
    fn: Callable[..., np.ndarray]
    output_shape: tuple[int, int, int]
    description: str

    def __call__(self, img) -> np.ndarray:
        return self.fn(img)


def _pil():
    from PIL import Image

    return Image


def resize_shorter(img, size: int):
    """torchvision's ``Resize(size)`` on a PIL image: the shorter side becomes ``size``, the
    longer ``int(size * long / short)`` (truncated), PIL bilinear (antialiased when it
    shrinks, as PIL always is)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new = (size, new_long) if w <= h else (new_long, size)  # PIL sizes are (width, height)
    return img.resize(new, _pil().BILINEAR)


def center_crop(img, size: int):
    """torchvision's ``CenterCrop(size)`` on a PIL image at least ``size`` on each side: the
    offsets are ``round((n - size) / 2)``, Python's round (half to even)."""
    w, h = img.size
    if w < size or h < size:
        raise SparsejaxError(f"center crop {size}: image {w}x{h} is smaller")
    top, left = round((h - size) / 2), round((w - size) / 2)
    return img.crop((left, top, left + size, top + size))


def tf_central_crop_box(width: int, height: int, fraction: float) -> tuple[int, int, int, int]:
    """TF-slim's ``tf.image.central_crop`` box (left, upper, right, lower): per axis the
    start is ``int((n - n * fraction) / 2)`` and the size ``n - 2 * start``. 227 at 0.875
    gives (14, 14, 213, 213)."""
    left = int((width - width * fraction) / 2)
    top = int((height - height * fraction) / 2)
    return left, top, width - left, height - top


def _torchvision(resize: int, crop: int):
    def fn(img):
        return np.asarray(center_crop(resize_shorter(img, resize), crop), dtype=np.uint8)

    return fn


def _tf_slim_inception(img, size: int = 224, fraction: float = 0.875) -> np.ndarray:
    # TF-slim's inception eval preprocessing (central 87.5% crop, bilinear resize to the
    # model's size); the resize is PIL's bilinear on the uint8 crop, as the assets README
    # measured the model with, not TensorFlow's float resize_bilinear.
    box = tf_central_crop_box(*img.size, fraction)
    out = img.crop(box).resize((size, size), _pil().BILINEAR)
    return np.asarray(out, dtype=np.uint8)


PREPROCESSING: dict[str, Preprocessing] = {
    p.name: p
    for p in [
        Preprocessing(
            "torchvision-256-224",
            _torchvision(256, 224),
            (224, 224, 3),
            "torchvision eval: Resize(256) on the shorter side (PIL bilinear), CenterCrop(224)",
        ),
        Preprocessing(
            "torchvision-342-299",
            _torchvision(342, 299),
            (299, 299, 3),
            "torchvision eval for Inception-v3: Resize(342) (PIL bilinear), CenterCrop(299)",
        ),
        Preprocessing(
            "tf-slim-inception",
            _tf_slim_inception,
            (224, 224, 3),
            "TF-slim inception eval: central 87.5% crop, PIL bilinear resize to 224x224",
        ),
    ]
}


def get_preprocessing(name: str) -> Preprocessing:
    try:
        return PREPROCESSING[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown preprocessing {name!r}; known: {', '.join(sorted(PREPROCESSING))}"
        ) from None


def is_imagenet(name: str) -> bool:
    """Whether a dataset name is ``imagenet:DIR`` (image files that need a preprocessing)."""
    return name.startswith(IMAGENET_PREFIX)


@dataclasses.dataclass(frozen=True)
class _ImageNetItems:
    """What an ImageNet source holds, before any image is decoded."""

    read: Callable[[int, int], list]  # (start, stop) -> decoded RGB PIL images
    labels: Callable[[int, int], np.ndarray]  # (start, stop) -> int labels
    total: int
    source: str
    class_names: tuple[str, ...] | None


def _read_synsets(path: Path) -> tuple[list[str], list[str]]:
    """(WNIDs, first class name of each) of a ``synset_words.txt`` (``WNID name, name``)."""
    wnids, names = [], []
    for k, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        wnid, _, words = line.strip().partition(" ")
        if not wnid.startswith("n") or not words:
            raise SparsejaxError(f"{path}: line {k + 1} is not 'WNID class name': {line[:60]!r}")
        wnids.append(wnid)
        names.append(words.split(",")[0].strip())
    if len(wnids) != IMAGENET_NUM_CLASSES or len(set(wnids)) != len(wnids):
        raise SparsejaxError(
            f"{path}: {len(set(wnids))} distinct WNIDs, expected {IMAGENET_NUM_CLASSES}"
        )
    return wnids, names


def _decode(path: Path):
    try:
        with _pil().open(path) as img:
            return img.convert("RGB")  # grey and CMYK JPEGs exist in ILSVRC; torchvision does this
    except Exception as e:
        raise SparsejaxError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None


def _imagenet_layout(root: Path) -> str:
    """'list' (images/ + labels.txt), 'folders' (val/<wnid>/ or train/<wnid>/) or 'tfds' (a
    tensorflow-datasets data dir with imagenet2012); a one-line error otherwise."""
    name = f"{IMAGENET_PREFIX}{root}"
    if not root.is_dir():
        raise SparsejaxError(f"dataset {name!r}: no such directory {root}")
    if (root / "labels.txt").is_file():
        if not (root / "images").is_dir():
            raise SparsejaxError(f"dataset {name!r}: {root / 'labels.txt'} but no images/ folder")
        return "list"
    if (root / "images").is_dir():
        raise SparsejaxError(
            f"dataset {name!r}: {root / 'images'} has no labels file {root / 'labels.txt'} "
            "(one 'FILE LABEL' line per image, labels 0-999 in sorted-WNID order)"
        )
    if (root / "val").is_dir() or (root / "train").is_dir():
        return "folders"
    if (root / "imagenet2012").is_dir():
        return "tfds"
    raise SparsejaxError(
        f"dataset {name!r}: {root} holds neither images/ with labels.txt, nor val/<wnid>/ "
        "folders, nor a prepared tensorflow-datasets imagenet2012"
    )


def _imagenet_list(root: Path, split: str) -> _ImageNetItems:
    if split != "test":
        raise SparsejaxError(
            f"dataset 'imagenet:{root}': images/ + labels.txt is one split (served as 'test'), "
            f"not {split!r}"
        )
    files, labels = [], []
    for k, line in enumerate((root / "labels.txt").read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise SparsejaxError(
                f"{root / 'labels.txt'}: line {k + 1} is not 'FILE LABEL': {line[:60]!r}"
            )
        files.append(root / "images" / parts[0])
        labels.append(int(parts[1]))
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise SparsejaxError(
            f"{root / 'labels.txt'} names {len(missing)} file(s) missing from "
            f"{root / 'images'}: {', '.join(missing[:3])}"
        )
    synsets = root / "synset_words.txt"
    names = tuple(_read_synsets(synsets)[1]) if synsets.is_file() else None
    y = np.asarray(labels, np.int64)
    return _ImageNetItems(
        lambda a, b: [_decode(f) for f in files[a:b]],
        lambda a, b: y[a:b],
        len(files),
        f"imagenet:{root} (images/ + labels.txt)",
        names,
    )


def _imagenet_folders(root: Path, split: str) -> _ImageNetItems:
    sub = root / ("val" if split == "test" else "train")
    if not sub.is_dir():
        raise SparsejaxError(
            f"dataset 'imagenet:{root}': no {sub.name}/ folder for split {split!r}"
        )
    folders = sorted(d.name for d in sub.iterdir() if d.is_dir())
    synsets = root / "synset_words.txt"
    if synsets.is_file():
        wnids, names = _read_synsets(synsets)
        index = {w: i for i, w in enumerate(sorted(wnids))}
        by_wnid = dict(zip(wnids, names, strict=True))
        class_names = tuple(by_wnid[w] for w in sorted(wnids))
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise SparsejaxError(f"{sub}: folder(s) {unknown[:3]} are not WNIDs of {synsets}")
    else:
        # The label is the WNID's index among all 1000: with fewer folders and no list of
        # WNIDs, the indices would be wrong.
        if len(folders) != IMAGENET_NUM_CLASSES:
            raise SparsejaxError(
                f"{sub}: {len(folders)} class folders, not {IMAGENET_NUM_CLASSES}; put the "
                f"WNID list synset_words.txt in {root} to label a subset"
            )
        index, class_names = {w: i for i, w in enumerate(folders)}, None
    items = [
        (f.name, f, index[w])
        for w in folders
        for f in (sub / w).iterdir()
        if f.suffix.lower() in _IMAGE_SUFFIXES
    ]
    # File-name order: ILSVRC2012_val_00000001 ... is the official validation order, so
    # "the first n images" mix the classes instead of taking class 0 first.
    items.sort()
    files = [f for _, f, _ in items]
    y = np.asarray([label for _, _, label in items], np.int64)
    return _ImageNetItems(
        lambda a, b: [_decode(f) for f in files[a:b]],
        lambda a, b: y[a:b],
        len(files),
        f"imagenet:{root} ({sub.name}/<wnid>/)",
        class_names,
    )


def _imagenet_tfds(root: Path, split: str) -> _ImageNetItems:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise SparsejaxError(
            f"dataset 'imagenet:{root}': reading its imagenet2012 needs tensorflow-datasets"
        ) from None
    tfds_split = "validation" if split == "test" else "train"
    try:
        with _quiet_absl():
            src = tfds.data_source("imagenet2012", split=tfds_split, data_dir=str(root))
            total = len(src)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SparsejaxError(
            f"dataset 'imagenet:{root}': tensorflow-datasets cannot serve its imagenet2012 "
            f"{tfds_split} split ({reason[:160]})"
        ) from None
    synsets = root / "synset_words.txt"
    names = tuple(_read_synsets(synsets)[1]) if synsets.is_file() else None
    Image = _pil()

    def read(a, b):
        return [Image.fromarray(np.asarray(src[i]["image"])).convert("RGB") for i in range(a, b)]

    def labels(a, b):
        return np.asarray([int(src[i]["label"]) for i in range(a, b)], np.int64)

    # tensorflow-datasets numbers imagenet2012's classes in sorted-WNID order too.
    return _ImageNetItems(read, labels, total, f"tfds:imagenet2012 in {root}", names)


def load_imagenet_items(name: str, split: str = "test") -> _ImageNetItems:
    """The images of ``imagenet:DIR`` (nothing decoded yet). Three layouts of DIR:

    - ``DIR/images/*`` with ``DIR/labels.txt`` of ``FILE LABEL`` lines (dataset order: the
      lines' order; one split, served as ``test``);
    - ``DIR/val/<wnid>/*`` (``test``) or ``DIR/train/<wnid>/*`` (``train``): the label is
      the WNID's index in sorted order, among the 1000 WNIDs of ``DIR/synset_words.txt``
      when present (a subset of folders is then fine), else among the 1000 folders;
      dataset order: file names (the official order of ILSVRC2012_val_*);
    - a tensorflow-datasets data dir holding a prepared ``imagenet2012`` (``validation`` as
      ``test``), read with ``tfds.data_source``.

    Class names come from ``DIR/synset_words.txt`` (``WNID name, synonyms``) when present.
    """
    root = Path(name[len(IMAGENET_PREFIX) :])
    layout = _imagenet_layout(root)
    if split not in ("test", "train"):
        raise SparsejaxError(f"dataset {name!r}: unknown split {split!r}; known ('test', 'train')")
    return {"list": _imagenet_list, "folders": _imagenet_folders, "tfds": _imagenet_tfds}[layout](
        root, split
    )


def _preprocess_all(images: list, prep: Preprocessing, name: str) -> np.ndarray:
    out = np.empty((len(images), *prep.output_shape), np.uint8)
    for k, img in enumerate(images):
        arr = prep(img)
        if arr.shape != prep.output_shape:  # a preprocessing bug, never the user's input
            raise SparsejaxError(f"dataset {name!r}: {prep.name} gave {arr.shape}")
        out[k] = arr
    return out


# ----------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _DatasetSpec:
    tfds_name: str | None
    local: Callable[[Path | None, str], tuple[np.ndarray, np.ndarray, str]]
    num_classes: int
    splits: tuple[str, ...]
    class_names: tuple[str, ...] | None = None


def _mnist_local(data_dir: Path | None, split: str):
    dirs = [d for d in (data_dir, (assets_dir() or Path("/nonexistent")) / "data" / "mnist") if d]
    errors = []
    for d in dirs:
        try:
            return _load_idx_pair(d, split)
        except FileNotFoundError as e:
            errors.append(str(e))
    raise FileNotFoundError("; ".join(errors))


def _fashion_local(data_dir: Path | None, split: str):
    dirs = [d for d in (data_dir, FASHION_MNIST_DEBIAN_DIR) if d]
    errors = []
    for d in dirs:
        try:
            return _load_idx_pair(d, split)
        except FileNotFoundError as e:
            errors.append(str(e))
    raise FileNotFoundError("; ".join(errors) + " (Debian package dataset-fashion-mnist)")


_CIFAR10_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

DATASETS: dict[str, _DatasetSpec] = {
    "mnist": _DatasetSpec("mnist", _mnist_local, 10, ("test", "train")),
    "fashion_mnist": _DatasetSpec(
        "fashion_mnist", _fashion_local, 10, ("test", "train"), _FASHION_NAMES
    ),
    "cifar10": _DatasetSpec("cifar10", _load_cifar10_local, 10, ("test", "train"), _CIFAR10_NAMES),
    "digits": _DatasetSpec(
        None,
        lambda _d, split: _digits(split),
        10,
        ("test", "train"),
        tuple(str(i) for i in range(10)),
    ),
}


def dataset_names() -> list[str]:
    """Registered dataset names (``npz:PATH`` and ``imagenet:DIR`` are accepted as well)."""
    return sorted(DATASETS)


def check_dataset_name(name: str) -> None:
    """Raises a one-line error for an unknown name, a missing ``npz:`` file or an
    ``imagenet:`` folder of no known layout (no image is read)."""
    if is_imagenet(name):
        _imagenet_layout(Path(name[len(IMAGENET_PREFIX) :]))
        return
    if name.startswith("npz:"):
        path = Path(name[4:])
        if not path.is_file():
            raise SparsejaxError(f"dataset {name!r}: no such file {path}")
        return
    if name not in DATASETS:
        raise UnknownNameError(
            f"unknown dataset {name!r}; known: {', '.join(dataset_names())}, npz:PATH or "
            "imagenet:DIR"
        )


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, int | None, tuple | None]:
    where = f"dataset npz:{path}"
    if path.stat().st_size == 0:
        raise SparsejaxError(f"{where}: empty file")
    try:
        d = np.load(path, allow_pickle=False)
    except Exception:  # not a zip / corrupted
        raise SparsejaxError(f"{where}: not an .npz archive (np.savez writes one)") from None
    if not hasattr(d, "files"):
        raise SparsejaxError(f"{where}: holds one array, not an .npz archive with x and y")
    missing = [k for k in ("x", "y") if k not in d.files]
    if missing:
        raise SparsejaxError(f"{where}: missing array(s) {missing}; has {d.files}")
    arrays = {}
    for k in [k for k in ("x", "y", "class_names") if k in d.files]:
        try:
            arrays[k] = d[k]
        except ValueError:  # object arrays need pickle, which is never allowed here
            raise SparsejaxError(
                f"{where}: array {k!r} holds Python objects; store numbers (and strings "
                "for class_names)"
            ) from None
    y = arrays["y"]
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        raise SparsejaxError(f"{where}: labels y must be integers, got dtype {y.dtype}")
    names = tuple(str(s) for s in arrays["class_names"]) if "class_names" in arrays else None
    return arrays["x"], y, (len(names) if names else None), names


def _check_range(name: str, split: str, total: int, offset: int, n: int | None) -> None:
    if offset >= total:
        raise SparsejaxError(f"dataset {name!r}: offset {offset} is past its {total} examples")
    if n is not None and offset + n > total:
        raise SparsejaxError(
            f"dataset {name!r} split {split!r} has {total} examples; "
            f"asked for {n} from offset {offset}"
        )


def load_dataset(
    name: str,
    split: str = "test",
    n: int | None = None,
    offset: int = 0,
    data_dir: str | os.PathLike | None = None,
    use_tfds: bool = True,
    preprocessing: str | None = None,
) -> Dataset:
    """Loads ``n`` consecutive examples starting at ``offset`` of a dataset split.

    Args:
      name: a registered name (:func:`dataset_names`), ``npz:PATH`` (arrays ``x`` uint8
        (N,H,W[,C]) or float in [0, 1], ``y`` integer labels, optional ``class_names``) or
        ``imagenet:DIR`` (image files, :func:`load_imagenet_items`).
      split: ``test`` (default) or ``train``.
      n: number of examples (None: to the end of the split).
      offset: index of the first example in the split.
      data_dir: a tensorflow-datasets data dir and/or a folder of local files (not for
        ``imagenet:DIR``, which names its folder).
      use_tfds: try tensorflow-datasets first (default) or go straight to local files.
      preprocessing: for ``imagenet:DIR`` (required there, and only there: arrays are
        stored at one size), a key of :data:`PREPROCESSING`, normally the model's
        ``ModelSpec.preprocessing``. Only the ``n`` images asked for are decoded.

    Returns:
      A :class:`Dataset`; ``x`` float32[n, H, W, C] in [0, 1], ``y`` int32[n].

    Raises:
      UnknownNameError, DatasetUnavailableError, SparsejaxError: one-line reasons.
    """
    check_dataset_name(name)
    if n is not None and n < 1:
        raise SparsejaxError(f"dataset {name!r}: n must be >= 1, got {n}")
    if offset < 0:
        raise SparsejaxError(f"dataset {name!r}: offset must be >= 0, got {offset}")
    if preprocessing is not None and not is_imagenet(name):
        raise SparsejaxError(
            f"dataset {name!r} is stored as arrays of one size: a preprocessing "
            f"({preprocessing!r}) applies to imagenet:DIR only"
        )
    if is_imagenet(name) and data_dir is not None:
        raise SparsejaxError(f"dataset {name!r} names its folder; --data-dir does not apply")
    data_dir = Path(data_dir) if data_dir is not None else None
    if data_dir is not None and not data_dir.is_dir():
        raise SparsejaxError(f"--data-dir {data_dir}: no such directory")
    stop = None if n is None else offset + n

    if is_imagenet(name):
        if preprocessing is None:
            raise SparsejaxError(
                f"dataset {name!r}: image files of any size need a preprocessing (a model's "
                f"ModelSpec.preprocessing; known: {', '.join(sorted(PREPROCESSING))})"
            )
        prep = get_preprocessing(preprocessing)
        items = load_imagenet_items(name, split)
        total = items.total
        _check_range(name, split, total, offset, n)  # before any image is decoded
        stop = total if stop is None else stop
        x_raw = _preprocess_all(items.read(offset, stop), prep, name)
        y_raw = items.labels(offset, stop)
        num_classes, class_names = IMAGENET_NUM_CLASSES, items.class_names
        source = f"{items.source}, preprocessing {prep.name}"
    elif name.startswith("npz:"):
        path = Path(name[4:])
        x_raw, y_raw, num_classes, class_names = _load_npz(path)
        total, source = int(np.shape(x_raw)[0]), f"npz:{path}"
        if num_classes is None:  # no class_names: the labels of the whole file decide
            y_all = np.asarray(y_raw)
            num_classes = int(y_all.max()) + 1 if y_all.size else 0
        x_raw, y_raw = x_raw[offset:stop], y_raw[offset:stop]
    else:
        spec = DATASETS[name]
        if split not in spec.splits:
            raise SparsejaxError(f"dataset {name!r}: unknown split {split!r}; known {spec.splits}")
        num_classes, class_names = spec.num_classes, spec.class_names
        reasons = []
        x_raw = None
        if use_tfds and spec.tfds_name is not None:
            try:
                x_raw, y_raw, source, total = _load_tfds(
                    spec.tfds_name, split, data_dir, offset, stop
                )
            except (FileNotFoundError, ImportError) as e:
                reasons.append(f"tfds: {e}")
        if x_raw is None:
            try:
                x_all, y_all, source = spec.local(data_dir, split)
            except FileNotFoundError as e:
                reasons.append(f"local files: {e}")
                raise DatasetUnavailableError(
                    f"dataset {name!r} split {split!r} is not available offline here: "
                    + " | ".join(reasons)
                ) from None
            total = int(x_all.shape[0])
            x_raw, y_raw = x_all[offset:stop], y_all[offset:stop]

    _check_range(name, split, total, offset, n)
    x = to_float_images(x_raw, what=f"dataset {name!r}")
    y = np.asarray(y_raw)
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise SparsejaxError(
            f"dataset {name!r}: labels must be integers of shape ({x.shape[0]},), "
            f"got {y.dtype} {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise SparsejaxError(
            f"dataset {name!r}: labels must lie in [0, {num_classes - 1}], "
            f"got [{y.min()}, {y.max()}]"
        )
    return Dataset(
        name=name,
        split=split,
        x=x,
        y=y.astype(np.int32),
        indices=np.arange(offset, offset + x.shape[0], dtype=np.int64),
        num_classes=num_classes,
        source=source,
        class_names=class_names,
    )
