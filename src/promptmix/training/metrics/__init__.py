"""The evaluation metrics, shipped as ``evaluate`` modules inside the package.

Each metric is a folder ``<name>/<name>.py`` holding an ``evaluate.Metric``; :func:`load_metric`
loads it by local path (``evaluate.load(str(path))``), which works offline: evaluate copies the
file into ``HF_MODULES_CACHE`` and imports it from there; nothing is fetched from the Hub.

========================  =========================================================  ===================
module                    returns                                                    task
========================  =========================================================  ===================
counting_error            mae, rmse (what counting papers call "MSE"), num_images    counting
depth_metrics             delta1, delta2, delta3, rmse, abs_rel, mae, num_images     depth
classification_accuracy   top1, top5, num_samples                                    classification
========================  =========================================================  ===================
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("counting_error", "depth_metrics", "classification_accuracy")  # each task names its own


def metric_path(name: str) -> Path:
    """The folder of the shipped metric ``name`` (pass it to ``evaluate.load``)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"metric: expected one of {METRIC_NAMES}; got {name!r}")
    return METRICS_DIR / name


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of a shipped metric by local path (offline); ``kwargs`` go to ``evaluate.load``."""
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_path(name)), **kwargs)
