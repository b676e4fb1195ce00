"""The evaluate modules shipped in promptmix/training/metrics, loaded by local path, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promptmix.tasks import TASKS
from promptmix.training.metrics import METRIC_NAMES, load_metric, metric_path


def test_modules_are_package_files_loaded_offline():
    for name in METRIC_NAMES:
        assert (metric_path(name) / f"{name}.py").is_file()
    with pytest.raises(ValueError, match="expected one of"):
        metric_path("bleu")


def test_counting_error_mae_and_rmse():
    m = load_metric("counting_error")
    out = m.compute(predictions=[10.0, 4.0, 7.5, 0.0], references=[12, 4, 5, 3])
    # errors -2, 0, 2.5, -3: MAE = 7.5 / 4; RMSE = sqrt((4 + 0 + 6.25 + 9) / 4)
    assert out["mae"] == pytest.approx(1.875)
    assert out["rmse"] == pytest.approx(math.sqrt(19.25 / 4))
    assert out["num_images"] == 4
    assert "mse" not in out  # the field's "MSE" is reported under its real name


def test_depth_metrics_per_image_then_averaged():
    m = load_metric("depth_metrics")
    # image 1: pred [1, 2, 3, 4], true [1, 1.5, 4, 8]; ratios 1, 1.333, 1.333, 2
    # image 2: pred [5, 5], true [5, 0] -> the true 0 is invalid, one pixel: perfect
    out = m.compute(predictions=[[1.0, 2.0, 3.0, 4.0], [5.0, 5.0]], references=[[1.0, 1.5, 4.0, 8.0], [5.0, 0.0]],
                    max_depth=10.0)
    d1_img1 = 1 / 4  # only ratio 1 is < 1.25
    d2_img1 = 3 / 4  # 1, 1.333, 1.333 < 1.5625
    d3_img1 = 3 / 4  # 2 > 1.953
    rmse1 = math.sqrt((0 + 0.25 + 1 + 16) / 4)
    absrel1 = (0 + 0.5 / 1.5 + 1 / 4 + 4 / 8) / 4
    assert out["delta1"] == pytest.approx((d1_img1 + 1) / 2)
    assert out["delta2"] == pytest.approx((d2_img1 + 1) / 2)
    assert out["delta3"] == pytest.approx((d3_img1 + 1) / 2)
    assert out["rmse"] == pytest.approx((rmse1 + 0) / 2)
    assert out["abs_rel"] == pytest.approx((absrel1 + 0) / 2)
    assert out["num_images"] == 2
    # the max_depth mask and the prediction clipping
    clipped = m.compute(predictions=[[20.0, 1.0]], references=[[10.0, 12.0]], max_depth=10.0)
    assert clipped["rmse"] == pytest.approx(0.0) and clipped["num_images"] == 1
    with pytest.raises(ValueError, match="valid pixel"):
        m.compute(predictions=[[1.0]], references=[[0.0]])


def test_classification_accuracy_top1_top5():
    m = load_metric("classification_accuracy")
    scores = np.zeros((3, 7), dtype=np.float32)
    scores[0, [2, 0, 1]] = [0.9, 0.8, 0.7]  # label 2: top-1
    scores[1, [0, 1, 2, 3, 4, 5]] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # label 5: rank 6 -> miss top-5
    scores[2, [0, 1, 2, 3, 4]] = [0.9, 0.8, 0.7, 0.6, 0.5]  # label 4: rank 5 -> top-5 hit
    out = m.compute(predictions=scores.tolist(), references=[2, 5, 4])
    assert out["top1"] == pytest.approx(1 / 3)
    assert out["top5"] == pytest.approx(2 / 3)
    few = m.compute(predictions=[[0.2, 0.8], [0.6, 0.4]], references=[1, 1])
    assert few["top1"] == 0.5 and few["top5"] == 1.0  # fewer than 5 classes: always in the top 5


def test_task_compute_orders_records_by_row():
    spec = TASKS["counting"]
    m = load_metric("counting_error")
    records = [(2, 3.0, 1.0), (0, 1.0, 1.0), (1, 5.0, 2.0)]
    assert spec.compute(m, records)["mae"] == pytest.approx((0 + 3 + 2) / 3)
    assert spec.better(1.0, 2.0) and not spec.better(2.0, 1.0) and spec.better(5.0, None)
    assert TASKS["classification"].better(0.9, 0.8)
