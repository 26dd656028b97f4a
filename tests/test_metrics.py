"""Summaries: ℓ0 in both units and the best/average/worst-case protocol of targeted tables."""

from __future__ import annotations

import numpy as np
import pytest

from sparsejax import metrics


def test_l0_units_differ_on_rgb():
    x = np.zeros((1, 4, 4, 3), np.float32)
    xa = x.copy()
    xa[0, 0, 0, :] = 1.0  # one pixel, three channels
    xa[0, 1, 2, 1] = 0.5  # one pixel, one channel
    assert int(metrics.l0_pixels(xa, x)[0]) == 2
    assert int(metrics.l0_elements(xa, x)[0]) == 4


def test_target_cases_by_hand():
    # image 0: targets with l2 3, 1, 2 all succeed -> best 1, worst 3
    # image 1: one failure -> counts for best (l2 5) but not for worst
    # image 2: misclassified clean: ignored
    image = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    success = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1], bool)
    correct = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0], bool)
    l2 = np.array([3.0, 1.0, 2.0, 5.0, 0.1, 7.0, 0.0, 0.0, 0.0])
    l0 = np.array([30, 10, 20, 50, 1, 70, 0, 0, 0])
    c = metrics.target_cases(image, success, correct, {"l2": l2, "l0_elements": l0})
    assert c["n_images"] == 2 and c["n_pairs"] == 6
    assert c["best"]["success_rate"] == 1.0
    assert c["best"]["l2"] == pytest.approx((1.0 + 5.0) / 2)
    assert c["best"]["l0_elements"] == pytest.approx((10 + 50) / 2)
    assert c["average"]["success_rate"] == pytest.approx(5 / 6)
    assert c["average"]["l2"] == pytest.approx((3 + 1 + 2 + 5 + 7) / 5)  # the failure excluded
    assert c["worst"]["success_rate"] == 0.5
    assert c["worst"]["l2"] == 3.0 and c["worst"]["l0_elements"] == 30.0


def test_target_cases_with_no_success():
    c = metrics.target_cases(
        np.array([0, 0]), np.array([False, False]), np.array([True, True]), {"l2": np.zeros(2)}
    )
    assert c["best"]["success_rate"] == 0.0 and c["best"]["l2"] is None
    assert c["worst"]["success_rate"] == 0.0 and c["average"]["l2"] is None


def test_all_target_pairs():
    image, target = metrics.all_target_pairs(np.array([2, 0]), 3)
    assert image.tolist() == [0, 0, 1, 1] and target.tolist() == [0, 1, 1, 2]
    assert image.dtype == np.int64 and target.dtype == np.int32
    image, target = metrics.all_target_pairs(np.array([], np.int32), 10)
    assert image.shape == target.shape == (0,)


def test_summary_counts_only_attacked_successes():
    s = metrics.summarize(
        success=np.array([True, True, False, False]),
        clean_correct=np.array([True, True, True, False]),
        l0_pixels=np.array([2, 4, 100, 0]),
        l0_elements=np.array([3, 5, 100, 0]),
        image_shape=(8, 8, 3),
    )
    assert s["n_attacked"] == 3 and s["success_rate"] == pytest.approx(2 / 3)
    assert s["median_l0_pixels"] == 3.0 and s["median_l0_pixels_pct"] == pytest.approx(3 / 64 * 100)
    assert s["median_l0_elements"] == 4.0


def test_summary_with_nothing_attacked_is_null_not_nan():
    s = metrics.summarize(
        success=np.zeros(3, bool),
        clean_correct=np.zeros(3, bool),
        l0_pixels=np.zeros(3, int),
        l0_elements=np.zeros(3, int),
        image_shape=(8, 8, 1),
    )
    assert s["n_attacked"] == 0 and s["success_rate"] is None
    assert s["median_l0_pixels"] is None and s["mean_l0_elements"] is None
