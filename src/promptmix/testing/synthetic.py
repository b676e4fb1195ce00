"""Small synthetic real and fake datasets in the project's schemas, for tests, benchmarks and smoke runs.

The pictures carry the signal the task needs, so a network can learn from them: crowds are bright
dots (one per head point) on a dark gradient, depth scenes are shaded ramps whose brightness
falls with depth, classes are coloured shapes. Fake rows follow ``schema.fake_features`` with one
prompt per group of rows, per-annotator outputs in ``annotations`` and the target column;
``target_scale`` multiplies one prompt's targets (to build a prompt that hurts training).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .. import maps
from .. import schema as S
from ..utils.io import write_hub_folder, write_parts_folder

DEFAULT_CLASSES = ("cat", "dog", "bird")
ANNOTATOR_STRIDE = 8  # fake maps are stored at 1/8 of the image, as counting annotators output them


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def crowd_image(rng: np.random.Generator, h: int, w: int, n: int) -> tuple[Image.Image, np.ndarray]:
    ramp = np.linspace(20, 60, h, dtype=np.float32)[:, None, None].repeat(w, axis=1).repeat(3, axis=2)
    image = Image.fromarray(ramp.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    points = np.stack([rng.uniform(1, w - 1, n), rng.uniform(1, h - 1, n)], axis=1).astype(np.float32)
    for x, y in points:
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(235, 225, 210))
    return image, points


def smooth_noise_images(n: int, width: int, height: int, *, seed: int = 0) -> list[Image.Image]:
    """``n`` photo-like RGB images (a bicubic blow-up of random colours plus fine noise): JPEG sizes and decode
    costs close to real photographs', for speed benchmarks where the content does not matter."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 255, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        noise = rng.integers(-12, 12, (height, width, 3))
        out.append(Image.fromarray(np.clip(np.asarray(im, dtype=np.int16) + noise, 0, 255).astype(np.uint8)))
    return out


def depth_image(rng: np.random.Generator, h: int, w: int) -> tuple[Image.Image, np.ndarray]:
    far, near = rng.uniform(4.0, 9.0), rng.uniform(0.5, 2.0)
    depth = np.linspace(far, near, h, dtype=np.float32)[:, None].repeat(w, axis=1)
    depth += rng.uniform(0, 0.2, size=(h, w)).astype(np.float32)
    shade = np.clip(255 * (1 - depth / 10.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([shade] * 3, axis=-1), "RGB"), depth


def class_image(rng: np.random.Generator, h: int, w: int, label: int) -> Image.Image:
    palette = [(200, 60, 60), (60, 180, 60), (60, 80, 200), (200, 200, 60), (160, 60, 200)]
    noise = rng.integers(0, 40, size=(h, w, 3))
    image = Image.fromarray((noise + 100).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    box = [w * 0.2, h * 0.2, w * 0.8, h * 0.8]
    fill = palette[label % len(palette)]
    (draw.ellipse if label % 2 == 0 else draw.rectangle)(box, fill=fill)
    return image


def _meta(h: int, w: int) -> dict:
    return {S.WIDTH: w, S.HEIGHT: h, S.JPEG_QUALITY: 90, S.IS_GRAYSCALE: False}


def real_rows(task: str, n: int, *, size: tuple[int, int] = (48, 64), seed: int = 0, prefix: str = "img",
              class_names: Sequence[str] = DEFAULT_CLASSES, count_range: tuple[int, int] = (3, 20)) -> list[dict]:
    rng = np.random.default_rng(seed)
    h, w = size
    rows = []
    for i in range(n):
        row = {S.IMAGE_ID: f"{prefix}-{i:04d}", **_meta(h, w)}
        if task == "counting":
            image, points = crowd_image(rng, h, w, int(rng.integers(*count_range)))
            row.update({S.POINTS: points.tolist(), S.COUNT: len(points)})
        elif task == "depth":
            image, depth = depth_image(rng, h, w)
            row.update({S.DEPTH: maps.encode(depth, np.float32), S.SCENE: "room"})
        else:
            label = i % len(class_names)
            image = class_image(rng, h, w, label)
            row[S.LABEL] = label
        row[S.IMAGE] = {"bytes": _jpeg(image), "path": None}
        rows.append(row)
    return rows


def write_real_dataset(out: str | Path, task: str, *, sizes: Mapping[str, int] | None = None,
                       size: tuple[int, int] = (48, 64), class_names: Sequence[str] = DEFAULT_CLASSES,
                       seed: int = 0, count_range: tuple[int, int] = (3, 20)) -> Path:
    """A Hub-layout real dataset with splits train/validation/test (default 8/4/4 rows); crowds of
    ``count_range`` heads (low inclusive, high exclusive)."""
    from datasets import Dataset

    sizes = dict(sizes or {"train": 8, "validation": 4, "test": 4})
    features = S.real_features(task, class_names)
    splits = {split: Dataset.from_list(real_rows(task, n, size=size, seed=seed + 1000 * i, prefix=split,
                                                 class_names=class_names, count_range=count_range), features=features)
              for i, (split, n) in enumerate(sizes.items())}
    return write_hub_folder(out, {"default": splits}, metadata={"pretty_name": Path(out).name})


def prompt_id(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def fake_rows(task: str, prompts: Sequence[str], per_prompt: int, *, size: tuple[int, int] = (48, 64),
              class_names: Sequence[str] = DEFAULT_CLASSES, seed: int = 0,
              annotators: Sequence[str] = ("annotator_a", "annotator_b"),
              target_scale: Mapping[str, float] | None = None) -> list[dict]:
    from ..density import align_density, density_map

    rng = np.random.default_rng(seed)
    h, w = size
    sh, sw = max(1, h // ANNOTATOR_STRIDE), max(1, w // ANNOTATOR_STRIDE)
    rows = []
    for p_index, prompt in enumerate(prompts):
        pid = prompt_id(prompt)
        scale = float((target_scale or {}).get(prompt, 1.0))
        label = p_index % len(class_names) if task == "classification" else None
        for j in range(per_prompt):
            row = {S.ROW_ID: f"{pid}-{j:05d}", S.PROMPT: prompt, S.PROMPT_ID: pid, S.IMAGE_INDEX: j,
                   S.SOURCE_IMAGE_ID: None, S.LABEL: label, S.SEED: int(rng.integers(2 ** 31)), S.WIDTH: w,
                   S.HEIGHT: h, S.JPEG_QUALITY: 90, S.MIXING: None, S.CONDITIONING_IMAGE_ID: None}
            annotations = []
            if task == "counting":
                image, points = crowd_image(rng, h, w, int(rng.integers(3, 20)))
                dens = align_density(density_map(points, h, w, sigma=2.0), (h, w), (sh, sw), stride=1,
                                     out_stride=ANNOTATOR_STRIDE) * scale
                for a, name in enumerate(annotators):
                    d = (dens * (1.0 + 0.05 * a)).astype(np.float16)
                    annotations.append({S.ANNOTATOR: name, S.COUNT: float(d.astype(np.float32).sum()),
                                        S.DENSITY: maps.encode(d), S.OK: True})
                row[S.DENSITY] = None  # the target is annotations[0]'s map, stored once
                row[S.COUNT] = float(dens.astype(np.float16).astype(np.float32).sum())
            elif task == "depth":
                image, depth = depth_image(rng, h, w)
                small = depth[::ANNOTATOR_STRIDE, ::ANNOTATOR_STRIDE][:sh, :sw] * scale
                for a, name in enumerate(annotators):
                    noisy = (small * (1.0 + 0.05 * a)).astype(np.float16)
                    annotations.append({S.ANNOTATOR: name, S.DEPTH: maps.encode(noisy), S.OK: True})
                row[S.DEPTH] = None  # the target is annotations[0]'s map, stored once
            else:
                image = class_image(rng, h, w, label)
                wrong = (label + 1) % len(class_names)
                for a, name in enumerate(annotators):
                    annotations.append({S.ANNOTATOR: name, S.LABEL: label if a == 0 else wrong, S.PROBABILITY: 0.9,
                                        S.OK: True})
            row.update({S.IMAGE: {"bytes": _jpeg(image), "path": None}, S.ANNOTATIONS: annotations,
                        S.QUALITY_SCORE: 0.05, S.KEPT: True, S.ANNOTATION_OK: True, S.TARGET_ANNOTATOR: annotators[0]})
            rows.append(row)
    return rows


def write_fake_dataset(out: str | Path, task: str, *, prompts: Sequence[str] = ("large crowd",), per_prompt: int = 4,
                       size: tuple[int, int] = (48, 64), class_names: Sequence[str] = DEFAULT_CLASSES, seed: int = 0,
                       annotators: Sequence[str] = ("annotator_a", "annotator_b"),
                       target_scale: Mapping[str, float] | None = None, all_extra: int = 0) -> Path:
    """A Hub-layout fake dataset (configs ``kept`` and ``all``, split train). ``all`` holds ``all_extra``
    more rows (``kept`` False) than ``kept``."""
    from datasets import Dataset

    features = S.fake_features(task, class_names if task == "classification" else None)
    rows = fake_rows(task, prompts, per_prompt, size=size, class_names=class_names, seed=seed, annotators=annotators,
                     target_scale=target_scale)
    extra = fake_rows(task, ["discarded rows"], all_extra, size=size, class_names=class_names, seed=seed + 1,
                      annotators=annotators) if all_extra else []
    for r in extra:
        r[S.KEPT] = False
    parts = {"kept": {"train": Dataset.from_list(rows, features=features)}}
    if extra:
        parts["dropped"] = {"train": Dataset.from_list(extra, features=features)}
    return write_parts_folder(out, parts, {"kept": ["kept"], "all": list(parts)}, default="kept")
