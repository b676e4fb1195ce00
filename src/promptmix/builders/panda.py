"""PANDA-Crowd builder (PromptMix Table I, last column): gigapixel crowd images with a box per person.

Raw layout (the PANDA download, as its toolkit, GigaVision/PANDA-Toolkit, reads it)::

    ROOT/image_train/<scene>/<image>.jpg      one folder per scene (image_test/ or ROOT/<scene>/ also work)
    ROOT/image_annos/<annotations>.json       one or more JSON files (or --annotations FILE ...)

Each JSON file maps an image path (relative to the image folder, e.g. ``"01_Airport/IMG_01_01.jpg"``)
to ``{"image id": int, "image size": {"height": H, "width": W}, "objects list": [object, ...]}``.
Coordinates are *normalised* to [0, 1] by the image size (the toolkit multiplies them by the width
and height and clamps them to [0, 1] first). An object is one person:

* ``{"rect": {"tl": {"x", "y"}, "br": {"x", "y"}}}`` -- a head box (PANDA-Crowd's crowd annotation,
  the toolkit's ``headbbox`` mode); a ``"category"`` key, when present, must be a person category;
* ``{"category": "person", "rects": {"head": rect, "visible body": rect, "full body": rect}}`` --
  PANDA-Image's person records: the ``head`` box is used;
* ``{"category": "ignore" | "fake person" | "crowd" | ..., "rect": ...}`` -- regions that are not one
  person: left out and counted in the build summary.

A head *point* (``{"rect": {"x", "y"}}``, the toolkit's ``headpoint`` mode) has no box to match the
kernel to: such a file is refused with a message that asks for the head-box file.

What the builder does (PromptMix IV-A-1):

* every image is resized to exactly ``size`` (2,560 x 1,440: "the maximum size that fits our GPU
  memory"; PANDA-Crowd's images average 26,382 x 14,767, so the aspect ratio changes by under 1 %);
  gigapixel JPEGs are decoded at a reduced scale first (``Image.draft``) and re-encoded with their
  own quantization tables (same JPEG quality);
* boxes are clamped to the frame and scaled to the stored image; ``points`` are the box centres
  (the Gaussian's centre) and ``boxes`` the boxes (``schema.COUNTING_REAL_BOXES``); training with
  ``density_kernel: box`` matches each Gaussian to its box (:func:`promptmix.density.box_density_map`);
* splits: the paper takes "30 images for training, 6 for validation and 9 for test" of the 45 and
  does not say which; here the images, sorted by path, are permuted with numpy seed 42 (the paper's
  seed for its validation sets) and cut 30 / 6 / 9 (for another number of images, in the same
  proportions, at least one image each).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import schema
from ..errors import InputError
from ..utils.progress import progress
from .common import BadItem, Build, BuildReport, StoredImage, _encode_like, dataset_body, is_grayscale, \
    natural_key, source_jpeg_quality

logger = logging.getLogger(__name__)

PANDA_SIZE = (2560, 1440)  # (W, H), PromptMix IV-A
PANDA_SPLIT = (30, 6, 9)  # train / validation / test images
IMAGE_FOLDERS = ("image_train", "image_test", "images", "")
PERSON_CATEGORIES = ("person", "head", "people", "pedestrian")
_LAYOUT = ("ROOT/image_train/<scene>/<image>.jpg with ROOT/image_annos/*.json mapping '<scene>/<image>.jpg' to "
           "{'image size': {'height', 'width'}, 'objects list': [{'rect': {'tl': {'x', 'y'}, 'br': {'x', 'y'}}}]}")


def annotation_files(root: Path, annotations: Sequence[str | Path] | None = None) -> list[Path]:
    """The JSON annotation files: ``annotations`` if given, else every ``*.json`` in ``ROOT/image_annos`` (or ROOT)."""
    if annotations:
        files = [Path(a).expanduser() for a in annotations]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise InputError(f"PANDA-Crowd: annotation file {missing[0]} does not exist; expected {_LAYOUT}")
        return files
    for folder in (root / "image_annos", root):
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if files:
            return files
    raise InputError(f"PANDA-Crowd: no *.json annotation file in {root / 'image_annos'} or {root}; expected {_LAYOUT}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"PANDA-Crowd: {path} is not a readable JSON file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"PANDA-Crowd: {path} holds {type(data).__name__}; expected a JSON object mapping image "
                         f"paths to image records ({_LAYOUT})")
    return data


def _xy(point: Any, where: str) -> tuple[float, float]:
    try:
        x, y = float(point["x"]), float(point["y"])
    except (TypeError, KeyError, ValueError):
        raise BadItem(f"{where}: expected {{'x': number, 'y': number}}; got {point!r}") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise BadItem(f"{where}: coordinates must be finite; got {point!r}")
    return x, y


def _rect(rect: Any, where: str) -> tuple[float, float, float, float]:
    if isinstance(rect, dict) and "x" in rect and "tl" not in rect:
        raise BadItem(f"{where}: a head point ({{'x', 'y'}}), not a box; the paper matches each Gaussian to the "
                      "person's box: use PANDA-Crowd's head-box annotation file (rect with 'tl' and 'br')")
    if not isinstance(rect, dict) or "tl" not in rect or "br" not in rect:
        raise BadItem(f"{where}: expected a box {{'tl': {{'x', 'y'}}, 'br': {{'x', 'y'}}}}; got {rect!r}")
    x0, y0 = _xy(rect["tl"], f"{where} tl")
    x1, y1 = _xy(rect["br"], f"{where} br")
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def parse_objects(objects: Any, where: str) -> tuple[np.ndarray, int]:
    """(N, 4) normalised (x0, y0, x1, y1) person boxes of one image's ``objects list``, and how many non-person
    regions were left out."""
    if not isinstance(objects, list):
        raise BadItem(f"{where}: 'objects list' is {type(objects).__name__}; expected a list of objects")
    boxes, other = [], 0
    for i, obj in enumerate(objects):
        label = f"{where} object {i}"
        if not isinstance(obj, dict):
            raise BadItem(f"{label}: expected an object record; got {obj!r}")
        category = obj.get("category")
        if "rects" in obj:  # PANDA-Image person record: take its head box
            rects = obj["rects"]
            if not isinstance(rects, dict) or "head" not in rects:
                raise BadItem(f"{label}: 'rects' has no 'head' box; expected {{'head': rect, ...}}")
            boxes.append(_rect(rects["head"], f"{label} head"))
        elif category is not None and str(category).lower() not in PERSON_CATEGORIES:
            other += 1  # ignore regions, fake persons, dense crowd regions, vehicles
        else:
            boxes.append(_rect(obj.get("rect"), label))
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return arr, other


def _image_path(root: Path, key: str) -> Path:
    for folder in IMAGE_FOLDERS:
        p = root / folder / key if folder else root / key
        if p.is_file():
            return p
    return root / IMAGE_FOLDERS[0] / key


@contextlib.contextmanager
def _no_pixel_limit():
    """PIL refuses images above ~179 M pixels (decompression-bomb guard); PANDA's are ~390 M."""
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def read_resized(path: Path, size: tuple[int, int], expected: tuple[int, int] | None) -> StoredImage:
    """The image at ``path`` resized to exactly ``size`` (W, H); a JPEG keeps its quantization tables."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise BadItem(f"{path}: image file is missing")
    with _no_pixel_limit():
        try:
            im = Image.open(path)
        except UnidentifiedImageError:
            raise BadItem(f"{path}: not a readable image; expected a JPEG") from None
        except OSError as exc:
            raise BadItem(f"{path}: cannot be opened ({exc})") from None
        full = im.size
        if expected is not None and tuple(expected) != tuple(full):
            raise BadItem(f"{path}: the annotation's 'image size' is {expected[0]} x {expected[1]} but the file is "
                          f"{full[0]} x {full[1]}; the normalised boxes would land elsewhere")
        if im.mode not in ("RGB", "L"):
            raise BadItem(f"{path}: image mode {im.mode}; expected RGB or grayscale (L)")
        quality = source_jpeg_quality(im)
        try:
            if im.format == "JPEG":
                im.draft(im.mode, size)  # decode at 1/2, 1/4 or 1/8 scale when that still covers `size`
            work = im.convert(im.mode)
        except Exception as exc:
            raise BadItem(f"{path}: corrupt or truncated image data ({type(exc).__name__}: {exc})") from None
    if work.size != tuple(size):
        work = work.resize(tuple(size), Image.Resampling.LANCZOS)
    data, name = _encode_like(work, im, path.name)
    return StoredImage(data=data, name=name, width=work.width, height=work.height, jpeg_quality=quality,
                       is_grayscale=is_grayscale(work))


def panda_split(n: int, seed: int = 42, split: Sequence[int] = PANDA_SPLIT) -> list[str]:
    """The split of each of ``n`` images (in sorted order): a seeded permutation cut train / validation / test."""
    total = sum(split)
    if n < 3:
        raise InputError(f"PANDA-Crowd: {n} images are too few for a train/validation/test split (need >= 3)")
    n_val = max(1, int(round(n * split[1] / total)))
    n_test = max(1, int(round(n * split[2] / total)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise InputError(f"PANDA-Crowd: {n} images leave no training image with the split {tuple(split)}")
    perm = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=object)
    out[perm[:n_train]] = "train"
    out[perm[n_train:n_train + n_val]] = "validation"
    out[perm[n_train + n_val:]] = "test"
    return out.tolist()


def _panda_row(root: Path, key: str, record: Any, size: tuple[int, int], build: Build, notes: dict) -> dict:
    where = f"annotation of {key!r}"
    if not isinstance(record, dict) or "objects list" not in record:
        raise BadItem(f"{where}: expected {{'image id', 'image size', 'objects list'}}; got keys "
                      f"{sorted(record) if isinstance(record, dict) else type(record).__name__}")
    expected = None
    if "image size" in record:
        try:
            expected = (int(record["image size"]["width"]), int(record["image size"]["height"]))
        except (TypeError, KeyError, ValueError):
            raise BadItem(f"{where}: 'image size' must be {{'height': int, 'width': int}}") from None
    boxes, other = parse_objects(record["objects list"], where)
    stored = read_resized(_image_path(root, key), size, expected)
    w, h = stored.width, stored.height
    boxes = np.clip(boxes, 0.0, 1.0) * np.array([w, h, w, h], dtype=np.float64)  # clamp, then to pixels
    points = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0], axis=1) \
        if len(boxes) else np.zeros((0, 2))
    notes["other"] += other
    build.note_points(points, w, h)
    image_id = str(Path(key).with_suffix("").as_posix())
    return {schema.IMAGE: stored.image_value(), schema.IMAGE_ID: image_id,
            schema.POINTS: points.astype(np.float32).tolist(), schema.COUNT: int(len(points)),
            schema.BOXES: boxes.astype(np.float32).tolist(), **stored.meta()}


def build_panda_crowd(root: str | Path, out: str | Path, *, annotations: Iterable[str | Path] | None = None,
                      size: Sequence[int] = PANDA_SIZE, split: Sequence[int] = PANDA_SPLIT, seed: int = 42,
                      skip_bad: bool = False) -> BuildReport:
    """Build PANDA-Crowd from its download under ``root`` into ``out`` (see the module docstring).

    ``annotations``: the JSON files (default: every ``*.json`` in ``root/image_annos``); ``size``: (W, H) of
    the stored images (the paper's 2560 x 1440); ``split``: train / validation / test counts of 45 images.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"PANDA-Crowd: --root {root} is not a folder; expected {_LAYOUT}")
    size = tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 1:
        raise InputError(f"PANDA-Crowd: size must be (width, height) in pixels; got {size}")
    split = tuple(int(v) for v in split)
    if len(split) != 3 or min(split) < 1:
        raise InputError(f"PANDA-Crowd: split must be three positive counts (train, validation, test); got {split}")
    records: dict[str, Any] = {}
    files = annotation_files(root, list(annotations) if annotations else None)
    for f in files:
        for key, record in _read_json(f).items():
            if key in records:
                raise InputError(f"PANDA-Crowd: image {key!r} is annotated twice ({f} and an earlier file)")
            records[key] = record
    keys = sorted(records, key=natural_key)
    splits = panda_split(len(keys), seed, split)
    notes = {"other": 0}
    features = schema.COUNTING_REAL_BOXES
    with Build("panda-crowd", out, "counting", features, skip_bad=skip_bad, inputs=[root]) as build:
        for key, part in progress(list(zip(keys, splits)), desc="PANDA-Crowd", unit="img"):
            build.item(str(_image_path(root, key)),
                       lambda key=key: _panda_row(root, key, records[key], size, build, notes), part)
        if notes["other"]:
            build.report.notes.append(f"{notes['other']} non-person regions (ignore / fake person / crowd) left out")
        meta = {"pretty_name": "PANDA-Crowd", "license": "unknown", "tags": ["crowd-counting"],
                "promptmix": {"builder": "panda-crowd", "source": str(root), "size": list(size),
                              "split": f"{split[0]}/{split[1]}/{split[2]} of a numpy seed-{seed} permutation",
                              "annotations": [f.name for f in files]}}
        body = dataset_body("PANDA-Crowd", [
            "Crowd counting with a head box per person, from the PANDA download (`image_train/<scene>/*.jpg`, "
            "`image_annos/*.json` with normalised `tl`/`br` boxes).",
            f"Images are resized to exactly {size[0]} x {size[1]} (PromptMix IV-A); a resized JPEG keeps its "
            "quantization tables. `points` are the box centres, `boxes` the boxes (x0, y0, x1, y1) in pixels of "
            "the stored image; train with `density_kernel: box` to match each Gaussian to its box.",
            f"Splits: {split[0]} / {split[1]} / {split[2]} images (train / validation / test, scaled to the number "
            f"of images) of a numpy seed-{seed} permutation of the images sorted by path."], "counting")
        body = body.replace("`count` (all annotated points)", "`count` (all annotated people), `boxes`")
        return build.finish(metadata=meta, body=body)
