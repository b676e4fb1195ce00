"""Top-1 and top-5 classification accuracy from class scores."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Top-k accuracy: the share of samples whose true class is among the k highest-scoring classes
(k = 1 and 5; with fewer than k classes every sample counts as correct). Ties are broken by the
lower class index, as a stable sort does.
"""

_KWARGS = """
Args:
    predictions (`list` of `list` of `float`): class scores (logits or probabilities) of each sample.
    references (`list` of `int`): true class index of each sample.
Returns:
    top1, top5 (`float`): accuracies in [0, 1]; num_samples (`int`).
Example:
    >>> metric = evaluate.load("path/to/classification_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1])["top1"]
    0.5
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class ClassificationAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float32")),
                "references": datasets.Value("int64"),
            }),
        )

    def _compute(self, predictions, references):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or len(scores) == 0:
            raise ValueError(f"classification_accuracy: expected one score vector per sample; got shape {scores.shape}")
        if labels.min() < 0 or labels.max() >= scores.shape[1]:
            raise ValueError(f"classification_accuracy: labels must lie in [0, {scores.shape[1]}); "
                             f"got {labels.min()}..{labels.max()}")
        order = np.argsort(-scores, axis=1, kind="stable")
        rank = np.argmax(order == labels[:, None], axis=1)
        return {"top1": float(np.mean(rank < 1)), "top5": float(np.mean(rank < 5)), "num_samples": int(len(labels))}
