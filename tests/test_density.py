"""Density maps: mass of the normalised mode, exact parity of mode="reference" with CSRNet's make_dataset,
mass-preserving resizing, and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.spatial
import torch

from promptmix.density import density_map, resize_density
from promptmix.errors import InputError


def csrnet_make_dataset(points, height: int, width: int) -> np.ndarray:
    """CSRNet-pytorch ``make_dataset.ipynb`` transcribed line by line (Python 3), the oracle of mode="reference"."""
    k = np.zeros((height, width))
    for x, y in points:
        if int(y) < height and int(x) < width and int(y) >= 0 and int(x) >= 0:
            k[int(y), int(x)] = 1
    gt = k
    density = np.zeros(gt.shape, dtype=np.float32)
    gt_count = np.count_nonzero(gt)
    if gt_count == 0:
        return density
    pts = np.array(list(zip(np.nonzero(gt)[1], np.nonzero(gt)[0])))
    tree = scipy.spatial.KDTree(pts.copy(), leafsize=2048)
    distances, _ = tree.query(pts, k=4)
    for i, pt in enumerate(pts):
        pt2d = np.zeros(gt.shape, dtype=np.float32)
        pt2d[pt[1], pt[0]] = 1.0
        if gt_count > 1:
            sigma = (distances[i][1] + distances[i][2] + distances[i][3]) * 0.1
        else:
            sigma = np.average(np.array(gt.shape)) / 2.0 / 2.0
        density += scipy.ndimage.gaussian_filter(pt2d, sigma, mode="constant")
    return density


def _points(rng, n, height, width, margin=0.0):
    return np.stack([rng.uniform(-margin, width + margin, n), rng.uniform(-margin, height + margin, n)], axis=1)


@pytest.mark.parametrize("seed,n,height,width", [(0, 6, 24, 32), (1, 25, 40, 30), (2, 60, 33, 47), (3, 1, 20, 28),
                                                 (4, 12, 17, 64)])
def test_reference_mode_equals_csrnet_on_random_points(seed, n, height, width):
    rng = np.random.default_rng(seed)
    pts = _points(rng, n, height, width, margin=0.9)  # some a fraction of a pixel off-frame, as in real files
    if n > 3:
        pts = np.concatenate([pts, pts[:2] + 0.2])  # duplicates: the same pixel is marked once
    expected = csrnet_make_dataset(pts, height, width)
    ours = density_map(pts, height, width, "adaptive", mode="reference")
    assert ours.dtype == np.float32 and ours.shape == (height, width)
    assert np.abs(ours - expected).max() <= 1e-6 * expected.max()


def test_reference_mode_with_a_fixed_sigma_is_one_gaussian_filter_per_marked_pixel():
    rng = np.random.default_rng(5)
    pts = _points(rng, 15, 30, 40)
    expected = np.zeros((30, 40), dtype=np.float32)
    marked = {(int(y), int(x)) for x, y in pts}
    for r, c in marked:
        delta = np.zeros((30, 40), dtype=np.float32)
        delta[r, c] = 1
        expected += scipy.ndimage.gaussian_filter(delta, 2.5, mode="constant", truncate=4.0)
    ours = density_map(pts, 30, 40, 2.5, mode="reference")
    np.testing.assert_allclose(ours, expected, atol=1e-6 * expected.max())
    assert ours.sum() < len(marked)  # mass falling off the frame is lost in the reference algorithm


@pytest.mark.parametrize("sigma", [1.0, 4.0, 15.0, "adaptive"])
def test_normalized_map_sums_to_the_heads_inside_the_frame(sigma):
    rng = np.random.default_rng(7)
    h, w = 48, 64
    inside = _points(rng, 40, h, w)
    inside[:4] = [[0.0, 0.0], [w - 0.01, h - 0.01], [0.3, h - 0.5], [w - 0.5, 0.2]]  # corners: most mass cut
    outside = np.array([[-0.5, 10.0], [w + 0.2, 5.0], [10.0, -3.0], [5.0, h]])
    pts = np.concatenate([inside, inside[:3], outside])  # duplicates are separate heads
    dens = density_map(pts, h, w, sigma)
    assert dens.shape == (h, w) and dens.dtype == np.float32 and (dens >= 0).all()
    assert dens.sum() == pytest.approx(len(inside) + 3, rel=1e-4)


def test_normalized_map_of_one_isolated_head_peaks_on_its_pixel_and_is_symmetric():
    dens = density_map([[20.7, 10.2]], 21, 41, 3.0)
    assert np.unravel_index(np.argmax(dens), dens.shape) == (10, 20)
    np.testing.assert_allclose(dens[10, 20 - 5:20], dens[10, 21:21 + 5][::-1], rtol=1e-6)
    assert dens.sum() == pytest.approx(1.0, rel=1e-5)


def test_normalized_mass_holds_for_many_heads_over_several_chunks(monkeypatch):
    import promptmix.density as D

    monkeypatch.setattr(D, "_HEADS_PER_CHUNK", 64)  # exercise the chunked accumulation
    rng = np.random.default_rng(11)
    pts = _points(rng, 300, 150, 200)
    dens = density_map(pts, 150, 200, "adaptive")
    assert dens.sum() == pytest.approx(300, rel=1e-4)
    monkeypatch.setattr(D, "_HEADS_PER_CHUNK", 4096)
    np.testing.assert_allclose(density_map(pts, 150, 200, "adaptive"), dens, atol=1e-6)


def test_empty_points_and_a_zero_sigma():
    assert not density_map(np.zeros((0, 2)), 8, 9).any()
    assert not density_map([], 8, 9, mode="reference").any()
    dens = density_map([[2.5, 3.5], [2.2, 3.9]], 8, 9, 0.0)
    assert dens[3, 2] == pytest.approx(2.0) and dens.sum() == pytest.approx(2.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"points": [[1, 2, 3]]}, r"\(N, 2\)"),
    ({"points": [[np.nan, 1.0]]}, "finite"),
    ({"sigma": -1.0}, "sigma"),
    ({"sigma": "wide"}, "adaptive"),
    ({"mode": "csrnet"}, "mode: expected one of"),
    ({"height": 0}, "positive height"),
])
def test_bad_input_is_an_input_error(kwargs, match):
    args = {"points": [[1.0, 2.0]], "height": 8, "width": 8, "sigma": 2.0, "mode": "normalized", **kwargs}
    with pytest.raises(InputError, match=match):
        density_map(args["points"], args["height"], args["width"], args["sigma"], mode=args["mode"])


@pytest.mark.parametrize("out_shape", [(6, 8), (5, 7), (24, 32), (60, 80), (13, 50)])
def test_resize_density_keeps_the_mass_numpy_and_torch(out_shape):
    rng = np.random.default_rng(3)
    dens = density_map(_points(rng, 30, 48, 64), 48, 64, 2.0)
    out = resize_density(dens, *out_shape)
    assert out.shape == out_shape and out.dtype == np.float32
    assert out.sum() == pytest.approx(dens.sum(), rel=1e-5)
    t = resize_density(torch.from_numpy(dens)[None, None], *out_shape)
    assert tuple(t.shape) == (1, 1, *out_shape)
    np.testing.assert_allclose(t[0, 0].numpy(), out, rtol=1e-4, atol=1e-7)


def test_resize_density_by_an_integer_factor_is_sum_pooling():
    dens = np.arange(48, dtype=np.float32).reshape(6, 8)
    out = resize_density(dens, 3, 4)
    np.testing.assert_allclose(out, dens.reshape(3, 2, 4, 2).sum(axis=(1, 3)))
    up = resize_density(out, 6, 8)  # upsampling spreads each pixel evenly over its block
    np.testing.assert_allclose(up, np.repeat(np.repeat(out / 4, 2, axis=0), 2, axis=1))
    with pytest.raises(InputError, match="positive output size"):
        resize_density(dens, 0, 4)


def test_density_map_is_the_same_with_any_blas_thread_count_and_leaves_the_setting_alone():
    from promptmix.utils import blas

    before = blas.blas_threads()
    if before is None:
        pytest.skip("numpy's BLAS is not a bundled OpenBLAS here")
    rng = np.random.default_rng(3)
    pts = np.stack([rng.uniform(0, 300, 200), rng.uniform(0, 200, 200)], axis=1)
    maps = []
    try:
        for n in (2, 1):
            assert blas.set_blas_threads(n)
            maps.append(density_map(pts, 200, 300, "adaptive"))
            assert blas.blas_threads() == n  # restored after the call
            with blas.single_blas_thread():
                assert blas.blas_threads() == 1
                with blas.single_blas_thread():  # nested blocks: the outer one restores
                    pass
                assert blas.blas_threads() == 1
            assert blas.blas_threads() == n
    finally:
        blas.set_blas_threads(before)
    np.testing.assert_array_equal(maps[0], maps[1])
