"""Density maps from head points, and mass-preserving resizing of density maps.

:func:`density_map` puts one Gaussian on every head point:

``mode="normalized"`` (default)
    Every head's truncated Gaussian is renormalised inside the frame, so the map sums to the
    number of heads inside the frame (``0 <= x < W`` and ``0 <= y < H``). Heads outside it are
    left out of the map (they stay in the dataset's ``points`` and ``count``). Duplicated points
    are two heads.
``mode="reference"``
    The CSRNet-pytorch ``make_dataset`` algorithm, exactly: point ``(x, y)`` marks pixel
    ``(int(y), int(x))`` of a binary image (so duplicates collapse), off-frame points are dropped
    (the original wraps points left of/above ``-1`` round the frame through negative indexing; we
    drop them), and every marked pixel gets one ``scipy.ndimage.gaussian_filter(delta, sigma,
    mode="constant", truncate=4)``; mass that falls off the frame is lost. With a single head
    and ``sigma="adaptive"`` the sigma is ``mean(H, W) / 4``.

``sigma`` is a float (pixels, the same for every head) or ``"adaptive"``: sigma_i = 0.1 x the
summed distance from head i to its 3 nearest heads (scipy KDTree on the pixel coordinates,
as CSRNet does). With 2 or 3 heads, where fewer than 3 neighbours exist (the original would
crash on an infinite sigma), sigma_i = 0.3 x the mean distance to the neighbours there are.

Speed: the map is ``sum_i outer(g_y_i, g_x_i)`` of 1-D kernels computed exactly as scipy's
``_gaussian_kernel1d`` (radius ``int(truncate * sigma + 0.5)``, clipped by the frame), i.e. the
matrix product ``G_y^T @ G_x`` of two sparse (heads x H) and (heads x W) matrices; it is computed
tile by tile over the frame with BLAS, each tile using only the heads whose kernel reaches it. The tiles'
products are small, so they run with numpy's BLAS limited to one thread (:mod:`promptmix.utils.blas`): a
multi-threaded BLAS spends more waking its workers than it saves, and the time no longer depends on the
machine's thread settings or load.
``scripts/bench_density.py`` compares it with :func:`reference_density_map_slow`.

:func:`box_density_map` is the same for people annotated with boxes (PANDA-Crowd; PromptMix
IV-A: "we match the Gaussian kernel size with the bounding box"): each person's Gaussian is centred
on the pixel of its box centre, its window is the box (``2 * int(w / 2) + 1`` by ``2 * int(h / 2) + 1``
pixels) and its sigmas are ``w * 4 / 15`` and ``h * 4 / 15``, the ratio of the paper's fixed kernel
(15 px, sigma 4): a 15 x 15 box gets exactly that kernel. Each Gaussian is renormalised inside the
frame, so the map sums to the number of boxes whose centre lies in the frame.
:func:`reference_box_density_map_slow` builds the same map box by box with a dense 2-D Gaussian.


:func:`resize_density` changes a map's resolution keeping its sum, spreading cells evenly over the
new grid. :func:`align_density` does the same for maps whose cells are a network's output grid: cell
``i`` of a network with output stride ``s`` sits on pixels ``[i s, (i + 1) s)`` of the image, whatever
the image's size, so when the size is not a multiple of ``s`` the grid does not span the image evenly.
A VGG network's max-pools floor (``H // s`` cells: the last cell also takes the ``H mod s`` pixels left
over), ResNet's padded stride-2 convolutions ceil (``ceil(H / s)`` cells: the last one is partial);
:func:`grid_size` gives both. ``align_density`` moves mass between two such grids over the same image
(pixels are the grid of stride 1) exactly by the overlap of their cells, so the sum is kept and every
interior cell lands on the pixels it came from.
"""

from __future__ import annotations

import functools
import threading

from typing import Any, Literal

import numpy as np

from .errors import InputError

MODES = ("normalized", "reference")
TRUNCATE = 4.0
_TILE = 128  # frame tile for the blocked product; 128 balances BLAS efficiency and skipped zeros
_HEADS_PER_CHUNK = 4096  # bounds the dense (heads x H) / (heads x W) kernel matrices' memory


def _as_points(points: Any) -> np.ndarray:
    pts = np.asarray(points if points is not None else [], dtype=np.float64)
    if pts.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"points: expected an (N, 2) array of (x, y) head points; got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise InputError("points: expected finite (x, y) values; got NaN or infinity")
    return pts


def _check_shape(height: int, width: int) -> tuple[int, int]:
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise InputError(f"density map size: expected positive height and width; got {height} x {width}")
    return h, w


def head_pixels(points: Any, height: int, width: int, *, mode: str = "normalized") -> np.ndarray:
    """The integer (row, col) pixel of every head that the map of ``mode`` uses, shape (N', 2).

    ``normalized``: ``floor`` of each in-frame point, duplicates kept. ``reference``: ``int()``
    (truncation toward zero, as CSRNet's ``make_dataset``), in-frame pixels only, unique, in
    row-major order (``np.nonzero`` of the marked binary image).
    """
    pts = _as_points(points)
    h, w = _check_shape(height, width)
    if mode == "normalized":
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        pix = np.floor(pts[inside][:, ::-1]).astype(np.int64)
        return pix
    if mode == "reference":
        pix = np.trunc(pts[:, ::-1]).astype(np.int64)  # (int(y), int(x))
        keep = (pix[:, 0] >= 0) & (pix[:, 0] < h) & (pix[:, 1] >= 0) & (pix[:, 1] < w)
        pix = pix[keep]
        if len(pix) == 0:
            return pix.reshape(0, 2)
        flat = np.unique(pix[:, 0] * w + pix[:, 1])
        return np.stack([flat // w, flat % w], axis=1)
    raise InputError(f"mode: expected one of {MODES}; got {mode!r}")


def adaptive_sigmas(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Geometry-adaptive sigma per head: 0.1 x summed distance to the 3 nearest heads (pixel coords).

    One head: ``mean(H, W) / 4``. Two or three heads: 0.3 x the mean distance to the others.
    """
    from scipy.spatial import cKDTree

    n = len(pixels)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    if n == 1:
        return np.array([np.average(np.array([height, width])) / 2.0 / 2.0])
    xy = pixels[:, ::-1].astype(np.float64)  # CSRNet's KDTree points are (x, y)
    k = min(4, n)
    dist, _ = cKDTree(xy).query(xy, k=k)
    if n >= 4:
        return (dist[:, 1] + dist[:, 2] + dist[:, 3]) * 0.1
    return dist[:, 1:].mean(axis=1) * 0.3


_SCRATCH = threading.local()
_SCRATCH_MAX_BYTES = 16 << 20


def _scratch(slot: int, shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """A zeroed array for the kernel matrices, reusing this thread's buffer of ``slot`` (up to 16 MB).

    Fresh ``np.zeros`` pages are faulted in on first write, which cost more than the kernels themselves;
    the kernel matrices never leave :func:`density_map`, so a per-thread buffer is safe to reuse.
    """
    dtype = np.dtype(dtype)
    need = shape[0] * shape[1]
    if need * dtype.itemsize > _SCRATCH_MAX_BYTES:
        return np.zeros(shape, dtype=dtype)
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    buf = bufs.get((slot, dtype))
    if buf is None or buf.size < need:
        buf = bufs[(slot, dtype)] = np.empty(max(need, 1 << 16), dtype=dtype)
    view = buf[:need].reshape(shape)
    view.fill(0)
    return view


def _kernels(centres: np.ndarray, sigmas: np.ndarray, sizes: tuple[int, ...], truncate: float,
             renormalise: bool, dtype: Any = np.float64) -> list[np.ndarray]:
    """Per axis, a dense (N, size) matrix whose row i is head i's 1-D Gaussian, clipped by the frame.

    The matrices are this thread's scratch buffers (:func:`_scratch`): valid until the next call.

    ``centres``: (N, axes) integer pixel of each head; ``sizes``: the frame's size along each axis.
    Values equal scipy's ``_gaussian_kernel1d(sigma, 0, int(truncate * sigma + 0.5))`` placed at the
    centre (normalised over the whole kernel); with ``renormalise`` each row is divided by its
    in-frame sum instead. A sigma <= 1e-15 is a delta, as ``gaussian_filter`` skips such an axis.
    The kernel values are the same on every axis, so they are computed once (float64), stored as ``dtype``.
    """
    n = len(centres)
    if n == 0:
        return [np.zeros((0, size), dtype=dtype) for size in sizes]
    delta = sigmas <= 1e-15
    radii = np.where(delta, 0, (truncate * np.where(delta, 0.0, sigmas) + 0.5).astype(np.int64))
    lengths = 2 * radii + 1
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    head = np.repeat(np.arange(n), lengths)
    offset = np.arange(int(lengths.sum())) - np.repeat(starts + radii, lengths)
    safe = np.where(delta, 1.0, sigmas)
    coef = -0.5 / (safe * safe)  # scipy: np.exp(-0.5 / sigma2 * x ** 2)
    phi = np.exp(coef[head] * offset ** 2)
    full_norm = None if renormalise else np.add.reduceat(phi, starts)
    out = []
    for axis, size in enumerate(sizes):
        pos = centres[:, axis][head] + offset
        inside = (pos >= 0) & (pos < size)
        h_in, p_in, phi_in = head[inside], pos[inside], phi[inside]
        norm = np.bincount(h_in, weights=phi_in, minlength=n) if renormalise else full_norm
        k = _scratch(axis, (n, size), dtype)
        k.reshape(-1)[h_in * size + p_in] = phi_in / norm[h_in]  # flat index: one pass, no 2-D fancy indexing
        out.append(k)
    return out


def _accumulate(out: np.ndarray, ky: np.ndarray, kx: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """``out += ky.T @ kx`` tile by tile, using only the heads whose kernel reaches each tile.

    ``rows``/``cols``: (N, 2) inclusive first/last row (column) each head touches.
    """
    from .utils.blas import single_blas_thread

    with single_blas_thread():  # many small products: BLAS worker threads cost more than they give
        _accumulate_tiles(out, ky, kx, rows, cols)


def _accumulate_tiles(out: np.ndarray, ky: np.ndarray, kx: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    h, w = out.shape
    t = _TILE
    ty0, ty1 = rows[:, 0] // t, rows[:, 1] // t
    tx0, tx1 = cols[:, 0] // t, cols[:, 1] // t
    for a in range(0, (h + t - 1) // t):
        in_band = (ty0 <= a) & (ty1 >= a)
        if not in_band.any():
            continue
        band_idx = np.flatnonzero(in_band)
        ky_band = ky[band_idx, a * t:(a + 1) * t]
        bx0, bx1 = tx0[band_idx], tx1[band_idx]
        for b in range(0, (w + t - 1) // t):
            sel = np.flatnonzero((bx0 <= b) & (bx1 >= b))
            if len(sel) == 0:
                continue
            out[a * t:(a + 1) * t, b * t:(b + 1) * t] += ky_band[sel].T @ kx[band_idx[sel], b * t:(b + 1) * t]


def density_map(points: Any, height: int, width: int, sigma: float | Literal["adaptive"] = 4.0, *,
                mode: str = "normalized", truncate: float = TRUNCATE, dtype: Any = np.float32) -> np.ndarray:
    """An (H, W) density map with one Gaussian per head point (x, y); see the module docstring.

    Args:
        points: (N, 2) array-like of (x, y) head points (sub-pixel floats; off-frame ones allowed).
        height, width: size of the map (the image).
        sigma: Gaussian sigma in pixels, or ``"adaptive"`` (0.1 x summed distance to the 3 nearest heads).
        mode: ``"normalized"`` (sums to the number of in-frame heads) or ``"reference"`` (CSRNet's
            ``make_dataset`` exactly, mass cut off at the frame edges).
        truncate: kernel radius in sigmas, ``int(truncate * sigma + 0.5)`` as scipy.
        dtype: dtype of the result (float32 by default, as CSRNet's maps).
    """
    h, w = _check_shape(height, width)
    if mode not in MODES:
        raise InputError(f"mode: expected one of {MODES}; got {mode!r}")
    pix = head_pixels(points, h, w, mode=mode)
    if isinstance(sigma, str):
        if sigma != "adaptive":
            raise InputError(f"sigma: expected a positive number or 'adaptive'; got {sigma!r}")
        sigmas = adaptive_sigmas(pix, h, w)
    else:
        s = float(sigma)
        if not np.isfinite(s) or s < 0:
            raise InputError(f"sigma: expected a non-negative number or 'adaptive'; got {sigma!r}")
        sigmas = np.full(len(pix), s)
    # float32 kernels and products as the reference (scipy's float32 passes), accumulated by BLAS
    work = np.float32 if np.dtype(dtype).itemsize <= 4 else np.float64
    out = np.zeros((h, w), dtype=work)
    renorm = mode == "normalized"
    for start in range(0, len(pix), _HEADS_PER_CHUNK):
        p = pix[start:start + _HEADS_PER_CHUNK]
        s = sigmas[start:start + _HEADS_PER_CHUNK]
        ky, kx = _kernels(p, s, (h, w), truncate, renorm, work)
        delta = s <= 1e-15
        r = np.where(delta, 0, (truncate * np.where(delta, 0.0, s) + 0.5).astype(np.int64))
        rows = np.stack([np.clip(p[:, 0] - r, 0, h - 1), np.clip(p[:, 0] + r, 0, h - 1)], axis=1)
        cols = np.stack([np.clip(p[:, 1] - r, 0, w - 1), np.clip(p[:, 1] + r, 0, w - 1)], axis=1)
        _accumulate(out, ky, kx, rows, cols)
    return out.astype(dtype, copy=False)


def reference_density_map_slow(points: Any, height: int, width: int,
                               sigma: float | Literal["adaptive"] = "adaptive") -> np.ndarray:
    """CSRNet-pytorch ``make_dataset`` literally: one full-frame ``gaussian_filter`` per head (slow).

    The baseline for tests and ``scripts/bench_density.py``; use :func:`density_map` with
    ``mode="reference"`` for the same result thousands of times faster.
    """
    import scipy.ndimage

    h, w = _check_shape(height, width)
    pts = _as_points(points)
    k = np.zeros((h, w))
    for x, y in pts:
        if 0 <= int(y) < h and 0 <= int(x) < w:  # CSRNet checks only the upper bounds; see module doc
            k[int(y), int(x)] = 1
    density = np.zeros(k.shape, dtype=np.float32)
    rows, cols = np.nonzero(k)
    if len(rows) == 0:
        return density
    pix = np.stack([rows, cols], axis=1)
    sigmas = adaptive_sigmas(pix, h, w) if sigma == "adaptive" else np.full(len(pix), float(sigma))
    for (r, c), s in zip(pix, sigmas):
        pt2d = np.zeros(k.shape, dtype=np.float32)
        pt2d[r, c] = 1.0
        density += scipy.ndimage.gaussian_filter(pt2d, s, mode="constant")
    return density


# -- box-matched kernels (PANDA-Crowd) -------------------------------------------------------------------
SIGMA_PER_SIZE = 4.0 / 15.0  # the paper's fixed kernel: 15 px with sigma 4


def _as_boxes(boxes: Any) -> np.ndarray:
    b = np.asarray(boxes if boxes is not None else [], dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"boxes: expected an (N, 4) array of (x0, y0, x1, y1) boxes; got shape {b.shape}")
    if not np.isfinite(b).all():
        raise InputError("boxes: expected finite (x0, y0, x1, y1) values; got NaN or infinity")
    if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
        raise InputError("boxes: expected x1 >= x0 and y1 >= y0 in every (x0, y0, x1, y1) box")
    return b


def box_kernels(boxes: Any, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per in-frame box: its (row, col) centre pixel, its (ry, rx) window radii and (sy, sx) sigmas."""
    b = _as_boxes(boxes)
    h, w = _check_shape(height, width)
    cx, cy = (b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    b, cx, cy = b[inside], cx[inside], cy[inside]
    centres = np.stack([np.floor(cy), np.floor(cx)], axis=1).astype(np.int64)
    sizes = np.stack([b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1)
    radii = (sizes / 2.0).astype(np.int64)
    sigmas = sizes * SIGMA_PER_SIZE
    return centres, radii, sigmas


def _axis_kernels(centres: np.ndarray, radii: np.ndarray, sigmas: np.ndarray, size: int, dtype: Any) -> np.ndarray:
    """(N, size): row i is head i's 1-D Gaussian over its window, renormalised inside ``[0, size)``.

    A zero radius is a delta (one pixel)."""
    n = len(centres)
    k = np.zeros((n, size), dtype=dtype)
    if n == 0:
        return k
    lengths = 2 * radii + 1
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    head = np.repeat(np.arange(n), lengths)
    offset = np.arange(int(lengths.sum())) - np.repeat(starts + radii, lengths)
    safe = np.where(radii == 0, 1.0, np.maximum(sigmas, 1e-12))
    phi = np.exp(-0.5 * (offset / safe[head]) ** 2)
    pos = centres[head] + offset
    keep = (pos >= 0) & (pos < size)
    h_in, p_in, phi_in = head[keep], pos[keep], phi[keep]
    norm = np.bincount(h_in, weights=phi_in, minlength=n)
    k[h_in, p_in] = phi_in / norm[h_in]
    return k


def box_density_map(boxes: Any, height: int, width: int, *, dtype: Any = np.float32) -> np.ndarray:
    """An (H, W) density map with one box-matched Gaussian per (x0, y0, x1, y1) box (see the module docstring).

    The map sums to the number of boxes whose centre lies inside the frame.
    """
    h, w = _check_shape(height, width)
    centres, radii, sigmas = box_kernels(boxes, h, w)
    work = np.float32 if np.dtype(dtype).itemsize <= 4 else np.float64
    out = np.zeros((h, w), dtype=work)
    for start in range(0, len(centres), _HEADS_PER_CHUNK):
        c = centres[start:start + _HEADS_PER_CHUNK]
        r = radii[start:start + _HEADS_PER_CHUNK]
        sg = sigmas[start:start + _HEADS_PER_CHUNK]
        ky = _axis_kernels(c[:, 0], r[:, 0], sg[:, 0], h, work)
        kx = _axis_kernels(c[:, 1], r[:, 1], sg[:, 1], w, work)
        rows = np.stack([np.clip(c[:, 0] - r[:, 0], 0, h - 1), np.clip(c[:, 0] + r[:, 0], 0, h - 1)], axis=1)
        cols = np.stack([np.clip(c[:, 1] - r[:, 1], 0, w - 1), np.clip(c[:, 1] + r[:, 1], 0, w - 1)], axis=1)
        _accumulate(out, ky, kx, rows, cols)
    return out.astype(dtype, copy=False)


def reference_box_density_map_slow(boxes: Any, height: int, width: int) -> np.ndarray:
    """:func:`box_density_map` written out box by box: a dense 2-D Gaussian over the box window clipped by the
    frame, divided by its sum and added (slow; the baseline of the tests)."""
    h, w = _check_shape(height, width)
    centres, radii, sigmas = box_kernels(boxes, h, w)
    out = np.zeros((h, w), dtype=np.float64)
    for (r, c), (ry, rx), (sy, sx) in zip(centres, radii, sigmas):
        ys = np.arange(max(0, r - ry), min(h, r + ry + 1))
        xs = np.arange(max(0, c - rx), min(w, c + rx + 1))
        dy = (ys - r)[:, None] / (sy if ry else 1.0)
        dx = (xs - c)[None, :] / (sx if rx else 1.0)
        g = np.exp(-0.5 * dy ** 2) * np.exp(-0.5 * dx ** 2)
        out[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1] += g / g.sum()
    return out.astype(np.float32)


# -- resizing ------------------------------------------------------------------------------------------
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: entry (i, j) = share of input cell j that falls in output cell i.

    Input cell j spans [j, j+1) and output cell i spans [i, i+1) * n_in / n_out; every column
    sums to 1, so mass is kept exactly.
    """
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo = np.maximum(edges[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(n_in)[None, :] + 1)
    return np.clip(hi - lo, 0.0, None)


def resize_density(density: Any, out_h: int, out_w: int) -> Any:
    """Resize a density map (or a batch ``(..., H, W)``) to ``(out_h, out_w)`` keeping its sum.

    Area-weighted resampling: each input pixel's mass is shared among the output pixels it
    overlaps, in proportion to the overlap, so the total (and every region's mass, up to one
    pixel at the borders) is preserved for any factor, down or up. When the factors divide
    exactly (e.g. an output stride of 8) this is plain sum-pooling over ``f x f`` blocks
    (upsampling by an integer factor spreads each pixel evenly over its ``f x f`` block).
    Accepts numpy arrays or torch tensors and returns the same kind (float dtype kept).
    """
    out_h, out_w = int(out_h), int(out_w)
    if out_h <= 0 or out_w <= 0:
        raise InputError(f"resize_density: expected a positive output size; got {out_h} x {out_w}")
    is_torch = type(density).__module__.startswith("torch")
    if is_torch:
        import torch

        t = density
        h, w = t.shape[-2:]
        if (h, w) == (out_h, out_w):
            return t
        if h % out_h == 0 and w % out_w == 0:
            fh, fw = h // out_h, w // out_w
            return t.reshape(*t.shape[:-2], out_h, fh, out_w, fw).sum(dim=(-3, -1))
        dt = t.dtype if t.is_floating_point() else torch.float32
        ry = torch.as_tensor(_area_matrix(h, out_h), dtype=dt, device=t.device)
        rx = torch.as_tensor(_area_matrix(w, out_w), dtype=dt, device=t.device)
        return ry @ t.to(dt) @ rx.T
    arr = np.asarray(density)
    if arr.ndim < 2:
        raise InputError(f"resize_density: expected an (H, W) or (..., H, W) map; got shape {arr.shape}")
    h, w = arr.shape[-2:]
    dt = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32
    if (h, w) == (out_h, out_w):
        return arr.astype(dt, copy=True)
    if h % out_h == 0 and w % out_w == 0:
        fh, fw = h // out_h, w // out_w
        return arr.reshape(*arr.shape[:-2], out_h, fh, out_w, fw).sum(axis=(-3, -1), dtype=np.float64).astype(dt)
    ry = _area_matrix(h, out_h)
    rx = _area_matrix(w, out_w)
    return (ry @ arr.astype(np.float64) @ rx.T).astype(dt)


# -- output grids ----------------------------------------------------------------------------------------
ROUNDINGS = ("floor", "ceil")


def grid_size(size: int, stride: int, rounding: str = "floor") -> int:
    """Cells along an image axis of ``size`` pixels for a network of output ``stride``.

    ``floor``: ``size // stride`` (unpadded 2x2 max-pools, VGG); ``ceil``: ``ceil(size / stride)`` (padded
    stride-2 convolutions and pools, ResNet: ``floor((n + 2p - k) / 2) + 1`` is ``ceil(n / 2)`` at each halving).
    """
    size, stride = int(size), int(stride)
    if rounding == "floor":
        return size // stride
    if rounding == "ceil":
        return -(-size // stride)
    raise InputError(f"rounding: expected one of {ROUNDINGS}; got {rounding!r}")


def cell_edges(cells: int, size: int, stride: int | None = None) -> np.ndarray:
    """The ``cells + 1`` pixel edges of a map's cells along an image axis of ``size`` pixels.

    With ``stride``: cell ``i`` covers ``[i * stride, (i + 1) * stride)`` and the last cell ends at ``size``
    (taking the pixels a flooring grid leaves over, or only the in-image part of a ceiling grid's last
    block). Without: ``cells`` equal parts of the axis (a map not on a network's grid).
    """
    cells, size = int(cells), int(size)
    if cells < 1 or size < 1:
        raise InputError(f"cell_edges: expected at least one cell and one pixel; got {cells} cells over {size} px")
    if stride is None:
        return np.arange(cells + 1, dtype=np.float64) * (size / cells)
    if (cells - 1) * int(stride) >= size:
        raise InputError(f"cell_edges: {cells} cells of stride {stride} do not fit an axis of {size} pixels "
                         f"(at most {grid_size(size, stride, 'ceil')})")
    edges = np.arange(cells + 1, dtype=np.float64) * int(stride)
    edges[-1] = size
    return edges


def _overlap_matrix(edges_in: np.ndarray, edges_out: np.ndarray) -> np.ndarray:
    """(n_out, n_in): the share of input cell j that lies in output cell i (columns sum to 1)."""
    lo = np.maximum(edges_in[None, :-1], edges_out[:-1, None])
    hi = np.minimum(edges_in[None, 1:], edges_out[1:, None])
    return np.clip(hi - lo, 0.0, None) / np.diff(edges_in)[None, :]


def _axis_fits(cells: int, size: int, stride: int) -> bool:
    """``cells`` cells of ``stride`` fit an axis of ``size`` px as some network's grid: the last cell is not
    empty and less than two strides are left over (floor, ceil and DM-Count's ``2 * (size // 2s)``)."""
    return (cells - 1) * stride < size < (cells + 2) * stride


@functools.lru_cache(maxsize=4096)
def infer_stride(shape: tuple[int, int], image_size: tuple[int, int]) -> int | None:
    """The output stride of a ``shape`` map made from an image of ``image_size`` (H, W); None if no integer fits.

    Candidates fit both axes (:func:`_axis_fits`); preferred in order: both axes exactly ``size // s``, both
    exactly ``ceil(size / s)``, a power of two, the stride closest to ``size / cells``.
    """
    (nh, nw), (h, w) = (int(shape[0]), int(shape[1])), (int(image_size[0]), int(image_size[1]))
    if min(nh, nw, h, w) < 1:
        return None
    lo = max(h // (nh + 2), w // (nw + 2), 1)
    hi = min(h // max(nh - 1, 1), w // max(nw - 1, 1)) + 1
    cands = [s for s in range(lo, hi + 1) if _axis_fits(nh, h, s) and _axis_fits(nw, w, s)]
    if not cands:
        return None

    def rank(s: int) -> tuple:
        floor = h // s == nh and w // s == nw
        ceil = -(-h // s) == nh and -(-w // s) == nw
        return (not floor, not ceil, s & (s - 1) != 0, abs(s - h / nh) + abs(s - w / nw))
    return min(cands, key=rank)


def align_density(density: Any, image_size: tuple[int, int], out_shape: tuple[int, int], *,
                  stride: int | None = None, out_stride: int | None = None) -> np.ndarray:
    """Move a density map made over an image of ``image_size`` (H, W) to another grid over the same image.

    ``stride`` / ``out_stride`` are the output strides of the two grids (1: pixels); when not given they are
    inferred from the shapes (:func:`infer_stride`), and a map that fits no integer stride is taken to span
    the image evenly (:func:`resize_density`'s rule). Mass moves by the overlap of the cells
    (:func:`cell_edges`), so the sum is kept exactly and every cell's mass stays on its pixels. Accepts
    ``(..., n_h, n_w)`` arrays; returns float32 (or the input's float dtype).
    """
    arr = np.asarray(density)
    if arr.ndim < 2:
        raise InputError(f"align_density: expected an (H, W) or (..., H, W) map; got shape {arr.shape}")
    h, w = int(image_size[0]), int(image_size[1])
    (nh, nw), (oh, ow) = arr.shape[-2:], (int(out_shape[0]), int(out_shape[1]))
    dt = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32
    if stride is None:
        stride = 1 if (nh, nw) == (h, w) else infer_stride((nh, nw), (h, w))
    if out_stride is None:
        out_stride = 1 if (oh, ow) == (h, w) else infer_stride((oh, ow), (h, w))
    if (nh, nw, stride) == (oh, ow, out_stride):
        return arr.astype(dt, copy=True)
    # the usual cases, exactly and fast: pixels of an image whose size the stride divides
    if stride is not None and out_stride == 1 and (oh, ow) == (h, w) == (nh * stride, nw * stride):
        return np.repeat(np.repeat(arr.astype(dt) / np.asarray(stride * stride, dtype=dt), stride, axis=-2), stride,
                         axis=-1)
    if stride == 1 and out_stride is not None and (nh, nw) == (h, w) == (oh * out_stride, ow * out_stride):
        f = out_stride
        return arr.reshape(*arr.shape[:-2], oh, f, ow, f).sum(axis=(-3, -1), dtype=np.float64).astype(dt)
    my = _overlap_matrix(cell_edges(nh, h, stride), cell_edges(oh, h, out_stride))
    mx = _overlap_matrix(cell_edges(nw, w, stride), cell_edges(ow, w, out_stride))
    return (my @ arr.astype(np.float64) @ mx.T).astype(dt)


# -- training targets of one crop -------------------------------------------------------------------------
def _axis_to_grid(start: int, size: int, cells: int, out_stride: int, flip: bool) -> np.ndarray:
    """(cells, size) float32: the share of crop pixel ``k`` (image pixel ``start + k``) in each output cell."""
    pix = np.arange(size + 1, dtype=np.float64)
    m = _overlap_matrix(pix, cell_edges(cells, size, out_stride)).astype(np.float32)
    return m[:, ::-1] if flip else m


def _window_rows(kernels: np.ndarray, start: int, size: int) -> np.ndarray:
    """Columns ``[start, start + size)`` of (N, frame) kernels, zero beyond the frame (the crop's padding)."""
    n, frame = kernels.shape
    out = np.zeros((n, size), dtype=np.float32)
    stop = min(frame, start + size)
    if stop > start:
        out[:, :stop - start] = kernels[:, start:stop]
    return out


def crop_density_target(points: Any, image_size: tuple[int, int], window: tuple[int, int, int, int],
                        grid: tuple[int, int], out_stride: int, *, sigma: float = 4.0, truncate: float = TRUNCATE,
                        hflip: bool = False) -> np.ndarray:
    """The training target of one crop: the ``density_map`` of ``points`` (``normalized`` mode, each head
    renormalised inside the whole frame) cropped to ``window`` = (y, x, height, width) -- zero beyond the frame
    -- flipped left-right with ``hflip``, and summed into the ``grid`` cells of a network of ``out_stride``
    (:func:`align_density`'s cells), computed for the crop only.

    The map of head ``i`` is ``outer(g_y_i, g_x_i)`` and moving it to the grid is a matrix per axis, so the target
    is ``(A_y G_y^T) (A_x G_x^T)^T`` over the heads whose kernel reaches the window: no full-frame map, float32.
    Equal to ``align_density(density_map(...)[window], ...)`` up to float rounding (a test checks).
    """
    h, w = _check_shape(*image_size)
    y0, x0, ch, cw = (int(v) for v in window)
    pix = head_pixels(points, h, w)
    s = float(sigma)
    if not np.isfinite(s) or s < 0:
        raise InputError(f"sigma: expected a non-negative number; got {sigma!r}")
    r = 0 if s <= 1e-15 else int(truncate * s + 0.5)
    near = ((pix[:, 0] + r >= y0) & (pix[:, 0] - r < y0 + ch) & (pix[:, 1] + r >= x0) & (pix[:, 1] - r < x0 + cw))
    pix = pix[near]
    ay = _axis_to_grid(y0, ch, grid[0], out_stride, False)
    ax = _axis_to_grid(x0, cw, grid[1], out_stride, hflip)
    if len(pix) == 0:
        return np.zeros(grid, dtype=np.float32)
    ky, kx = _kernels(pix, np.full(len(pix), s), (h, w), truncate, True, np.float32)
    gy = ay @ _window_rows(ky, y0, ch).T  # (cells_y, heads)
    gx = ax @ _window_rows(kx, x0, cw).T  # (cells_x, heads)
    return (gy @ gx.T).astype(np.float32, copy=False)


def crop_map_target(density: Any, image_size: tuple[int, int], window: tuple[int, int, int, int],
                    grid: tuple[int, int], out_stride: int, *, hflip: bool = False) -> np.ndarray:
    """The same for a density map on an annotator's grid over the image (:func:`align_density`'s cells): its
    cells spread over their pixels, cropped to ``window`` (zero beyond the frame), flipped with ``hflip`` and
    summed into ``grid``, as two small matrix products (no full-resolution map)."""
    arr = np.asarray(density, dtype=np.float32)
    h, w = _check_shape(*image_size)
    nh, nw = arr.shape
    y0, x0, ch, cw = (int(v) for v in window)
    stride = 1 if (nh, nw) == (h, w) else infer_stride((nh, nw), (h, w))
    # (pixels, cells) share of each annotator cell on each image pixel, rows of the window only
    py = _window_rows(_overlap_matrix(cell_edges(nh, h, stride), np.arange(h + 1, dtype=np.float64)).T
                      .astype(np.float32), y0, ch)  # (nh, ch)
    px = _window_rows(_overlap_matrix(cell_edges(nw, w, stride), np.arange(w + 1, dtype=np.float64)).T
                      .astype(np.float32), x0, cw)  # (nw, cw)
    my = _axis_to_grid(y0, ch, grid[0], out_stride, False) @ py.T  # (cells_y, nh)
    mx = _axis_to_grid(x0, cw, grid[1], out_stride, hflip) @ px.T  # (cells_x, nw)
    return (my @ arr @ mx.T).astype(np.float32, copy=False)
