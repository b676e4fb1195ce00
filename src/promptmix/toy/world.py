"""The toy crowd world: procedural crowd scenes with exact head points and a caption that names them.

A scene is one of five *places* (street, beach, park, snowfield, stadium: each its own sky, ground and
horizon objects), a *density* (a sparse crowd of a few people up to a large crowd of a few hundred), and
*colour* or black and white. People are drawn by :func:`promptmix.testing.raw_datasets.draw_crowd`: a body
and a round head each, far to near with perspective (heads grow towards the bottom of the frame, and the
crowd is denser far away), and the head points are the exact head centres. Every scene has a caption in
the words the trained captioner and generator use::

    "a color photo of a large crowd on a beach"
    "a black and white photo of a sparse crowd in a park"

What the toy world is for: a working-order check of the whole PromptMix method, small enough that
``scripts/train_toy_models.py`` trains every model on it on a CPU (a text-to-image pipeline, a captioner,
two counting annotators), and that ``promptmix demo`` can measure what generated data does to a student.
What it is not: a stand-in for real crowds. Numbers measured in it say the code works as the method
intends, not how much PromptMix helps on ShanghaiTech.

:func:`write_toy_shanghaitech` writes scenes in ShanghaiTech's raw layout (``part_B/{train,test}_data/
{images,ground-truth}``, ``GT_IMG_n.mat`` with ``image_info.location``), so the real builder reads them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

#: place -> the preposition its caption uses
PLACES = {"street": "in a", "beach": "on a", "park": "in a", "snowfield": "on a", "stadium": "in a"}
#: density word -> (min, max) people, inclusive
DENSITIES = {"sparse crowd": (3, 15), "crowd": (20, 60), "large crowd": (80, 250)}
COLOURS = ("color", "black and white")


@dataclasses.dataclass(frozen=True)
class WorldSettings:
    """How scenes are drawn (recorded in the toy models' manifest)."""

    size: tuple[int, int] = (128, 96)  # (W, H)
    grayscale_share: float = 0.25
    densities: tuple[str, ...] = tuple(DENSITIES)
    places: tuple[str, ...] = tuple(PLACES)
    near_frac: tuple[float, float] = (0.04, 0.07)  # nearest head radius, share of the shorter side
    quality: int = 75  # JPEG quality of the raw files

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Scene:
    image: Image.Image  # RGB, or L when black and white
    points: np.ndarray  # (N, 2) float64 (x, y) head centres
    place: str
    density: str
    colour: str

    @property
    def caption(self) -> str:
        return caption(self.place, self.density, self.colour)

    @property
    def count(self) -> int:
        return len(self.points)


def caption(place: str, density: str, colour: str) -> str:
    """The template caption of a scene (what the captioner learns to say and the generator to draw)."""
    return f"a {colour} photo of a {density} {PLACES[place]} {place}"


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 18) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, size=3), 0, 255)


def _gradient(rng, w: int, h: int, horizon: float, sky: tuple, sky_low: tuple, ground: tuple,
              ground_near: tuple, texture: float = 5.0) -> Image.Image:
    ys = np.arange(h, dtype=np.float32)[:, None]
    hz = max(1.0, horizon)
    up = np.clip(ys / hz, 0, 1)
    down = np.clip((ys - hz) / max(1.0, h - hz), 0, 1)
    s0, s1, g0, g1 = (_jitter(rng, c) for c in (sky, sky_low, ground, ground_near))
    col = np.where(ys < hz, s0 * (1 - up) + s1 * up, g0 * (1 - down) + g1 * down)
    img = np.broadcast_to(col[:, None, :], (h, w, 3)).copy()
    img += rng.normal(0, texture, size=(h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _street(rng, w, h, horizon):
    im = _gradient(rng, w, h, horizon, (150, 175, 205), (200, 205, 210), (95, 95, 100), (130, 130, 135))
    d = ImageDraw.Draw(im)
    x = -rng.uniform(0, 0.1) * w
    while x < w:  # a row of buildings with windows on the horizon
        bw = rng.uniform(0.12, 0.25) * w
        bh = rng.uniform(0.5, 1.0) * horizon
        c = tuple(int(v) for v in _jitter(rng, (160, 120, 100), 50))
        d.rectangle([x, horizon - bh, x + bw, horizon], fill=c)
        for wy in np.arange(horizon - bh + 2, horizon - 2, 4):
            d.line([x + 2, wy, x + bw - 2, wy], fill=(60, 60, 70))
        x += bw + rng.uniform(0, 0.04) * w
    return im


def _beach(rng, w, h, horizon):
    im = _gradient(rng, w, h, horizon, (90, 160, 230), (170, 210, 240), (220, 200, 150), (235, 215, 165))
    d = ImageDraw.Draw(im)
    sea = horizon + rng.uniform(0.08, 0.16) * (h - horizon)
    d.rectangle([0, horizon, w, sea], fill=tuple(int(v) for v in _jitter(rng, (40, 110, 170), 15)))
    return im


def _park(rng, w, h, horizon):
    im = _gradient(rng, w, h, horizon, (110, 170, 225), (180, 215, 235), (70, 140, 60), (95, 165, 70))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 9))):  # trees on the horizon
        tx, tr = rng.uniform(0, w), rng.uniform(0.06, 0.12) * h
        d.rectangle([tx - tr * 0.15, horizon - tr, tx + tr * 0.15, horizon], fill=(90, 60, 30))
        d.ellipse([tx - tr, horizon - 2.6 * tr, tx + tr, horizon - 0.8 * tr],
                  fill=tuple(int(v) for v in _jitter(rng, (40, 100, 40), 15)))
    return im


def _snowfield(rng, w, h, horizon):
    im = _gradient(rng, w, h, horizon, (185, 195, 210), (225, 228, 232), (235, 238, 242), (248, 250, 252), 3.0)
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 4))):  # grey mountains behind
        mx, mw = rng.uniform(0, w), rng.uniform(0.3, 0.6) * w
        d.polygon([(mx - mw / 2, horizon), (mx, horizon - rng.uniform(0.4, 0.9) * horizon), (mx + mw / 2, horizon)],
                  fill=tuple(int(v) for v in _jitter(rng, (140, 145, 160), 15)))
    return im


def _stadium(rng, w, h, horizon):
    im = _gradient(rng, w, h, horizon, (40, 40, 55), (70, 60, 70), (50, 150, 60), (60, 170, 70))
    d = ImageDraw.Draw(im)
    for y in np.arange(2, horizon - 1, 3):  # coloured rows of seats in the stands
        d.line([0, y, w, y], fill=tuple(int(v) for v in _jitter(rng, (150, 50, 50), 60)))
    for x in np.linspace(0, w, 5)[1:-1]:  # white field lines
        d.line([x, horizon, x + (x - w / 2) * 0.6, h], fill=(230, 240, 230))
    return im


BACKGROUNDS = {"street": _street, "beach": _beach, "park": _park, "snowfield": _snowfield, "stadium": _stadium}


def draw_scene(rng: np.random.Generator, settings: WorldSettings = WorldSettings(), *, place: str | None = None,
               density: str | None = None, colour: str | None = None) -> Scene:
    """One random scene (``place`` / ``density`` / ``colour`` fix those choices)."""
    from ..testing.raw_datasets import draw_crowd

    place = place or settings.places[int(rng.integers(len(settings.places)))]
    density = density or settings.densities[int(rng.integers(len(settings.densities)))]
    if colour is None:
        colour = COLOURS[1] if rng.uniform() < settings.grayscale_share else COLOURS[0]
    for name, allowed in (("place", PLACES), ("density", DENSITIES), ("colour", COLOURS)):
        if locals()[name] not in allowed:
            raise ValueError(f"{name}: expected one of {list(allowed)}; got {locals()[name]!r}")
    lo, hi = DENSITIES[density]
    n = int(rng.integers(lo, hi + 1))
    im, points = draw_crowd(rng, settings.size, n, background=BACKGROUNDS[place], near_frac=settings.near_frac)
    if colour == COLOURS[1]:
        im = im.convert("L")
    return Scene(im, points, place, density, colour)


def scenes(seed: int, n: int, settings: WorldSettings = WorldSettings()) -> Iterator[Scene]:
    """``n`` scenes from one seeded stream (the same seed gives the same scenes)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield draw_scene(rng, settings)


def write_toy_shanghaitech(root: str | Path, *, n_train: int, n_test: int, seed: int,
                           settings: WorldSettings = WorldSettings(), part: str = "B") -> Path:
    """Toy scenes in ShanghaiTech's raw layout under ``root/part_<part>``; returns ``root``.

    ``captions.json`` beside the part folder records each file's scene (place, density, colour, count):
    the world's ground truth, for reports; the pipeline never reads it.
    """
    import json

    from ..testing.raw_datasets import write_shanghaitech_files

    rng = np.random.default_rng(seed)
    drawn: list[Scene] = []

    def draw() -> tuple[Image.Image, np.ndarray]:
        drawn.append(draw_scene(rng, settings))
        return drawn[-1].image, drawn[-1].points

    names = write_shanghaitech_files(root, part, n_train, n_test, draw, settings.quality)
    record = {name: {"place": s.place, "density": s.density, "colour": s.colour, "count": s.count,
                     "caption": s.caption} for name, s in zip(names, drawn)}
    root = Path(root)
    (root / "scenes.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return root
