"""Monocular depth metrics: delta1-3, RMSE, AbsRel (and MAE), per image, averaged over images.

As GuideDepth's and FastDepth's evaluation: each image's metrics are computed over its valid
pixels (``min_depth < reference <= max_depth``), predictions clipped to ``[min_depth, max_depth]``,
then averaged over images.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Depth estimation metrics over the valid pixels of each image, averaged over images:
delta_k = share of pixels with max(pred / true, true / pred) < 1.25 ** k (k = 1, 2, 3),
rmse = sqrt(mean((pred - true)^2)), abs_rel = mean(|pred - true| / true), mae = mean(|pred - true|).
"""

_KWARGS = """
Args:
    predictions (`list` of `list` of `float`): each image's predicted depth map in metres, flattened.
    references (`list` of `list` of `float`): each image's true depth map in metres, flattened the same way.
    min_depth (`float`, defaults to 1e-3): pixels with a true depth at or below it are left out;
        predictions are clipped to at least this value.
    max_depth (`float`, defaults to 10.0): pixels with a true depth above it are left out;
        predictions are clipped to at most this value.
Returns:
    delta1, delta2, delta3, rmse, abs_rel, mae (`float`), num_images (`int`).
Example:
    >>> metric = evaluate.load("path/to/depth_metrics")
    >>> metric.compute(predictions=[[1.0, 2.0]], references=[[1.0, 4.0]])["abs_rel"]
    0.25
"""


def image_errors(pred, true, min_depth=1e-3, max_depth=10.0):
    """The metrics of one image (flattened maps); ``None`` when it has no valid pixel."""
    pred = np.asarray(pred, dtype=np.float64).ravel()
    true = np.asarray(true, dtype=np.float64).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"depth_metrics: a prediction has {pred.size} values but its reference has {true.size}")
    valid = (true > min_depth) & (true <= max_depth) & np.isfinite(true)
    if not valid.any():
        return None
    p = np.clip(pred[valid], min_depth, max_depth)
    t = true[valid]
    ratio = np.maximum(p / t, t / p)
    diff = p - t
    return {
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25 ** 2)),
        "delta3": float(np.mean(ratio < 1.25 ** 3)),
        "rmse": float(np.sqrt(np.mean(diff * diff))),
        "abs_rel": float(np.mean(np.abs(diff) / t)),
        "mae": float(np.mean(np.abs(diff))),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class DepthMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float32")),
                "references": datasets.Sequence(datasets.Value("float32")),
            }),
        )

    def _compute(self, predictions, references, min_depth=1e-3, max_depth=10.0):
        per_image = [image_errors(p, t, min_depth, max_depth) for p, t in zip(predictions, references)]
        per_image = [m for m in per_image if m is not None]
        if not per_image:
            raise ValueError(f"depth_metrics: expected at least one image with a valid pixel "
                             f"({min_depth} < depth <= {max_depth}); got none")
        out = {k: float(np.mean([m[k] for m in per_image])) for k in per_image[0]}
        out["num_images"] = len(per_image)
        return out
