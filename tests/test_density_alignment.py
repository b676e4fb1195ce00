"""Density targets for image sizes the output stride does not divide: mass kept, cells on the network's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from promptmix import maps
from promptmix import schema as S
from promptmix.density import align_density, cell_edges, grid_size, infer_stride, resize_density
from promptmix.models import create_model
from promptmix.models.counting import CounterConfig, build_counter
from promptmix.testing.synthetic import fake_rows, real_rows
from promptmix.training.train.data import SampleSettings, TrainingData, TrainSet
from promptmix.training.train.mixing import FAKE, REAL

H, W = 389, 517  # neither divides by 8 (389 = 48 * 8 + 5, 517 = 64 * 8 + 5)


@pytest.mark.parametrize("name, rounding", [("csrnet", "floor"), ("rescsrnet", "ceil")])
def test_grid_size_is_what_the_trainers_networks_output(name, rounding):
    model = create_model(name, width_div=16).eval()
    assert model.output_rounding == rounding
    for h, w in ((H, W), (64, 96), (33, 47), (8, 15)):
        with torch.no_grad():
            out = model(torch.zeros(1, 3, h, w))
        assert out.shape[-2:] == (grid_size(h, 8, rounding), grid_size(w, 8, rounding)) == model.output_size(h, w)


@pytest.mark.parametrize("arch", ["csrnet", "dmcount", "sasnet"])
def test_annotator_grids_are_what_the_annotators_output(arch):
    config = CounterConfig.default(arch, width_div=16)
    model = build_counter(config)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, H, W))
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape[-2:] == model.output_size(H, W)
    assert infer_stride(tuple(out.shape[-2:]), (H, W)) == config.output_stride


def test_cells_sit_on_their_pixels_and_mass_is_kept():
    rng = np.random.default_rng(0)
    small = rng.random((H // 8, W // 8)).astype(np.float32)  # a floor grid (CSRNet's annotator map)
    pixels = align_density(small, (H, W), (H, W))
    assert pixels.sum() == pytest.approx(float(small.sum()), rel=1e-5)
    # interior cell (i, j) lies on pixels [8i, 8i + 8) x [8j, 8j + 8), evenly
    np.testing.assert_allclose(pixels[80:88, 160:168], small[10, 20] / 64, rtol=1e-5)
    # the last cell takes the 5 rows / columns the flooring grid leaves over: 13 x 13 pixels
    np.testing.assert_allclose(pixels[376:, 504:], small[-1, -1] / 169, rtol=1e-5)
    # back onto the same grid: unchanged; onto ResNet's ceil grid: interior cells unchanged, mass kept
    np.testing.assert_allclose(align_density(pixels, (H, W), small.shape, stride=1, out_stride=8), small, rtol=1e-5)
    ceil = align_density(pixels, (H, W), (49, 65), stride=1, out_stride=8)
    assert ceil.sum() == pytest.approx(float(small.sum()), rel=1e-5)
    np.testing.assert_allclose(ceil[:47, :63], small[:47, :63], rtol=1e-5)
    assert ceil[48, 64] == pytest.approx(small[-1, -1] * 25 / 169, rel=1e-5)  # pixels 384-388 of cell 47
    # the even spread (resize_density) is what a map off any network's grid gets, and it is not aligned
    spread = resize_density(small, H, W)
    assert not np.allclose(spread[80:88, 160:168], small[10, 20] / 64, rtol=1e-2)
    assert cell_edges(48, H, 8)[-2:].tolist() == [376.0, 389.0]


def _one_row_data(real: dict, fake: dict) -> TrainingData:
    real_ds = Dataset.from_list([real], features=S.real_features("counting"))
    fake_ds = Dataset.from_list([fake], features=S.fake_features("counting"))
    return TrainingData(task="counting", train=real_ds, validation=real_ds, test=real_ds, fake=fake_ds)


@pytest.mark.parametrize("name", ["csrnet", "rescsrnet"])
def test_training_targets_on_odd_sizes_keep_mass_and_align(name):
    model = create_model(name, width_div=16)
    real = real_rows("counting", 1, size=(H, W), seed=3, count_range=(5, 6))[0]
    corner = [[W - 0.5, H - 0.5], [3.2, 4.7]]  # a head in the bottom-right pixel, one in the top-left cell
    real[S.POINTS], real[S.COUNT] = corner, 2
    fake = fake_rows("counting", ["p"], 1, size=(H, W), seed=4)[0]
    small = np.zeros((H // 8, W // 8), dtype=np.float32)
    small[10, 20], small[-1, -1] = 3.0, 2.0  # an annotator's map on its (floor) grid
    fake[S.DENSITY] = maps.encode(small)
    fake[S.ANNOTATIONS] = []
    settings = SampleSettings(task="counting", output_stride=8, output_rounding=model.output_rounding, hflip=False,
                              density_sigma=1.0, density_kernel_size=5)
    ts = TrainSet(_one_row_data(real, fake), settings)
    grid = model.output_size(H, W)

    r = ts[(REAL, 0, 0)]
    assert r["pixel_values"].shape[-2:] == (H, W)  # the whole image: nothing trimmed
    t = r["target"][0].numpy()
    assert t.shape == grid and t.sum() == pytest.approx(2.0, abs=1e-4)
    assert t[0, 0] == pytest.approx(1.0, abs=1e-4)  # a 5-px kernel around (4, 3) stays in cell (0, 0)
    assert t[-1, -1] + t[-1, -2] + t[-2, -1] + t[-2, -2] == pytest.approx(1.0, abs=1e-4)

    f = ts[(FAKE, 0, 1)]["target"][0].numpy()
    assert f.shape == grid and f.sum() == pytest.approx(5.0, rel=1e-5)
    assert f[10, 20] == pytest.approx(3.0, rel=1e-5)  # the annotator's cell lands on the same cell
    if name == "csrnet":  # same grid as the annotator's: identical
        np.testing.assert_allclose(f, small, rtol=1e-5, atol=1e-7)
    else:  # ceil grid: the last annotator cell's 13 x 13 pixels split between cells 47 and 48
        assert f[-2:, -2:].sum() == pytest.approx(2.0, rel=1e-5) and f[-1, -1] == pytest.approx(2.0 * 25 / 169, rel=1e-4)
