"""The quality score against hand-computed values, keep counts, and training targets."""

from __future__ import annotations

import numpy as np
import pytest

from promptmix.annotation.filter.filtering import build_target, keep_count
from promptmix.annotation.filter.quality import classification_distance, common_size, counting_quality, depth_quality
from promptmix.tasks import pairwise_quality


def test_counting_quality_hand_computed():
    # pairs: |10-12| = 2, |10-15| = 5, |12-15| = 3 -> max 5; max |c| = 15
    assert pairwise_quality([10.0, 12.0, 15.0], "counting") == pytest.approx(5 / 15)
    assert counting_quality([8.0, 8.0]) == 0.0
    # sign matters through |c|: |(-2) - 6| = 8, max |c| = 6
    assert counting_quality([-2.0, 6.0]) == pytest.approx(8 / 6)
    assert counting_quality([0.0, 0.0, 0.0]) == 0.0  # all empty: perfect agreement
    assert counting_quality([7.0]) is None
    assert pairwise_quality([], "counting") is None


def test_depth_quality_resizes_to_the_largest_map():
    a = np.ones((2, 2), np.float16)  # upsampled to 4x4 of ones
    b = np.full((4, 4), 3.0, np.float32)
    # mean|a-b| = 2, max(mean|a|, mean|b|) = 3
    assert depth_quality([a, b]) == pytest.approx(2 / 3)
    assert common_size([a, b]) == (4, 4)
    c = np.array([[1.0, 2.0], [3.0, 4.0]])
    d = np.array([[1.0, 2.0], [3.0, 8.0]])
    e = np.array([[2.0, 2.0], [3.0, 4.0]])
    # pairs: c-d 1.0, c-e 0.25, d-e 1.25 -> 1.25; means 2.5, 3.5, 2.75 -> 3.5
    assert depth_quality([c, d, e]) == pytest.approx(1.25 / 3.5)
    assert depth_quality([c]) is None


def test_classification_quality_hand_computed():
    assert classification_distance((0, 0.9), (0, 0.6)) == pytest.approx(0.3)
    assert classification_distance((0, 0.9), (2, 0.6)) == pytest.approx(1.5)
    assert pairwise_quality([(0, 0.9), (0, 0.6)], "classification") == pytest.approx(0.3 / 0.9)
    assert pairwise_quality([(0, 0.9), (1, 0.6)], "classification") == pytest.approx(1.5 / 0.9)
    # three annotators: pairs 0.1 (agree), 1.5, 1.4 (disagree) -> 1.5 / 0.9
    assert pairwise_quality([(1, 0.9), (1, 0.8), (2, 0.6)], "classification") == pytest.approx(1.5 / 0.9)
    # any disagreement ranks below any agreement
    assert pairwise_quality([(0, 0.99), (0, 0.01)], "classification") < 1.0
    assert pairwise_quality([(0, 0.4), (1, 0.35)], "classification") >= 1.0
    assert pairwise_quality([(1, 0.5)], "classification") is None


def test_non_finite_values_are_refused_and_unknown_task():
    with pytest.raises(ValueError, match="non-finite"):
        pairwise_quality([1.0, float("nan")], "counting")
    with pytest.raises(ValueError, match="non-finite"):
        pairwise_quality([np.ones((2, 2)), np.full((2, 2), np.inf)], "depth")
    with pytest.raises(ValueError, match="task"):
        pairwise_quality([1.0, 2.0], "segmentation")


@pytest.mark.parametrize("n, pct, expected", [(10, 60, 6), (10, 100, 10), (5, 50, 3), (3, 10, 1), (0, 50, 0),
                                              (7, 1e-3, 1)])
def test_keep_count(n, pct, expected):
    assert keep_count(n, pct) == expected


def test_counting_targets_preserve_mass():
    a = np.arange(16, dtype=np.float32).reshape(4, 4)  # sum 120, the first annotator's resolution
    b = np.full((8, 8), 0.5, dtype=np.float32)  # sum 32
    assert build_target("counting", [a, b], 1).shape == (8, 8)  # named: its own resolution
    mean = build_target("counting", [a, b], None)
    assert mean.shape == (4, 4)
    assert mean.sum() == pytest.approx((120 + 32) / 2, rel=1e-5)
    assert mean[0, 0] == pytest.approx((0 + 2.0) / 2)  # b's 2x2 block of 0.5 -> 2.0


def test_depth_target_mean_is_pixelwise():
    a = np.full((2, 3), 2.0, dtype=np.float32)
    b = np.full((4, 6), 4.0, dtype=np.float32)
    mean = build_target("depth", [a, b], None)
    assert mean.shape == (2, 3)
    np.testing.assert_allclose(mean, 3.0)
