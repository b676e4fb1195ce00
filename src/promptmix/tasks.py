"""The task registry: one object per task holding every fact that differs between tasks.

========== ================ ============================== ============================= ====================
task       annotator output quality distance d(A, B)       training loss (per sample)    metric (model choice)
========== ================ ============================== ============================= ====================
counting   density map      \\|count_A - count_B\\|          summed squared error of the   counting_error
                                                           density map (CSRNet)          (lowest mae)
depth      depth map        mean \\|A - B\\| (maps resized)  L1 over valid pixels          depth_metrics
                                                           (GuideDepth's Depth_Loss)     (lowest rmse)
classif.   label + prob.    L1 of prob-scaled one-hots     cross-entropy                 classification_accuracy
                                                                                         (highest top1)
========== ================ ============================== ============================= ====================

Each :class:`Task` also knows its dataset columns (real, annotation, fake target), its card text and
tags, and how its figures summarise a dataset. A model may bring its own training loss (``model.loss_sum``, used
by the trainer instead of its task's): ``guidedepth`` trains with its authors' loss on normalised inverse depth
(:class:`promptmix.models.depth.GuideDepth`). Code that behaves differently per task asks its task
object (``get_task(name)``) instead of branching on the name. Importing this module is light: torch and
numpy are imported by the methods that compute.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from . import schema as S
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

TASK_NAMES = S.TASKS


class Task:
    """The facts of one task (see the module docstring); subclasses implement the computing methods."""

    name: ClassVar[str]
    title: ClassVar[str]  # "crowd counting": the card's wording
    metric: ClassVar[str]  # the evaluate module (promptmix/training/metrics/<metric>)
    primary: ClassVar[str]  # the metric key that picks the learning rate and the best epoch
    greater_is_better: ClassVar[bool]
    default_model: ClassVar[str]
    real_columns: ClassVar[tuple[str, ...]]  # a real dataset must have these (besides image)
    reference_column: ClassVar[str]  # the column evaluation compares predictions with
    annotation_map: ClassVar[str | None]  # the dense map an annotator writes (None: a label)
    quality_columns: ClassVar[tuple[str, ...]]  # what the quality score reads from each annotation
    finite_columns: ClassVar[tuple[str, ...]]  # an annotation is flagged when one of these is NaN/inf
    fake_target: ClassVar[str]  # the fake dataset's training target column
    target_columns: ClassVar[tuple[str, ...]]  # every target column of the fake dataset
    target_text: ClassVar[str]  # how the card describes the target
    card_categories: ClassVar[tuple[str, ...]]
    card_tags: ClassVar[tuple[str, ...]]
    has_classes: ClassVar[bool] = False
    crop_multiple: ClassVar[int] = 1  # training crops are a multiple of this (the students' output stride)
    distribution_figure: ClassVar[str]  # the card's real-vs-fake figure (promptmix.dataset_cards.figures)
    #: the identifying column of a dataset of this task (``task_of`` reads it)
    marker_column: ClassVar[str]
    real_readme_columns: ClassVar[str]  # the columns, as the README of a built real dataset lists them

    def better(self, a: float, b: float | None) -> bool:
        """Is metric value ``a`` better than ``b`` (``None``: nothing yet)?"""
        if b is None:
            return True
        return a > b if self.greater_is_better else a < b

    # -- datasets ------------------------------------------------------------------------------------------
    def real_features(self, class_names: Sequence[str] | None = None):
        return S.real_features(self.name, class_names)

    def annotation_features(self):
        return S.annotation_features(self.name)

    def fake_features(self, class_names: Sequence[str] | None = None):
        return S.fake_features(self.name, class_names)

    # -- annotations and the quality score --------------------------------------------------------------------
    def quality_value(self, row: Mapping[str, Any]) -> Any:
        """What the quality score compares of one annotation row."""
        raise NotImplementedError

    def quality(self, values: Sequence[Any]) -> float | None:
        """The paper's q of one image from its annotators' values (``None`` with one annotator)."""
        raise NotImplementedError

    def finite(self, row: Mapping[str, Any]) -> bool:
        """``ok`` as stored, double-checked on the values (a NaN that slipped through is still flagged)."""
        import numpy as np

        from .maps import decode

        if not row.get(S.OK, False):
            return False
        try:
            values = [decode(row.get(c)) if c == self.annotation_map else row.get(c) for c in self.finite_columns]
            return all(v is not None and bool(np.all(np.isfinite(np.asarray(v, dtype=np.float64)))) for v in values)
        except (TypeError, ValueError):
            return False

    def target_map(self, maps: Sequence[Any], target_index: int | None,
                   image_size: tuple[int, int] | None = None) -> "np.ndarray | None":
        """The training map of one fake row: ``maps[target_index]``, or the mean (``None``) at ``maps[0]``'s size
        (``image_size``: the image's (H, W), which places each annotator's grid on its pixels); None for a task
        whose target is not a map."""
        return None

    def target_value(self, target: "np.ndarray") -> dict[str, Any]:
        """The fake row's target columns from its target map."""
        return {}

    # -- training ---------------------------------------------------------------------------------------------
    def model_kwargs(self, config, data) -> dict[str, Any]:
        """Keyword arguments of ``create_model`` that depend on the task."""
        return {}

    def loss_sum(self, outputs: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
        """Sum over the group's samples of the per-sample loss."""
        raise NotImplementedError

    def records(self, outputs: "torch.Tensor", group: dict) -> list[tuple[int, int, Any, Any]]:
        """``(position in batch, row index, prediction, reference)`` per sample, as CPU objects."""
        raise NotImplementedError

    def metric_kwargs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def compute(self, metric, records: list[tuple[int, Any, Any]], **kwargs) -> dict[str, float]:
        """Run the metric module on ``(row index, prediction, reference)`` records sorted by row."""
        import numpy as np

        records = sorted(records, key=lambda r: r[0])
        metric.add_batch(predictions=[r[1] for r in records], references=[r[2] for r in records])
        return {k: float(v) if isinstance(v, (float, np.floating)) else v
                for k, v in metric.compute(**self.metric_kwargs(kwargs)).items()}

    # -- cards --------------------------------------------------------------------------------------------------
    def describe_target(self, row: Mapping[str, Any], class_names: Sequence[str]) -> str:
        """A row's target in a few words (sample-grid captions)."""
        return ""


class CountingTask(Task):
    name = "counting"
    title = "crowd counting"
    metric = "counting_error"
    primary = "mae"
    greater_is_better = False
    default_model = "rescsrnet"
    real_columns = (S.POINTS, S.COUNT)
    reference_column = S.COUNT
    annotation_map = S.DENSITY
    quality_columns = (S.COUNT, S.OK)
    finite_columns = (S.COUNT,)
    fake_target = S.DENSITY
    target_columns = (S.DENSITY, S.COUNT)
    target_text = "a density map (people per pixel) and its sum, the count"
    card_categories = ("other",)
    card_tags = ("crowd-counting", "density-map")
    marker_column = S.POINTS
    real_readme_columns = ("`image`, `image_id`, `points` ([x, y] head points as annotated, some may lie just outside "
                           "the frame), `count` (all annotated points), `width`, `height`, `jpeg_quality` (null when "
                           "not a JPEG), `is_grayscale`")
    crop_multiple = 8
    distribution_figure = "count_histogram"

    def quality_value(self, row):
        return row[S.COUNT]

    def quality(self, values):
        from .annotation.filter.quality import counting_quality

        return counting_quality(values)

    def target_map(self, maps, target_index, image_size=None):
        import numpy as np

        from .density import align_density, resize_density
        from .maps import decode

        maps = [decode(m) for m in maps]
        if target_index is not None:
            return np.asarray(maps[target_index], dtype=np.float32)
        size = np.asarray(maps[0]).shape
        if image_size is None or None in image_size:
            resized = [resize_density(np.asarray(m, dtype=np.float32), size[0], size[1]) for m in maps]
        else:  # each annotator's cells moved onto the first one's grid over the same pixels
            resized = [align_density(np.asarray(m, dtype=np.float32), image_size, size) for m in maps]
        return np.mean([np.asarray(m, dtype=np.float32) for m in resized], axis=0).astype(np.float32)

    def target_value(self, target):
        import numpy as np

        t = target if target.dtype == np.float16 else target.astype(np.float16)  # the stored map's sum
        return {S.COUNT: float(t.sum(dtype=np.float32))}

    def loss_sum(self, outputs, target):
        from .density import resize_density

        outputs = outputs.float()
        if outputs.shape[-2:] != target.shape[-2:]:
            target = resize_density(target, *outputs.shape[-2:])
        return ((outputs - target) ** 2).sum()

    def records(self, outputs, group):
        outputs = outputs.float()
        preds = outputs.flatten(1).sum(1).double().cpu().tolist()
        refs = group["target"].double().cpu().tolist()
        return list(zip(group["position"].tolist(), group["index"].tolist(), preds, refs))

    def describe_target(self, row, class_names):
        count = row.get(S.COUNT)
        if count is None:
            return ""
        return f"count {count}" if isinstance(count, int) else f"count {float(count):.1f}"


class DepthTask(Task):
    name = "depth"
    title = "monocular depth estimation"
    metric = "depth_metrics"
    primary = "rmse"
    greater_is_better = False
    default_model = "guidedepth"
    real_columns = (S.DEPTH,)
    reference_column = S.DEPTH
    annotation_map = S.DEPTH
    quality_columns = (S.DEPTH, S.OK)
    finite_columns = (S.DEPTH,)
    fake_target = S.DEPTH
    target_columns = (S.DEPTH,)
    target_text = "a depth map in metres"
    card_categories = ("depth-estimation",)
    card_tags = ("depth-estimation",)
    marker_column = S.DEPTH
    real_readme_columns = ("`image`, `image_id`, `depth` (H x W, metres), `scene`, `width`, `height`, `jpeg_quality` "
                           "(null: PNG), `is_grayscale`")
    distribution_figure = "depth_histogram"

    def quality_value(self, row):
        from .maps import decode

        return decode(row[S.DEPTH])

    def quality(self, values):
        from .annotation.filter.quality import depth_quality

        return depth_quality(values)

    def target_map(self, maps, target_index, image_size=None):
        import numpy as np

        from .annotation.filter.quality import resize_map
        from .maps import decode

        maps = [decode(m) for m in maps]
        if target_index is not None:
            return np.asarray(maps[target_index], dtype=np.float32)
        size = np.asarray(maps[0]).shape
        return np.mean([resize_map(np.asarray(m, dtype=np.float32), size) for m in maps], axis=0).astype(np.float32)

    def model_kwargs(self, config, data):
        return {"max_depth": config.max_depth}

    def loss_sum(self, outputs, target):
        import torch.nn.functional as F

        outputs = outputs.float()
        if outputs.shape[-2:] != target.shape[-2:]:
            outputs = F.interpolate(outputs, size=target.shape[-2:], mode="bilinear", align_corners=False)
        valid = (target > 0).float()
        per_pixel = (outputs - target).abs() * valid
        per_sample = per_pixel.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1.0)
        return per_sample.sum()

    def records(self, outputs, group):
        import torch.nn.functional as F

        outputs = outputs.float()
        target = group["target"]
        if outputs.shape[-2:] != target.shape[-2:]:
            outputs = F.interpolate(outputs, size=target.shape[-2:], mode="bilinear", align_corners=False)
        preds = [o.reshape(-1).cpu().numpy() for o in outputs]
        refs = [t.reshape(-1).float().cpu().numpy() for t in target]
        return list(zip(group["position"].tolist(), group["index"].tolist(), preds, refs))

    def metric_kwargs(self, kwargs):
        return {k: v for k, v in kwargs.items() if k in ("min_depth", "max_depth")}

    def describe_target(self, row, class_names):
        import numpy as np

        from .maps import decode

        value = S.fake_target_map(row, S.DEPTH) if S.ANNOTATIONS in row else row.get(S.DEPTH)
        if value is None:
            return ""
        m = decode(value)
        return f"depth {np.nanmean(m):.2f} m" if m.size else ""


class ClassificationTask(Task):
    name = "classification"
    title = "image classification"
    metric = "classification_accuracy"
    primary = "top1"
    greater_is_better = True
    default_model = "resnet18"
    real_columns = (S.LABEL,)
    reference_column = S.LABEL
    annotation_map = None
    quality_columns = (S.LABEL, S.PROBABILITY, S.OK)
    finite_columns = (S.PROBABILITY,)
    fake_target = S.LABEL  # the prompt's class; the annotators only score agreement
    target_columns = (S.LABEL,)
    target_text = "the class of the prompt the image was generated from"
    card_categories = ("image-classification",)
    card_tags = ("image-classification",)
    has_classes = True
    marker_column = S.LABEL
    real_readme_columns = ("`image`, `image_id`, `label` (ClassLabel), `width`, `height`, `jpeg_quality` (null when "
                           "not a JPEG), `is_grayscale`")
    distribution_figure = "label_bar_chart"

    def quality_value(self, row):
        return (row[S.LABEL], row[S.PROBABILITY])

    def quality(self, values):
        from .annotation.filter.quality import classification_quality

        return classification_quality(values)

    def model_kwargs(self, config, data):
        kwargs: dict[str, Any] = {"num_classes": data.num_classes}
        if config.model == "resnet18":
            small = data.max_image_side() <= 64 if config.image_size is None else config.image_size <= 64
            kwargs["cifar_stem"] = config.cifar_stem if config.cifar_stem is not None else small
        return kwargs

    def loss_sum(self, outputs, target):
        import torch.nn.functional as F

        return F.cross_entropy(outputs.float(), target, reduction="sum")

    def records(self, outputs, group):
        outputs = outputs.float()
        preds = [o.cpu().numpy() for o in outputs]
        refs = group["target"].cpu().tolist()
        return list(zip(group["position"].tolist(), group["index"].tolist(), preds, refs))

    def describe_target(self, row, class_names):
        label = row.get(S.LABEL)
        if label is None:
            return ""
        return class_names[label] if 0 <= label < len(class_names) else str(label)


TASKS: dict[str, Task] = {t.name: t for t in (CountingTask(), DepthTask(), ClassificationTask())}


def pairwise_quality(values: Sequence[Any], task: str) -> float | None:
    """The quality score of one image: counts (counting), 2-D maps (depth) or ``(label, prob)`` (classification).

    Lower is better (the annotators agree more). ``None`` with one annotator.
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}; got {task!r}")
    q = TASKS[task].quality(values)
    if q is not None and not math.isfinite(q):  # pragma: no cover - inputs are checked finite
        raise ValueError("quality score is not finite")
    return q


def get_task(name: str) -> Task:
    """The task object of ``name`` (``counting``, ``depth`` or ``classification``)."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"task: expected one of {', '.join(TASKS)}; got {name!r}") from None
