r"""The quality score of a generated image from its annotations (PromptMix, stage 4).

The paper (Section III, fourth stage) scores image :math:`I_i^g` with :math:`l > 1` annotations
:math:`A_{i,1}^g, \dots, A_{i,l}^g` by their largest relative disagreement:

.. math::

    q_i^g = \frac{\max_{j \neq j'} d(A_{i,j}^g, A_{i,j'}^g)}{\max_j d(A_{i,j}^g, 0)}

"where d is a distance measure, for instance, the difference between the total count in crowd
counting, :math:`d(A,B) = |\sum_{i,j} A_{ij} - \sum_{i,j} B_{ij}|`". Images are sorted by
:math:`q` and "images inside the lowest :math:`r_{img}` percent are kept".

The distances used here:

- counting: :math:`d(A, B) = |c_A - c_B|` on the counts (the maps' sums), so
  :math:`q = \max |c_j - c_{j'}| / \max_j |c_j|`;
- depth: :math:`d(A, B) = \mathrm{mean}\,|A - B|` after resizing every map (bilinear) to the
  size of the largest one, and :math:`d(A, 0) = \mathrm{mean}\,|A|`;
- classification: an annotation is the vector :math:`p\,e_y` (the predicted class's one-hot
  vector scaled by its probability) and :math:`d` is the L1 distance. Two annotators that agree
  on the label are :math:`|p - p'|` apart, two that disagree :math:`p + p'`, and
  :math:`d(A, 0) = p`. Hence :math:`q \in [0, 2]`, any disagreement scores :math:`\ge 1` and
  ranks below every agreement (:math:`< 1`), and among agreements the more uneven confidence
  ranks lower. Only the stored label and probability are needed.

With a single annotator the score is undefined (``None``). When every annotation is the zero
annotation (all counts 0), the annotators agree perfectly and :math:`q = 0` (by the triangle
inequality the numerator is 0 whenever the denominator is). Non-finite inputs raise
``ValueError``: the caller flags such rows before scoring them.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Sequence

import numpy as np


def _ratio(pairwise: float, to_zero: float) -> float:
    if to_zero == 0.0:
        return 0.0
    return float(pairwise / to_zero)


def _check_finite(values: Sequence[Any]) -> None:
    for v in values:
        if not np.all(np.isfinite(np.asarray(v, dtype=np.float64))):
            raise ValueError("quality score of non-finite annotations; flag the row instead")


def counting_quality(counts: Sequence[float]) -> float | None:
    """``max |c_j - c_j'| / max |c_j|`` over the annotators' counts; None with fewer than two."""
    if len(counts) < 2:
        return None
    _check_finite(counts)
    c = [float(x) for x in counts]
    return _ratio(max(abs(a - b) for a, b in combinations(c, 2)), max(abs(x) for x in c))


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``(height, width)`` (values, not mass, are kept: for depth)."""
    m = np.asarray(m, dtype=np.float32)
    if m.shape == tuple(size):
        return m
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(m))[None, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def common_size(maps: Sequence[np.ndarray]) -> tuple[int, int]:
    """The size of the largest map (by area; the first of equal ones)."""
    shapes = [tuple(np.shape(m)) for m in maps]
    return max(shapes, key=lambda s: s[0] * s[1])  # max() keeps the first of ties


def depth_quality(maps: Sequence[np.ndarray]) -> float | None:
    """``max mean|A_j - A_j'| / max mean|A_j|`` with maps resized to one size; None with fewer than two."""
    if len(maps) < 2:
        return None
    _check_finite(maps)
    size = common_size(maps)
    ms = [resize_map(m, size).astype(np.float64) for m in maps]
    pair = max(float(np.mean(np.abs(a - b))) for a, b in combinations(ms, 2))
    return _ratio(pair, max(float(np.mean(np.abs(m))) for m in ms))


def classification_distance(a: tuple[int, float], b: tuple[int, float]) -> float:
    """L1 distance between ``p_a e_{y_a}`` and ``p_b e_{y_b}`` (see the module docstring)."""
    (ya, pa), (yb, pb) = a, b
    return abs(pa - pb) if ya == yb else abs(pa) + abs(pb)


def classification_quality(predictions: Sequence[tuple[int, float]]) -> float | None:
    """``max d(A_j, A_j') / max p_j`` over ``(label, probability)`` pairs; None with fewer than two."""
    if len(predictions) < 2:
        return None
    _check_finite([p for _, p in predictions])
    preds = [(int(y), float(p)) for y, p in predictions]
    pair = max(classification_distance(a, b) for a, b in combinations(preds, 2))
    return _ratio(pair, max(abs(p) for _, p in preds))


