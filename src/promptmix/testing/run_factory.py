"""A complete, deterministic run folder (``RUN/``) in the schema of :mod:`promptmix.schema`, without any model.

Used by the publishing and dataset-card tests, which need every kind of finished run (counting, depth,
classification) without the time of running models. Everything a finished run holds is written as the stages write
it: a tiny real dataset (Hub layout), ``captions/info.json``, the prompt bag, the fake dataset
(``RUN/fake``, configs ``kept`` and ``all``) and ``manifest.json`` with every stage's record.
Images are small procedural drawings (dots on a gradient for crowds, ramps for depth, shapes for
classes); model ids are realistic but their commit hashes are placeholders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .. import schema as S

PINNED_VERSIONS = {"python": "3.11.9", "promptmix": "0.1.0", "torch": "2.13.0", "diffusers": "0.42.1",
                   "transformers": "5.23.0", "datasets": "5.2.0", "huggingface_hub": "2.4.0",
                   "accelerate": "1.15.0", "numpy": "2.3.0", "pillow": "13.0.0"}
FINISHED_AT = "2025-01-15T12:00:00+00:00"
REAL_NAMES = {"counting": "shanghaitech-part-b", "depth": "nyu-depth-v2", "classification": "cifar10-subset"}


@dataclasses.dataclass(frozen=True)
class FakeRun:
    run_dir: Path
    real_dir: Path
    task: str
    class_names: tuple[str, ...]
    rows: int
    kept: int


def placeholder_hash(name: str) -> str:
    """A 40-hex placeholder commit hash, stable for a model name."""
    return hashlib.sha1(f"placeholder:{name}".encode()).hexdigest()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _crowd(rng: np.random.RandomState, w: int, h: int, n: int, gray: bool) -> tuple[Image.Image, np.ndarray]:
    top, bottom = rng.randint(90, 200, size=3), rng.randint(40, 120, size=3)
    ramp = np.linspace(0, 1, h)[:, None, None]
    arr = (top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp).repeat(w, axis=1).astype(np.uint8)
    image = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(image)
    points = np.stack([rng.uniform(0, w, n), rng.uniform(h * 0.3, h, n)], axis=1).astype(np.float32)
    for x, y in points:
        r = 1 + 2 * y / h
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(30, 25, 20))
    return (image.convert("L") if gray else image), points


def _depth_scene(rng: np.random.RandomState, w: int, h: int) -> tuple[Image.Image, np.ndarray]:
    far, near = rng.uniform(3.0, 8.0), rng.uniform(0.6, 2.0)
    depth = np.linspace(far, near, h, dtype=np.float32)[:, None].repeat(w, axis=1)
    depth += rng.uniform(0, 0.3, size=(h, w)).astype(np.float32)
    shade = (255 * (1 - (depth - depth.min()) / (np.ptp(depth) + 1e-6))).astype(np.uint8)
    color = rng.randint(60, 255, size=3)
    arr = (shade[..., None] / 255.0 * color[None, None, :]).astype(np.uint8)
    return Image.fromarray(arr, "RGB"), depth


def _shape(rng: np.random.RandomState, w: int, h: int, label: int) -> Image.Image:
    bg = tuple(int(v) for v in rng.randint(150, 255, size=3))
    image = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(image)
    fg = tuple(int(v) for v in rng.randint(0, 120, size=3))
    box = [w * 0.2 + rng.uniform(-3, 3), h * 0.2, w * 0.8, h * 0.8 + rng.uniform(-3, 3)]
    [draw.ellipse, draw.rectangle, lambda b, fill: draw.polygon(
        [(b[0], b[3]), ((b[0] + b[2]) / 2, b[1]), (b[2], b[3])], fill=fill)][label % 3](box, fill=fg)
    return image


def _density(points: np.ndarray, w: int, h: int, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    """A coarse density map (rows x cols) summing to the number of points."""
    grid = np.zeros(shape, dtype=np.float32)
    for x, y in points:
        grid[min(shape[0] - 1, int(y / h * shape[0])), min(shape[1] - 1, int(x / w * shape[1]))] += 1.0
    return grid


def write_real_dataset(real_dir: str | Path, task: str = "counting", *, class_names: Sequence[str] = (),
                       n_real: int = 4, seed: int = 0) -> list[dict]:
    """A tiny real dataset in Hub layout (splits train and test) in ``real_features(task)``; returns the train rows."""
    return _write_real(Path(real_dir), task, tuple(class_names), n_real, np.random.RandomState(seed))


def _write_real(real_dir: Path, task: str, class_names: Sequence[str], n_real: int, rng) -> list[dict]:
    from datasets import Dataset

    from ..utils.io import write_hub_folder

    features = S.real_features(task, class_names)
    rows: dict[str, list[dict]] = {"train": [], "test": []}
    for split, n in (("train", n_real), ("test", 2)):
        for i in range(n):
            w, h = 64, 48
            gray = task == "counting" and i % 3 == 2
            row = {S.IMAGE_ID: f"{split}-{i:03d}", S.WIDTH: w, S.HEIGHT: h, S.JPEG_QUALITY: 75, S.IS_GRAYSCALE: gray}
            if task == "counting":
                image, points = _crowd(rng, w, h, int(rng.randint(8, 40)), gray)
                row.update({S.POINTS: points.tolist(), S.COUNT: len(points)})
            elif task == "depth":
                image, depth = _depth_scene(rng, w, h)
                row.update({S.DEPTH: depth.tolist(), S.SCENE: ["kitchen", "bedroom", "office"][i % 3]})
            else:
                label = i % len(class_names)
                image = _shape(rng, 32, 32, label)
                row.update({S.LABEL: label, S.WIDTH: 32, S.HEIGHT: 32})
            row[S.IMAGE] = {"bytes": _jpeg(image, 75), "path": None}
            rows[split].append(row)
    splits = {split: Dataset.from_list(r, features=features) for split, r in rows.items()}
    write_hub_folder(real_dir, {"default": splits}, metadata={"pretty_name": real_dir.name})
    return rows["train"]


def make_run(root: str | Path, *, task: str = "counting", class_names: Sequence[str] = ("cat", "dog", "bird"),
             n_real: int = 4, k: int = 3, annotators: Sequence[str] = ("csrnet", "dmcount"),
             keep_percent: float = 60.0, manual_prompts: Sequence[str] = ("a crowded train station platform",),
             seed: int = 0) -> FakeRun:
    """Write ``root/run`` and ``root/<real name>`` and return their paths and row counts.

    ``n_real`` real training images, each captioned once; every caption plus each manual prompt
    gives ``k`` fake images. With several annotators the quality score is the paper's (max pairwise
    disagreement / max magnitude) and the lowest ``keep_percent`` % are kept.
    """
    from datasets import Dataset

    from ..utils.io import write_hub_folder, write_json_atomic, write_parquet_atomic
    from ..utils.manifest import record_stage

    if task not in S.TASKS:
        raise ValueError(f"task: expected one of {S.TASKS}; got {task!r}")
    root = Path(root)
    rng = np.random.RandomState(seed)
    class_names = tuple(class_names) if task == "classification" else ()
    real_dir = root / REAL_NAMES[task]
    run_dir = root / "run"
    real_train = _write_real(real_dir, task, class_names, n_real, rng)

    def model(name: str, revision: str = "main") -> dict:
        return {"name": name, "revision": revision, "commit_hash": placeholder_hash(name), "local": False}

    # captions, prompt bag -----------------------------------------------------------------------------------
    subjects = {"counting": "a large crowd of people", "depth": "a room", "classification": "a photo"}
    places = ["in a city square", "at a train station", "on a busy street", "in a stadium", "near a market",
              "in a park", "at a festival", "outside a church"]
    captions, prompts = [], []
    for i, real in enumerate(real_train):
        label = real.get(S.LABEL)
        caption = f"{subjects[task]} {places[i % len(places)]}"
        if task == "classification":
            caption = f"a photo of a {class_names[label]} {places[i % len(places)]}"
        captions.append({S.IMAGE_ID: real[S.IMAGE_ID], S.CAPTION: caption, S.LABEL: label, S.CAPTIONER: "blip"})
        text = f"large crowd, {caption}" if task == "counting" else caption
        text += ", black and white image" if real[S.IS_GRAYSCALE] else ", color image"
        prompts.append({S.PROMPT: text, S.BASE_TEXT: caption, S.ORIGIN: "caption",
                        S.SOURCE_IMAGE_IDS: [real[S.IMAGE_ID]], S.LABEL: label})
    if task == "counting":
        for text in manual_prompts:
            prompts.append({S.PROMPT: f"large crowd, {text}", S.BASE_TEXT: text, S.ORIGIN: "manual",
                            S.SOURCE_IMAGE_IDS: [], S.LABEL: None})
    for p in prompts:
        p[S.PROMPT_ID] = hashlib.sha256(p[S.PROMPT].encode()).hexdigest()[:16]
    (run_dir / "captions").mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(Dataset.from_list(captions, features=S.CAPTIONS), run_dir / "captions" / "captions.parquet")
    info = {"task": task, "class_names": list(class_names),
            "real": {"ref": str(real_dir), "revision": None, "split": "train"},
            "captioner": model("Salesforce/blip-image-captioning-base")}
    write_json_atomic(run_dir / "captions" / "info.json", info)
    write_parquet_atomic(Dataset.from_list(prompts, features=S.PROMPTS), run_dir / "prompts" / "prompts.parquet")

    # generated + annotated rows ------------------------------------------------------------------------------
    by_id = {r[S.IMAGE_ID]: r for r in real_train}
    rows = []
    for p in prompts:
        source = by_id.get(p[S.SOURCE_IMAGE_IDS][0]) if p[S.SOURCE_IMAGE_IDS] else None
        w, h = (source[S.WIDTH], source[S.HEIGHT]) if source else (64, 48)
        for j in range(k):
            row_seed = int(rng.randint(0, 2**31 - 1))
            gray = bool(source and source[S.IS_GRAYSCALE])
            row = {S.ROW_ID: f"{p[S.PROMPT_ID]}-{j:05d}", S.PROMPT: p[S.PROMPT], S.PROMPT_ID: p[S.PROMPT_ID],
                   S.IMAGE_INDEX: j, S.SOURCE_IMAGE_ID: source[S.IMAGE_ID] if source else None,
                   S.LABEL: p[S.LABEL], S.SEED: row_seed, S.WIDTH: w, S.HEIGHT: h,
                   S.JPEG_QUALITY: 75, S.MIXING: None, S.CONDITIONING_IMAGE_ID: None}
            annotations = []
            if task == "counting":
                base = source[S.COUNT] if source else 30
                image, points = _crowd(rng, w, h, max(1, int(base + rng.randint(-6, 7))), gray)
                density = _density(points, w, h)
                for a, name in enumerate(annotators):
                    noise = rng.uniform(0.7, 1.3) if a else 1.0
                    d = (density * noise).astype(np.float16)
                    annotations.append({S.ANNOTATOR: name, S.COUNT: float(d.sum()), S.DENSITY: d.tolist(), S.OK: True})
                magnitudes = np.array([x[S.COUNT] for x in annotations])
                row[S.DENSITY] = np.mean([np.array(x[S.DENSITY], dtype=np.float32) for x in annotations],
                                         axis=0).astype(np.float16).tolist()
                row[S.COUNT] = float(magnitudes.mean())
            elif task == "depth":
                image, depth = _depth_scene(rng, w, h)
                small = depth[::8, ::8]
                for a, name in enumerate(annotators):
                    d = (small * (rng.uniform(0.8, 1.2) if a else 1.0)).astype(np.float16)
                    annotations.append({S.ANNOTATOR: name, S.DEPTH: d.tolist(), S.OK: True})
                magnitudes = np.array([np.mean(np.array(x[S.DEPTH], dtype=np.float32)) for x in annotations])
                row[S.DEPTH] = np.mean([np.array(x[S.DEPTH], dtype=np.float32) for x in annotations],
                                       axis=0).astype(np.float16).tolist()
            else:
                image = _shape(rng, 32, 32, p[S.LABEL])
                for a, name in enumerate(annotators):
                    pred = p[S.LABEL] if (a == 0 or rng.uniform() < 0.7) else int(rng.randint(len(class_names)))
                    annotations.append({S.ANNOTATOR: name, S.LABEL: pred, S.PROBABILITY: float(rng.uniform(0.4, 1.0)),
                                        S.OK: True})
                magnitudes = np.array([x[S.PROBABILITY] for x in annotations])
            if len(annotators) > 1:
                if task == "classification":
                    preds = {x[S.LABEL] for x in annotations}
                    q = (len(preds) - 1) / max(1, len(annotations) - 1) + float(1 - magnitudes.min()) * 0.1
                else:
                    q = float((magnitudes.max() - magnitudes.min()) / max(np.abs(magnitudes).max(), 1e-6))
                row[S.QUALITY_SCORE] = q
            else:
                row[S.QUALITY_SCORE] = None
            row[S.IMAGE] = {"bytes": _jpeg(image, 75), "path": None}
            row[S.ANNOTATIONS] = annotations
            row[S.ANNOTATION_OK] = True
            row[S.TARGET_ANNOTATOR] = "mean" if len(annotators) > 1 else annotators[0]
            rows.append(row)

    scored = sorted(range(len(rows)), key=lambda i: (rows[i][S.QUALITY_SCORE] or 0.0, rows[i][S.ROW_ID]))
    n_keep = len(rows) if len(annotators) < 2 else max(1, int(round(len(rows) * keep_percent / 100)))
    keep = set(scored[:n_keep])
    for i, row in enumerate(rows):
        row[S.KEPT] = i in keep
    threshold = max((rows[i][S.QUALITY_SCORE] for i in keep if rows[i][S.QUALITY_SCORE] is not None), default=None)
    features = S.fake_features(task, class_names)
    all_ds = Dataset.from_list(rows, features=features)
    kept_ds = all_ds.filter(lambda r: r[S.KEPT])
    write_hub_folder(run_dir / "fake", {"kept": {"train": kept_ds}, "all": {"train": all_ds}}, default="kept",
                     body="# fake dataset\n")

    # manifest ----------------------------------------------------------------------------------------------
    generator = "stabilityai/stable-diffusion-2-1-base"
    annotator_models = {"counting": {},
                        "depth": {a: f"promptmix/{a}-nyu" for a in annotators},
                        "classification": {a: f"promptmix/{a}-cifar10" for a in annotators}}[task]
    common = {"versions": PINNED_VERSIONS, "finished_at": FINISHED_AT}
    record_stage(run_dir, "captions", {**common, "config": {
        "real": str(real_dir), "split": "train", "model": "Salesforce/blip-image-captioning-base", "revision": "main",
        "max_new_tokens": 40, "batch_size": 8}, "models": {"captioner": model("Salesforce/blip-image-captioning-base")},
        "rows": len(captions)})
    record_stage(run_dir, "prompts", {**common, "config": {
        "prefix": "large crowd" if task == "counting" else None, "grayscale_suffix": "black and white image",
        "color_suffix": "color image", "separator": ", ",
        "manual_prompts": list(manual_prompts) if task == "counting" else [], "class_template": None},
        "rows": len(prompts)})
    record_stage(run_dir, "generate", {**common, "config": {
        "prompts": str(run_dir / "prompts"), "model": generator, "revision": "main", "images_per_prompt": k,
        "seed": 1234, "steps": 25, "guidance_scale": 7.5, "scheduler": "DPMSolverMultistepScheduler",
        "max_side": 768, "jpeg_quality": "source", "default_jpeg_quality": 95, "match_grayscale": True,
        "batch_size": 4, "device": "auto", "dtype": "auto"}, "models": {"generator": model(generator)}, "rows": len(rows)})
    if task == "counting":  # checkpoint files, identified by their SHA-256
        specs = {a: f"{a}={a.upper()}_shtb.pth" for a in annotators}
        ann_models = {a: {"weights_sha256": hashlib.sha256(f"weights:{a}".encode()).hexdigest()} for a in annotators}
    else:
        specs = {a: f"{a}={annotator_models.get(a, f'promptmix/{a}')}" for a in annotators}
        ann_models = {a: model(annotator_models.get(a, f"promptmix/{a}")) for a in annotators}
    record_stage(run_dir, "annotate", {**common, "task": task,
        "annotators": [{"name": a, "task": task, "spec": specs[a], "complete": True} for a in annotators],
        "config": {"annotators": [specs[a] for a in annotators], "batch_size": "4", "device": None, "dtype": None},
        "models": ann_models})
    record_stage(run_dir, "filter", {**common, "config": {"keep_percent": keep_percent, "target": "mean"},
                                     "keep_percent": keep_percent, "threshold": threshold,
                                     "rows": len(rows), "kept": len(keep)})
    return FakeRun(run_dir=run_dir, real_dir=real_dir, task=task, class_names=class_names, rows=len(rows),
                   kept=len(keep))
