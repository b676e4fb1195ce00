"""Augmentation policies for classification training: AutoAugment, RandAugment, searched policies, Cutout.

Written on PIL from the papers' descriptions (torchvision does not import here); every random draw
comes from the NumPy generator the training set seeds per sample, so an epoch is the same on any
number of processes and after a resume.

Operations and their magnitudes (AutoAugment, Cubuk et al. 2019, Appendix Table 1; a level
``t`` in [0, 1] is the share of the largest magnitude; signed operations take a random sign):

=============  ==================================================  =============
operation      magnitude at ``t``                                  signed
=============  ==================================================  =============
ShearX/Y       shear ``0.3 t`` (PIL affine about the origin)       yes
TranslateX/Y   ``t`` x the policy's largest shift (CIFAR: 10 px of  yes
               32, i.e. 10/32 of the side; ImageNet: 150/331)
Rotate         ``30 t`` degrees                                    yes
Color,         enhancement factor ``0.1 + 1.8 t`` (PIL ImageEnhance) no
Brightness,
Contrast,
Sharpness
Posterize      keep ``8 - int(4 t)`` bits                          no
Solarize       invert pixels >= ``256 - int(256 t)``               no
AutoContrast,  none                                                no
Equalize,
Invert,
Identity
Cutout         a grey square of side ``0.2 t`` of the width         no
               (Fast AutoAugment's op; CutoutAbs: ``20 t`` px)
=============  ==================================================  =============

Pixels an affine transform uncovers are filled with grey (128), as AutoAugment's own code does.

* AutoAugment policies (``autoaugment-cifar``, ``autoaugment-imagenet``): 25 sub-policies of two
  operations ``(op, probability, level 0-9)`` (the paper's Appendix tables); a sub-policy is drawn
  uniformly per image and each of its operations applied with its probability, at level/10.
* RandAugment (``randaugment``, Cubuk et al. 2020): N operations drawn uniformly from the 14 above
  (Identity ... TranslateY, without Invert and Cutout), each applied at magnitude M on the paper's
  0-10 scale (``t = M / 10``). torchvision's ``RandAugment(num_ops=2, magnitude=9)`` uses 31 bins
  instead (``t = 9 / 30``). Magnitudes above 10 (RandAugment reports some, e.g. 14) extrapolate.
* a searched policy from a JSON file (``policy-file``; Fast AutoAugment's format): a list of
  sub-policies, each a list of ``[op, probability, level]`` with ``level`` in [0, 1]; the op names
  are Fast AutoAugment's (ShearX ... Cutout above, plus TranslateXAbs/TranslateYAbs: ``10 t`` px,
  Posterize2: keep ``int(4 t)`` bits, CutoutAbs).
* Cutout (DeVries & Taylor 2017): :func:`cutout` zeroes a ``length`` x ``length`` square of the
  normalised image tensor, its centre uniform over the image (so it may be cut by the border).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from ...errors import InputError
from .config import AUGMENTS  # noqa: F401  (the policies this module implements, declared with the config)

FILL = (128, 128, 128)

# AutoAugment's CIFAR-10 policy (paper, Appendix Table 7): (op, probability, level 0-9)
AUTOAUGMENT_CIFAR10 = (
    (("Invert", 0.1, 7), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 3)), (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)), (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
    (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)), (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)),
)
# AutoAugment's ImageNet policy (paper, Appendix Table 9)
AUTOAUGMENT_IMAGENET = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)), (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)), (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)), (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)), (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)
RANDAUGMENT_OPS = ("Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize", "Contrast",
                   "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY")
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "TranslateXAbs", "TranslateYAbs"}
TRANSLATE_CIFAR = 10.0 / 32.0  # AutoAugment's CIFAR code shifts by up to 10 px of 32
TRANSLATE_IMAGENET = 150.0 / 331.0  # the paper's range: [-150, 150] px on 331 px images


def _affine(img: Image.Image, coeffs: tuple) -> Image.Image:
    fill = FILL if img.mode == "RGB" else FILL[0]
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.NEAREST, fillcolor=fill)


def _cutout_pil(img: Image.Image, size: float, rng: np.random.Generator) -> Image.Image:
    if size <= 0:
        return img
    w, h = img.size
    x0 = int(max(0.0, rng.uniform(0, w) - size / 2.0))
    y0 = int(max(0.0, rng.uniform(0, h) - size / 2.0))
    out = img.copy()
    ImageDraw.Draw(out).rectangle((x0, y0, min(w, x0 + size), min(h, y0 + size)), fill=FILL)
    return out


def apply_op(img: Image.Image, name: str, t: float, rng: np.random.Generator, *,
             translate: float = TRANSLATE_CIFAR) -> Image.Image:
    """Operation ``name`` at level ``t`` (see the module docstring); a random sign for signed ops.

    ``t`` above 1 (RandAugment magnitudes above 10) extrapolates linearly, as RandAugment's own code does;
    posterize keeps at least 1 bit and solarize's threshold stops at 0.
    """
    t = float(max(t, 0.0))
    sign = -1.0 if name in _SIGNED and rng.random() < 0.5 else 1.0
    w, h = img.size
    if name == "Identity":
        return img
    if name == "ShearX":
        return _affine(img, (1, sign * 0.3 * t, 0, 0, 1, 0))
    if name == "ShearY":
        return _affine(img, (1, 0, 0, sign * 0.3 * t, 1, 0))
    if name == "TranslateX":
        return _affine(img, (1, 0, sign * t * translate * w, 0, 1, 0))
    if name == "TranslateY":
        return _affine(img, (1, 0, 0, 0, 1, sign * t * translate * h))
    if name == "TranslateXAbs":
        return _affine(img, (1, 0, sign * 10.0 * t, 0, 1, 0))
    if name == "TranslateYAbs":
        return _affine(img, (1, 0, 0, 0, 1, sign * 10.0 * t))
    if name == "Rotate":
        return img.rotate(sign * 30.0 * t, resample=Image.Resampling.NEAREST,
                          fillcolor=FILL if img.mode == "RGB" else FILL[0])
    if name in ("Color", "Brightness", "Contrast", "Sharpness"):
        return getattr(ImageEnhance, name)(img).enhance(0.1 + 1.8 * t)
    if name == "Posterize":
        return ImageOps.posterize(img, max(1, 8 - int(4 * t)))
    if name == "Posterize2":
        return ImageOps.posterize(img, max(1, int(4 * t)))
    if name == "Solarize":
        return ImageOps.solarize(img, max(0, 256 - int(256 * t)))
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Cutout":
        return _cutout_pil(img, 0.2 * t * w, rng)
    if name == "CutoutAbs":
        return _cutout_pil(img, 20.0 * t, rng)
    raise InputError(f"augmentation op: expected one of {', '.join(sorted(OPS))}; got {name!r}")


OPS = frozenset({"Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXAbs", "TranslateYAbs",
                 "Rotate", "Color", "Brightness", "Contrast", "Sharpness", "Posterize", "Posterize2", "Solarize",
                 "AutoContrast", "Equalize", "Invert", "Cutout", "CutoutAbs"})


def apply_subpolicy(img: Image.Image, subpolicy: Sequence[tuple[str, float, float]], rng: np.random.Generator, *,
                    level_scale: float, translate: float) -> Image.Image:
    """Each ``(op, probability, level)`` applied with its probability, at ``t = level / level_scale``."""
    for name, prob, level in subpolicy:
        if rng.random() < prob:
            img = apply_op(img, name, float(level) / level_scale, rng, translate=translate)
    return img


def load_policy_file(path: str | Path) -> list[list[tuple[str, float, float]]]:
    """A searched policy from JSON: ``[[[op, probability, level], ...], ...]`` with levels in [0, 1]."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"augment_policy: {p} does not exist; expected a JSON list of sub-policies "
                         "[[op, probability, level in [0, 1]], ...] (Fast AutoAugment's format)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"augment_policy: {p} is not valid JSON ({exc})") from None
    policy = []
    if not isinstance(data, list) or not data:
        raise InputError(f"augment_policy: {p}: expected a non-empty list of sub-policies; got {type(data).__name__}")
    for i, sub in enumerate(data):
        if not isinstance(sub, list) or not sub:
            raise InputError(f"augment_policy: {p}: sub-policy {i} is not a non-empty list of [op, probability, level]")
        ops = []
        for op in sub:
            ok = isinstance(op, (list, tuple)) and len(op) == 3 and op[0] in OPS
            if ok:
                try:
                    prob, level = float(op[1]), float(op[2])
                except (TypeError, ValueError):
                    ok = False
            if not ok or not (0.0 <= prob <= 1.0 and 0.0 <= level <= 1.0):
                raise InputError(f"augment_policy: {p}: sub-policy {i} has {op!r}; expected [op, probability in "
                                 f"[0, 1], level in [0, 1]] with op one of {', '.join(sorted(OPS))}")
            ops.append((str(op[0]), prob, level))
        policy.append(ops)
    return policy


class PolicyAugment:
    """The image-level augmentation of one ``augment`` setting (applied before crop and flip)."""

    def __init__(self, kind: str, *, randaugment_ops: int = 2, randaugment_magnitude: float = 9.0,
                 policy_file: str | Path | None = None) -> None:
        if kind not in AUGMENTS:
            raise InputError(f"augment: expected one of {', '.join(AUGMENTS)}; got {kind!r}")
        self.kind = kind
        self.n, self.m = int(randaugment_ops), float(randaugment_magnitude)
        self.policy: Sequence[Any] = ()
        if kind == "autoaugment-cifar":
            self.policy, self.scale, self.translate = AUTOAUGMENT_CIFAR10, 10.0, TRANSLATE_CIFAR
        elif kind == "autoaugment-imagenet":
            self.policy, self.scale, self.translate = AUTOAUGMENT_IMAGENET, 10.0, TRANSLATE_IMAGENET
        elif kind == "policy-file":
            if policy_file is None:
                raise InputError("augment: policy-file needs augment_policy (a JSON file of sub-policies)")
            self.policy, self.scale, self.translate = load_policy_file(policy_file), 1.0, 0.45

    @property
    def changes_pixels(self) -> bool:
        return self.kind not in ("crop-flip", "none")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.changes_pixels:
            return image
        img = Image.fromarray(np.ascontiguousarray(image))
        if self.kind == "randaugment":
            for i in rng.integers(0, len(RANDAUGMENT_OPS), size=self.n):
                img = apply_op(img, RANDAUGMENT_OPS[int(i)], self.m / 10.0, rng, translate=TRANSLATE_CIFAR
                               if max(img.size) <= 64 else TRANSLATE_IMAGENET)
        else:
            sub = self.policy[int(rng.integers(0, len(self.policy)))]
            img = apply_subpolicy(img, sub, rng, level_scale=self.scale, translate=self.translate)
        return np.asarray(img.convert("RGB"))


def cutout(x: torch.Tensor, length: int, rng: np.random.Generator) -> torch.Tensor:
    """Zero a ``length`` x ``length`` square of a (C, H, W) tensor, centred at a uniform pixel (DeVries & Taylor)."""
    if length <= 0:
        return x
    h, w = x.shape[-2:]
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, y1 = max(0, cy - length // 2), min(h, cy + length // 2 + length % 2)
    x0, x1 = max(0, cx - length // 2), min(w, cx + length // 2 + length % 2)
    x = x.clone()
    x[..., y0:y1, x0:x1] = 0.0
    return x


def describe(kind: str, n: int, m: float, cutout_px: int) -> str:
    """One line for logs and reports."""
    text = {"randaugment": f"RandAugment N={n} M={m:g}", "autoaugment-cifar": "AutoAugment (CIFAR-10 policy)",
            "autoaugment-imagenet": "AutoAugment (ImageNet policy)", "policy-file": "searched policy (file)",
            "crop-flip": "crop + flip", "none": "none"}[kind]
    return text + (f", Cutout {cutout_px} px" if cutout_px else "")


__all__ = ["AUGMENTS", "AUTOAUGMENT_CIFAR10", "AUTOAUGMENT_IMAGENET", "OPS", "PolicyAugment", "RANDAUGMENT_OPS",
           "apply_op", "apply_subpolicy", "cutout", "describe", "load_policy_file"]
