"""Crowd-counting error: MAE and RMSE of predicted counts against the annotated counts.

Crowd-counting papers (CSRNet, SASNet, DM-Count, PromptMix Table I) report "MAE" and "MSE"; their
"MSE" is the square root of the mean squared error, so it is returned here as ``rmse``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Counting error between predicted and true object counts (one number per image):
mae = mean(|pred - true|), rmse = sqrt(mean((pred - true)^2)). The crowd-counting literature calls
the second one "MSE"; it is the root mean squared error.
"""

_KWARGS = """
Args:
    predictions (`list` of `float`): predicted count of each image (the sum of the density map).
    references (`list` of `float`): true count of each image (the number of annotated points).
Returns:
    mae (`float`): mean absolute error.
    rmse (`float`): root mean squared error (the field's "MSE").
    num_images (`int`): number of images.
Example:
    >>> metric = evaluate.load("path/to/counting_error")
    >>> metric.compute(predictions=[10.0, 4.0], references=[12, 4])
    {'mae': 1.0, 'rmse': 1.4142135623730951, 'num_images': 2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class CountingError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Value("float64"),
                "references": datasets.Value("float64"),
            }),
        )

    def _compute(self, predictions, references):
        pred = np.asarray(predictions, dtype=np.float64)
        ref = np.asarray(references, dtype=np.float64)
        if len(pred) == 0:
            raise ValueError("counting_error: expected at least one image; got none")
        err = pred - ref
        return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err * err))),
                "num_images": int(len(pred))}
