"""Same-class image pairs for MVC fine-tuning, stored as indices, and the dataset that reads them.

The MVC supplement ("Dataset Preparation"): for each class, two lists of random indices as long
as the class (or ``pairs_per_class`` long) are paired one to one; the first image of a pair is the
conditioning image, the second the image the diffusion model learns to generate. Only the index
pairs are stored (``OUTPUT/pairs.parquet``, schema ``MVC_PAIRS``); a mini-batch reads just the
images its pairs name. An image is never paired with itself unless it is alone in its class.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ...errors import InputError
from ...schema import CONDITIONING_INDEX, IMAGE, LABEL, MVC_PAIRS, TARGET_INDEX
from ...utils.io import write_parquet_atomic

logger = logging.getLogger(__name__)

PAIRS_FILE = "pairs.parquet"


def make_pairs(labels: Sequence[int | None], *, pairs_per_class: int | None = None, seed: int = 0):
    """Draw same-class ``(conditioning, target)`` index pairs; returns a ``datasets.Dataset`` (``MVC_PAIRS``).

    ``labels[i]`` is the class of row ``i`` of the real train split. Each class gets
    ``pairs_per_class`` pairs (default: as many as it has images). Pairs depend only on
    ``(seed, class)``, so adding a class does not change the pairs of the others.
    """
    from datasets import Dataset

    if any(y is None or int(y) < 0 for y in labels):
        bad = next(i for i, y in enumerate(labels) if y is None or int(y) < 0)
        raise InputError(f"row {bad} of the real train split has no label ({labels[bad]!r}); MVC fine-tuning pairs "
                         "images of the same class, so every training image needs a label")
    if pairs_per_class is not None and pairs_per_class < 1:
        raise InputError(f"pairs_per_class: expected a positive number or None; got {pairs_per_class!r}")
    labels = np.asarray(labels, dtype=np.int64)
    cond, target, out_labels = [], [], []
    for y in np.unique(labels):
        members = np.flatnonzero(labels == y)
        k = len(members)
        n = pairs_per_class or k
        rng = np.random.default_rng([seed, int(y)])
        first = rng.integers(k, size=n)
        if k > 1:  # a uniform draw among the *other* images of the class
            second = (first + rng.integers(1, k, size=n)) % k
        else:
            logger.warning("class %d has a single training image; it is paired with itself", int(y))
            second = first
        cond.append(members[first])
        target.append(members[second])
        out_labels.append(np.full(n, y, dtype=np.int32))
    if not cond:
        raise InputError("the real train split is empty: there are no images to pair")
    return Dataset.from_dict({
        CONDITIONING_INDEX: np.concatenate(cond).tolist(),
        TARGET_INDEX: np.concatenate(target).tolist(),
        LABEL: np.concatenate(out_labels).tolist(),
    }, features=MVC_PAIRS)


def save_pairs(pairs, out_dir: str | Path) -> Path:
    return write_parquet_atomic(pairs, Path(out_dir) / PAIRS_FILE)


def load_pairs(path: str | Path, *, num_rows: int | None = None):
    """Read a pair list written by :func:`save_pairs`; check its indices fit a split of ``num_rows`` rows."""
    from datasets import Dataset

    path = Path(path)
    if path.is_dir():
        path = path / PAIRS_FILE
    if not path.exists():
        raise InputError(f"pair list {path} does not exist")
    pairs = Dataset.from_parquet(str(path), features=MVC_PAIRS)
    if num_rows is not None and len(pairs):
        top = max(max(pairs[CONDITIONING_INDEX]), max(pairs[TARGET_INDEX]))
        if top >= num_rows:
            raise InputError(f"pair list {path} names row {top} but the real train split has {num_rows} rows; "
                             "it was made for another dataset: delete it (or use a new output_dir) to draw new pairs")
    return pairs


def image_to_tensor(image: Image.Image, resolution: int, *, center_crop: bool = True, flip: bool = False,
                    rng: np.random.Generator | None = None) -> torch.Tensor:
    """An RGB image as a ``[3, resolution, resolution]`` float tensor in [-1, 1].

    The shorter side is resized to ``resolution`` (bicubic), then a square is cut from the centre
    (``center_crop``) or at a random place drawn from ``rng``; ``flip`` mirrors it left-right.
    Grayscale (medical) images are repeated over the three channels.
    """
    image = image.convert("RGB")
    w, h = image.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BICUBIC)
    if center_crop or rng is None:
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
    else:
        left, top = int(rng.integers(nw - resolution + 1)), int(rng.integers(nh - resolution + 1))
    image = image.crop((left, top, left + resolution, top + resolution))
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class PairDataset(torch.utils.data.Dataset):
    """Item ``i``: the two images of pair ``i`` (read from the real split on demand) and its label.

    Random crops and flips are drawn from ``(seed, epoch, i)``, so a resumed run sees the same
    pixels as an uninterrupted one; call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, real, pairs, *, resolution: int, center_crop: bool = True, random_flip: bool = False,
                 seed: int = 0):
        self.real = real
        self.cond = [int(i) for i in pairs[CONDITIONING_INDEX]]
        self.target = [int(i) for i in pairs[TARGET_INDEX]]
        self.labels = [int(y) for y in pairs[LABEL]]
        self.resolution = resolution
        self.center_crop = center_crop
        self.random_flip = random_flip
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cond)

    def _pixels(self, row: int, rng: np.random.Generator) -> torch.Tensor:
        flip = bool(self.random_flip and rng.random() < 0.5)
        return image_to_tensor(self.real[row][IMAGE], self.resolution, center_crop=self.center_crop, flip=flip,
                               rng=rng)

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return {
            "conditioning_pixel_values": self._pixels(self.cond[i], rng),
            "target_pixel_values": self._pixels(self.target[i], rng),
            LABEL: self.labels[i],
            TARGET_INDEX: self.target[i],
        }


def collate_pairs(items: list[dict]) -> dict:
    return {
        "conditioning_pixel_values": torch.stack([it["conditioning_pixel_values"] for it in items]),
        "target_pixel_values": torch.stack([it["target_pixel_values"] for it in items]),
        LABEL: torch.tensor([it[LABEL] for it in items], dtype=torch.long),
        TARGET_INDEX: torch.tensor([it[TARGET_INDEX] for it in items], dtype=torch.long),
    }


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation of ``range(n)`` drawn from ``(seed, epoch)``: the same order after a resume."""

    def __init__(self, n: int, seed: int = 0):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.n).tolist())
