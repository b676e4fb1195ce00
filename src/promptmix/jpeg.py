"""The JPEG quality factor of a file, estimated from its quantization tables alone (no pixel decode).

Encoders built on the IJG library (libjpeg, libjpeg-turbo, hence Pillow, OpenCV, most cameras'
desktop software) derive their tables from the two standard tables of the JPEG spec (Annex K) by
one scale factor per quality ``q`` in 1..100::

    scale = 5000 // q  if q < 50  else  200 - 2 * q
    table[i] = clamp((std[i] * scale + 50) // 100, 1, 255)       (255: baseline; 32767 otherwise)

:func:`estimate_jpeg_quality` inverts this map: it compares the file's tables (``PIL.Image.open``
parses them from the header; pixels are never decoded) with the tables of every quality, and
returns the quality whose tables fit best. Luminance (table 0) is compared with the standard
luminance table, every further table with the chrominance one; a grayscale JPEG has table 0 only.

- ``standard=True`` and ``fit=1.0``: the tables are exactly IJG's at ``quality`` (every file
  Pillow writes with ``quality=q``, any chroma subsampling, colour or grayscale). Each quality's
  luminance table is different, so the answer is exact.
- ``standard=False``: another encoder's tables (Photoshop, some cameras); ``quality`` is the IJG
  quality closest to them and ``fit`` in [0, 1] says how close: ``1 - mean(|T - T_q| / max(T, T_q))``
  over all coefficients. Below about 0.9 the number is only a rough guide.

``promptmix jpeg-quality FILE...`` prints ``path<TAB>quality`` per file (``-`` when not a JPEG).
The real-dataset builders record it per image (``schema.JPEG_QUALITY``) and generation saves fake
images at their source's quality.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import numpy as np

from .errors import InputError

# JPEG spec Annex K tables, natural (row-major) order, as PIL's ``Image.quantization`` gives them.
STD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
STD_CHROMINANCE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32)], dtype=np.int64)

QUALITIES = np.arange(1, 101)
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclasses.dataclass(frozen=True)
class JpegQuality:
    """An estimated JPEG quality: ``quality`` 1..100, ``fit`` in [0, 1] (1 = exact), ``standard`` tables?"""

    quality: int
    fit: float
    standard: bool


def ijg_scale(quality: int | np.ndarray) -> np.ndarray:
    """IJG's ``jpeg_quality_scaling``: percentage scale factor of the standard tables for ``quality``."""
    q = np.clip(np.asarray(quality, dtype=np.int64), 1, 100)
    return np.where(q < 50, 5000 // q, 200 - 2 * q)


def ijg_table(std: Sequence[int] | np.ndarray, quality: int | np.ndarray, *, baseline: bool = True) -> np.ndarray:
    """The table libjpeg's ``jpeg_set_quality(quality, force_baseline)`` makes from ``std`` (64 values).

    With an array of qualities, one row per quality.
    """
    scale = ijg_scale(quality)[..., None]
    table = (np.asarray(std, dtype=np.int64) * scale + 50) // 100
    return np.clip(table, 1, 255 if baseline else 32767)


def _candidates() -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    return {b: (ijg_table(STD_LUMINANCE, QUALITIES, baseline=b), ijg_table(STD_CHROMINANCE, QUALITIES, baseline=b))
            for b in (True, False)}


_CANDIDATES = _candidates()


def quality_from_tables(tables: Mapping[int, Sequence[int]] | Sequence[Sequence[int]]) -> JpegQuality:
    """The IJG quality that best explains these quantization tables (``{slot: 64 values}`` in natural order).

    Raises :class:`InputError` when there is no table or a table does not have 64 values.
    """
    items = list(tables.items()) if isinstance(tables, Mapping) else list(enumerate(tables))
    if not items:
        raise InputError("quantization tables: expected at least one table; got none")
    items.sort(key=lambda kv: kv[0])
    arrays = []
    for slot, table in items:
        arr = np.asarray(list(table), dtype=np.int64)
        if arr.shape != (64,):
            raise InputError(f"quantization table {slot}: expected 64 values; got {arr.size}")
        arrays.append(arr)
    observed = np.stack(arrays)  # (T, 64)
    best = None
    for luma, chroma in _CANDIDATES.values():  # baseline (255-clamped) tables first, then extended
        # predicted tables of every quality: (100, T, 64); table 0 is luminance, others chrominance
        predicted = np.stack([luma] + [chroma] * (len(arrays) - 1), axis=1)
        diff = np.abs(predicted - observed[None])
        exact = np.flatnonzero(diff.reshape(len(QUALITIES), -1).max(axis=1) == 0)
        if len(exact):
            q = int(QUALITIES[exact[-1]])
            return JpegQuality(quality=q, fit=1.0, standard=True)
        rel = diff / np.maximum(predicted, observed[None])
        fits = 1.0 - rel.reshape(len(QUALITIES), -1).mean(axis=1)
        i = int(np.argmax(fits))  # first (lowest) quality among equal fits
        if best is None or fits[i] > best.fit:
            best = JpegQuality(quality=int(QUALITIES[i]), fit=float(max(0.0, fits[i])), standard=False)
    return best


def _name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _open(source: Any):
    """(PIL image opened lazily, whether we opened it) for a path, bytes, file object or PIL image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source, False
    name = _name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{name}: no such file (expected a JPEG image file)")
    try:
        return Image.open(source), True
    except UnidentifiedImageError:
        return None, False
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: could not read the image header ({exc}); expected a readable image file") from None


def _looks_like_jpeg(source: Any) -> bool:
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return bytes(source[:3]) == JPEG_MAGIC
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                return f.read(3) == JPEG_MAGIC
        if hasattr(source, "seek") and hasattr(source, "read"):
            pos = source.tell()
            source.seek(0)
            head = source.read(3)
            source.seek(pos)
            return head == JPEG_MAGIC
    except OSError:
        return False
    return False


def _tables_of(source: Any) -> dict[int, list[int]] | None:
    """The quantization tables of a JPEG (``None`` when ``source`` is not a JPEG); pixels are not decoded."""
    im, opened = _open(source)
    if im is None:
        if _looks_like_jpeg(source):
            raise InputError(f"{_name(source)}: starts like a JPEG but its header cannot be parsed (corrupt file?)")
        return None
    try:
        if im.format not in ("JPEG", "MPO"):
            return None
        tables = getattr(im, "quantization", None)
        if not tables:
            raise InputError(f"{_name(source)}: a JPEG without quantization tables (corrupt header?)")
        return {int(k): list(v) for k, v in tables.items()}
    finally:
        if opened:
            im.close()


def estimate_jpeg_quality(source: str | os.PathLike | IO[bytes] | bytes | Any) -> JpegQuality:
    """Estimate the quality factor of a JPEG from its quantization tables (path, file object, bytes or PIL image).

    Raises :class:`InputError` naming the file when it is missing, not a JPEG or its header is corrupt.
    """
    tables = _tables_of(source)
    if tables is None:
        raise InputError(f"{_name(source)}: not a JPEG file (expected a JPEG to read its quantization tables)")
    return quality_from_tables(tables)


def jpeg_quality(source: str | os.PathLike | IO[bytes] | bytes | Any) -> int | None:
    """The estimated JPEG quality (1..100), or ``None`` when ``source`` is not a JPEG."""
    tables = _tables_of(source)
    return None if tables is None else quality_from_tables(tables).quality
