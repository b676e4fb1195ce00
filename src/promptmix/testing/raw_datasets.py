"""Small synthetic copies of the real datasets, written in their exact raw on-disk formats.

Tests, ``promptmix demo`` and the benchmarks feed these to the builders (``promptmix real ...``)
exactly as they would feed the real downloads (layouts in ``/work/shared/DATA-FORMATS.md`` and
the docs' "Real datasets" section):

- :func:`write_shanghaitech_raw`: ``part_X/{train,test}_data/images/IMG_n.jpg`` and
  ``ground-truth/GT_IMG_n.mat`` (``image_info`` struct with ``location`` and ``number``).
  People are drawn procedurally (a body and a round head, several colours) on varied backgrounds
  with perspective (smaller further away); the head points are the exact head centres.
- :func:`write_ucf_qnrf_raw`: ``Train/img_0001.jpg`` + ``img_0001_ann.mat`` (``annPoints``), ``Test/...``.
- :func:`write_panda_crowd_raw`: ``image_train/<scene>/IMG_<scene>_<n>.jpg`` and ``image_annos/*.json`` with a
  normalised ``tl``/``br`` head box per person (the PANDA toolkit's layout), a few ignore regions among them.
- :func:`write_nyu_labeled_mat`: the labeled NYU Depth V2 ``.mat`` (MATLAB v7.3 = HDF5) with
  ``images`` (N, 3, W, H) uint8, ``depths`` (N, W, H) float32 metres and ``scenes`` /
  ``sceneTypes`` as object references to uint16 character arrays.
- :func:`write_imagefolder`: ``root/<class>/*.jpg``, optionally under ``train/`` and ``test/``.

Everything is seeded and drawn with numpy/PIL, so a few dozen images take well under a second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

_PALETTE = np.array([
    (200, 40, 40), (40, 90, 200), (30, 150, 60), (230, 190, 40), (120, 60, 160), (240, 240, 240),
    (30, 30, 30), (200, 110, 40), (90, 200, 210), (160, 160, 160)], dtype=np.uint8)
_SKIN = np.array([(255, 220, 180), (225, 180, 140), (180, 130, 90), (120, 80, 50), (90, 60, 40)], dtype=np.uint8)
_HAIR = np.array([(20, 15, 10), (70, 45, 25), (140, 100, 50), (200, 190, 170)], dtype=np.uint8)


# -- crowd scenes --------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, w: int, h: int, horizon: float) -> Image.Image:
    """Sky/wall gradient above the horizon, ground below, a few building blocks; varied colours."""
    top = rng.integers(60, 230, size=3).astype(np.float32)
    mid = rng.integers(60, 230, size=3).astype(np.float32)
    ground = rng.integers(40, 200, size=3).astype(np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    hz = max(1.0, horizon)
    upper = np.clip(ys / hz, 0, 1)
    col = np.where(ys < hz, top * (1 - upper) + mid * upper,
                   ground * (0.7 + 0.3 * np.clip((ys - hz) / max(1.0, h - hz), 0, 1)))
    img = np.broadcast_to(col[:, None, :], (h, w, 3)).copy()
    img += rng.normal(0, 6, size=(h, w, 1)).astype(np.float32)  # texture
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(0, 5))):  # buildings / stalls on the horizon
        bw = rng.uniform(0.1, 0.3) * w
        bx = rng.uniform(-0.1, 1.0) * w
        bh = rng.uniform(0.2, 0.9) * hz
        draw.rectangle([bx, hz - bh, bx + bw, hz], fill=tuple(int(v) for v in rng.integers(40, 220, size=3)))
    return im


def _head_radius(y: float, h: int, horizon: float, near: float) -> float:
    """Perspective: radius grows linearly from ~0.25 * near at the horizon to ``near`` at the bottom."""
    t = np.clip((y - horizon) / max(1.0, h - horizon), 0.0, 1.0)
    return max(0.8, near * (0.25 + 0.75 * t))


def draw_crowd(rng: np.random.Generator, size: tuple[int, int], n_people: int, *,
               off_frame: int = 0, radii: list | None = None, background=None,
               near_frac: tuple[float, float] = (0.03, 0.06)) -> tuple[Image.Image, np.ndarray]:
    """An RGB crowd picture of ``size`` (W, H) and the (N, 2) float64 (x, y) head centres.

    People are placed below a random horizon, drawn far to near so nearer ones occlude;
    ``off_frame`` extra heads are placed up to 0.9 px outside the frame (as in real annotations).
    ``radii``, when given a list, receives each head's drawn radius (in the order of the centres).
    ``background(rng, w, h, horizon) -> PIL image`` replaces the default scene (the toy world's scene types,
    :mod:`promptmix.toy.world`); ``near_frac`` is the range of the nearest head's radius as a share of the
    shorter side.
    """
    w, h = size
    horizon = float(rng.uniform(0.15, 0.45) * h)
    near = max(1.5, min(w, h) * rng.uniform(*near_frac))
    im = (background or _background)(rng, w, h, horizon)
    draw = ImageDraw.Draw(im)
    ys = horizon + (h - horizon) * np.sqrt(rng.uniform(0, 1, size=n_people))  # denser far away
    xs = rng.uniform(0, w, size=n_people)
    heads = np.stack([xs, np.clip(ys - 0.0, 0, h - 1e-3)], axis=1)
    if off_frame:
        side = rng.integers(0, 4, size=off_frame)
        along = rng.uniform(0, 1, size=off_frame)
        out = rng.uniform(0.05, 0.9, size=off_frame)
        extra = np.where(side[:, None] == 0, np.stack([-out, along * h], 1),
                np.where(side[:, None] == 1, np.stack([w + out, along * h], 1),
                np.where(side[:, None] == 2, np.stack([along * w, -out], 1), np.stack([along * w, h + out], 1))))
        heads = np.concatenate([heads, extra])
    order = np.argsort(heads[:, 1], kind="stable")
    if radii is not None:
        radii[:] = [float(_head_radius(y, h, horizon, near)) for _, y in heads]
    for i in order:
        x, y = heads[i]
        r = _head_radius(y, h, horizon, near)
        body = tuple(int(v) for v in _PALETTE[rng.integers(len(_PALETTE))])
        legs = tuple(int(v) for v in _PALETTE[rng.integers(len(_PALETTE))])
        skin = tuple(int(v) for v in _SKIN[rng.integers(len(_SKIN))])
        hair = tuple(int(v) for v in _HAIR[rng.integers(len(_HAIR))])
        draw.rectangle([x - 0.5 * r, y + 3.2 * r, x + 0.5 * r, y + 5.5 * r], fill=legs)
        draw.ellipse([x - 1.3 * r, y + 0.9 * r, x + 1.3 * r, y + 4.0 * r], fill=body)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=hair)
        draw.ellipse([x - 0.8 * r, y - 0.55 * r, x + 0.8 * r, y + r], fill=skin)
    return im, heads.astype(np.float64)


def shanghaitech_gt(points: np.ndarray) -> dict:
    """The ``scipy.io.savemat`` dict of a ShanghaiTech ``GT_IMG_n.mat`` for (N, 2) (x, y) points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    st = np.zeros((1, 1), dtype=[("location", "O"), ("number", "O")])
    st[0, 0]["location"] = pts
    st[0, 0]["number"] = np.array([[len(pts)]], dtype=np.float64)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = st
    return {"image_info": cell}


def _save_jpeg(im: Image.Image, path: Path, quality: int, subsampling: int | None = None) -> None:
    kwargs = {"quality": int(quality)}
    if subsampling is not None:
        kwargs["subsampling"] = subsampling
    im.save(path, format="JPEG", **kwargs)


def write_shanghaitech_raw(root: str | Path, part: str = "B", n_train: int = 6, n_test: int = 3,
                           size: tuple[int, int] = (128, 96), seed: int = 0, quality: int = 75,
                           grayscale_every: int = 0, people: tuple[int, int] | None = None,
                           off_frame: int = 0) -> Path:
    """Write ``root/part_<part>/{train,test}_data/{images,ground-truth}`` and return ``root``.

    Args:
        part: ``"A"`` or ``"B"``; sets the default crowd size (A: 30-150 people, B: 10-60).
        size: (W, H) of every image.
        quality: Pillow JPEG quality (75 = the real files' standard IJG tables).
        grayscale_every: every k-th image (1-based) is saved as a grayscale (mode ``L``) JPEG; 0 = none.
        people: (min, max) people per image, inclusive.
        off_frame: heads per image annotated a fraction of a pixel outside the frame.
    """
    part = str(part).upper()
    if part not in ("A", "B"):
        raise ValueError(f"part: expected 'A' or 'B'; got {part!r}")
    lo, hi = people or ((30, 150) if part == "A" else (10, 60))
    rng = np.random.default_rng(seed)
    k = 0

    def draw() -> tuple[Image.Image, np.ndarray]:
        nonlocal k
        k += 1
        im, pts = draw_crowd(rng, size, int(rng.integers(lo, hi + 1)), off_frame=off_frame)
        if grayscale_every and k % grayscale_every == 0:
            im = im.convert("L")
        return im, pts

    write_shanghaitech_files(root, part, n_train, n_test, draw, quality)
    return Path(root)


def write_shanghaitech_files(root: str | Path, part: str, n_train: int, n_test: int, draw, quality: int) -> list[str]:
    """``root/part_<part>/{train,test}_data/{images/IMG_n.jpg, ground-truth/GT_IMG_n.mat}`` with one ``draw()`` ->
    (image, (N, 2) head points) per file, train first; returns the ``<split>/IMG_n.jpg`` names in drawing order."""
    import scipy.io

    names = []
    for split, n in (("train_data", n_train), ("test_data", n_test)):
        img_dir = Path(root) / f"part_{part}" / split / "images"
        gt_dir = Path(root) / f"part_{part}" / split / "ground-truth"
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            im, pts = draw()
            _save_jpeg(im, img_dir / f"IMG_{i}.jpg", quality)
            scipy.io.savemat(gt_dir / f"GT_IMG_{i}.mat", shanghaitech_gt(pts))
            names.append(f"{split}/IMG_{i}.jpg")
    return names


def write_ucf_qnrf_raw(root: str | Path, n_train: int = 4, n_test: int = 2,
                       size: tuple[int, int] = (160, 120), seed: int = 0, quality: int = 90,
                       people: tuple[int, int] = (40, 200), off_frame: int = 0) -> Path:
    """Write ``root/Train/img_0001.jpg`` + ``img_0001_ann.mat`` (``annPoints``) and ``root/Test/...``.

    Numbering restarts at 0001 in each folder, as in the download. Returns ``root``.
    """
    import scipy.io

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("Train", n_train), ("Test", n_test)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            im, pts = draw_crowd(rng, size, int(rng.integers(people[0], people[1] + 1)), off_frame=off_frame)
            _save_jpeg(im, folder / f"img_{i:04d}.jpg", quality)
            scipy.io.savemat(folder / f"img_{i:04d}_ann.mat", {"annPoints": pts.astype(np.float64)})
    return root


PANDA_SCENES = ("01_Airport", "02_Marathon", "03_Graduation_Ceremony")


def write_panda_crowd_raw(root: str | Path, n_images: int = 45, size: tuple[int, int] = (320, 180),
                          seed: int = 0, quality: int = 90, people: tuple[int, int] = (20, 80),
                          ignore_regions: int = 1, annotation_file: str = "crowd_head_bbox.json") -> Path:
    """Write a small PANDA-Crowd download under ``root`` and return ``root``.

    ``root/image_train/<scene>/IMG_<k>_<i>.jpg`` (``n_images`` spread over three scenes, like the release's
    airport, marathon and graduation ceremony) and ``root/image_annos/<annotation_file>``: a JSON object
    mapping ``"<scene>/<file>"`` to ``{"image id", "image size": {"height", "width"}, "objects list"}``, one
    ``{"category": "person", "rect": {"tl": {"x", "y"}, "br": {"x", "y"}}}`` head box per drawn person with
    coordinates normalised by the image size, plus ``ignore_regions`` ``{"category": "ignore", ...}`` regions
    per image. The head box is the drawn head's square (centre +- radius).
    """
    import json

    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    annos: dict = {}
    for i in range(n_images):
        scene = PANDA_SCENES[i % len(PANDA_SCENES)]
        folder = root / "image_train" / scene
        folder.mkdir(parents=True, exist_ok=True)
        radii: list = []
        im, heads = draw_crowd(rng, size, int(rng.integers(people[0], people[1] + 1)), radii=radii)
        name = f"IMG_{scene[:2]}_{i // len(PANDA_SCENES) + 1:02d}.jpg"
        _save_jpeg(im, folder / name, quality)
        objects = []
        for (x, y), r in zip(heads, radii):
            objects.append({"category": "person", "rect": {"tl": {"x": (x - r) / w, "y": (y - r) / h},
                                                           "br": {"x": (x + r) / w, "y": (y + r) / h}}})
        for _ in range(ignore_regions):
            x0, y0 = rng.uniform(0, 0.8), rng.uniform(0, 0.3)
            objects.append({"category": "ignore", "rect": {"tl": {"x": x0, "y": y0},
                                                           "br": {"x": x0 + 0.1, "y": y0 + 0.1}}})
        annos[f"{scene}/{name}"] = {"image id": i + 1, "image size": {"height": h, "width": w},
                                    "objects list": objects}
    (root / "image_annos").mkdir(parents=True, exist_ok=True)
    (root / "image_annos" / annotation_file).write_text(json.dumps(annos, indent=1), encoding="utf-8")
    return root


# -- NYU Depth V2 --------------------------------------------------------------------------------------
NYU_SCENE_TYPES = ("kitchen", "bathroom", "bedroom", "living_room", "office")


def draw_room(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W, 3) uint8 indoor picture and its (H, W) float32 depth in metres (0.7-10 m).

    Back wall, floor and ceiling planes with a vanishing point, plus a few boxes in front;
    colours darken with distance so image and depth agree.
    """
    w, h = size
    vx, vy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.6) * h
    back = rng.uniform(3.0, 8.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    # planes converge to the vanishing point: depth ~ 1 / distance from it (in the floor/ceiling zones)
    dy = np.abs(ys - vy) / max(h, 1)
    dx = np.abs(xs - vx) / max(w, 1)
    near = np.maximum(dy, dx)
    depth = np.minimum(back, 0.7 + 0.45 / np.maximum(near, 1e-3)).astype(np.float32)
    wall, floor, ceil = (rng.integers(60, 230, size=3) for _ in range(3))
    img = np.where((ys > vy)[..., None], floor, np.where((ys < vy - 0.25 * h)[..., None], ceil, wall))
    img = img.astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):  # boxes: furniture
        bw, bh = rng.uniform(0.1, 0.35) * w, rng.uniform(0.1, 0.4) * h
        bx, by = rng.uniform(0, w - bw), rng.uniform(0.4 * h, h - bh)
        d = rng.uniform(0.8, back * 0.8)
        m = (xs >= bx) & (xs < bx + bw) & (ys >= by) & (ys < by + bh)
        depth = np.where(m, np.minimum(depth, d), depth)
        img = np.where(m[..., None], rng.integers(30, 250, size=3).astype(np.float32), img)
    shade = 1.0 - 0.06 * depth[..., None]
    img = img * shade + rng.normal(0, 3, size=(h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), depth.astype(np.float32)


def _mat_char(group, name: str, text: str):
    import h5py

    ds = group.create_dataset(name, data=np.array([ord(c) for c in text], dtype=np.uint16).reshape(-1, 1))
    ds.attrs["MATLAB_class"] = np.bytes_(b"char")
    ds.attrs["H5T_CHAR"] = np.bytes_(b"char")
    return ds.ref if isinstance(ds, h5py.Dataset) else ds


def write_nyu_labeled_mat(path: str | Path, n: int = 6, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """Write a small ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 / HDF5) with ``n`` rooms of ``size`` (W, H).

    Layout as h5py reads the real file: ``images`` (n, 3, W, H) uint8, ``depths`` (n, W, H) float32,
    ``scenes`` and ``sceneTypes`` (1, n) object references to (len, 1) uint16 MATLAB char arrays
    under ``#refs#``; a 512-byte MATLAB header precedes the HDF5 data.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 3, w, h), dtype=np.uint8)
    depths = np.zeros((n, w, h), dtype=np.float32)
    for i in range(n):
        img, dep = draw_room(rng, size)
        images[i] = img.transpose(2, 1, 0)
        depths[i] = dep.transpose(1, 0)
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("images", data=images).attrs["MATLAB_class"] = np.bytes_(b"uint8")
        f.create_dataset("depths", data=depths).attrs["MATLAB_class"] = np.bytes_(b"single")
        refs = f.create_group("#refs#")
        scene_refs = np.empty((1, n), dtype=h5py.ref_dtype)
        type_refs = np.empty((1, n), dtype=h5py.ref_dtype)
        for i in range(n):
            kind = NYU_SCENE_TYPES[int(rng.integers(len(NYU_SCENE_TYPES)))]
            scene_refs[0, i] = _mat_char(refs, f"s{i}", f"{kind}_{i // 2 + 1:04d}{'ab'[i % 2]}")
            type_refs[0, i] = _mat_char(refs, f"t{i}", kind)
        for name, data in (("scenes", scene_refs), ("sceneTypes", type_refs)):
            ds = f.create_dataset(name, data=data, dtype=h5py.ref_dtype)
            ds.attrs["MATLAB_class"] = np.bytes_(b"cell")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path


# -- image folders -------------------------------------------------------------------------------------
def draw_class_image(rng: np.random.Generator, size: tuple[int, int], class_index: int) -> Image.Image:
    """A picture whose shape and hue depend on the class (so a classifier can learn it), with noise."""
    w, h = size
    hue = (class_index * 0.618034) % 1.0
    base = np.array([math.sin(2 * math.pi * (hue + k / 3)) * 0.5 + 0.5 for k in range(3)]) * 200 + 30
    bg = rng.integers(0, 80, size=3)
    im = Image.new("RGB", (w, h), tuple(int(v) for v in bg))
    draw = ImageDraw.Draw(im)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    r = rng.uniform(0.2, 0.35) * min(w, h)
    colour = tuple(int(v) for v in np.clip(base + rng.normal(0, 15, size=3), 0, 255))
    shape = class_index % 3
    if shape == 0:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == 1:
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    arr = np.asarray(im).astype(np.int16) + rng.integers(-10, 11, size=(h, w, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_imagefolder(root: str | Path, class_names: Sequence[str], per_class: int, with_split: bool = False,
                      size: tuple[int, int] = (32, 32), seed: int = 0, test_per_class: int | None = None,
                      quality: int = 90) -> Path:
    """Write ``root/<class>/<class>_000.jpg`` ... (or under ``root/train`` and ``root/test``); return ``root``.

    ``per_class`` images per class (per class in ``train`` when ``with_split``); ``test_per_class``
    defaults to ``max(1, per_class // 2)``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    layout = [("train", per_class), ("test", test_per_class or max(1, per_class // 2))] if with_split \
        else [("", per_class)]
    for split, n in layout:
        for ci, name in enumerate(class_names):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(n):
                _save_jpeg(draw_class_image(rng, size, ci), folder / f"{name}_{j:03d}.jpg", quality)
    return root
