"""What differs between tasks in training and evaluation: the loss, the predictions, the metric.

========== ============================================== ======================= ===============
task       loss (per sample)                              metric module           model selection
========== ============================================== ======================= ===============
counting   summed squared error of the density map (CSRNet) counting_error        lowest mae
depth      L1 over valid pixels (GuideDepth's Depth_Loss)  depth_metrics           lowest rmse
classif.   cross-entropy                                  classification_accuracy highest top1
========== ============================================== ======================= ===============
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..density import resize_density
from .metrics import TASK_METRIC


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    task: str
    metric: str
    primary: str
    greater_is_better: bool

    def better(self, a: float, b: float | None) -> bool:
        """Is metric value ``a`` better than ``b`` (``None``: nothing yet)?"""
        if b is None:
            return True
        return a > b if self.greater_is_better else a < b

    # -- training ---------------------------------------------------------------------------------
    def loss_sum(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sum over the group's samples of the per-sample loss."""
        outputs = outputs.float()
        if self.task == "counting":
            if outputs.shape[-2:] != target.shape[-2:]:
                target = resize_density(target, *outputs.shape[-2:])
            return ((outputs - target) ** 2).sum()
        if self.task == "depth":
            if outputs.shape[-2:] != target.shape[-2:]:
                outputs = F.interpolate(outputs, size=target.shape[-2:], mode="bilinear", align_corners=False)
            valid = (target > 0).float()
            per_pixel = (outputs - target).abs() * valid
            per_sample = per_pixel.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1.0)
            return per_sample.sum()
        return F.cross_entropy(outputs, target, reduction="sum")

    # -- evaluation -------------------------------------------------------------------------------
    def records(self, outputs: torch.Tensor, group: dict) -> list[tuple[int, int, Any, Any]]:
        """``(position in batch, row index, prediction, reference)`` per sample, as CPU objects."""
        outputs = outputs.float()
        pos = group["position"].tolist()
        idx = group["index"].tolist()
        if self.task == "counting":
            preds = outputs.flatten(1).sum(1).double().cpu().tolist()
            refs = group["target"].double().cpu().tolist()
        elif self.task == "depth":
            target = group["target"]
            if outputs.shape[-2:] != target.shape[-2:]:
                outputs = F.interpolate(outputs, size=target.shape[-2:], mode="bilinear", align_corners=False)
            preds = [o.reshape(-1).cpu().numpy() for o in outputs]
            refs = [t.reshape(-1).float().cpu().numpy() for t in target]
        else:
            preds = [o.cpu().numpy() for o in outputs]
            refs = group["target"].cpu().tolist()
        return list(zip(pos, idx, preds, refs))

    def compute(self, metric, records: list[tuple[int, Any, Any]], **kwargs) -> dict[str, float]:
        """Run the metric module on ``(row index, prediction, reference)`` records sorted by row."""
        records = sorted(records, key=lambda r: r[0])
        preds = [r[1] for r in records]
        refs = [r[2] for r in records]
        if self.task == "depth":
            kwargs = {k: v for k, v in kwargs.items() if k in ("min_depth", "max_depth")}
        else:
            kwargs = {}
        metric.add_batch(predictions=preds, references=refs)
        return {k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in metric.compute(**kwargs).items()}


TASK_SPECS = {
    "counting": TaskSpec("counting", TASK_METRIC["counting"], "mae", False),
    "depth": TaskSpec("depth", TASK_METRIC["depth"], "rmse", False),
    "classification": TaskSpec("classification", TASK_METRIC["classification"], "top1", True),
}
