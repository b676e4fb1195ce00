"""The training data path: loading and checks, per-row targets (mass, flips, crops, annotators), batching, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from datasets import Image

from promptmix import maps, schema
from promptmix.density import density_map
from promptmix.errors import ConfigError, InputError
from promptmix.testing.synthetic import write_fake_dataset, write_real_dataset
from promptmix.training.train.config import TrainConfig
from promptmix.training.train.data import (EvalSet, SampleSettings, TrainSet, collate, decode_image, load_training_data,
                                           to_uint8_tensor)
from promptmix.training.train.mixing import FAKE, REAL
from promptmix.training.train.stage import build_parser, config_from_args


@pytest.fixture(scope="module")
def counting_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("counting")
    real = write_real_dataset(root / "real", "counting", sizes={"train": 4, "validation": 2, "test": 2})
    fake = write_fake_dataset(root / "fake", "counting", prompts=["p"], per_prompt=3, all_extra=2)
    config = TrainConfig(task="counting", real=str(real), fake=str(fake), mixing="promptmix", r_mix=2,
                         output_dir=str(root / "out"))
    return config, load_training_data(config)


def _settings(config, **kw):
    s = SampleSettings.from_config(config, output_stride=8)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_counting_targets_keep_the_head_count(counting_data):
    config, data = counting_data
    assert len(data.fake) == 3  # config "kept" (the "all" config has 2 more rows)
    ts = TrainSet(data, _settings(config, hflip=False))
    real_row = data.train.with_format("numpy")[0]
    s = ts[(REAL, 0, 0)]
    assert s["pixel_values"].shape == (3, 48, 64) and s["target"].shape == (1, 6, 8)
    assert s["target"].sum().item() == pytest.approx(float(real_row[schema.COUNT]), abs=1e-3)
    f = ts[(FAKE, 1, 5)]
    assert data.fake[1][schema.DENSITY] is None  # stored once: the target annotator's map in annotations
    stored = maps.decode(schema.fake_target_map(data.fake[1], schema.DENSITY))
    assert f["target"].shape == (1, 6, 8)
    assert f["target"].sum().item() == pytest.approx(float(stored.sum()), rel=1e-4)
    np.testing.assert_allclose(f["target"][0].numpy(), stored, rtol=1e-5)  # same resolution: unchanged


def test_crops_and_flips_move_image_and_target_together(counting_data):
    config, data = counting_data
    plain = TrainSet(data, _settings(config, crop_size=32, hflip=False))
    flipping = TrainSet(data, _settings(config, crop_size=32, hflip=True))
    row = data.train.with_format("numpy")[2]
    image = to_uint8_tensor(decode_image(data.train.cast_column(schema.IMAGE, Image(decode=False))[2][schema.IMAGE]))
    dens = density_map(row[schema.POINTS], 48, 64, sigma=config.density_sigma, truncate=1.75)
    flipped_seen = 0
    for pos in range(8):
        a = plain[(REAL, 2, pos)]
        assert a["pixel_values"].shape == (3, 32, 32) and a["target"].shape == (1, 4, 4)
        matches = [(y, x) for y in range(17) for x in range(33)
                   if torch.equal(image[:, y:y + 32, x:x + 32], a["pixel_values"])]
        assert len(matches) == 1
        y, x = matches[0]
        assert a["target"].sum().item() == pytest.approx(float(dens[y:y + 32, x:x + 32].sum()), abs=1e-4)
        b = flipping[(REAL, 2, pos)]
        if not torch.equal(a["pixel_values"], b["pixel_values"]):
            flipped_seen += 1
            assert torch.equal(b["pixel_values"], a["pixel_values"].flip(-1))
            assert torch.allclose(b["target"], a["target"].flip(-1), atol=1e-6)
        assert torch.equal(plain[(REAL, 2, pos)]["pixel_values"], a["pixel_values"])  # deterministic per key
    assert 0 < flipped_seen < 8
    plain.set_epoch(1)
    assert any(not torch.equal(plain[(REAL, 2, p)]["pixel_values"], TrainSet(data, _settings(
        config, crop_size=32, hflip=False))[(REAL, 2, p)]["pixel_values"]) for p in range(8))  # new epoch, new crops


def test_target_annotator_and_eval_set(counting_data):
    config, data = counting_data
    ts = TrainSet(data, _settings(config, target_annotator="annotator_b"))
    ann = data.fake[0][schema.ANNOTATIONS]
    b_map = maps.decode(next(a for a in ann if a[schema.ANNOTATOR] == "annotator_b")[schema.DENSITY])
    assert ts[(FAKE, 0, 0)]["target"].sum().item() == pytest.approx(float(b_map.sum()), rel=1e-4)
    with pytest.raises(InputError, match="no output of annotator 'nobody'"):
        TrainSet(data, _settings(config, target_annotator="nobody"))[(FAKE, 0, 0)]
    ev = EvalSet(data.test, _settings(config))
    item = ev[1]
    assert item["target"].item() == data.test[1][schema.COUNT] and item["index"].item() == 1
    assert item["pixel_values"].shape == (3, 48, 64)


def test_collate_groups_by_size_and_keeps_positions():
    def sample(h, w, v):
        return {"pixel_values": torch.full((3, h, w), float(v)), "target": torch.zeros(1, h // 8, w // 8)}

    groups = collate([sample(16, 16, 0), sample(24, 16, 1), sample(16, 16, 2)])
    assert [g["position"].tolist() for g in groups] == [[0, 2], [1]]
    assert groups[0]["pixel_values"].shape == (2, 3, 16, 16)
    assert groups[0]["pixel_values"][1, 0, 0, 0].item() == 2.0


def test_depth_and_classification_targets(tmp_path):
    real = write_real_dataset(tmp_path / "dreal", "depth", sizes={"train": 2, "validation": 1, "test": 1})
    fake = write_fake_dataset(tmp_path / "dfake", "depth", per_prompt=2)
    cfg = TrainConfig(task="depth", real=str(real), fake=str(fake), mixing="fake-only", output_dir=str(tmp_path / "o"))
    data = load_training_data(cfg)
    ts = TrainSet(data, SampleSettings(task="depth", hflip=False))
    true = maps.decode(data.train.with_format("numpy")[0][schema.DEPTH])
    np.testing.assert_allclose(ts[(REAL, 0, 0)]["target"][0].numpy(), true)
    f = ts[(FAKE, 0, 0)]["target"]
    small = maps.decode(schema.fake_target_map(data.fake[0], schema.DEPTH))
    assert f.shape == (1, 48, 64) and abs(f.mean().item() - small.mean()) < 0.05 * small.mean()

    creal = write_real_dataset(tmp_path / "creal", "classification", sizes={"train": 3, "validation": 1, "test": 1})
    cfake = write_fake_dataset(tmp_path / "cfake", "classification", prompts=["a", "b"], per_prompt=1)
    ccfg = TrainConfig(task="classification", real=str(creal), fake=str(cfake), mixing="fake-only",
                       output_dir=str(tmp_path / "o2"))
    cdata = load_training_data(ccfg)
    assert cdata.class_names == ["cat", "dog", "bird"]
    cts = TrainSet(cdata, SampleSettings(task="classification"))
    assert cts[(FAKE, 1, 0)]["target"].item() == 1 and cts[(REAL, 2, 0)]["target"].item() == 2
    assert TrainSet(cdata, SampleSettings(task="classification", target_annotator="annotator_b"))[
        (FAKE, 1, 0)]["target"].item() == 2  # annotator_b's (wrong) prediction
    other = write_fake_dataset(tmp_path / "ofake", "classification", class_names=("x", "y", "z"))
    with pytest.raises(InputError, match="class names"):
        load_training_data(TrainConfig(task="classification", real=str(creal), fake=str(other), mixing="fake-only",
                                       output_dir=str(tmp_path / "o3")))


def test_dataset_checks_and_local_cache(tmp_path):
    a = write_real_dataset(tmp_path / "a" / "real", "counting", sizes={"train": 2, "validation": 1, "test": 1})
    cfg = TrainConfig(task="counting", real=str(a), output_dir=str(tmp_path / "o"))
    assert len(load_training_data(cfg).train) == 2
    # a different folder with the same name must not come back from the datasets cache
    b = write_real_dataset(tmp_path / "b" / "real", "depth", sizes={"train": 3, "validation": 1, "test": 1})
    data = load_training_data(TrainConfig(task="depth", real=str(b), output_dir=str(tmp_path / "o")))
    assert len(data.train) == 3 and schema.DEPTH in data.train.column_names
    with pytest.raises(InputError, match="needs columns image, points, count; missing points, count"):
        load_training_data(TrainConfig(task="counting", real=str(b), output_dir=str(tmp_path / "o")))
    c = write_real_dataset(tmp_path / "c", "counting", sizes={"train": 2, "test": 1})
    with pytest.raises(InputError, match="missing validation"):
        load_training_data(TrainConfig(task="counting", real=str(c), output_dir=str(tmp_path / "o")))


def test_config_from_yaml_and_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"real": "r", "fake": "f", "mixing": "promptmix", "r_mix": 500, "lr": "1e-4",
                                    "epochs": 5, "output_dir": "out"}))
    parser = build_parser("counting")
    args = parser.parse_args(["--config", str(path), "--r-mix", "7", "--model", "csrnet", "--no-hflip",
                              "--lr-grid", "1e-2", "1e-3"])
    cfg = config_from_args(args, task="counting")
    assert (cfg.r_mix, cfg.lr, cfg.epochs, cfg.model, cfg.hflip, cfg.lr_grid) == (7, 1e-4, 5, "csrnet", False,
                                                                                  (1e-2, 1e-3))
    assert TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg  # the saved config reads back
    bad = {"task": "counting", "real": "r", "output_dir": "o"}
    with pytest.raises(ConfigError, match="fake: expected a fake dataset"):
        TrainConfig(**bad, mixing="promptmix", r_mix=3)
    with pytest.raises(ConfigError, match="r_mix"):
        TrainConfig(**bad, mixing="promptmix", fake="f")
    with pytest.raises(ConfigError, match="model: expected a counting model"):
        TrainConfig(**bad, model="guidedepth")
    with pytest.raises(ConfigError, match="crop_size: expected a positive multiple"):
        TrainConfig(**bad, crop_size=30)
    counting_yaml = tmp_path / "counting.yaml"
    counting_yaml.write_text(yaml.safe_dump({"task": "counting", "real": "r", "output_dir": "o"}))
    with pytest.raises(ConfigError, match="task: this script trains a depth model"):
        config_from_args(build_parser("depth").parse_args(["--config", str(counting_yaml)]), task="depth")


@pytest.mark.parametrize("rounding", ["floor", "ceil"])
def test_crop_targets_equal_the_full_frame_path(rounding):
    """The crop-only targets (heads, an annotator's map, a depth map) equal map -> crop (padded) -> flip -> cells."""
    import torch.nn.functional as F

    from promptmix.density import align_density, crop_density_target, crop_map_target, grid_size
    from promptmix.training.train.data import _pad_to, crop_resize_map

    rng = np.random.default_rng(0)
    h, w, s = 45, 70, 8
    points = rng.uniform([-3, -3], [w + 3, h + 3], size=(40, 2))
    small = rng.random((h // 8, w // 8)).astype(np.float32)
    depth_small = rng.random((12, 17)).astype(np.float32) + 1
    full_density = density_map(points, h, w, sigma=3.0, truncate=2.0)
    full_small = align_density(small, (h, w), (h, w), out_stride=1)
    full_depth = F.interpolate(torch.from_numpy(depth_small)[None, None], size=(h, w), mode="bilinear",
                               align_corners=False)[0, 0].numpy()
    for window in [(5, 9, 32, 32), (20, 50, 32, 32), (0, 0, 48, 72), (3, 60, 16, 16)]:
        y, x, ch, cw = window
        grid = (grid_size(ch, s, rounding), grid_size(cw, s, rounding))
        for flip in (False, True):
            def crop(m):
                c = _pad_to(m[y:y + ch, x:x + cw], ch, cw)
                return np.ascontiguousarray(c[:, ::-1] if flip else c)
            want = align_density(crop(full_density), (ch, cw), grid, stride=1, out_stride=s)
            got = crop_density_target(points, (h, w), window, grid, s, sigma=3.0, truncate=2.0, hflip=flip)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
            want = align_density(crop(full_small), (ch, cw), grid, stride=1, out_stride=s)
            np.testing.assert_allclose(crop_map_target(small, (h, w), window, grid, s, hflip=flip), want,
                                       rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(crop_resize_map(depth_small, (h, w), window, flip), crop(full_depth),
                                       rtol=1e-5, atol=1e-5)


def test_pixels_leave_the_loader_as_uint8_and_normalise_as_before(counting_data):
    from promptmix.training.train.data import normalize, to_tensor

    config, data = counting_data
    s = TrainSet(data, _settings(config))[(REAL, 1, 0)]
    assert s["pixel_values"].dtype == torch.uint8
    image = decode_image(data.train.cast_column(schema.IMAGE, Image(decode=False))[1][schema.IMAGE])
    assert torch.equal(normalize(to_uint8_tensor(image)[None])[0], to_tensor(image))


def test_a_streamed_fake_set_trains_with_the_same_per_epoch_draw(tmp_path):
    """streaming: true reads the fake rows with load_dataset(..., streaming=True), caches nothing whole, and an
    epoch's samples are exactly those of the in-memory dataset (same r_mix draw, same crops and targets)."""
    import datasets

    from promptmix.training.train.data import StreamedFake
    from promptmix.training.train.mixing import epoch_batches

    real = write_real_dataset(tmp_path / "real", "counting", sizes={"train": 3, "validation": 1, "test": 1})
    fake = write_fake_dataset(tmp_path / "fake", "counting", prompts=["p", "q"], per_prompt=5, all_extra=3)
    common = dict(task="counting", real=str(real), fake=str(fake), mixing="promptmix", r_mix=4, crop_size=16,
                  output_dir=str(tmp_path / "out"))
    for config_name in ("kept", "all"):
        plain_cfg = TrainConfig(**common, fake_config=config_name)
        streamed_cfg = TrainConfig(**common, fake_config=config_name, streaming=True)
        plain = load_training_data(plain_cfg)
        cache = datasets.config.HF_DATASETS_CACHE
        before = set(map(str, cache.rglob("*.arrow"))) if cache.exists() else set()
        streamed = load_training_data(streamed_cfg)
        assert isinstance(streamed.fake, StreamedFake)
        assert len(streamed.fake) == len(plain.fake) == (10 if config_name == "kept" else 13)
        a, b = TrainSet(plain, _settings(plain_cfg)), TrainSet(streamed, _settings(streamed_cfg))
        for epoch in range(2):
            batches = epoch_batches(plain_cfg.mixing_spec(), len(plain.train), len(plain.fake), 2, epoch=epoch,
                                    seed=0)
            keyed = [[(src, row, 10 * i + j) for j, (src, row) in enumerate(batch)] for i, batch in enumerate(batches)]
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            b.prefetch(keyed)
            fakes = [k for batch in keyed for k in batch if k[0] == FAKE]
            assert len(fakes) == 4 and len(b.readers[FAKE].rows) == 4  # only the epoch's draw is held
            for key in (k for batch in keyed for k in batch):
                x, y = a[key], b[key]
                assert torch.equal(x["pixel_values"], y["pixel_values"]) and torch.equal(x["target"], y["target"])
        after = set(map(str, cache.rglob("*.arrow"))) if cache.exists() else set()
        assert after == before  # the stream cached nothing (the in-memory load caches the whole set)
    with pytest.raises(ConfigError, match="streaming"):
        TrainConfig(**{**common, "mixing": "interleave"}, streaming=True)
    with pytest.raises(ConfigError, match="streaming"):
        TrainConfig(**{**common, "r_mix": None, "mixing": "fake-only"}, streaming=True)
