"""Crowd-counting builders: ShanghaiTech Part A/B and UCF-QNRF, from their raw downloads.

Raw layouts (``/work/shared/DATA-FORMATS.md``)::

    ShanghaiTech/part_A/train_data/images/IMG_1.jpg        UCF-QNRF_ECCV18/Train/img_0001.jpg
    ShanghaiTech/part_A/train_data/ground-truth/GT_IMG_1.mat                 Train/img_0001_ann.mat
    ShanghaiTech/part_A/test_data/...                      UCF-QNRF_ECCV18/Test/...

``GT_IMG_n.mat``: ``image_info[0, 0][0, 0][0]`` (field ``location``) is the (N, 2) array of (x, y)
head points; ``img_n_ann.mat``: ``annPoints`` (N, 2). Rows follow ``schema.COUNTING_REAL``; ``count``
is the number of annotated points, all of them, and points a little outside the frame are kept
(the annotation is the truth; the report counts them).

Splits: ``test`` is the download's test folder; ``validation`` is drawn from the train folder with
numpy seed 42 (ShanghaiTech A: 20 %, B: 10 %, UCF-QNRF: 10 %), decided from the list of files before
any is read. UCF-QNRF images are resized to fit 1920 x 1920 keeping the aspect ratio (as the
literature does); their points are scaled by the same factors, and the JPEG keeps its quantization
tables (its quality).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import schema
from ..errors import InputError
from ..utils.progress import progress
from .common import (DEFAULT_MAX_PIXELS, BadItem, Build, BuildReport, by_key, check_points, dataset_body, load_mat,
                     natural_key, read_image, seeded_split)

logger = logging.getLogger(__name__)

SHANGHAITECH_VALIDATION = {"A": 0.2, "B": 0.1}
UCF_QNRF_VALIDATION = 0.1
UCF_QNRF_MAX_SIDE = 1920
_SHT_LAYOUT = "part_X/train_data/images/IMG_1.jpg with part_X/train_data/ground-truth/GT_IMG_1.mat (same for test_data)"


def read_shanghaitech_points(path: Path) -> np.ndarray:
    """The (N, 2) float64 (x, y) head points of a ShanghaiTech ``GT_IMG_n.mat``; :class:`BadItem` if malformed."""
    info = load_mat(path, "image_info", "ShanghaiTech ground-truth")
    try:
        record = info[0, 0][0, 0]
        names = record.dtype.names or ()
        location = record["location"] if "location" in names else record[0]
    except (IndexError, TypeError, ValueError, KeyError):
        raise BadItem(f"{path}: 'image_info' has an unexpected structure; expected image_info[0, 0][0, 0][0] "
                      "to be the (N, 2) array of (x, y) head points") from None
    points = check_points(location, str(path))
    if "number" in names:
        try:
            number = float(np.asarray(record["number"], dtype=np.float64).ravel()[0])
        except (IndexError, TypeError, ValueError):
            number = None
        if number is None or number != len(points):
            raise BadItem(f"{path}: its 'number' field says {number if number is None else f'{number:g}'} heads but "
                          f"'location' holds {len(points)} points; the file is damaged (in the original files they "
                          "agree), so its count cannot be trusted")
    return points


def read_ucf_qnrf_points(path: Path) -> np.ndarray:
    """The (N, 2) float64 (x, y) head points of a UCF-QNRF ``img_n_ann.mat`` (``annPoints``)."""
    return check_points(load_mat(path, "annPoints", "UCF-QNRF annotation"), str(path))


def _counting_row(build: Build, image_path: Path, points_of, image_id: str, *, max_side: int | None = None) -> dict:
    points = points_of()
    stored, (sx, sy) = read_image(image_path, exif="error", max_side=max_side)
    if (sx, sy) != (1.0, 1.0):
        points = points * np.array([sx, sy])
    build.note_points(points, stored.width, stored.height)
    return {schema.IMAGE: stored.image_value(), schema.IMAGE_ID: image_id,
            schema.POINTS: points.astype(np.float32).tolist(), schema.COUNT: int(len(points)), **stored.meta()}


def _pairs(images: dict[str, Path], annotations: dict[str, Path]) -> list[tuple[str, Path | None, Path | None]]:
    keys = sorted(set(images) | set(annotations), key=natural_key)
    return [(k, images.get(k), annotations.get(k)) for k in keys]


# -- ShanghaiTech ----------------------------------------------------------------------------------------------
def _shanghaitech_part(root: Path, part: str) -> Path:
    folder = root / f"part_{part}"
    if folder.is_dir():
        return folder
    if root.name.lower() == f"part_{part}".lower() and (root / "train_data").is_dir():
        return root  # --root pointed at the part folder itself
    alt = root / f"part_{part}_final"  # the name some mirrors of the download use
    if alt.is_dir():
        return alt
    raise InputError(f"ShanghaiTech: no folder {folder}; expected the download layout {_SHT_LAYOUT.replace('X', part)}")


def _report_ignored(folder: Path, used: set[Path], what: str) -> list[Path]:
    """Files of ``folder`` the builder does not read (a PNG among the JPEGs, a stray file): a warning names them,
    so an image saved in another format is not silently left out."""
    ignored = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p not in used)
    if ignored:
        shown = ", ".join(p.name for p in ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        logger.warning("%s: %d file(s) in %s are not read (expected %s): %s", what.split(":")[0], len(ignored),
                       folder, what.split(": ", 1)[-1], shown)
    return ignored


def _shanghaitech_items(split_dir: Path) -> list[tuple[str, Path | None, Path | None]]:
    img_dir, gt_dir = split_dir / "images", split_dir / "ground-truth"
    for d in (img_dir, gt_dir):
        if not d.is_dir():
            raise InputError(f"ShanghaiTech: no folder {d}; expected {_SHT_LAYOUT}")
    images = by_key((p for p in img_dir.iterdir()
                     if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith(".")),
                    lambda p: p.stem, "ShanghaiTech")
    gts = by_key((p for p in gt_dir.iterdir()
                  if p.is_file() and p.suffix.lower() == ".mat" and p.stem.startswith("GT_")),
                 lambda p: p.stem[3:], "ShanghaiTech")
    _report_ignored(img_dir, set(images.values()), "ShanghaiTech: JPEG images IMG_n.jpg")
    if not images and not gts:
        raise InputError(f"ShanghaiTech: {img_dir} and {gt_dir} hold no IMG_n.jpg / GT_IMG_n.mat files; expected "
                         f"{_SHT_LAYOUT}")
    return [(k, img if img else img_dir / f"{k}.jpg", gt if gt else gt_dir / f"GT_{k}.mat")
            for k, img, gt in _pairs(images, gts)]


def build_shanghaitech(root: str | Path, part: str, out: str | Path, *, skip_bad: bool = False,
                       validation_fraction: float | None = None, seed: int = 42,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> BuildReport:
    """Build ShanghaiTech Part ``part`` ("A" or "B") from the raw download under ``root`` into ``out``.

    Validation: ``validation_fraction`` of the train images (default 0.2 for A, 0.1 for B), drawn with
    ``seed``. Returns the :class:`~promptmix.builders.common.BuildReport`.
    """
    part = str(part).upper()
    if part not in SHANGHAITECH_VALIDATION:
        raise InputError(f"ShanghaiTech part: expected 'A' or 'B'; got {part!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"ShanghaiTech: --root {root} is not a folder; expected the download with {_SHT_LAYOUT}")
    base = _shanghaitech_part(root, part)
    train_items = _shanghaitech_items(base / "train_data")
    test_items = _shanghaitech_items(base / "test_data")
    fraction = SHANGHAITECH_VALIDATION[part] if validation_fraction is None else float(validation_fraction)
    _, val_idx = seeded_split(len(train_items), fraction, seed)
    val = set(val_idx.tolist())
    plan = [("validation" if i in val else "train", "train_data", item) for i, item in enumerate(train_items)]
    plan += [("test", "test_data", item) for item in test_items]
    with Build("shanghaitech", out, "counting", schema.COUNTING_REAL, skip_bad=skip_bad, inputs=[root],
               max_pixels=max_pixels) as build:
        for split, folder, (key, img, gt) in progress(plan, desc=f"ShanghaiTech {part}", unit="img"):
            build.item(str(img), lambda img=img, gt=gt, folder=folder, key=key: _counting_row(
                build, img, lambda: read_shanghaitech_points(gt), f"{folder}/{key}"), split)
        meta = {"pretty_name": f"ShanghaiTech Part {part}", "license": "unknown", "tags": ["crowd-counting"],
                "promptmix": {"builder": "shanghaitech", "part": part, "source": str(root),
                              "validation": f"{fraction:g} of train_data, numpy seed {seed}"}}
        body = dataset_body(f"ShanghaiTech Part {part}", [
            f"Crowd counting, from the raw download (`{_SHT_LAYOUT.replace('X', part)}`).",
            f"Splits: `test` = test_data; `validation` = {fraction:.0%} of train_data drawn with numpy seed {seed}; "
            "`train` = the rest. Images are stored as downloaded (JPEG bytes unchanged)."], "counting")
        return build.finish(metadata=meta, body=body)


# -- UCF-QNRF ------------------------------------------------------------------------------------------------
def _ucf_folder(root: Path, name: str) -> Path:
    for cand in (root / name, root / name.lower()):
        if cand.is_dir():
            return cand
    raise InputError(f"UCF-QNRF: no folder {root / name}; expected the download layout Train/img_0001.jpg + "
                     "Train/img_0001_ann.mat and Test/...")


def _ucf_items(folder: Path) -> list[tuple[str, Path, Path]]:
    images = by_key((p for p in folder.iterdir()
                     if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith(".")),
                    lambda p: p.stem, "UCF-QNRF")
    anns = by_key((p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() == ".mat" and p.stem.endswith("_ann")),
                  lambda p: p.stem[:-4], "UCF-QNRF")
    _report_ignored(folder, set(images.values()) | set(anns.values()),
                    "UCF-QNRF: JPEG images img_NNNN.jpg and their img_NNNN_ann.mat")
    if not images and not anns:
        raise InputError(f"UCF-QNRF: {folder} holds no img_NNNN.jpg / img_NNNN_ann.mat files")
    return [(k, img or folder / f"{k}.jpg", ann or folder / f"{k}_ann.mat") for k, img, ann in _pairs(images, anns)]


def build_ucf_qnrf(root: str | Path, out: str | Path, *, skip_bad: bool = False,
                   validation_fraction: float = UCF_QNRF_VALIDATION, max_side: int = UCF_QNRF_MAX_SIDE,
                   seed: int = 42, max_pixels: int = DEFAULT_MAX_PIXELS) -> BuildReport:
    """Build UCF-QNRF from the raw download under ``root`` into ``out``.

    Images larger than ``max_side`` x ``max_side`` are resized to fit (aspect kept, points scaled);
    validation is ``validation_fraction`` of Train drawn with ``seed``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"UCF-QNRF: --root {root} is not a folder; expected the download with Train/ and Test/")
    train_items = _ucf_items(_ucf_folder(root, "Train"))
    test_items = _ucf_items(_ucf_folder(root, "Test"))
    _, val_idx = seeded_split(len(train_items), validation_fraction, seed)
    val = set(val_idx.tolist())
    plan = [("validation" if i in val else "train", "Train", item) for i, item in enumerate(train_items)]
    plan += [("test", "Test", item) for item in test_items]
    with Build("ucf-qnrf", out, "counting", schema.COUNTING_REAL, skip_bad=skip_bad, inputs=[root],
               max_pixels=max_pixels) as build:
        for split, folder, (key, img, ann) in progress(plan, desc="UCF-QNRF", unit="img"):
            build.item(str(img), lambda img=img, ann=ann, folder=folder, key=key: _counting_row(
                build, img, lambda: read_ucf_qnrf_points(ann), f"{folder}/{key}", max_side=max_side), split)
        meta = {"pretty_name": "UCF-QNRF", "license": "unknown", "tags": ["crowd-counting"],
                "promptmix": {"builder": "ucf-qnrf", "source": str(root), "max_side": max_side,
                              "validation": f"{validation_fraction:g} of Train, numpy seed {seed}"}}
        body = dataset_body("UCF-QNRF", [
            "Crowd counting, from the raw download (`Train/img_0001.jpg` + `img_0001_ann.mat`, `Test/...`).",
            f"Images are resized to fit {max_side} x {max_side} keeping the aspect ratio, head points scaled "
            "alike; a resized JPEG keeps its quantization tables (its quality).",
            f"Splits: `test` = Test; `validation` = {validation_fraction:.0%} of Train drawn with numpy seed {seed}; "
            "`train` = the rest."], "counting")
        return build.finish(metadata=meta, body=body)
