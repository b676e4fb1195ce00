#!/usr/bin/env python
"""Benchmark: the training data path against a CSRNet-pytorch-style loader, and reading the fake dataset against
reading the same JPEG + ``.npy`` files, side by side in one process.

1. Training data path (crop 384 and whole images). The same 768x1024 crowd images (textured JPEGs, 100-400
   heads), batch size, crop and workers on both sides:

   - ours: ``TrainSet`` on the real dataset as ``promptmix real`` stores it (Parquet: JPEG bytes and head
     points) -- JPEG decode, the crop's density target summed straight into the stride-8 cells from the
     points, flip -- and ``collate`` in a ``DataLoader``; the uint8 batch is then normalised by
     ``data.normalize`` (on the CPU here, the trainer's device; counted);
   - peer: CSRNet-pytorch's loader as its repository describes it (``image.py`` / ``dataset.py``): PIL opens
     the JPEG, ``h5py`` reads the precomputed full-resolution density map (``make_dataset.py``: one Gaussian
     per head, here :func:`promptmix.density.density_map`, sigma 4), the same random crop and flip of both,
     the map summed into 8x8 cells (CSRNet resizes by 1/8 and multiplies by 64: the same mass), then
     ``ToTensor`` + ``Normalize`` on the CPU, the default collate.

2. Reading the fake dataset (every row: the decoded image and its training target map) from
   ``load_dataset(folder, split="train")``: by promptmix's reader (what training does: Arrow rows, PIL decode,
   the target map a view of its stored bytes), and the way the card shows (``with_format("numpy")``, the
   target map by ``target_annotator``); the peer reads the same JPEG files with PIL and the same maps from
   ``.npy`` files.

Threads are pinned to one; the sides alternate, each figure is the median of ``--repeats`` epochs (samples/s).
Goals (issue 15): training data path >= 1.2x the CSRNet-style loader at crop 384 and on whole images; reading
the fake dataset >= 1.0x the JPEG + npy files.

    OMP_NUM_THREADS=1 python scripts/bench_loader.py --images 32 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

LOADER_GOAL = 1.2
READ_GOAL = 1.0
SIZE = (768, 1024)


def _pin() -> None:
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[v] = "1"
    os.environ.setdefault("PROMPTMIX_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)


def _crowd(rng, h: int, w: int, n: int):
    """A textured crowd-like image (JPEG sizes and decode times like photos') and its head points."""
    from PIL import Image, ImageDraw

    base = np.linspace(40, 200, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    tex = rng.normal(0, 18, (h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:h, :w]
    image = Image.fromarray(np.clip(base + tex, 0, 255).astype(np.uint8))
    points = np.stack([rng.uniform(1, w - 1, n), rng.uniform(1, h - 1, n)], axis=1).astype(np.float32)
    draw = ImageDraw.Draw(image)
    for x, y in points:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(235, 225, 210))
    return image, points


def write_inputs(root: Path, n: int) -> dict:
    """The real dataset (Hub layout) and the CSRNet-style folder (JPEG + h5) of the same ``n`` images."""
    import h5py
    from datasets import Dataset

    from promptmix import schema as S
    from promptmix.density import density_map
    from promptmix.utils.io import write_hub_folder

    rng = np.random.default_rng(0)
    h, w = SIZE
    rows, peer = [], root / "csrnet"
    (peer / "images").mkdir(parents=True)
    (peer / "ground_truth").mkdir(parents=True)
    for i in range(n):
        image, points = _crowd(rng, h, w, int(rng.integers(100, 400)))
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        (peer / "images" / f"IMG_{i}.jpg").write_bytes(buf.getvalue())
        with h5py.File(peer / "ground_truth" / f"IMG_{i}.h5", "w") as f:
            f["density"] = density_map(points, h, w, sigma=4.0, truncate=(15 // 2) / 4.0)
        rows.append({S.IMAGE: {"bytes": buf.getvalue(), "path": None}, S.IMAGE_ID: f"IMG_{i}",
                     S.POINTS: points.tolist(), S.COUNT: len(points), S.WIDTH: w, S.HEIGHT: h, S.JPEG_QUALITY: 90,
                     S.IS_GRAYSCALE: False})
    ds = Dataset.from_list(rows, features=S.real_features("counting"))
    real = write_hub_folder(root / "real", {"default": {"train": ds, "validation": ds.select([0]),
                                                        "test": ds.select([0])}})
    return {"real": real, "peer": peer}


class CSRNetStyle:
    """CSRNet-pytorch's ``listDataset`` + ``load_data`` (PIL + h5 ground truth), with the same crop and flip."""

    MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def __init__(self, folder: Path, n: int, crop: int | None, seed: int = 0) -> None:
        self.folder, self.n, self.crop, self.seed, self.epoch = folder, n, crop, seed, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import h5py
        import torch
        from PIL import Image

        rng = np.random.default_rng([self.seed, self.epoch, i])
        img = Image.open(self.folder / "images" / f"IMG_{i}.jpg").convert("RGB")
        with h5py.File(self.folder / "ground_truth" / f"IMG_{i}.h5", "r") as f:
            target = np.asarray(f["density"])
        w, h = img.size
        if self.crop:
            y, x = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
            img = img.crop((x, y, x + self.crop, y + self.crop))
            target = target[y:y + self.crop, x:x + self.crop]
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
            target = target[:, ::-1]
        th, tw = target.shape[0] // 8, target.shape[1] // 8
        target = target[:th * 8, :tw * 8].reshape(th, 8, tw, 8).sum(axis=(1, 3))  # 1/8 resize x 64: same mass
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)  # ToTensor
        x = (x - torch.from_numpy(self.MEAN).view(3, 1, 1)) / torch.from_numpy(self.STD).view(3, 1, 1)  # Normalize
        return x, torch.from_numpy(np.ascontiguousarray(target))[None]


def _epoch_ours(train_set, n: int, batch_size: int, epoch: int, workers: int) -> float:
    from torch.utils.data import DataLoader

    from promptmix.training.train.data import collate, normalize
    from promptmix.training.train.mixing import REAL

    order = np.random.default_rng([1, epoch]).permutation(n)
    batches = [[(REAL, int(r), j + b) for j, r in enumerate(order[b:b + batch_size])] for b in range(0, n, batch_size)]
    train_set.set_epoch(epoch)
    t = time.perf_counter()
    seen = 0
    for groups in DataLoader(train_set, batch_sampler=batches, collate_fn=collate, num_workers=workers):
        for g in groups:
            normalize(g["pixel_values"])
            seen += len(g["position"])
    return seen / (time.perf_counter() - t)


def _epoch_peer(peer: CSRNetStyle, batch_size: int, epoch: int, workers: int) -> float:
    from torch.utils.data import DataLoader

    peer.epoch = epoch
    t = time.perf_counter()
    seen = 0
    for x, _ in DataLoader(peer, batch_size=batch_size, shuffle=True, num_workers=workers):
        seen += len(x)
    return seen / (time.perf_counter() - t)


def measure_loader(inputs: dict, n: int, *, crop: int | None, batch_size: int, repeats: int, workers: int) -> dict:
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.data import SampleSettings, TrainSet, load_training_data

    config = TrainConfig(task="counting", real=str(inputs["real"]), crop_size=crop, batch_size=batch_size,
                         output_dir=str(Path(inputs["real"]).parent / "out"))
    data = load_training_data(config)
    settings = SampleSettings.from_config(config, output_stride=8)
    ours_set, peer = TrainSet(data, settings), CSRNetStyle(inputs["peer"], n, crop)
    _epoch_ours(ours_set, n, batch_size, 0, workers)  # warm-up: page cache, imports
    _epoch_peer(peer, batch_size, 0, workers)
    ours, theirs = [], []
    for rep in range(1, repeats + 1):
        ours.append(_epoch_ours(ours_set, n, batch_size, rep, workers))
        theirs.append(_epoch_peer(peer, batch_size, rep, workers))
    o, p = statistics.median(ours), statistics.median(theirs)
    what = f"crop {crop}" if crop else "whole images"
    return {"name": f"training data path vs CSRNet-pytorch-style loader ({SIZE[0]}x{SIZE[1]}, {what}, batch "
                    f"{batch_size}, {workers} workers)", "ours": o, "baseline": p, "unit": "samples/s",
            "ratio": o / p, "goal": f">= {LOADER_GOAL}x", "ok": o / p >= LOADER_GOAL}


def write_fake(root: Path, n: int) -> dict:
    """A fake dataset written as ``promptmix filter`` writes it, and the same images + target maps as files."""
    from datasets import Dataset

    from promptmix import maps, schema as S
    from promptmix.utils.io import write_parts_folder

    rng = np.random.default_rng(1)
    h, w = SIZE
    rows, files = [], root / "files"
    files.mkdir(parents=True)
    for i in range(n):
        image, _ = _crowd(rng, h, w, 200)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        anns = []
        for a in range(2):
            m = rng.random((h // 8, w // 8)).astype(np.float16) * 0.01
            anns.append({S.ANNOTATOR: f"a{a}", S.COUNT: float(m.sum()), S.DENSITY: maps.encode(m), S.OK: True})
            if a == 0:
                np.save(files / f"{i}.npy", m)
        (files / f"{i}.jpg").write_bytes(buf.getvalue())
        rows.append({S.ROW_ID: f"r{i:05d}", S.IMAGE: {"bytes": buf.getvalue(), "path": None}, S.PROMPT: "p",
                     S.PROMPT_ID: "p", S.IMAGE_INDEX: i, S.SOURCE_IMAGE_ID: None, S.LABEL: None, S.SEED: i,
                     S.WIDTH: w, S.HEIGHT: h, S.JPEG_QUALITY: 90, S.MIXING: None, S.CONDITIONING_IMAGE_ID: None,
                     S.ANNOTATIONS: anns, S.QUALITY_SCORE: 0.1, S.KEPT: True, S.ANNOTATION_OK: True,
                     S.TARGET_ANNOTATOR: "a0", S.DENSITY: None, S.COUNT: anns[0][S.COUNT]})
    ds = Dataset.from_list(rows, features=S.fake_features("counting"))
    folder = write_parts_folder(root / "fake", {"kept": {"train": ds}}, {"kept": ["kept"], "all": ["kept"]},
                                default="kept")
    return {"fake": folder, "files": files}


def _read_ours(fake) -> float:
    from promptmix import maps, schema as S

    t = time.perf_counter()
    n = 0
    for row in fake.with_format("numpy"):
        image = np.asarray(row[S.IMAGE])
        m = row[S.DENSITY]
        if m is None:
            m = next(a[S.DENSITY] for a in row[S.ANNOTATIONS] if a[S.ANNOTATOR] == row[S.TARGET_ANNOTATOR])
        target = maps.decode(m)
        n += int(image.shape[0] > 0 and target.shape[0] > 0)
    return n / (time.perf_counter() - t)


def _read_promptmix(fake) -> float:
    """The same rows through promptmix's reader of a loaded dataset (``TrainSet`` reads fake rows this way):
    Arrow rows, the JPEG decoded once by PIL, the target map a view of the stored bytes."""
    from promptmix import schema as S
    from promptmix.training.train.data import _RowReader, _stored_target, decode_image

    reader = _RowReader(fake, [S.IMAGE, S.ROW_ID, S.DENSITY, S.TARGET_ANNOTATOR, S.ANNOTATIONS])
    t = time.perf_counter()
    n = 0
    for i in range(len(reader)):
        row = reader[i]
        image = decode_image(row[S.IMAGE])
        target = _stored_target(row, S.DENSITY)[S.DENSITY]
        n += int(image.shape[0] > 0 and target.shape[0] > 0)
    return n / (time.perf_counter() - t)


def _read_peer(files: Path, count: int) -> float:
    from PIL import Image

    t = time.perf_counter()
    n = 0
    for i in range(count):
        image = np.asarray(Image.open(files / f"{i}.jpg").convert("RGB"))
        target = np.load(files / f"{i}.npy").astype(np.float32)
        n += int(image.shape[0] > 0 and target.shape[0] > 0)
    return n / (time.perf_counter() - t)


def measure_read(root: Path, n: int, repeats: int) -> dict:
    import datasets

    inputs = write_fake(root, n)
    fake = datasets.load_dataset(str(inputs["fake"]), split="train", cache_dir=str(root / "hf-cache"))
    fake = fake.select_columns(["image", "density", "target_annotator", "annotations"])
    _read_ours(fake)
    _read_promptmix(fake)
    _read_peer(inputs["files"], n)
    ours, card, theirs = [], [], []
    for _ in range(repeats):
        ours.append(_read_promptmix(fake))
        card.append(_read_ours(fake))
        theirs.append(_read_peer(inputs["files"], n))
    o, c, p = statistics.median(ours), statistics.median(card), statistics.median(theirs)
    rows = []
    for what, value in (("promptmix's reader", o), ("the card's with_format('numpy') loop", c)):
        rows.append({"name": f"reading the fake dataset (load_dataset, {what}) vs the same JPEG + npy files "
                             f"({SIZE[0]}x{SIZE[1]}, {n} rows)", "ours": value, "baseline": p, "unit": "rows/s",
                     "ratio": value / p, "goal": f">= {READ_GOAL}x", "ok": value / p >= READ_GOAL})
    return rows


def run(quick: bool = False) -> list[dict]:
    """For ``scripts/bench.py``."""
    _pin()
    n, repeats = (8, 2) if quick else (32, 3)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_inputs(Path(tmp), n)
        for crop in (384, None):
            out.append(measure_loader(inputs, n, crop=crop, batch_size=4 if crop else 1, repeats=repeats, workers=0))
        out.extend(measure_read(Path(tmp), n, repeats))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="images per side (default 32)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size at crop 384 (whole images: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each side; the median is kept")
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    _pin()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_inputs(Path(tmp), args.images)
        rows = [measure_loader(inputs, args.images, crop=crop, batch_size=args.batch_size if crop else 1,
                               repeats=args.repeats, workers=args.num_workers) for crop in (384, None)]
        rows.extend(measure_read(Path(tmp), args.images, args.repeats))
    for r in rows:
        print(f"{r['name']}:")
        print(f"  ours {r['ours']:.1f} {r['unit']}, peer {r['baseline']:.1f} {r['unit']}, ratio {r['ratio']:.2f}x "
              f"(goal {r['goal']}) -> {'met' if r['ok'] else 'NOT met'}")


if __name__ == "__main__":
    main()
