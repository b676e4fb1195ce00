"""The training data path: load real and fake datasets, turn rows into tensors, batch them.

Real datasets are Hub-layout folders or Hub ids with train/validation/test splits
(``schema.COUNTING_REAL``, ``DEPTH_REAL``, ``classification_real(names)``); fake datasets are
``promptmix filter`` outputs (``schema.fake_features``), config ``kept`` by default. Maps are read
with ``with_format("numpy")``; images stay encoded until a row is used.

Training targets:

* counting: a full-resolution density map -- from the head points (``promptmix.density.density_map``,
  normalised Gaussians, sigma 4, kernel 15) for real rows, the chosen annotator's map spread over the
  pixels its cells sit on for fake rows -- cropped and flipped with the image, then summed into the
  cells of the model's output grid for that size (``promptmix.density.align_density``: ``H // 8`` cells
  for CSRNet's flooring max-pools, ``ceil(H / 8)`` for ResNet's padded strides; whole images of any size,
  no trimming), so its sum stays the head count and each cell holds the heads on its pixels.
* depth: the depth map in metres (fake maps resized bilinearly to the image), cropped and flipped
  with the image; zero marks invalid pixels.
* classification: the class index (fake rows' ``label``, or the chosen annotator's prediction).

Fake rows are checked when they load (:func:`check_fake_rows`, for any ``--fake``: a ``promptmix filter``
folder, a publication or a Hub id): a map target must be a 2-D array of finite, non-negative numbers
(negative noise up to 5 % of the positive mass is accepted, and for counting up to half a head: CSRNet's
output has no final ReLU) whose shape is the image's ``(height, width)`` or a grid of an integer output stride over it
(:func:`promptmix.density.infer_stride`: ``H // s`` or ``ceil(H / s)`` cells, as annotators write); a
class label must be one of the classes; the image's own size (its header) must equal the row's
``width`` and ``height``. A row that fails is an :class:`InputError` naming its ``row_id`` and the
problem (the first rows and how many fail).

Images are normalised with the ImageNet mean and standard deviation. A batch is a list of groups
of same-sized samples (:func:`collate`), so images of different sizes can share a batch.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from ... import schema
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
    if schema.ANNOTATION_OK in fake.column_names:
        ok = np.asarray(fake.with_format("numpy")[schema.ANNOTATION_OK], dtype=bool)
        if not ok.all():
            logger.warning("fake dataset %s: leaving out %d rows whose annotation failed", ref, int((~ok).sum()))
            fake = fake.select(np.flatnonzero(ok))
    return fake


#: a map's negative values are noise (CSRNet has no final ReLU; bicubic resizing overshoots) up to this share of its
#: positive mass; beyond it (and, for counting, beyond half a head) the map is refused as poisoned
NEGATIVE_SHARE = 0.05
NEGATIVE_HEADS = 0.5


def _as_map(value: Any) -> np.ndarray | None:
    """A 2-D float32 array from a stored map (nested lists, an array, or NumPy's object arrays of rows)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.stack([np.asarray(r, dtype=np.float32) for r in value]) if len(value) else np.zeros((0, 0),
                                                                                                       np.float32)
    return np.asarray(value, dtype=np.float32)


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


def check_fake_rows(fake: Dataset, task: str, ref: str, target_annotator: str | None = None,
                    num_classes: int | None = None, batch_rows: int = 64) -> None:
    """Check every fake row (:func:`fake_target_problem`); :class:`InputError` naming the rows that fail."""
    target_col = get_task(task).fake_target
    cols = [c for c in (schema.ROW_ID, schema.WIDTH, schema.HEIGHT, schema.IMAGE) if c in fake.column_names]
    cols.append(schema.ANNOTATIONS if target_annotator else target_col)
    sub = fake.select_columns(cols)
    if schema.IMAGE in cols and isinstance(sub.features[schema.IMAGE], ImageFeature):
        sub = sub.cast_column(schema.IMAGE, ImageFeature(decode=False))
    if not target_annotator:  # maps as NumPy arrays (no detour through Python lists), the rest as stored
        sub = sub.with_format("numpy", columns=[target_col], output_all_columns=True)
    bad: list[str] = []
    n_bad = 0
    for start in range(0, len(sub), batch_rows):
        batch = sub[start:start + batch_rows]
        n = len(batch[cols[-1]])
        for i in range(n):
            row_id = batch[schema.ROW_ID][i] if schema.ROW_ID in batch else f"#{start + i}"
            if target_annotator:
                ann = next((a for a in batch[schema.ANNOTATIONS][i] or [] if a.get(schema.ANNOTATOR) == target_annotator),
                           None)
                if ann is None:
                    why = f"no output of annotator {target_annotator!r}"
                else:
                    key = get_task(task).annotation_map or schema.LABEL
                    why = None
                    target = ann.get(key)
            else:
                why, target = None, batch[target_col][i]
            if why is None:
                size = _header_size(batch[schema.IMAGE][i]) if schema.IMAGE in batch else None
                if size == (-1, -1):
                    why = "its image cannot be opened"
                else:
                    why = fake_target_problem(task, target, batch.get(schema.WIDTH, [None] * n)[i],
                                              batch.get(schema.HEIGHT, [None] * n)[i], size, num_classes)
            if why is not None:
                n_bad += 1
                if len(bad) < 5:
                    bad.append(f"row {row_id}: {why}")
    if n_bad:
        raise InputError(f"fake dataset {ref!r}: {n_bad} of {len(sub)} rows cannot be trained on: "
                         + "; ".join(bad) + (" ..." if n_bad > len(bad) else "")
                         + ". Refilter the run (`promptmix filter`) or fix the dataset; nothing was trained")


def load_training_data(config) -> TrainingData:
    """Load and check the real splits and the fake rows a :class:`~promptmix.training.config.TrainConfig` names."""
    splits = load_real(config.real, config.real_revision)
    class_names = check_real(splits, config.task, config.real)
    fake = None
    if config.fake and config.mixing != "none":
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
    return np.array(img.convert("RGB"))  # a writable copy (torch.from_numpy needs one)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> normalised (3, H, W) float32."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.from_numpy(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.from_numpy(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


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


class _RowReader:
    """Random access to the columns a task needs, images undecoded and maps as NumPy arrays."""

    def __init__(self, ds: Dataset, columns: Sequence[str]) -> None:
        cols = [c for c in columns if c in ds.column_names]
        sub = ds.select_columns(cols)
        if schema.IMAGE in cols and isinstance(sub.features[schema.IMAGE], ImageFeature):
            sub = sub.cast_column(schema.IMAGE, ImageFeature(decode=False))
        self.ds = sub.with_format("numpy")
        self.annotations = ds.select_columns([schema.ANNOTATIONS]) if schema.ANNOTATIONS in columns else None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        row = dict(self.ds[int(i)])
        if self.annotations is not None:
            row[schema.ANNOTATIONS] = self.annotations[int(i)][schema.ANNOTATIONS]
        return row


def _train_columns(task: str, source: int, target_annotator: str | None, density_kernel: str = "fixed") -> list[str]:
    if source == REAL:
        return [schema.IMAGE, *get_task(task).real_columns[:1], *([schema.BOXES] if density_kernel == "box" else [])]
    if target_annotator:
        return [schema.IMAGE, schema.ROW_ID, schema.ANNOTATIONS]
    return [schema.IMAGE, get_task(task).fake_target]


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
            self.readers[FAKE] = _RowReader(data.fake, _train_columns(settings.task, FAKE, settings.target_annotator))
        self.sizes = {s: len(r) for s, r in self.readers.items()}
        self.policy = None
        if settings.task == "classification":
            from .augment import PolicyAugment

            self.policy = PolicyAugment(settings.augment, randaugment_ops=settings.randaugment_ops,
                                        randaugment_magnitude=settings.randaugment_magnitude,
                                        policy_file=settings.augment_policy)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

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
            ann = _annotation(data[schema.ANNOTATIONS], s.target_annotator, data.get(schema.ROW_ID))
        return getattr(self, f"_{s.task}")(image, data, source, ann, rng)  # _counting, _depth, _classification

    def _flip(self, arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        if self.settings.hflip and rng.random() < 0.5:
            return [a[:, ::-1] for a in arrays]
        return arrays

    def _counting(self, image, data, source, ann, rng) -> dict:
        from ...density import align_density, box_density_map, density_map, grid_size

        s = self.settings
        h, w = image.shape[:2]
        if source == REAL and s.density_kernel == "box":
            dens = box_density_map(np.asarray(data[schema.BOXES], dtype=np.float64).reshape(-1, 4), h, w)
        elif source == REAL:
            dens = density_map(data[schema.POINTS].reshape(-1, 2), h, w, sigma=s.density_sigma, mode="normalized",
                               truncate=s.density_truncate())
        else:
            small = np.asarray(ann[schema.DENSITY] if ann is not None else data[schema.DENSITY], dtype=np.float32)
            dens = align_density(small, (h, w), (h, w), out_stride=1)  # the annotator's cells onto their pixels
        if s.crop_size:
            image, dens = random_crop([image, dens], s.crop_size, rng)
        else:  # an image smaller than one output cell is padded to one
            image, dens = (_pad_to(a, max(h, s.output_stride), max(w, s.output_stride)) for a in (image, dens))
        image, dens = self._flip([image, dens], rng)
        ph, pw = dens.shape
        grid = (grid_size(ph, s.output_stride, s.output_rounding), grid_size(pw, s.output_stride, s.output_rounding))
        target = align_density(np.ascontiguousarray(dens, dtype=np.float32), (ph, pw), grid, stride=1,
                               out_stride=s.output_stride)
        return {"pixel_values": to_tensor(image), "target": torch.from_numpy(np.ascontiguousarray(target))[None]}

    def _depth(self, image, data, source, ann, rng) -> dict:
        s = self.settings
        h, w = image.shape[:2]
        depth = np.asarray(ann[schema.DEPTH] if ann is not None else data[schema.DEPTH], dtype=np.float32)
        depth = resize_map(depth, h, w)
        if s.crop_size:
            image, depth = random_crop([image, depth], s.crop_size, rng)
        image, depth = self._flip([image, depth], rng)
        return {"pixel_values": to_tensor(image), "target": torch.from_numpy(np.ascontiguousarray(depth))[None]}

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
        pixels = cutout(to_tensor(image), s.cutout, rng) if s.cutout else to_tensor(image)
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
        return {"pixel_values": to_tensor(image), "target": target, "index": torch.tensor(int(i))}

    # one method per task (named after it): the whole image and the reference its metric needs
    def _counting(self, image, count):
        return image, torch.tensor(float(count), dtype=torch.float64)

    def _depth(self, image, depth):
        return image, torch.from_numpy(np.asarray(depth, dtype=np.float32))[None]

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
