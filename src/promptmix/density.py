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
tile by tile over the frame with BLAS, each tile using only the heads whose kernel reaches it.
``scripts/bench_density.py`` compares it with :func:`reference_density_map_slow`.

:func:`resize_density` changes a map's resolution keeping its sum (training targets at an
output stride, annotators' maps at other resolutions).
"""

from __future__ import annotations

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


def _kernels(centres: np.ndarray, sigmas: np.ndarray, sizes: tuple[int, ...], truncate: float,
             renormalise: bool, dtype: Any = np.float64) -> list[np.ndarray]:
    """Per axis, a dense (N, size) matrix whose row i is head i's 1-D Gaussian, clipped by the frame.

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
        k = np.zeros((n, size), dtype=dtype)
        k[h_in, p_in] = phi_in / norm[h_in]
        out.append(k)
    return out


def _accumulate(out: np.ndarray, ky: np.ndarray, kx: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """``out += ky.T @ kx`` tile by tile, using only the heads whose kernel reaches each tile.

    ``rows``/``cols``: (N, 2) inclusive first/last row (column) each head touches.
    """
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
