"""Input checks: one-line errors naming the problem, raised before anything compiles."""

from __future__ import annotations

import numpy as np
import pytest

from sparsejax import models
from sparsejax.errors import SparsejaxError
from sparsejax.overrides import apply_overrides
from sparsejax.validation import check_images, check_labels
from tests.helpers import count_compilations

MODEL = models.create("lenet5-digits")


@pytest.mark.parametrize(
    "x,match",
    [
        (np.zeros((8, 8, 1), np.float32), r"expected a batch float32\[N, H, W, C\]"),
        (
            np.zeros((2, 28, 28, 1), np.float32),
            r"\(28, 28, 1\) per image does not fit model lenet5-digits",
        ),
        (np.zeros((2, 8, 8, 3), np.float32), r"expects \(8, 8, 1\)"),
        (
            np.zeros((2, 8, 8, 1), np.uint8),
            r"dtype must be float32 .* \(divide uint8 images by 255\)",
        ),
        (np.zeros((2, 8, 8, 1), np.float64), "dtype must be float32"),
        (np.full((2, 8, 8, 1), 1.5, np.float32), r"values must lie in \[0, 1\]"),
        (np.full((2, 8, 8, 1), np.nan, np.float32), "NaN or Inf"),
        (np.zeros((0, 8, 8, 1), np.float32), "the batch is empty"),
        ([[0.0]], "expected an array"),
    ],
)
def test_bad_images(x, match):
    with pytest.raises(SparsejaxError, match=match) as e:
        check_images(x, MODEL)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "y,match",
    [
        (np.array([0.0, 1.0]), "dtype must be integer"),
        (np.array([0, 1, 2]), r"expected shape \(2,\)"),
        (np.array([0, 10]), r"must lie in \[0, 9\] for a 10-class model, got \[0, 10\]"),
        (np.array([-1, 3]), r"must lie in \[0, 9\]"),
    ],
)
def test_bad_labels(y, match):
    with pytest.raises(SparsejaxError, match=match):
        check_labels(y, 2, 10)


def test_checks_do_not_compile():
    x = np.zeros((2, 8, 8, 1), np.float32)
    with count_compilations() as c:
        check_images(x, MODEL)
        check_labels(np.array([1, 2]), 2, 10)
        with pytest.raises(SparsejaxError):
            check_images(x.astype(np.uint8), MODEL)
    assert c["n"] == 0


import dataclasses  # noqa: E402


@dataclasses.dataclass(frozen=True)
class _Config:
    lambda_: float = 3.0
    max_iter: int = 20
    targeted: bool = False
    norm: str = "l2"
    cap: float | None = None


def test_overrides_apply_with_types():
    c = apply_overrides(
        _Config(), ["lambda_=1.5", "max_iter=7", "targeted=true", "norm=l1", "cap=none"]
    )
    assert c == _Config(1.5, 7, True, "l1", None)
    assert apply_overrides(_Config(), ["cap=0.5"]).cap == 0.5


@pytest.mark.parametrize(
    "item,match",
    [
        ("lambda_", "expected KEY=VALUE"),
        (
            "lamda=3",
            r"_Config has no field 'lamda'; fields: cap, lambda_, max_iter, norm, targeted",
        ),
        ("lambda_=fast", "expected a number, got 'fast'"),
        ("lambda_=nan", "expected a finite number"),
        ("max_iter=2.5", "expected an integer, got '2.5'"),
        ("targeted=maybe", "expected true/false"),
    ],
)
def test_bad_overrides(item, match):
    with pytest.raises(SparsejaxError, match=match) as e:
        apply_overrides(_Config(), [item])
    assert item in str(e.value)
