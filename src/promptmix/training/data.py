"""The training data path: load real and fake datasets, turn rows into tensors, batch them.

Real datasets are Hub-layout folders or Hub ids with train/validation/test splits
(``schema.COUNTING_REAL``, ``DEPTH_REAL``, ``classification_real(names)``); fake datasets are
``promptmix filter`` outputs (``schema.fake_features``), config ``kept`` by default. Maps are read
with ``with_format("numpy")``; images stay encoded until a row is used.

Training targets:

* counting: a full-resolution density map -- from the head points (``promptmix.density.density_map``,
  normalised Gaussians, sigma 4, kernel 15) for real rows, the chosen annotator's map resized to the
  image (``resize_density``, mass kept) for fake rows -- cropped and flipped with the image, then
  summed down to the model's output stride (``resize_density``), so its sum stays the head count.
* depth: the depth map in metres (fake maps resized bilinearly to the image), cropped and flipped
  with the image; zero marks invalid pixels.
* classification: the class index (fake rows' ``label``, or the chosen annotator's prediction).

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
from datasets import Dataset, Image as ImageFeature
from PIL import Image

from .. import schema
from ..builders.loading import load_real, load_source
from ..errors import InputError
from .mixing import FAKE, REAL

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SPLITS = ("train", "validation", "test")
_TARGET_COLUMN = {"counting": schema.DENSITY, "depth": schema.DEPTH, "classification": schema.LABEL}
_REAL_COLUMNS = {"counting": (schema.POINTS, schema.COUNT), "depth": (schema.DEPTH,), "classification": (schema.LABEL,)}


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
        needed = (schema.IMAGE, *_REAL_COLUMNS[task])
        lacking = [c for c in needed if c not in ds.column_names]
        if lacking:
            raise InputError(f"real dataset {ref!r}, split {split}: a {task} dataset needs columns "
                             f"{', '.join(needed)}; missing {', '.join(lacking)} (see promptmix.schema)")
        if len(ds) == 0:
            raise InputError(f"real dataset {ref!r}, split {split}: expected at least one row; it is empty")
    if task != "classification":
        return None
    label = splits["train"].features[schema.LABEL]
    if not hasattr(label, "names"):
        raise InputError(f"real dataset {ref!r}: column {schema.LABEL!r} must be a ClassLabel (class names); "
                         f"got {label}")
    return list(label.names)


def check_fake(fake: Dataset, task: str, ref: str, class_names: Sequence[str] | None,
               target_annotator: str | None) -> Dataset:
    """Check the fake dataset's columns (and class names); drop rows whose annotation failed."""
    needed = [schema.IMAGE, schema.ANNOTATIONS if target_annotator else _TARGET_COLUMN[task]]
    lacking = [c for c in needed if c not in fake.column_names]
    if lacking:
        raise InputError(f"fake dataset {ref!r}: a {task} fake dataset needs columns {', '.join(needed)}; missing "
                         f"{', '.join(lacking)} (see promptmix.schema.fake_features)")
    if task == "classification" and not target_annotator:
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


def load_training_data(config) -> TrainingData:
    """Load and check the real splits and the fake rows a :class:`~promptmix.training.config.TrainConfig` names."""
    splits = load_real(config.real, config.real_revision)
    class_names = check_real(splits, config.task, config.real)
    fake = None
    if config.fake and config.mixing != "none":
        fake = _load_fake(config.fake, config.fake_revision, config.fake_config)
        fake = check_fake(fake, config.task, config.fake, class_names, config.target_annotator)
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


def trim_to_multiple(arrays: Sequence[np.ndarray], stride: int) -> list[np.ndarray]:
    """Cut the bottom/right so height and width are multiples of ``stride`` (padding images smaller than it)."""
    h, w = arrays[0].shape[:2]
    th, tw = max(stride, h - h % stride), max(stride, w - w % stride)
    return [_pad_to(a, th, tw)[:th, :tw] for a in arrays]


def resize_map(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a 2-D map (depth), float32."""
    if arr.shape == (h, w):
        return arr.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def upsample_density(density: np.ndarray, h: int, w: int) -> np.ndarray:
    """``resize_density`` to the image size; an integer upsampling factor (the usual case: annotators
    output at 1/8) spreads each value evenly over its block with ``np.repeat``, which is the same
    result several times faster."""
    from ..density import resize_density

    dh, dw = density.shape
    if (dh, dw) != (h, w) and h % dh == 0 and w % dw == 0:
        fy, fx = h // dh, w // dw
        return np.repeat(np.repeat(density / np.float32(fy * fx), fy, axis=0), fx, axis=1)
    return resize_density(density, h, w)


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
    crop_size: int | None = None
    image_size: int | None = None
    hflip: bool = True
    density_sigma: float = 4.0
    density_kernel_size: int | None = 15
    target_annotator: str | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, config, output_stride: int | None) -> "SampleSettings":
        return cls(task=config.task, output_stride=output_stride or 1, crop_size=config.crop_size,
                   image_size=config.image_size, hflip=config.hflip, density_sigma=config.density_sigma,
                   density_kernel_size=config.density_kernel_size, target_annotator=config.target_annotator,
                   seed=config.seed)

    def density_truncate(self) -> float:
        from ..density import TRUNCATE

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


def _train_columns(task: str, source: int, target_annotator: str | None) -> list[str]:
    if source == REAL:
        return [schema.IMAGE, *_REAL_COLUMNS[task][:1]]
    if target_annotator:
        return [schema.IMAGE, schema.ROW_ID, schema.ANNOTATIONS]
    return [schema.IMAGE, _TARGET_COLUMN[task]]


class TrainSet(torch.utils.data.Dataset):
    """Training samples addressed by ``(source, row, position)`` keys from :mod:`~promptmix.training.mixing`.

    Augmentation is drawn from a generator seeded by ``(seed, epoch, source, row, position)``, so an
    epoch is the same on any number of processes and after a resume.
    """

    def __init__(self, data: TrainingData, settings: SampleSettings) -> None:
        self.settings = settings
        self.epoch = 0
        self.readers = {REAL: _RowReader(data.train, _train_columns(settings.task, REAL, None))}
        if data.fake is not None:
            self.readers[FAKE] = _RowReader(data.fake, _train_columns(settings.task, FAKE, settings.target_annotator))
        self.sizes = {s: len(r) for s, r in self.readers.items()}

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
        if s.task == "counting":
            return self._counting(image, data, source, ann, rng)
        if s.task == "depth":
            return self._depth(image, data, source, ann, rng)
        return self._classification(image, data, source, ann, rng)

    def _flip(self, arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        if self.settings.hflip and rng.random() < 0.5:
            return [a[:, ::-1] for a in arrays]
        return arrays

    def _counting(self, image, data, source, ann, rng) -> dict:
        from ..density import density_map, resize_density

        s = self.settings
        h, w = image.shape[:2]
        if source == REAL:
            dens = density_map(data[schema.POINTS].reshape(-1, 2), h, w, sigma=s.density_sigma, mode="normalized",
                               truncate=s.density_truncate())
        else:
            small = np.asarray(ann[schema.DENSITY] if ann is not None else data[schema.DENSITY], dtype=np.float32)
            dens = upsample_density(small, h, w)
        if s.crop_size:
            image, dens = random_crop([image, dens], s.crop_size, rng)
        else:
            image, dens = trim_to_multiple([image, dens], s.output_stride)
        image, dens = self._flip([image, dens], rng)
        th, tw = dens.shape[0] // s.output_stride, dens.shape[1] // s.output_stride
        target = resize_density(np.ascontiguousarray(dens, dtype=np.float32), th, tw)
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
        label = int(ann[schema.LABEL] if ann is not None else data[schema.LABEL])
        image = classification_resize(image, s.image_size)
        if s.crop_size:
            (image,) = random_crop([image], s.crop_size, rng)
        else:  # the CIFAR recipe: pad 4 px, random crop back to the size
            h, w = image.shape[:2]
            padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
            y, x = int(rng.integers(0, 9)), int(rng.integers(0, 9))
            image = padded[y:y + h, x:x + w]
        (image,) = self._flip([image], rng)
        return {"pixel_values": to_tensor(image), "target": torch.tensor(label, dtype=torch.long)}


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
        ref = {"counting": schema.COUNT, "depth": schema.DEPTH, "classification": schema.LABEL}[settings.task]
        self.reader = _RowReader(ds, [schema.IMAGE, ref])
        self.ref = ref

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> dict:
        data = self.reader[i]
        image = decode_image(data[schema.IMAGE])
        s = self.settings
        if s.task == "classification":
            image = classification_resize(image, s.image_size)
            if s.crop_size:
                image = _center_crop(image, s.crop_size)
            target = torch.tensor(int(data[self.ref]), dtype=torch.long)
        elif s.task == "counting":
            target = torch.tensor(float(data[self.ref]), dtype=torch.float64)
        else:
            target = torch.from_numpy(np.asarray(data[self.ref], dtype=np.float32))[None]
        return {"pixel_values": to_tensor(image), "target": target, "index": torch.tensor(int(i))}


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
