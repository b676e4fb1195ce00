"""The training data path: load real and fake datasets, turn rows into tensors, batch them.

Real datasets are Hub-layout folders or Hub ids with train/validation/test splits
(``schema.COUNTING_REAL``, ``DEPTH_REAL``, ``classification_real(names)``); fake datasets are
``promptmix filter`` outputs (``schema.fake_features``), config ``kept`` by default. Maps are read
with ``with_format("numpy")``; images stay encoded until a row is used.

Training targets:

* counting: the density map -- from the head points (``promptmix.density.density_map``,
  normalised Gaussians, sigma 4, kernel 15) for real rows, the chosen annotator's map spread over the
  pixels its cells sit on for fake rows -- cropped and flipped with the image, then summed into the
  cells of the model's output grid for that size (``promptmix.density.align_density``: ``H // 8`` cells
  for CSRNet's flooring max-pools, ``ceil(H / 8)`` for ResNet's padded strides; whole images of any size,
  no trimming), so its sum stays the head count and each cell holds the heads on its pixels.
* depth: the depth map in metres (fake maps resized bilinearly to the image), cropped and flipped
  with the image; zero marks invalid pixels.
* classification: the class index (fake rows' ``label``, or the chosen annotator's prediction).

Only the crop is computed: the crop window is drawn first, then the counting target is summed straight
into the model's output cells over it (float32, no full-frame map: ``density.crop_density_target`` for
head points, ``density.crop_map_target`` for an annotator's map) and a depth map is sliced or resized
bilinearly for the crop's pixels only (:func:`crop_resize_map`); the result equals the full-frame path
(map, crop, flip, sum) up to float rounding. Rows are read from Arrow (:func:`arrow_row`): maps and point
lists become NumPy views, never Python lists. A fake row's target map is stored once: the row's
``density``/``depth`` column for the ``mean`` target, else the map of its ``target_annotator`` in
``annotations``.

Fake rows are checked when they load (:func:`check_fake_rows`, for any ``--fake``: a ``promptmix filter``
folder, a publication or a Hub id; a streamed set row by row as each epoch fetches it): a map target must be
a 2-D array of finite, non-negative numbers
(negative noise up to 5 % of the positive mass is accepted, and for counting up to half a head: CSRNet's
output has no final ReLU) whose shape is the image's ``(height, width)`` or a grid of an integer output stride over it
(:func:`promptmix.density.infer_stride`: ``H // s`` or ``ceil(H / s)`` cells, as annotators write); a
class label must be one of the classes; the image's own size (its header) must equal the row's
``width`` and ``height``. A row that fails is an :class:`InputError` naming its ``row_id`` and the
problem (the first rows and how many fail).

Images leave the loader as uint8 (3, H, W) tensors; the trainer normalises them on the device
(:func:`normalize`, ImageNet mean and standard deviation), a quarter of float32's bytes per transfer.
A batch is a list of groups of same-sized samples (:func:`collate`), so images of different sizes can
share a batch.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from ... import maps, schema
from ...tasks import get_task
from ...builders.loading import load_real, load_source
from ...errors import InputError
from .mixing import FAKE, REAL

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SPLITS = ("train", "validation", "test")


# -- loading ---------------------------------------------------------------------------------------------
# Real datasets load through promptmix.builders.load_real (the one loader; it also gives local folders a
# cache keyed by their content, see promptmix.builders.loading.local_cache_dir).


def _load_fake(ref: str, revision: str | None, config_name: str) -> Dataset:
    try:
        loaded = load_source(ref, revision, name=config_name, what="fake dataset")
    except InputError as exc:
        if f"'{config_name}'" in str(exc) and "config" in str(exc).lower():
            raise InputError(f"{exc}; promptmix fake datasets have configs 'kept' and 'all'") from None
        raise
    if isinstance(loaded, Dataset):
        return loaded
    if "train" in loaded:
        return loaded["train"]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    raise InputError(f"fake dataset {ref!r}: expected one split (train); found {sorted(loaded)}")


@dataclasses.dataclass
class TrainingData:
    """The splits of one training run: real train/validation/test and the fake rows (or ``None``)."""

    task: str
    train: Dataset
    validation: Dataset
    test: Dataset
    fake: Dataset | None = None
    class_names: list[str] | None = None

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names is not None else None

    def split(self, name: str) -> Dataset:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def with_fake(self, fake: Dataset | None) -> "TrainingData":
        return dataclasses.replace(self, fake=fake)

    def swap_labels(self, target_annotator: str | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(real train labels, fake labels) for same-class ``swap`` mixing; ``None`` when the task has no classes.

        A fake row's class is its ``label`` (the class it was generated for), or the prediction of
        ``target_annotator`` when training takes its labels from that annotator.
        """
        if self.task != "classification" or self.fake is None:
            return None
        real = np.asarray(self.train.with_format("numpy")[schema.LABEL], dtype=np.int64)
        if target_annotator:
            fake = np.asarray([_annotation(anns, target_annotator, None)[schema.LABEL]
                               for anns in self.fake[schema.ANNOTATIONS]], dtype=np.int64)
        else:
            fake = np.asarray(self.fake.with_format("numpy")[schema.LABEL], dtype=np.int64)
        return real, fake

    def max_image_side(self, rows: int = 16) -> int:
        """The largest side among the first ``rows`` training images (from width/height, else decoded)."""
        n = min(rows, len(self.train))
        if {schema.WIDTH, schema.HEIGHT} <= set(self.train.column_names):
            sub = self.train.select_columns([schema.WIDTH, schema.HEIGHT]).select(range(n))
            sides = [v for v in (*sub[schema.WIDTH], *sub[schema.HEIGHT]) if v is not None]
            if len(sides) == 2 * n:
                return int(max(sides, default=0))
        images = self.train.select_columns([schema.IMAGE]).cast_column(schema.IMAGE, ImageFeature(decode=False))
        return max((max(decode_image(images[i][schema.IMAGE]).shape[:2]) for i in range(n)), default=0)


def check_real(splits: Any, task: str, ref: str) -> list[str] | None:
    """Check the real dataset's splits and columns; returns the class names (classification)."""
    missing_splits = [s for s in SPLITS if s not in splits]
    if missing_splits:
        raise InputError(f"real dataset {ref!r}: expected splits {', '.join(SPLITS)}; missing "
                         f"{', '.join(missing_splits)} (found {', '.join(splits)})")
    for split in SPLITS:
        ds = splits[split]
        needed = (schema.IMAGE, *get_task(task).real_columns)
        lacking = [c for c in needed if c not in ds.column_names]
        if lacking:
            raise InputError(f"real dataset {ref!r}, split {split}: a {task} dataset needs columns "
                             f"{', '.join(needed)}; missing {', '.join(lacking)} (see promptmix.schema)")
        if len(ds) == 0:
            raise InputError(f"real dataset {ref!r}, split {split}: expected at least one row; it is empty")
    if not get_task(task).has_classes:
        return None
    label = splits["train"].features[schema.LABEL]
    if not hasattr(label, "names"):
        raise InputError(f"real dataset {ref!r}: column {schema.LABEL!r} must be a ClassLabel (class names); "
                         f"got {label}")
    return list(label.names)


def check_fake(fake: Dataset, task: str, ref: str, class_names: Sequence[str] | None,
               target_annotator: str | None) -> Dataset:
    """Check the fake dataset's columns (and class names); drop rows whose annotation failed."""
    _check_fake_columns(fake, task, ref, class_names, target_annotator)
    if schema.ANNOTATION_OK in fake.column_names:
        ok = np.asarray(fake.with_format("numpy")[schema.ANNOTATION_OK], dtype=bool)
        if not ok.all():
            logger.warning("fake dataset %s: leaving out %d rows whose annotation failed", ref, int((~ok).sum()))
            fake = fake.select(np.flatnonzero(ok))
    return fake


def _check_fake_columns(fake, task: str, ref: str, class_names: Sequence[str] | None,
                        target_annotator: str | None) -> None:
    needed = [schema.IMAGE, schema.ANNOTATIONS if target_annotator else get_task(task).fake_target]
    lacking = [c for c in needed if c not in fake.column_names]
    if lacking:
        raise InputError(f"fake dataset {ref!r}: a {task} fake dataset needs columns {', '.join(needed)}; missing "
                         f"{', '.join(lacking)} (see promptmix.schema.fake_features)")
    if get_task(task).has_classes and not target_annotator:
        names = getattr(fake.features[schema.LABEL], "names", None)
        if names is not None and list(names) != list(class_names or []):
            raise InputError(f"fake dataset {ref!r}: its class names {list(names)} differ from the real dataset's "
                             f"{list(class_names or [])}; generate it from the same real dataset")


class StreamedFake:
    """A fake dataset read by streaming (``load_dataset(..., streaming=True)``, ``streaming: true``): for fake sets
    bigger than the disk. Its rows are numbered as the in-memory dataset's (rows whose annotation failed left
    out, as :func:`check_fake` does), so the mixing plan -- the per-epoch draw of ``r_mix`` rows
    (:func:`~promptmix.training.train.mixing.sample_fake_rows`) -- is the same; :meth:`fetch` reads the rows an
    epoch needs in one pass over the stream, stopping after the last one, and keeps only those (their image
    still encoded, their target map as float16).

    Opening it makes one pass over the ``annotation_ok`` column (Parquet column projection: the images are
    not read) to count the rows.
    """

    def __init__(self, ref: str, revision: str | None, config_name: str) -> None:
        self.ref, self.revision, self.config_name = ref, revision, config_name
        self.row_check = None  # fake_row_problem with the run's settings, set by load_training_data
        self.features = self._stream().features
        self.column_names = list(self.features) if self.features is not None else []
        if schema.ANNOTATION_OK in self.column_names:
            ok = [bool(r[schema.ANNOTATION_OK]) for r in self._stream([schema.ANNOTATION_OK])]
        else:
            ok = [True for _ in self._stream([schema.ROW_ID if schema.ROW_ID in self.column_names
                                              else self.column_names[0]])]
        self.positions = np.flatnonzero(np.asarray(ok, dtype=bool))  # stream position of each usable row
        if len(self.positions) < len(ok):
            logger.warning("fake dataset %s: leaving out %d rows whose annotation failed", ref,
                           len(ok) - len(self.positions))

    def _stream(self, columns: Sequence[str] | None = None):
        try:
            loaded = load_source(self.ref, self.revision, name=self.config_name, what="fake dataset", streaming=True,
                                 columns=list(columns) if columns is not None else None)
        except InputError as exc:
            if f"'{self.config_name}'" in str(exc) and "config" in str(exc).lower():
                raise InputError(f"{exc}; promptmix fake datasets have configs 'kept' and 'all'") from None
            raise
        return loaded["train"] if "train" in loaded else next(iter(loaded.values()))

    def __len__(self) -> int:
        return len(self.positions)

    def fetch(self, rows: Sequence[int], columns: Sequence[str]) -> dict[int, dict]:
        """``{row: arrow_row(...)}`` of ``rows`` (row numbers as :func:`len` counts them), in one pass."""
        wanted = {int(self.positions[r]): int(r) for r in set(int(r) for r in rows)}
        if not wanted:
            return {}
        last = max(wanted)
        cols = [c for c in columns if c in self.column_names]
        stream = self._stream(cols)
        features = stream.features
        out: dict[int, dict] = {}
        position = 0
        for table in stream.with_format("arrow").iter(batch_size=64):
            n = table.num_rows
            for p in range(position, position + n):
                if p in wanted:  # copied out of the batch, so the batch's buffers are freed
                    out[wanted[p]] = _owned(arrow_row(table.slice(p - position, 1), features))
            position += n
            if position > last:
                break
        if len(out) < len(wanted):
            raise InputError(f"fake dataset {self.ref!r}: the stream ended after {position} rows; expected at least "
                             f"{last + 1} (it changed while training?)")
        return out


#: a map's negative values are noise (CSRNet has no final ReLU; bicubic resizing overshoots) up to this share of its
#: positive mass; beyond it (and, for counting, beyond half a head) the map is refused as poisoned
NEGATIVE_SHARE = 0.05
NEGATIVE_HEADS = 0.5


def _as_map(value: Any) -> np.ndarray | None:
    """A 2-D float32 array from a stored map (a ``{shape, dtype, data}`` struct, nested lists, an array, or NumPy's
    object arrays of rows)."""
    return maps.decode(value)


def fake_target_problem(task: str, target: Any, width: int | None, height: int | None,
                        image_size: tuple[int, int] | None = None, num_classes: int | None = None) -> str | None:
    """Why one fake row cannot be trained on, or None.

    ``target``: the row's training target (a map for counting and depth, a class index for classification);
    ``width`` / ``height``: the row's columns (None: not stored); ``image_size``: ``(width, height)`` from the
    image's header (None: not checked). The rules are the module docstring's.
    """
    from ...density import infer_stride

    if image_size is not None and width is not None and height is not None \
            and tuple(int(v) for v in image_size) != (int(width), int(height)):
        return f"its image is {image_size[0]}x{image_size[1]} but the row says {width}x{height}"
    if get_task(task).annotation_map is None:  # a class label
        if target is None:
            return "no label"
        label = int(target)
        if label < 0 or (num_classes is not None and label >= num_classes):
            return f"label {label} is not a class index (0 .. {(num_classes or 1) - 1})"
        return None
    try:
        arr = _as_map(target)
    except (TypeError, ValueError) as exc:
        return f"its {get_task(task).fake_target} map is not a 2-D array of numbers ({exc})"
    if arr is None:
        return f"no {get_task(task).fake_target} map"
    if arr.ndim != 2 or arr.size == 0:
        return f"its {get_task(task).fake_target} map has shape {arr.shape}; expected a non-empty 2-D map"
    if not np.isfinite(arr).all():
        n = int((~np.isfinite(arr)).sum())
        return f"its {get_task(task).fake_target} map holds {n} NaN/inf values"
    neg = float(-arr[arr < 0].sum(dtype=np.float64))
    pos = float(arr[arr > 0].sum(dtype=np.float64))
    if neg > NEGATIVE_SHARE * pos and (neg > NEGATIVE_HEADS or task != "counting"):
        return (f"its {get_task(task).fake_target} map is negative: {int((arr < 0).sum())} values below 0 (min "
                f"{float(arr.min()):.4g}) summing to -{neg:.4g} against {pos:.4g} above 0; expected values >= 0 "
                f"(small negative noise, at most {NEGATIVE_SHARE:.0%} of the positive mass, is accepted)")
    if width is not None and height is not None:
        h, w = int(height), int(width)
        if arr.shape != (h, w) and infer_stride(tuple(arr.shape), (h, w)) is None:
            return (f"its {get_task(task).fake_target} map is {arr.shape[0]}x{arr.shape[1]} (HxW), which fits no "
                    f"output stride of its {w}x{h} image (expected {h}x{w}, or H // s x W // s or ceil(H / s) x "
                    "ceil(W / s) for an integer stride s)")
    return None


def _header_size(value: Any) -> tuple[int, int] | None:
    """``(width, height)`` of an undecoded ``Image`` value from its header (nothing decoded)."""
    if not isinstance(value, dict):
        return None
    data, path = value.get("bytes"), value.get("path")
    try:
        with (Image.open(io.BytesIO(data)) if data is not None else Image.open(path)) as im:
            return im.size
    except Exception:
        return (-1, -1)


def _row_target(row: dict, task: str, target_annotator: str | None) -> tuple[Any, str | None]:
    """(the training target of one fake row as :func:`arrow_row` reads it, why there is none)."""
    spec = get_task(task)
    if target_annotator:
        try:
            ann = annotation_of(row.get(schema.ANNOTATIONS) or [], target_annotator, row.get(schema.ROW_ID))
        except InputError:
            return None, f"no output of annotator {target_annotator!r}"
        return ann.get(spec.annotation_map or schema.LABEL), None
    if spec.annotation_map is not None:  # stored once: the mean in the row, else its target annotator's map
        if row.get(spec.fake_target) is not None:
            return row[spec.fake_target], None
        name = row.get(schema.TARGET_ANNOTATOR)
        if name is None or row.get(schema.ANNOTATIONS) is None:
            return None, None
        try:
            return annotation_of(row[schema.ANNOTATIONS], name, row.get(schema.ROW_ID)).get(spec.fake_target), None
        except InputError:
            return None, f"its target annotator {name!r} has no output in the row"
    return row.get(spec.fake_target), None


def fake_row_problem(row: dict, task: str, target_annotator: str | None = None,
                     num_classes: int | None = None) -> str | None:
    """Why one fake row (as :func:`arrow_row` reads it) cannot be trained on, or None (:func:`fake_target_problem`)."""
    target, why = _row_target(row, task, target_annotator)
    if why is not None:
        return why
    size = _header_size(row[schema.IMAGE]) if schema.IMAGE in row else None
    if size == (-1, -1):
        return "its image cannot be opened"
    return fake_target_problem(task, target, row.get(schema.WIDTH), row.get(schema.HEIGHT), size, num_classes)


def _check_columns(task: str, target_annotator: str | None) -> list[str]:
    spec = get_task(task)
    cols = [schema.ROW_ID, schema.WIDTH, schema.HEIGHT, schema.IMAGE]
    if target_annotator:
        return cols + [schema.ANNOTATIONS]
    if spec.annotation_map is not None:
        return cols + [spec.fake_target, schema.TARGET_ANNOTATOR, schema.ANNOTATIONS]
    return cols + [spec.fake_target]


def _raise_bad(ref: str, total: int, n_bad: int, bad: list[str]) -> None:
    raise InputError(f"fake dataset {ref!r}: {n_bad} of {total} rows cannot be trained on: "
                     + "; ".join(bad) + (" ..." if n_bad > len(bad) else "")
                     + ". Refilter the run (`promptmix filter`) or fix the dataset; nothing was trained")


def check_fake_rows(fake: Dataset, task: str, ref: str, target_annotator: str | None = None,
                    num_classes: int | None = None, batch_rows: int = 64) -> None:
    """Check every fake row (:func:`fake_row_problem`, rows read from Arrow: maps as NumPy views, images'
    headers only); :class:`InputError` naming the rows that fail."""
    reader = _RowReader(fake, _check_columns(task, target_annotator))
    bad: list[str] = []
    n_bad = 0
    for i in range(len(reader)):
        row = reader[i]
        why = fake_row_problem(row, task, target_annotator, num_classes)
        if why is not None:
            n_bad += 1
            if len(bad) < 5:
                bad.append(f"row {row.get(schema.ROW_ID) or f'#{i}'}: {why}")
    if n_bad:
        _raise_bad(ref, len(reader), n_bad, bad)


def load_training_data(config) -> TrainingData:
    """Load and check the real splits and the fake rows a :class:`~promptmix.training.config.TrainConfig` names
    (``streaming``: the fake rows as a :class:`StreamedFake`)."""
    splits = load_real(config.real, config.real_revision)
    class_names = check_real(splits, config.task, config.real)
    fake = None
    if config.fake and config.mixing != "none" and getattr(config, "streaming", False):
        fake = StreamedFake(config.fake, config.fake_revision, config.fake_config)
        _check_fake_columns(fake, config.task, config.fake, class_names, config.target_annotator)
        n_classes = len(class_names) if class_names is not None else None
        fake.row_check = functools.partial(fake_row_problem, task=config.task,
                                           target_annotator=config.target_annotator, num_classes=n_classes)
    elif config.fake and config.mixing != "none":
        fake = _load_fake(config.fake, config.fake_revision, config.fake_config)
        fake = check_fake(fake, config.task, config.fake, class_names, config.target_annotator)
        check_fake_rows(fake, config.task, config.fake, config.target_annotator,
                        len(class_names) if class_names is not None else None)
    return TrainingData(task=config.task, train=splits["train"], validation=splits["validation"],
                        test=splits["test"], fake=fake, class_names=class_names)


# -- per-row transforms ------------------------------------------------------------------------------------
def decode_image(value: Any) -> np.ndarray:
    """An (H, W, 3) uint8 array from an undecoded ``Image`` value (``{"bytes", "path"}``)."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        img = Image.open(io.BytesIO(data)) if data is not None else Image.open(path)
    elif isinstance(value, Image.Image):
        img = value
    else:
        return np.asarray(value, dtype=np.uint8)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img)  # a writable copy (torch.from_numpy needs one), the only one


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> normalised (3, H, W) float32."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.from_numpy(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.from_numpy(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def to_uint8_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) uint8: what crosses to the device (a quarter of float32's bytes); the
    trainer normalises there (:func:`normalize`)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """A batch of uint8 images (..., 3, H, W) -> ImageNet-normalised float32, where the tensor is (the device);
    float input is taken as normalised already and returned as is. The same arithmetic as :func:`to_tensor`."""
    if pixels.dtype != torch.uint8:
        return pixels
    mean = torch.as_tensor(IMAGENET_MEAN, device=pixels.device).view(3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, device=pixels.device).view(3, 1, 1)
    return pixels.float().div_(255.0).sub_(mean).div_(std)  # in place: one float buffer


def _bilinear_rows(n_in: int, n_out: int, start: int, size: int) -> np.ndarray:
    """(size, n_in) float32: rows ``start .. start + size`` of the bilinear resize matrix ``n_in -> n_out``
    (``F.interpolate(..., mode="bilinear", align_corners=False)``), zero for rows beyond ``n_out``."""
    out = np.zeros((size, n_in), dtype=np.float32)
    i = np.arange(start, min(start + size, n_out))
    if len(i) == 0:
        return out
    src = np.maximum((i + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float32)
    rows = i - start
    np.add.at(out, (rows, i0), 1.0 - lam)
    np.add.at(out, (rows, i1), lam)
    return out


def crop_resize_map(depth: np.ndarray, image_size: tuple[int, int], window: tuple[int, int, int, int],
                    flip: bool = False) -> np.ndarray:
    """The ``window`` (y, x, height, width) of ``depth`` resized bilinearly to ``image_size``, zero beyond the
    image, flipped left-right with ``flip``: only the crop's pixels are computed (two small matrix products)."""
    h, w = image_size
    y, x, ch, cw = window
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape == (h, w):
        out = _pad_to(depth[y:y + ch, x:x + cw], ch, cw)
    else:
        ry = _bilinear_rows(depth.shape[0], h, y, ch)
        rx = _bilinear_rows(depth.shape[1], w, x, cw)
        out = ry @ depth @ rx.T
    return np.array(out[:, ::-1] if flip else out, dtype=np.float32, order="C")  # a writable copy of the crop


def _pad_to(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = max(0, h - arr.shape[0]), max(0, w - arr.shape[1])
    if ph == 0 and pw == 0:
        return arr
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(arr, pad)


def random_crop(arrays: Sequence[np.ndarray], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random ``size x size`` window of every array (zero-padded at the bottom/right if smaller)."""
    arrays = [_pad_to(a, size, size) for a in arrays]
    h, w = arrays[0].shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return [a[y:y + size, x:x + size] for a in arrays]


def resize_map(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a 2-D map (depth), float32."""
    if arr.shape == (h, w):
        return arr.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def _annotation(row_annotations: Any, name: str, row_id: Any) -> dict:
    for ann in row_annotations or []:
        if ann.get(schema.ANNOTATOR) == name:
            return ann
    found = [a.get(schema.ANNOTATOR) for a in row_annotations or []]
    raise InputError(f"fake row {row_id}: no output of annotator {name!r} (annotators: {found}); "
                     f"check --target-annotator")


@dataclasses.dataclass
class SampleSettings:
    """What the per-row transforms need from the config and the model."""

    task: str
    output_stride: int = 1
    output_rounding: str = "floor"  # how the model's grid covers sizes the stride does not divide
    crop_size: int | None = None
    image_size: int | None = None
    hflip: bool = True
    density_sigma: float = 4.0
    density_kernel_size: int | None = 15
    target_annotator: str | None = None
    seed: int = 0
    augment: str = "crop-flip"
    augment_policy: str | None = None
    randaugment_ops: int = 2
    randaugment_magnitude: float = 9.0
    cutout: int = 0
    density_kernel: str = "fixed"

    @classmethod
    def from_config(cls, config, output_stride: int | None, output_rounding: str | None = None) -> "SampleSettings":
        return cls(task=config.task, output_stride=output_stride or 1, output_rounding=output_rounding or "floor",
                   crop_size=config.crop_size,
                   image_size=config.image_size, hflip=config.hflip, density_sigma=config.density_sigma,
                   density_kernel_size=config.density_kernel_size, target_annotator=config.target_annotator,
                   seed=config.seed, augment=config.augment, augment_policy=config.augment_policy,
                   randaugment_ops=config.randaugment_ops, randaugment_magnitude=config.randaugment_magnitude,
                   cutout=config.cutout, density_kernel=config.density_kernel)

    def density_truncate(self) -> float:
        from ...density import TRUNCATE

        if self.density_kernel_size is None:
            return TRUNCATE
        return (self.density_kernel_size // 2) / self.density_sigma


def _is_map(feature: Any) -> bool:
    return isinstance(feature, dict) and set(feature) == {maps.SHAPE, maps.DTYPE, maps.DATA}


def _nested_array(column) -> np.ndarray:
    """A one-row ``list<list<number>>`` Arrow column (points, boxes, an old nested map) as an (N, K) array."""
    rows = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    inner = rows.flatten()
    n = len(inner)
    values = inner.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(n, -1) if n else np.zeros((0, 0), dtype=values.dtype)


def arrow_row(table, features) -> dict:
    """One row (a one-row Arrow table) as the data path reads it, with no Python object per value: images
    undecoded (``{"bytes", "path"}``), maps and point lists as NumPy arrays, ``annotations`` left as Arrow
    (read with :func:`annotation_of`), other values as Python scalars."""
    row: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name)
        feature = features.get(name)
        if isinstance(feature, ImageFeature):
            value = col.combine_chunks()
            row[name] = {"bytes": value.field("bytes")[0].as_py(), "path": value.field("path")[0].as_py()}
        elif _is_map(feature):
            row[name] = maps.arrow_maps(col)[0]
        elif name == schema.ANNOTATIONS:
            row[name] = col.combine_chunks()
        elif name in (schema.POINTS, schema.BOXES, schema.DEPTH, schema.DENSITY):  # lists of lists (old maps too)
            row[name] = None if not col[0].is_valid else _nested_array(col)
        else:
            row[name] = col[0].as_py()
    return row


def annotation_of(annotations: Any, name: str, row_id: Any) -> dict:
    """Annotator ``name``'s output in a row's ``annotations`` (Arrow, as :func:`arrow_row` leaves it, or Python
    dicts): a dict with its maps as NumPy arrays."""
    if not hasattr(annotations, "flatten"):  # Python rows
        ann = dict(_annotation(annotations, name, row_id))
        for key in (schema.DENSITY, schema.DEPTH):
            if key in ann:
                ann[key] = maps.decode(ann[key])
        return ann
    structs = annotations.flatten()  # the row's annotators, a StructArray
    names = [structs.type.field(k).name for k in range(structs.type.num_fields)]
    children = dict(zip(names, structs.flatten()))
    found = children[schema.ANNOTATOR].to_pylist()
    if name not in found:
        raise InputError(f"fake row {row_id}: no output of annotator {name!r} (annotators: {found}); "
                         f"check --target-annotator")
    j = found.index(name)
    out: dict[str, Any] = {}
    for key, child in children.items():
        if key in (schema.DENSITY, schema.DEPTH):
            out[key] = maps.arrow_maps(child.slice(j, 1))[0]
        else:
            out[key] = child[j].as_py()
    return out


def _stored_target(data: dict, column: str) -> dict:
    """A fake row's target map as ``{column: map}``: the row's own column (the mean target, or a fake dataset
    written before maps were stored once) or the map of the annotator named in ``target_annotator``."""
    if data.get(column) is not None:
        return {column: data[column]}
    name = data.get(schema.TARGET_ANNOTATOR)
    if name is None or data.get(schema.ANNOTATIONS) is None:
        raise InputError(f"fake row {data.get(schema.ROW_ID)}: no {column!r} map and no target annotator to take it "
                         "from; expected a dataset written by `promptmix filter`")
    return annotation_of(data[schema.ANNOTATIONS], name, data.get(schema.ROW_ID))


class _RowReader:
    """Random access to the columns a task needs, read from Arrow (:func:`arrow_row`): images undecoded, maps
    and point lists as NumPy arrays."""

    def __init__(self, ds: Dataset, columns: Sequence[str]) -> None:
        cols = [c for c in columns if c in ds.column_names]
        sub = ds.select_columns(cols)
        self.features = sub.features
        self.ds = sub.with_format("arrow")

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        return arrow_row(self.ds[int(i)], self.features)


def _owned(row: dict) -> dict:
    """``row`` with its NumPy views and Arrow slices copied into buffers of their own."""
    import pyarrow as pa

    out = {}
    for k, v in row.items():
        if isinstance(v, np.ndarray):
            v = v.copy()
        elif isinstance(v, pa.Array):
            v = v.take(pa.array([0])) if len(v) == 1 else v.take(pa.array(np.arange(len(v))))
        out[k] = v
    return out


class _StreamedReader:
    """The rows of a :class:`StreamedFake` an epoch uses, fetched by :meth:`prefetch` before the epoch."""

    def __init__(self, fake: StreamedFake, columns: Sequence[str]) -> None:
        self.fake, self.columns = fake, list(columns)
        self.rows: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.fake)

    def prefetch(self, rows: Sequence[int]) -> None:
        self.rows = self.fake.fetch(rows, self.columns)
        check = self.fake.row_check
        if check is not None:  # a streamed set is checked row by row, as each epoch fetches it
            bad = [f"row {r.get(schema.ROW_ID) or f'#{i}'}: {why}" for i, r in sorted(self.rows.items())
                   if (why := check(r)) is not None]
            if bad:
                _raise_bad(self.fake.ref, len(self.rows), len(bad), bad[:5])

    def __getitem__(self, i: int) -> dict:
        try:
            return self.rows[int(i)]
        except KeyError:
            raise InputError(f"streamed fake row {int(i)} was not fetched for this epoch (TrainSet.prefetch "
                             "takes the epoch's batches first)") from None


def _train_columns(task: str, source: int, target_annotator: str | None, density_kernel: str = "fixed") -> list[str]:
    if source == REAL:
        return [schema.IMAGE, *get_task(task).real_columns[:1], *([schema.BOXES] if density_kernel == "box" else [])]
    if target_annotator:
        return [schema.IMAGE, schema.ROW_ID, schema.ANNOTATIONS]
    spec = get_task(task)
    if spec.annotation_map is not None:  # the target map: the row's own column (mean) or its annotator's
        return [schema.IMAGE, schema.ROW_ID, spec.fake_target, schema.TARGET_ANNOTATOR, schema.ANNOTATIONS]
    return [schema.IMAGE, spec.fake_target]


class TrainSet(torch.utils.data.Dataset):
    """Training samples addressed by ``(source, row, position)`` keys from :mod:`~promptmix.training.mixing`.

    Augmentation is drawn from a generator seeded by ``(seed, epoch, source, row, position)``, so an
    epoch is the same on any number of processes and after a resume.
    """

    def __init__(self, data: TrainingData, settings: SampleSettings) -> None:
        self.settings = settings
        self.epoch = 0
        if settings.density_kernel == "box" and schema.BOXES not in data.train.column_names:
            raise InputError(f"density_kernel box: the real dataset has no {schema.BOXES!r} column (a box per "
                             "person, as `promptmix real panda-crowd` writes); use density_kernel fixed")
        self.readers = {REAL: _RowReader(data.train, _train_columns(settings.task, REAL, None,
                                                                    settings.density_kernel))}
        if data.fake is not None:
            columns = _train_columns(settings.task, FAKE, settings.target_annotator)
            reader = _StreamedReader if isinstance(data.fake, StreamedFake) else _RowReader
            if reader is _StreamedReader:  # the columns its row check reads too
                columns = list(dict.fromkeys([*columns, *_check_columns(settings.task, settings.target_annotator)]))
            self.readers[FAKE] = reader(data.fake, columns)
        self.sizes = {s: len(r) for s, r in self.readers.items()}
        self.policy = None
        if settings.task == "classification":
            from .augment import PolicyAugment

            self.policy = PolicyAugment(settings.augment, randaugment_ops=settings.randaugment_ops,
                                        randaugment_magnitude=settings.randaugment_magnitude,
                                        policy_file=settings.augment_policy)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def prefetch(self, batches: Sequence[Sequence[Sequence[int]]]) -> None:
        """Before an epoch: a streamed fake set fetches the fake rows of ``batches`` (``(source, row, ...)`` keys)
        in one pass over its stream; an in-memory one needs nothing."""
        reader = self.readers.get(FAKE)
        if isinstance(reader, _StreamedReader):
            reader.prefetch(sorted({int(k[1]) for b in batches for k in b if int(k[0]) == FAKE}))

    def __len__(self) -> int:
        return sum(self.sizes.values())

    def __getitem__(self, key) -> dict:
        source, row, position = (tuple(key) + (0,))[:3]
        s = self.settings
        rng = np.random.default_rng([s.seed & 0xFFFFFFFF, self.epoch, int(source), int(row), int(position)])
        data = self.readers[source][row]
        image = decode_image(data[schema.IMAGE])
        ann = None
        if source == FAKE and s.target_annotator:
            ann = annotation_of(data[schema.ANNOTATIONS], s.target_annotator, data.get(schema.ROW_ID))
        elif source == FAKE and get_task(s.task).annotation_map is not None:
            ann = _stored_target(data, get_task(s.task).fake_target)
        return getattr(self, f"_{s.task}")(image, data, source, ann, rng)  # _counting, _depth, _classification

    def _flip(self, arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        if self.settings.hflip and rng.random() < 0.5:
            return [a[:, ::-1] for a in arrays]
        return arrays

    def _window(self, image: np.ndarray, rng: np.random.Generator, at_least: int = 1) -> tuple[int, int, int, int]:
        """The crop (y, x, height, width) of this sample, drawn as :func:`random_crop` draws it; the whole image
        (padded to ``at_least``) without a crop size."""
        s = self.settings
        h, w = image.shape[:2]
        if s.crop_size:
            size = s.crop_size
            y = int(rng.integers(0, max(h, size) - size + 1))
            x = int(rng.integers(0, max(w, size) - size + 1))
            return y, x, size, size
        return 0, 0, max(h, at_least), max(w, at_least)

    def _flips(self, rng: np.random.Generator) -> bool:
        return bool(self.settings.hflip and rng.random() < 0.5)

    @staticmethod
    def _crop_image(image: np.ndarray, window: tuple[int, int, int, int], flip: bool) -> np.ndarray:
        y, x, ch, cw = window
        out = _pad_to(image[y:y + ch, x:x + cw], ch, cw)
        return out[:, ::-1] if flip else out

    def _counting(self, image, data, source, ann, rng) -> dict:
        """The crop's target only: the heads' Gaussians (or the annotator's cells) summed straight into the
        model's output cells over the crop (:func:`~promptmix.density.crop_density_target`), float32."""
        from ...density import align_density, box_density_map, crop_density_target, crop_map_target, grid_size

        s = self.settings
        h, w = image.shape[:2]
        if source == REAL and s.density_kernel == "box":  # box kernels: the full map, then the crop
            dens = box_density_map(np.asarray(data[schema.BOXES], dtype=np.float64).reshape(-1, 4), h, w)
            if s.crop_size:
                image, dens = random_crop([image, dens], s.crop_size, rng)
            else:
                image, dens = (_pad_to(a, max(h, s.output_stride), max(w, s.output_stride)) for a in (image, dens))
            image, dens = self._flip([image, dens], rng)
            ph, pw = dens.shape
            grid = (grid_size(ph, s.output_stride, s.output_rounding), grid_size(pw, s.output_stride,
                                                                                 s.output_rounding))
            target = align_density(np.ascontiguousarray(dens, dtype=np.float32), (ph, pw), grid, stride=1,
                                   out_stride=s.output_stride)
            return {"pixel_values": self._pixels(image), "target": torch.from_numpy(np.ascontiguousarray(target))[None]}
        window = self._window(image, rng, s.output_stride)
        flip = self._flips(rng)
        grid = (grid_size(window[2], s.output_stride, s.output_rounding),
                grid_size(window[3], s.output_stride, s.output_rounding))
        if source == REAL:
            target = crop_density_target(np.asarray(data[schema.POINTS], dtype=np.float64).reshape(-1, 2), (h, w),
                                         window, grid, s.output_stride, sigma=s.density_sigma,
                                         truncate=s.density_truncate(), hflip=flip)
        else:
            target = crop_map_target(ann[schema.DENSITY], (h, w), window, grid, s.output_stride, hflip=flip)
        pixels = self._pixels(self._crop_image(image, window, flip))
        return {"pixel_values": pixels, "target": torch.from_numpy(np.ascontiguousarray(target))[None]}

    def _depth(self, image, data, source, ann, rng) -> dict:
        """The crop of the depth map only: a stored map at the image's size is sliced, a smaller (annotator) map
        is resized bilinearly for the crop's pixels only (:func:`crop_resize_map`)."""
        h, w = image.shape[:2]
        depth = ann[schema.DEPTH] if ann is not None else data[schema.DEPTH]
        depth = maps.decode(depth)
        window = self._window(image, rng)
        flip = self._flips(rng)
        target = crop_resize_map(depth, (h, w), window, flip)
        return {"pixel_values": self._pixels(self._crop_image(image, window, flip)),
                "target": torch.from_numpy(np.ascontiguousarray(target))[None]}

    def _pixels(self, image: np.ndarray) -> torch.Tensor:
        return to_uint8_tensor(image)

    def _classification(self, image, data, source, ann, rng) -> dict:
        s = self.settings
        from .augment import cutout

        label = int(ann[schema.LABEL] if ann is not None else data[schema.LABEL])
        image = classification_resize(image, s.image_size)
        if self.policy is not None and self.policy.changes_pixels:  # AutoAugment / RandAugment / searched policy
            image = self.policy(image, rng)
        if s.crop_size:
            (image,) = random_crop([image], s.crop_size, rng)
        elif s.augment != "none":  # the CIFAR recipe: pad 4 px, random crop back to the size
            h, w = image.shape[:2]
            padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
            y, x = int(rng.integers(0, 9)), int(rng.integers(0, 9))
            image = padded[y:y + h, x:x + w]
        (image,) = self._flip([image], rng)
        pixels = cutout(to_tensor(image), s.cutout, rng) if s.cutout else to_uint8_tensor(image)
        return {"pixel_values": pixels, "target": torch.tensor(label, dtype=torch.long)}


def classification_resize(image: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _center_crop(image: np.ndarray, size: int) -> np.ndarray:
    image = _pad_to(image, size, size)
    h, w = image.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return image[y:y + size, x:x + size]


class EvalSet(torch.utils.data.Dataset):
    """Evaluation samples of one real split: whole images, the reference each metric needs, the row index."""

    def __init__(self, ds: Dataset, settings: SampleSettings) -> None:
        self.settings = settings
        ref = get_task(settings.task).reference_column
        self.reader = _RowReader(ds, [schema.IMAGE, ref])
        self.ref = ref

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> dict:
        data = self.reader[i]
        image, target = getattr(self, f"_{self.settings.task}")(decode_image(data[schema.IMAGE]), data[self.ref])
        return {"pixel_values": to_uint8_tensor(image), "target": target, "index": torch.tensor(int(i))}

    # one method per task (named after it): the whole image and the reference its metric needs
    def _counting(self, image, count):
        return image, torch.tensor(float(count), dtype=torch.float64)

    def _depth(self, image, depth):
        return image, torch.from_numpy(np.array(maps.decode(depth), dtype=np.float32, order="C"))[None]

    def _classification(self, image, label):
        s = self.settings
        image = classification_resize(image, s.image_size)
        if s.crop_size:
            image = _center_crop(image, s.crop_size)
        return image, torch.tensor(int(label), dtype=torch.long)


def collate(samples: list[dict]) -> list[dict]:
    """Group samples by image (and target) shape, stack each group; ``position`` keeps the batch order."""
    groups: dict[tuple, list[int]] = {}
    for pos, s in enumerate(samples):
        shape = (tuple(s["pixel_values"].shape), tuple(s["target"].shape))
        groups.setdefault(shape, []).append(pos)
    out = []
    for positions in groups.values():
        group = {k: torch.stack([samples[p][k] for p in positions]) for k in samples[positions[0]]}
        group["position"] = torch.tensor(positions)
        out.append(group)
    return out
