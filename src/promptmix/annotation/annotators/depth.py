"""Depth annotators: any transformers depth-estimation model (DPT, Depth Anything, GLPN, ZoeDepth, ...).

The model and its image processor load with ``AutoModelForDepthEstimation`` /
``AutoImageProcessor`` from a Hub id or a folder. The stored depth map is the processor's
``post_process_depth_estimation`` output at the input image's size (float16), i.e. the size a
training target for that image has; models without that method get the raw prediction
resized bicubically. Images are grouped by size and run in batches of ``batch_size``.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import group_by_size
from .transformers_base import TransformersAnnotator

logger = logging.getLogger(__name__)


class DepthAnnotator(TransformersAnnotator):
    task = "depth"
    batch_by_size = True
    model_class = "AutoModelForDepthEstimation"
    what = "a transformers depth-estimation model and image processor"

    def _post_process(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        post = getattr(self.processor, "post_process_depth_estimation", None)
        if post is not None:
            params = inspect.signature(post).parameters
            kwargs: dict[str, Any] = {"target_sizes": sizes}
            if "source_sizes" in params:  # ZoeDepth removes its padding given the source sizes
                kwargs["source_sizes"] = sizes
            return [r["predicted_depth"] for r in post(outputs, **kwargs)]
        pred = outputs.predicted_depth
        pred = pred.unsqueeze(1) if pred.dim() == 3 else pred
        return [F.interpolate(p[None].float(), size=s, mode="bicubic", align_corners=False)[0, 0]
                for p, s in zip(pred, sizes)]

    @torch.inference_mode()
    def annotate(self, images: list) -> list[dict]:
        self.load()
        out: list[dict | None] = [None] * len(images)
        for idx in group_by_size(images, self.batch_size):
            batch = [images[i].convert("RGB") for i in idx]
            inputs = self.processor(images=batch, return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device, self.dtype)
            outputs = self.model(pixel_values=pixels)
            outputs.predicted_depth = outputs.predicted_depth.float()
            maps = self._post_process(outputs, [(im.height, im.width) for im in batch])
            for i, m in zip(idx, maps):
                d16 = m.float().cpu().numpy().astype(np.float16)
                out[i] = {"depth": d16, "ok": bool(np.isfinite(d16).all())}
        return out  # type: ignore[return-value]
