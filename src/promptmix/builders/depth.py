"""Depth builder: the labeled NYU Depth V2 subset (``nyu_depth_v2_labeled.mat``, MATLAB v7.3 = HDF5).

As h5py reads the file: ``images`` (N, 3, W, H) uint8, ``depths`` (N, W, H) float32 metres,
``scenes`` (1, N) object references to MATLAB char arrays (uint16 codes, e.g. "kitchen_0028a").
Each row (``schema.DEPTH_REAL``) stores the RGB image as a PNG (``jpeg_quality`` null), the depth
map as an H x W float32 list of lists, the scene name and ``image_id`` ``nyu_0001`` (1-based index
in the file). A depth map with NaN, infinite or negative values is a bad item.

Splits: 70 % train / 10 % validation / 20 % test of a numpy seed-42 permutation of the images
(the PromptMix paper's split; the "official" 795/654 split is not used).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import maps, schema
from ..errors import InputError
from ..utils.progress import progress
from .common import BadItem, Build, BuildReport, dataset_body, encode_png, split_count

logger = logging.getLogger(__name__)

NYU_FRACTIONS = (0.7, 0.1, 0.2)
_KEYS = ("images", "depths", "scenes")


def _open_mat(mat: Path):
    import h5py

    if not mat.is_file():
        raise InputError(f"NYU Depth V2: {mat} does not exist; expected nyu_depth_v2_labeled.mat (MATLAB v7.3)")
    if not h5py.is_hdf5(str(mat)):
        with open(mat, "rb") as f:
            head = f.read(20)
        kind = "a MATLAB v5 (or older) .mat file" if head.startswith(b"MATLAB") else "not an HDF5 file"
        raise InputError(f"NYU Depth V2: {mat} is {kind}; expected the labeled dataset nyu_depth_v2_labeled.mat, "
                         "a MATLAB v7.3 (HDF5) file")
    try:
        f = h5py.File(str(mat), "r")
    except OSError as exc:
        raise InputError(f"NYU Depth V2: {mat} cannot be opened as HDF5 ({exc})") from None
    missing = [k for k in _KEYS if k not in f]
    if missing:
        found = sorted(k for k in f.keys() if not k.startswith("#"))
        f.close()
        raise InputError(f"NYU Depth V2: {mat} has no {', '.join(repr(k) for k in missing)} (found {found}); "
                         "expected images (N,3,W,H) uint8, depths (N,W,H) float32 and scenes")
    return f


def _check_shapes(f, mat: Path) -> int:
    images, depths, scenes = f["images"], f["depths"], f["scenes"]
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise InputError(f"NYU Depth V2: {mat} 'images' has shape {images.shape} dtype {images.dtype}; "
                         "expected (N, 3, W, H) uint8")
    n, _, w, h = images.shape
    if depths.ndim != 3 or depths.shape != (n, w, h) or depths.dtype.kind != "f":
        raise InputError(f"NYU Depth V2: {mat} 'depths' has shape {depths.shape} dtype {depths.dtype}; expected "
                         f"({n}, {w}, {h}) float32 to match 'images'")
    if scenes.size != n:
        raise InputError(f"NYU Depth V2: {mat} 'scenes' holds {scenes.size} entries; expected {n} (one per image)")
    return n


def _scene(f, scenes, i: int, mat: Path) -> str:
    try:
        ref = scenes.reshape(-1)[i]
        codes = np.asarray(f[ref]).ravel()
        return "".join(chr(int(c)) for c in codes)
    except Exception as exc:
        raise BadItem(f"{mat}: scenes entry {i + 1} is not a MATLAB string reference ({type(exc).__name__})") from None


def _row(f, scenes, i: int, mat: Path) -> dict:
    image = np.asarray(f["images"][i]).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
    depth = np.asarray(f["depths"][i], dtype=np.float32).T  # (W, H) -> (H, W)
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise BadItem(f"{mat}: depth map {i + 1} has NaN, infinite or negative values; expected metres >= 0")
    image_id = f"nyu_{i + 1:04d}"
    stored = encode_png(image, f"{image_id}.png")
    return {schema.IMAGE: stored.image_value(), schema.IMAGE_ID: image_id, schema.DEPTH: maps.encode(depth, np.float32),
            schema.SCENE: _scene(f, scenes, i, mat), **stored.meta()}


def nyu_split(n: int, seed: int = 42, fractions: tuple[float, float, float] = NYU_FRACTIONS) -> list[str]:
    """The split of each of ``n`` images: a seeded permutation cut into train / validation / test."""
    n_val = split_count(n, fractions[1])
    n_test = split_count(n, fractions[2])
    if n - n_val - n_test < 1 or n_val < 1 or n_test < 1:
        raise InputError(f"NYU Depth V2: {n} images are too few for a train/validation/test split (need >= 3)")
    perm = np.random.default_rng(seed).permutation(n)
    split = np.empty(n, dtype=object)
    split[perm[:n - n_val - n_test]] = "train"
    split[perm[n - n_val - n_test:n - n_test]] = "validation"
    split[perm[n - n_test:]] = "test"
    return split.tolist()


def build_nyu_depth_v2(mat: str | Path, out: str | Path, *, skip_bad: bool = False, seed: int = 42) -> BuildReport:
    """Build NYU Depth V2 (labeled) from ``nyu_depth_v2_labeled.mat`` into ``out`` (70/10/20, ``seed``)."""
    mat = Path(mat).expanduser()
    f = _open_mat(mat)
    try:
        n = _check_shapes(f, mat)
        splits = nyu_split(n, seed)
        scenes = np.asarray(f["scenes"])
        with Build("nyu-depth-v2", out, "depth", schema.DEPTH_REAL, skip_bad=skip_bad, inputs=[mat]) as build:
            for i in progress(range(n), desc="NYU Depth V2", unit="img"):
                build.item(f"{mat} [image {i + 1}]", lambda i=i: _row(f, scenes, i, mat), splits[i])
            meta = {"pretty_name": "NYU Depth V2 (labeled)", "license": "unknown", "tags": ["depth-estimation"],
                    "promptmix": {"builder": "nyu-depth-v2", "source": str(mat),
                                  "split": f"70/10/20 of a numpy seed-{seed} permutation"}}
            body = dataset_body("NYU Depth V2 (labeled)", [
                "Monocular depth estimation, from `nyu_depth_v2_labeled.mat` (MATLAB v7.3): RGB images stored as PNG, "
                "depth in metres.",
                f"Splits: 70 % train, 10 % validation, 20 % test of a numpy seed-{seed} permutation of the images."],
                "depth")
            return build.finish(metadata=meta, body=body)
    finally:
        f.close()
