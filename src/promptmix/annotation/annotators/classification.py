"""Classification annotators: transformers image classifiers, and CLIP zero-shot over the class names.

Predictions are mapped into the real set's label space by class name, case-insensitively. A
model label matches a real class when the whole label, or one of its comma-separated synonyms
(ImageNet style ``"tabby, tabby cat"``), equals the class name. Every real class must be matched
(otherwise :class:`InputError` names the unmatched classes); model labels outside the real set are
ignored. The probability is the softmax over the matched classes only (several model labels
matching one class add up), so ``label`` and ``probability`` live in the real label space.

CLIP zero-shot scores each image against the prompts ``"a photo of a {class name}."`` (cosine
similarity times CLIP's logit scale, softmax over the classes).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from ...errors import InputError, ModelLoadError
from ...utils.model_source import ModelSource
from .transformers_base import TransformersAnnotator

logger = logging.getLogger(__name__)

ZERO_SHOT_TEMPLATE = "a photo of a {}."


def _norm(text: str) -> str:
    return " ".join(str(text).replace("_", " ").lower().split())


def match_class_names(model_labels: dict[int, str], class_names: Sequence[str], *, model: str) -> list[list[int]]:
    """For each real class, the model's label indices whose name (or a comma-separated synonym) matches it."""
    synonyms = {i: {_norm(lbl)} | {_norm(s) for s in str(lbl).split(",") if s.strip()}
                for i, lbl in model_labels.items()}
    out, unmatched = [], []
    for name in class_names:
        idx = sorted(i for i, syns in synonyms.items() if _norm(name) in syns)
        if not idx:
            unmatched.append(name)
        out.append(idx)
    if unmatched:
        shown = ", ".join(repr(v) for v in list(model_labels.values())[:10])
        more = f", ... ({len(model_labels)} labels)" if len(model_labels) > 10 else ""
        raise InputError(f"classifier {model!r} has no label for the real classes {unmatched} (matched "
                         f"case-insensitively); its labels are {shown}{more}. Use a classifier trained on these "
                         f"classes, or clip-zeroshot=MODEL to score the class names directly")
    return out


def _require_names(class_names: Sequence[str] | None, name: str) -> list[str]:
    if not class_names:
        raise InputError(f"classification annotator {name!r} needs the real set's class names "
                         f"(plan.json of the run has none)")
    return list(class_names)


def _outputs(probs: torch.Tensor) -> list[dict]:
    probs = probs.float().cpu()
    out = []
    for p in probs:
        finite = bool(torch.isfinite(p).all())
        label = int(torch.argmax(torch.nan_to_num(p, nan=-1.0)))
        prob = float(p[label])
        out.append({"label": label, "probability": prob, "ok": finite and bool(np.isfinite(prob))})
    return out


class ImageClassifierAnnotator(TransformersAnnotator):
    """Any ``AutoModelForImageClassification`` model, its labels mapped to the real class names."""

    task = "classification"
    model_class = "AutoModelForImageClassification"
    what = "a transformers image-classification model and image processor"

    def __init__(self, name: str, *, source: ModelSource, **kwargs: Any):
        super().__init__(name, source=source, **kwargs)
        self._groups: list[list[int]] = []

    def validate(self) -> None:
        """Every real class has a model label (reads the model's config only)."""
        from transformers import AutoConfig

        names = _require_names(self.class_names, self.name)
        try:
            config = AutoConfig.from_pretrained(self.source.path)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"classifier {self.source.name!r}: could not read its config ({exc})") from exc
        self._groups = match_class_names({int(k): v for k, v in config.id2label.items()}, names,
                                         model=self.source.name)

    def record(self) -> dict:
        rec = super().record()
        rec["class_names"] = self.class_names
        return rec

    @torch.inference_mode()
    def annotate(self, images: list) -> list[dict]:
        self.load()
        out: list[dict] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start:start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
            logits = self.model(pixel_values=pixels).logits.float()
            per_class = torch.stack([torch.logsumexp(logits[:, g], dim=1) for g in self._groups], dim=1)
            out += _outputs(torch.softmax(per_class, dim=1))
        return out


class ClipZeroShotAnnotator(TransformersAnnotator):
    """CLIP (or a model with CLIP's ``get_text_features``/``get_image_features``) over the class names."""

    task = "classification"
    processor_class = "AutoProcessor"
    what = "the model and its processor (tokenizer + image processor)"

    def __init__(self, name: str, *, source: ModelSource, template: str = ZERO_SHOT_TEMPLATE, **kwargs: Any):
        super().__init__(name, source=source, **kwargs)
        self.template = template
        self._text: torch.Tensor | None = None

    def validate(self) -> None:
        _require_names(self.class_names, self.name)

    def _after_load(self, model) -> None:
        if not (hasattr(model, "get_text_features") and hasattr(model, "get_image_features")):
            raise ModelLoadError(f"{self.source.name!r} ({type(model).__name__}) has no get_text_features/"
                                 f"get_image_features; CLIP zero-shot needs a CLIP-style model")

    def _prepare(self) -> None:
        prompts = [self.template.format(n) for n in _require_names(self.class_names, self.name)]
        with torch.inference_mode():
            tok = self.processor(text=prompts, return_tensors="pt", padding=True)
            tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
            text = _features(self.model.get_text_features(**tok)).float()
        self._text = text / text.norm(dim=-1, keepdim=True)

    def unload(self) -> None:
        self._text = None
        super().unload()

    def record(self) -> dict:
        rec = super().record()
        rec.update({"class_names": self.class_names, "template": self.template})
        return rec

    @torch.inference_mode()
    def annotate(self, images: list) -> list[dict]:
        self.load()
        scale = float(self.model.logit_scale.exp()) if hasattr(self.model, "logit_scale") else 100.0
        out: list[dict] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start:start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
            img = _features(self.model.get_image_features(pixel_values=pixels)).float()
            img = img / img.norm(dim=-1, keepdim=True)
            out += _outputs(torch.softmax(scale * img @ self._text.T, dim=1))
        return out


def _features(out: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (older transformers) or an output with ``pooler_output``."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("text_embeds", "image_embeds", "pooler_output"):
        value = getattr(out, key, None)
        if value is not None:
            return value
    raise ModelLoadError(f"unexpected output of get_*_features: {type(out).__name__}")
