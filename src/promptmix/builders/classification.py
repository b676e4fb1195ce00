"""Classification builders: an image folder (``root/<class>/<image>``) or any ``datasets`` source.

Image folder layouts::

    root/<class>/<image>                         (no split level)
    root/train/<class>/<image>  root/test/<class>/<image>  [root/validation|val/<class>/<image>]

Images may sit deeper below a class folder (``train/<class>/images/x.JPEG``); class names are the
train level's class folders, sorted. ``image_id`` is the path below ``root`` without its suffix.

Hub / ``datasets`` sources: ``datasets.load_dataset(ID)`` (a Hub id or a local folder), an image
column and a label column (ClassLabel, integers or strings). Splits ``train``, ``validation`` (or
``valid``/``val``) and ``test`` are used when present. ``image_id`` is ``<split>-<row index>``.

Splits, when the source lacks them (numpy seed 42, stratified by class, decided before any image
is read): without a test level/split, ``test`` = 20 % of the train images (of all images for a folder
without split level); without a validation level/split, ``validation`` = 10 % of the train images left. ``reduced=N`` then keeps N training images,
stratified by class (the papers' "reduced" sets; all of them, with a note, when fewer are left);
with ``reduced_counts="labelled"`` the N images are drawn first and the validation split comes out
of them (:func:`plan_splits`).

EXIF orientation: classification labels do not depend on it, so a rotated image is stored upright
(``ImageOps.exif_transpose``; a JPEG keeps its quantization tables).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import schema
from ..errors import InputError
from ..utils.progress import progress
from .common import (DEFAULT_MAX_PIXELS, SEED, BadItem, Build, BuildReport, dataset_body, list_images, read_image,
                     stratified_split, stratified_take)

logger = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.2
_SPLIT_DIRS = {"train": ("train", "training"), "validation": ("validation", "val", "valid"),
               "test": ("test", "testing")}  # Training/ and Testing/: the brain-tumour MRI download's names


REDUCED_COUNTS = ("train", "labelled")


def plan_splits(labels: Sequence[int], given: Sequence[str | None], *, reduced: int | None,
                seed: int = SEED, notes: list[str] | None = None, reduced_counts: str = "train") -> list[str | None]:
    """The final split of every item: ``given`` holds each item's source split (train/validation/test).

    With no test items at all, 20 % of the train items go to ``test``; with no validation items,
    10 % of the train items left go to ``validation``; ``reduced`` then keeps that many train
    items (the others get ``None``: left out). All draws are stratified by label, numpy ``seed``.

    ``reduced_counts`` says what ``reduced`` counts: ``"train"`` (default) the training images, the
    validation images being drawn from the rest of the source's train split first (the model trains
    on exactly ``reduced`` images, and the validation split is extra labelled data); ``"labelled"`` every
    labelled image used, as the MVC and AutoAugment papers state their reduced sets ("4,000 labeled
    examples randomly sampled"): ``reduced`` images are drawn first and the validation split is taken
    out of them (train + validation = ``reduced``; with a source validation split, it is kept and
    ``reduced`` counts the training images).
    """
    if reduced_counts not in REDUCED_COUNTS:
        raise InputError(f"reduced_counts: expected one of {', '.join(REDUCED_COUNTS)}; got {reduced_counts!r}")
    labels = np.asarray(labels, dtype=np.int64)
    split = np.array(list(given), dtype=object)
    if not (split == "test").any():
        pool = np.flatnonzero(split == "train")
        _, taken = stratified_split(labels[pool], TEST_FRACTION, seed)
        split[pool[taken]] = "test"
    if reduced is not None and reduced_counts == "labelled" and not (split == "validation").any():
        pool = np.flatnonzero(split == "train")
        if reduced < len(pool):
            rest, _ = stratified_take(labels[pool], reduced, seed)
            split[pool[rest]] = None
        elif notes is not None and reduced > len(pool):
            notes.append(f"reduced={reduced} but the source has only {len(pool)} labelled training images: kept all")
        reduced = None  # the validation split below comes out of the `reduced` images
    if not (split == "validation").any():
        pool = np.flatnonzero(split == "train")
        _, taken = stratified_split(labels[pool], VALIDATION_FRACTION, seed)
        split[pool[taken]] = "validation"
    if reduced is not None:
        pool = np.flatnonzero(split == "train")
        if reduced >= len(pool):
            if notes is not None and reduced > len(pool):
                notes.append(f"reduced={reduced} but only {len(pool)} training images are left after the "
                             "validation split: kept all of them")
        else:
            rest, _ = stratified_take(labels[pool], reduced, seed)
            split[pool[rest]] = None
    return split.tolist()


def _classification_row(source: Any, name: str, image_id: str, label: int, filename: str | None = None) -> dict:
    stored, _ = read_image(source, name=name, filename=filename, exif="transpose")
    return {schema.IMAGE: stored.image_value(), schema.IMAGE_ID: image_id, schema.LABEL: int(label), **stored.meta()}


def _finish(build: Build, class_names: list[str], meta: dict, body: str) -> BuildReport:
    build.report.class_names = class_names
    return build.finish(metadata=meta, body=body)


def _split_text(has_test: bool, has_val: bool, reduced: int | None, seed: int, reduced_counts: str = "train") -> str:
    labelled = reduced is not None and reduced_counts == "labelled" and not has_val
    parts = ["`test` = " + ("the source's test split" if has_test else f"{TEST_FRACTION:.0%} of the train images"),
             "`validation` = " + ("the source's validation split" if has_val
                                  else f"{VALIDATION_FRACTION:.0%} of " + (f"the {reduced} labelled images"
                                                                          if labelled else "train")),
             "`train` = the rest" + (f", reduced to {reduced} images" if reduced is not None and not labelled
                                     else "")]
    return f"Splits: {'; '.join(parts)} (draws stratified by class, numpy seed {seed})."


# -- image folder -------------------------------------------------------------------------------------------------
def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _imagefolder_layout(root: Path) -> dict[str, Path]:
    """``{split: folder}`` of the split levels, or ``{"train": root}`` without a split level."""
    subdirs = _subdirs(root)
    if not subdirs:
        raise InputError(f"imagefolder: {root} has no class folders; expected root/<class>/<image> or "
                         "root/train/<class>/<image> (+ root/test/...)")
    by_name = {p.name.lower(): p for p in subdirs}
    if not any(name in by_name for name in _SPLIT_DIRS["train"]):
        return {"train": root}
    levels = {}
    for split, names in _SPLIT_DIRS.items():
        for name in names:
            if name in by_name:
                levels[split] = by_name[name]
                break
    other = [p.name for p in subdirs if p not in levels.values()]
    if other:
        raise InputError(f"imagefolder: {root} has a train/ level but also {other}; expected only train/, test/ and "
                         "validation/ (or val/) at the split level, each holding class folders")
    return levels


def build_imagefolder(root: str | Path, out: str | Path, *, reduced: int | None = None, skip_bad: bool = False,
                      seed: int = SEED, reduced_counts: str = "train", max_pixels: int = DEFAULT_MAX_PIXELS
                      ) -> BuildReport:
    """Build a classification dataset from an image folder (class subfolders, optional train/test level)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"imagefolder: --root {root} is not a folder; expected root/<class>/<image>")
    if reduced is not None and int(reduced) < 1:
        raise InputError(f"reduced: expected a number of training images >= 1; got {reduced}")
    levels = _imagefolder_layout(root)
    class_dirs = _subdirs(levels["train"])
    if not class_dirs:
        raise InputError(f"imagefolder: {levels['train']} has no class folders; expected <class>/<image> below it")
    class_names = [p.name for p in class_dirs]
    index = {name: i for i, name in enumerate(class_names)}
    files, labels, given = [], [], []
    for split, level in levels.items():
        for cdir in _subdirs(level):
            if cdir.name not in index:
                raise InputError(f"imagefolder: class folder {cdir} is not a class of {levels['train']} "
                                 f"({', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''}); "
                                 "every split must use the train classes")
            images = list_images(cdir, recursive=True)
            if not images and split == "train":
                raise InputError(f"imagefolder: class folder {cdir} holds no images (expected files ending "
                                 "in .jpg, .jpeg, .png, ...)")
            files += images
            labels += [index[cdir.name]] * len(images)
            given += [split] * len(images)
    notes: list[str] = []
    final = plan_splits(labels, given, reduced=reduced, seed=seed, notes=notes, reduced_counts=reduced_counts)
    features = schema.classification_real(class_names)
    with Build("imagefolder", out, "classification", features, skip_bad=skip_bad, inputs=[root],
               max_pixels=max_pixels) as build:
        build.report.notes += notes
        for path, label, split in progress(list(zip(files, labels, final)), desc=f"imagefolder {root.name}",
                                           unit="img"):
            if split is None:
                continue
            rel = path.relative_to(root)
            build.item(str(path), lambda path=path, rel=rel, label=label: _classification_row(
                path, str(path), rel.with_suffix("").as_posix(), label), split)
        has_test, has_val = "test" in levels, "validation" in levels
        meta = {"pretty_name": root.name, "tags": ["image-classification"],
                "promptmix": {"builder": "imagefolder", "source": str(root), "reduced": reduced,
                              "reduced_counts": reduced_counts,
                              "split_seed": seed, "classes": len(class_names)}}
        body = dataset_body(root.name, [
            f"Image classification, {len(class_names)} classes, from the image folder `{root}`.",
            _split_text(has_test, has_val, reduced, seed, reduced_counts),
            "Images are stored as found (EXIF-rotated ones upright; palette/alpha images as RGB PNG)."],
            "classification")
        return _finish(build, class_names, meta, body)


# -- datasets / Hub ----------------------------------------------------------------------------------------------
def _source_splits(loaded) -> dict[str, Any]:
    names = {s.lower(): s for s in loaded}
    out = {}
    for split, aliases in _SPLIT_DIRS.items():
        for a in aliases:
            if a in names:
                out[split] = loaded[names[a]]
                break
    if "train" not in out:
        raise InputError(f"expected a 'train' split; the source has {sorted(loaded)}")
    return out


def _label_mapping(splits: dict[str, Any], column: str, dataset: str) -> tuple[list[str], Any]:
    """Class names and a function raw label -> class index (or :class:`BadItem`)."""
    import datasets

    feature = splits["train"].features[column]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        n = len(names)

        def to_index(value):
            if value is None or not 0 <= int(value) < n:
                raise BadItem(f"label {value!r} is not a class index 0..{n - 1} (unlabelled row?)")
            return int(value)
        return names, to_index
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        values = sorted({int(v) for s in splits.values() for v in s[column] if v is not None and int(v) >= 0})
        if not values:
            raise InputError(f"{dataset}: label column {column!r} holds no labels >= 0")
        names = [str(i) for i in range(max(values) + 1)]

        def to_index(value):
            if value is None or int(value) < 0:
                raise BadItem(f"label {value!r} is not a class index (unlabelled row?)")
            return int(value)
        return names, to_index
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        names = sorted({v for s in splits.values() for v in s[column] if v})
        lookup = {name: i for i, name in enumerate(names)}

        def to_index(value):
            if not value:
                raise BadItem(f"label {value!r} is empty (unlabelled row?)")
            return lookup[value]
        return names, to_index
    raise InputError(f"{dataset}: label column {column!r} is {feature}; expected a ClassLabel, integer or string "
                     "column (pick another with --label-column)")


def _hub_image_source(value: Any, label: str) -> tuple[Any, str | None]:
    """(bytes or path to read, file name to store) of an undecoded ``Image`` value."""
    if value is None:
        raise BadItem(f"{label}: no image")
    if isinstance(value, dict):
        filename = Path(value["path"]).name if value.get("path") else None
        if value.get("bytes"):
            return value["bytes"], filename
        if value.get("path"):
            return Path(value["path"]), filename
    raise BadItem(f"{label}: the image value is neither bytes nor a file path")


def build_from_hub(dataset: str, out: str | Path, *, image_column: str = "image", label_column: str = "label",
                   reduced: int | None = None, revision: str | None = None, skip_bad: bool = False,
                   seed: int = SEED, reduced_counts: str = "train", max_pixels: int = DEFAULT_MAX_PIXELS) -> BuildReport:
    """Build a classification dataset from any ``datasets`` source (Hub id or local folder) with image + label."""
    import datasets

    from .loading import load_source

    if reduced is not None and int(reduced) < 1:
        raise InputError(f"reduced: expected a number of training images >= 1; got {reduced}")
    loaded = load_source(dataset, revision, what="dataset")
    try:
        splits = _source_splits(loaded)
    except InputError as exc:
        raise InputError(f"{dataset}: {exc}") from None
    for split, ds in splits.items():
        missing = [c for c in (image_column, label_column) if c not in ds.column_names]
        if missing:
            raise InputError(f"{dataset} ({split} split): no column {', '.join(map(repr, missing))}; its columns are "
                             f"{ds.column_names} (choose with --image-column / --label-column)")
        if not isinstance(ds.features[image_column], datasets.Image):
            raise InputError(f"{dataset}: column {image_column!r} is {ds.features[image_column]}; expected an Image "
                             "column (choose with --image-column)")
    class_names, to_index = _label_mapping(splits, label_column, dataset)
    items, labels, given = [], [], []
    for split, ds in splits.items():
        raw = ds[label_column]
        for i, value in enumerate(raw):
            try:
                idx = to_index(value)
            except BadItem:
                idx = -1  # reported when the item is built (or skipped)
            items.append((split, i, value))
            labels.append(idx)
            given.append(split)
    notes: list[str] = []
    final = plan_splits(labels, given, reduced=reduced, seed=seed, notes=notes, reduced_counts=reduced_counts)
    images = {s: ds.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
              for s, ds in splits.items()}
    features = schema.classification_real(class_names)
    with Build("hub", out, "classification", features, skip_bad=skip_bad, max_pixels=max_pixels) as build:
        build.report.notes += notes
        for (src_split, i, value), split in progress(list(zip(items, final)), desc=f"{dataset}", unit="img"):
            if split is None:
                continue
            label = f"{dataset} [{src_split} row {i}]"

            def make(src_split=src_split, i=i, value=value, label=label):
                try:
                    idx = to_index(value)
                except BadItem as exc:
                    raise BadItem(f"{label}: {exc}") from None
                source, filename = _hub_image_source(images[src_split][i][image_column], label)
                return _classification_row(source, label, f"{src_split}-{i:06d}", idx, filename)

            build.item(label, make, split)
        meta = {"pretty_name": str(dataset), "tags": ["image-classification"],
                "promptmix": {"builder": "hub", "source": str(dataset), "revision": revision,
                              "image_column": image_column, "label_column": label_column, "reduced": reduced,
                              "reduced_counts": reduced_counts,
                              "split_seed": seed, "classes": len(class_names)}}
        body = dataset_body(str(dataset), [
            f"Image classification, {len(class_names)} classes, from `{dataset}`"
            + (f" (revision {revision})" if revision else "") + f", columns `{image_column}` and `{label_column}`.",
            _split_text("test" in splits, "validation" in splits, reduced, seed, reduced_counts)], "classification")
        return _finish(build, class_names, meta, body)
