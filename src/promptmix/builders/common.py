"""What every real-dataset builder shares: reading and checking images, seeded splits, writing the folder.

A builder lists its raw items, decides every item's split from that list (seeded, before any file is
read, so leaving a bad file out never moves another image to a different split), reads and checks
each item, streams the rows into an Arrow file in a staging folder beside ``out`` and finally writes
the Hub-layout folder with :func:`promptmix.utils.io.write_hub_folder` (built under a temporary
name and renamed into place). A bad item raises :class:`BadItem`; :class:`Build` turns it into an
:class:`~promptmix.errors.InputError` naming the file, or, with ``skip_bad``, into a skip counted
in the :class:`BuildReport`.

Images are checked the same way for every builder (:func:`read_image`):

- missing, unreadable or truncated files are bad items;
- an image whose header gives more than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`, 50 Mpx,
  below PIL's own 89 Mpx warning and 179 Mpx error; the builder option ``max_pixels``) is a bad item naming
  its size, found from the header before any pixel is decoded (a 2 KB file can claim 13000 x 13000);
- CMYK and 16/32-bit images (modes ``CMYK``, ``I;16*``, ``I``, ``F``) are bad items: convert them
  to 8-bit RGB yourself (no colour management happens here);
- an EXIF orientation other than 1 is a bad item for counting (head points refer to the stored
  pixel orientation, so rotating the pixels would move them off their heads); classification
  applies the rotation (``ImageOps.exif_transpose``) and stores the upright image;
- RGB and grayscale (``L``) images are stored byte for byte; palette, alpha and 1-bit images are
  converted to RGB (or ``L``) and stored as PNG;
- a re-encoded JPEG (resized or rotated) keeps its source's quantization tables and chroma
  subsampling, so its JPEG quality is unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import io
import logging
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import schema
from ..errors import InputError
from ..tasks import get_task

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SEED = 42
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_CONVERT_TO_RGB = ("P", "PA", "RGBA", "RGBX", "RGBa", "YCbCr", "LAB", "HSV")
_CONVERT_TO_L = ("1", "LA", "La")
EXIF_ORIENTATION = 0x0112
#: the most pixels (width x height, from the header) an image may have (builder option ``max_pixels``)
DEFAULT_MAX_PIXELS = 50_000_000
_MAX_PIXELS: contextvars.ContextVar[int | None] = contextvars.ContextVar("promptmix_max_pixels", default=None)


class BadItem(Exception):
    """One raw item (image, annotation, row) cannot be used; ``str(exc)`` names the file and the problem."""


# -- reports ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Skipped:
    item: str
    reason: str


@dataclasses.dataclass
class BuildReport:
    """What a builder wrote: rows per split, skipped items and why, head points outside the frame."""

    builder: str
    out: Path
    task: str
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    off_frame_points: int = 0  # counting: annotated points outside the image (kept in points and count)
    off_frame_images: int = 0
    off_frame_max_px: float = 0.0  # how far outside the farthest one lies
    class_names: list[str] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def summary(self) -> str:
        """A few lines for the terminal: where, rows per split, skips (with reasons), off-frame points."""
        lines = [f"{self.builder}: wrote {self.out} ({self.task}): "
                 + ", ".join(f"{split} {n}" for split, n in self.rows.items())]
        if self.class_names is not None:
            shown = ", ".join(self.class_names[:8]) + (", ..." if len(self.class_names) > 8 else "")
            lines.append(f"  {len(self.class_names)} classes: {shown}")
        if self.off_frame_points:
            lines.append(f"  {self.off_frame_points} annotated points in {self.off_frame_images} images lie outside "
                         f"the frame (at most {self.off_frame_max_px:.2f} px); kept in points and count")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} bad items (--skip-bad):")
            lines += [f"    {s.item}: {s.reason}" for s in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"    ... and {len(self.skipped) - 20} more (listed in {self.out / 'README.md'})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"rows": dict(self.rows), "skipped": len(self.skipped)}
        if schema.POINTS in get_task(self.task).real_columns:
            meta["off_frame_points"] = self.off_frame_points
        return meta


# -- images ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class StoredImage:
    """The bytes stored in the ``image`` column and the per-image metadata columns."""

    data: bytes
    name: str | None  # stored as the Image value's ``path`` (a file name), None when unknown
    width: int
    height: int
    jpeg_quality: int | None
    is_grayscale: bool

    def image_value(self) -> dict[str, Any]:
        return {"bytes": self.data, "path": self.name}

    def meta(self) -> dict[str, Any]:
        return {schema.WIDTH: self.width, schema.HEIGHT: self.height, schema.JPEG_QUALITY: self.jpeg_quality,
                schema.IS_GRAYSCALE: self.is_grayscale}


def is_grayscale(image) -> bool:
    """True for single-channel images and for RGB images whose three channels are equal everywhere."""
    if image.mode in ("L", "LA", "1", "I", "I;16", "F"):
        return True
    if image.mode != "RGB":
        image = image.convert("RGB")
    arr = np.asarray(image)
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def source_jpeg_quality(image) -> int | None:
    """The JPEG quality of an opened PIL image from its quantization tables (``promptmix.jpeg``); None if not a JPEG."""
    from ..jpeg import quality_from_tables

    tables = getattr(image, "quantization", None) if getattr(image, "format", None) in ("JPEG", "MPO") else None
    return quality_from_tables(tables).quality if tables else None


def image_meta(image) -> dict[str, Any]:
    """``schema`` width, height, jpeg_quality (from the quantization tables; None if not a JPEG), is_grayscale."""
    return {schema.WIDTH: image.width, schema.HEIGHT: image.height, schema.JPEG_QUALITY: source_jpeg_quality(image),
            schema.IS_GRAYSCALE: is_grayscale(image)}


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size that fits ``max_side x max_side`` keeping the aspect ratio (unchanged when it fits already)."""
    scale = min(1.0, max_side / width, max_side / height)
    if scale >= 1.0:
        return width, height
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def _encode_like(image, source, name: str | None) -> tuple[bytes, str | None]:
    """Encode ``image``: as a JPEG with ``source``'s tables and subsampling when ``source`` is a JPEG, else PNG;
    either way with ``source``'s ICC colour profile, so the colours mean what they meant."""
    from PIL import JpegImagePlugin

    buf = io.BytesIO()
    icc = source.info.get("icc_profile")
    profile: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if source.format in ("JPEG", "MPO") and getattr(source, "quantization", None):
        kwargs: dict[str, Any] = {"qtables": source.quantization, **profile}
        sampling = JpegImagePlugin.get_sampling(source)
        if sampling != -1:
            kwargs["subsampling"] = sampling
        image.save(buf, format="JPEG", **kwargs)
        return buf.getvalue(), name and str(Path(name).with_suffix(".jpg"))
    image.save(buf, format="PNG", **profile)
    return buf.getvalue(), name and str(Path(name).with_suffix(".png"))


def _check_max_pixels(max_pixels: Any) -> None:
    if max_pixels is not None and (not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1):
        raise InputError(f"max_pixels: expected a positive number of pixels (width x height); got {max_pixels!r}")


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None):
    """:func:`read_image` refuses images above ``max_pixels`` pixels while the block runs (a :class:`Build` sets it)."""
    _check_max_pixels(max_pixels)
    token = _MAX_PIXELS.set(max_pixels)
    try:
        yield
    finally:
        _MAX_PIXELS.reset(token)


def check_pixels(label: str, width: int, height: int, max_pixels: int | None = None) -> None:
    """:class:`BadItem` naming ``label`` and its size when ``width x height`` exceeds the limit."""
    limit = max_pixels if max_pixels is not None else (_MAX_PIXELS.get() or DEFAULT_MAX_PIXELS)
    if int(width) * int(height) > limit:
        raise BadItem(f"{label}: its header says {width} x {height} = {int(width) * int(height) / 1e6:.1f} Mpx, above "
                      f"the limit of {limit / 1e6:g} Mpx (max_pixels {limit}); expected a photo of ordinary size. "
                      "A damaged or hostile header can claim any size; if the image really is that large, raise "
                      "the builder option max_pixels (--max-pixels)")


def read_image(source: str | Path | bytes, *, name: str | None = None, filename: str | None = None,
               exif: str = "error", max_side: int | None = None) -> tuple[StoredImage, tuple[float, float]]:
    """Read and check one image; returns what to store and the (x, y) scale applied to it (resizing).

    Args:
        source: a file path or the file's bytes.
        name: the name used in messages (default: the path).
        filename: the file name stored as the image's ``path`` (default: a path source's file name).
        exif: ``"error"`` (an EXIF orientation != 1 is a :class:`BadItem`) or ``"transpose"`` (apply it).
        max_side: resize to fit ``max_side x max_side`` keeping the aspect ratio (None: keep the size).
    Raises:
        BadItem: naming the file and what was expected.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = name or str(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise BadItem(f"{path}: image file is missing")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadItem(f"{path}: image file cannot be read ({exc})") from None
        label = name or str(path)
        stored_name = filename or path.name
    else:
        data = bytes(source)
        stored_name = filename
    if not data:
        raise BadItem(f"{label}: image file is empty")
    try:
        with warnings.catch_warnings():  # our own limit (below PIL's warning) is checked just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # above PIL's own limit: refused from the header, as ours
        size = re.search(r"(\d+) pixels", str(exc))
        raise BadItem(f"{label}: its header claims {size.group(1) if size else 'more than 179M'} pixels, above the "
                      f"limit of {(_MAX_PIXELS.get() or DEFAULT_MAX_PIXELS) / 1e6:g} Mpx (max_pixels)") from None
    except UnidentifiedImageError:
        raise BadItem(f"{label}: not a readable image (corrupt file, or a format PIL does not know); "
                      "expected a JPEG or PNG image") from None
    except Exception as exc:
        raise BadItem(f"{label}: corrupt or truncated image file ({type(exc).__name__}: {exc}); "
                      "expected a complete image file") from None
    check_pixels(label, im.width, im.height)  # from the header, before any pixel is decoded
    try:
        im.load()  # decode every pixel: truncated or corrupt data fail here
    except Exception as exc:
        raise BadItem(f"{label}: corrupt or truncated image data ({type(exc).__name__}: {exc}); "
                      "expected a complete image file") from None
    if im.mode == "CMYK":
        raise BadItem(f"{label}: CMYK image; expected RGB or grayscale (8 bits per channel): convert it to RGB "
                      "first (e.g. `convert in.jpg -colorspace sRGB out.jpg`)")
    if im.mode in _SIXTEEN_BIT:
        raise BadItem(f"{label}: {'16' if im.mode.startswith('I;16') else '32'}-bit image (mode {im.mode}); "
                      "expected 8 bits per channel (RGB or grayscale): convert it first")
    orientation = im.getexif().get(EXIF_ORIENTATION, 1) if hasattr(im, "getexif") else 1
    changed = False
    work = im
    if orientation not in (None, 1):
        if exif == "error":
            raise BadItem(f"{label}: EXIF orientation {orientation} (the picture is shown rotated or mirrored); "
                          "expected orientation 1, because the annotation refers to the stored pixels: rotate the "
                          "pixels and the annotation together, or strip the EXIF orientation if the annotation "
                          "was made on the stored pixels")
        work = ImageOps.exif_transpose(im)
        changed = True
    if work.mode in _CONVERT_TO_RGB:
        work = work.convert("RGB")
        changed = True
    elif work.mode in _CONVERT_TO_L:
        work = work.convert("L")
        changed = True
    elif work.mode not in ("RGB", "L"):
        raise BadItem(f"{label}: image mode {work.mode}; expected RGB or grayscale (L)")
    scale = (1.0, 1.0)
    if max_side is not None:
        new_w, new_h = fit_within(work.width, work.height, max_side)
        if (new_w, new_h) != work.size:
            scale = (new_w / work.width, new_h / work.height)
            work = work.resize((new_w, new_h), Image.Resampling.LANCZOS)
            changed = True
    quality = source_jpeg_quality(im)  # a re-encoded JPEG keeps its source's tables, hence its quality
    if changed:
        data, stored_name = _encode_like(work, im, stored_name)
    return StoredImage(data=data, name=stored_name, width=work.width, height=work.height,
                       jpeg_quality=quality, is_grayscale=is_grayscale(work)), scale


def encode_png(array: np.ndarray, name: str) -> StoredImage:
    """A uint8 (H, W, 3) or (H, W) array as a PNG :class:`StoredImage`."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(array))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return StoredImage(data=buf.getvalue(), name=name, width=im.width, height=im.height, jpeg_quality=None,
                       is_grayscale=is_grayscale(im))


def check_points(points: Any, label: str) -> np.ndarray:
    """An (N, 2) float64 array of finite (x, y) points, or :class:`BadItem` naming ``label``.

    The layout is one row per point: (N, 2), or (N, K) with K > 2 whose first two columns are x and y (the
    rest is left out). A (2, N) array with N > 2 is refused as transposed (x in row 0, y in row 1): it would
    read as 2 wrong points. A (2, 2) array cannot tell and is read by the layout, as 2 points (x, y) per row;
    so is (2, K) for K > 2 never read as 2 points with extra columns: a file of 2 points must store them (2, 2).
    """
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadItem(f"{label}: head points are not numbers; expected an (N, 2) array of (x, y)") from None
    if pts.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if pts.ndim == 2 and pts.shape[0] == 2 and pts.shape[1] > 2:
        raise BadItem(f"{label}: head points have shape {pts.shape}, a transposed (2, N) array (x in row 0, y in "
                      f"row 1); expected one row per point, (N, 2): store it transposed ({pts.shape[1]} points) "
                      "(a file of exactly 2 points stores them as (2, 2))")
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise BadItem(f"{label}: head points have shape {pts.shape}; expected an (N, 2) array of (x, y)")
    pts = pts[:, :2]
    if not np.isfinite(pts).all():
        raise BadItem(f"{label}: head points contain NaN or infinity; expected finite (x, y) values")
    return pts


def load_mat(path: Path, key: str, what: str) -> Any:
    """``scipy.io.loadmat(path)[key]``, or :class:`BadItem` naming the file and the expected key."""
    import scipy.io

    if not path.is_file():
        raise BadItem(f"{path}: {what} file is missing")
    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise BadItem(f"{path}: a MATLAB v7.3 (HDF5) file; expected a MATLAB v5 .mat {what} file") from None
    except Exception as exc:
        raise BadItem(f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc}); "
                      f"expected the {what} file with variable {key!r}") from None
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise BadItem(f"{path}: no variable {key!r} (found {found or 'none'}); expected a {what} file with {key!r}")
    return mat[key]


# -- listing raw files --------------------------------------------------------------------------------------
def by_key(paths: Iterable[Path], key: Callable[[Path], str], what: str) -> dict[str, Path]:
    """``{key(p): p}``; two files with one key (``IMG_1.jpg`` and ``IMG_1.jpeg``) are an :class:`InputError`
    naming both: which of them the annotation belongs to cannot be told, and one would be dropped."""
    out: dict[str, Path] = {}
    for p in sorted(paths, key=lambda q: q.name):
        k = key(p)
        if k in out:
            raise InputError(f"{what}: {out[k]} and {p} have the same name {k!r} apart from the extension, so which "
                             "one its annotation belongs to cannot be told; remove or rename one of them")
        out[k] = p
    return out



def natural_key(text: str) -> list:
    """Sort key that orders ``IMG_2`` before ``IMG_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files (by extension, case-insensitive; hidden files left out) in ``folder``, naturally sorted."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(files, key=lambda p: natural_key(str(p.relative_to(folder))))


# -- splits ------------------------------------------------------------------------------------------------------
def split_count(n: int, fraction: float) -> int:
    """How many of ``n`` items a ``fraction`` takes: ``round(fraction * n)``, at least 1 (0 when n < 2)."""
    if n < 2 or fraction <= 0:
        return 0
    return min(n - 1, max(1, int(round(fraction * n))))


def seeded_split(n: int, fraction: float, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, taken)`` of ``range(n)``, ``taken`` = :func:`split_count` items drawn with ``seed``; sorted."""
    k = split_count(n, fraction)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def stratified_take(labels: Sequence[int], k: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, taken)``: ``k`` items drawn with ``seed`` so each class gets its share (largest remainder).

    Class c gets ``floor(k * n_c / n)`` items, plus one for the classes with the largest remainders
    (ties in a seeded random order) until ``k`` are taken; inside a class the items are drawn at random.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    k = max(0, min(int(k), n))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = k * counts / max(n, 1)
    share = np.floor(exact).astype(np.int64)
    left = k - int(share.sum())
    if left > 0:
        tiebreak = rng.permutation(len(classes))
        order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - share[i]), tiebreak[i]))
        for i in order:
            if left == 0:
                break
            if share[i] < counts[i]:
                share[i] += 1
                left -= 1
    taken = []
    for c, s in zip(classes, share):
        members = np.flatnonzero(labels == c)
        taken.append(rng.permutation(members)[:s])
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[taken_idx] = False
    return np.flatnonzero(mask), taken_idx


def stratified_split(labels: Sequence[int], fraction: float, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """:func:`stratified_take` of :func:`split_count` ``(len(labels), fraction)`` items."""
    return stratified_take(labels, split_count(len(labels), fraction), seed)


# -- building ------------------------------------------------------------------------------------------------------
class RowWriter:
    """Streams rows into an Arrow file in batches; :meth:`finish` returns the memory-mapped ``Dataset``.

    2-D numpy maps (depth) are handed to Arrow without a detour through Python lists.
    """

    def __init__(self, path: Path, features, batch_rows: int = 64, batch_bytes: int = 64 << 20):
        from datasets.arrow_writer import ArrowWriter

        self.path = path
        self.features = features
        self._writer = ArrowWriter(features=features, path=str(path))
        self._rows: list[dict] = []
        self._bytes = 0
        self.batch_rows, self.batch_bytes = batch_rows, batch_bytes
        self.count = 0

    def add(self, row: Mapping[str, Any]) -> int:
        """Add one row (keys: the features' columns); returns its index in the file."""
        self._rows.append(dict(row))
        image = row.get(schema.IMAGE)
        self._bytes += len(image["bytes"]) if isinstance(image, dict) and image.get("bytes") else 0
        self._bytes += sum(v.nbytes for v in row.values() if isinstance(v, np.ndarray))
        self.count += 1
        if len(self._rows) >= self.batch_rows or self._bytes >= self.batch_bytes:
            self._flush()
        return self.count - 1

    def _column(self, name: str, values: list):
        import pyarrow as pa

        arrow_type = self.features.arrow_schema.field(name).type
        if values and all(isinstance(v, np.ndarray) and v.ndim == 2 for v in values) \
                and pa.types.is_list(arrow_type) and pa.types.is_list(arrow_type.value_type):
            value_type = arrow_type.value_type.value_type
            flat = pa.array(np.concatenate([v.ravel() for v in values]), type=value_type)
            inner_offsets = np.concatenate([[0], np.cumsum([w for v in values for w in [v.shape[1]] * v.shape[0]])])
            inner = pa.ListArray.from_arrays(pa.array(inner_offsets, type=pa.int32()), flat)
            outer_offsets = np.concatenate([[0], np.cumsum([v.shape[0] for v in values])])
            return pa.ListArray.from_arrays(pa.array(outer_offsets, type=pa.int32()), inner).cast(arrow_type)
        values = [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
        return pa.array(values, type=arrow_type)

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._rows:
            return
        names = list(self.features)
        columns = [self._column(n, [r.get(n) for r in self._rows]) for n in names]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.features.arrow_schema))
        self._rows, self._bytes = [], 0

    def finish(self):
        from datasets import Dataset

        self._flush()
        self._writer.finalize()
        return Dataset.from_file(str(self.path))


def check_out_folder(out: Path, inputs: Iterable[Path] = ()) -> Path:
    """``out`` may be new, empty, or a dataset folder written before (it is replaced); nothing else."""
    out = Path(out).expanduser()
    for p in inputs:
        p = Path(p).expanduser().resolve()
        o = out.resolve()
        if o == p or p in o.parents:
            raise InputError(f"--out {out}: is inside the raw input {p}; choose a folder outside it")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"--out {out}: exists and is not a folder; expected a new or dataset folder")
        entries = [p.name for p in out.iterdir()]
        if entries and not ((out / "README.md").is_file() and (out / "data").is_dir()):
            raise InputError(f"--out {out}: exists and is not a dataset folder (it holds {sorted(entries)[:5]}); "
                             "choose a new folder (an existing dataset folder is replaced)")
    return out


class Build:
    """One builder run: the staging folder, the row writer, the split of every row, skips and the report."""

    def __init__(self, builder: str, out: str | Path, task: str, features, *, skip_bad: bool,
                 inputs: Iterable[Path] = (), max_pixels: int | None = DEFAULT_MAX_PIXELS):
        _check_max_pixels(max_pixels)  # before anything is written
        self._limit = pixel_limit(max_pixels)
        self.out = check_out_folder(Path(out), inputs)
        self.skip_bad = skip_bad
        self.features = features
        self.report = BuildReport(builder=builder, out=self.out, task=task)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.build-", dir=self.out.parent))
        self.writer = RowWriter(self._staging / "rows.arrow", features)
        self._split_rows: dict[str, list[int]] = {s: [] for s in SPLITS}

    def __enter__(self) -> "Build":
        self._limit.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)
        self._limit.__exit__(None, None, None)

    def item(self, label: str, make: Callable[[], Mapping[str, Any] | None], split: str) -> bool:
        """Build one row with ``make()`` and add it to ``split``; a :class:`BadItem` is raised or skipped."""
        try:
            row = make()
        except BadItem as exc:
            if not self.skip_bad:
                raise InputError(f"{exc}. Fix or remove it, or pass --skip-bad (skip_bad=True) to leave "
                                 "bad items out") from None
            logger.warning("skipping %s", exc)
            self.report.skipped.append(Skipped(label, str(exc)))
            return False
        if row is None:
            return False
        self._split_rows[split].append(self.writer.add(row))
        return True

    def note_points(self, points: np.ndarray, width: int, height: int) -> None:
        """Count annotated points outside ``[0, width) x [0, height)`` (they stay in the row)."""
        if len(points) == 0:
            return
        x, y = points[:, 0], points[:, 1]
        dx = np.maximum(np.maximum(-x, x - width), 0.0)
        dy = np.maximum(np.maximum(-y, y - height), 0.0)
        outside = (x < 0) | (x >= width) | (y < 0) | (y >= height)
        n = int(outside.sum())
        if n:
            self.report.off_frame_points += n
            self.report.off_frame_images += 1
            self.report.off_frame_max_px = max(self.report.off_frame_max_px, float(np.max(np.hypot(dx, dy))))

    def finish(self, *, metadata: Mapping[str, Any], body: str) -> BuildReport:
        """Check every split has rows, write ``out`` (atomically) and return the report."""
        from ..utils.io import write_hub_folder

        data = self.writer.finish()
        for split, idx in self._split_rows.items():
            if not idx:
                skipped = f" ({len(self.report.skipped)} items were skipped as bad)" if self.report.skipped else ""
                raise InputError(f"{self.report.builder}: the {split} split would be empty{skipped}; expected at "
                                 "least one usable item in every split (train, validation, test)")
        splits = {s: data.select(idx) for s, idx in self._split_rows.items()}
        self.report.rows = {s: len(d) for s, d in splits.items()}
        meta = dict(metadata)
        meta.setdefault("promptmix", {})
        meta["promptmix"] = {**meta["promptmix"], **self.report.to_metadata()}
        text = body
        if self.report.skipped:
            text += "\n\n## Skipped items\n\n" + "\n".join(f"- `{s.item}`: {s.reason}" for s in self.report.skipped)
        write_hub_folder(self.out, {"default": splits}, metadata=meta, body=text)
        del splits, data
        return self.report


def dataset_body(title: str, lines: Sequence[str], task: str) -> str:
    """The README body of a built real dataset: what it is, its columns, how to load it."""
    columns = get_task(task).real_readme_columns
    text = [f"# {title}", "", *lines, "", f"Columns: {columns}.", "",
            "Built by `promptmix real`. Load it with:", "", "```python", "from datasets import load_dataset",
            'ds = load_dataset("PATH_OR_REPO")  # splits train, validation, test', "```"]
    return "\n".join(text)

