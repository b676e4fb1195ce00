"""PANDA-Crowd: the builder on a fixture in the download's own format, and box-matched density kernels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import load_dataset

from promptmix import schema as S
from promptmix.builders import build_panda_crowd
from promptmix.builders.panda import panda_split
from promptmix.density import box_density_map, density_map, reference_box_density_map_slow
from promptmix.errors import InputError
from promptmix.testing.raw_datasets import PANDA_SCENES, write_panda_crowd_raw


@pytest.fixture(scope="module")
def panda(tmp_path_factory):
    """45 images (the release's count) of 96 x 54, built at 64 x 36 (the paper's 2560 x 1440, scaled down)."""
    root = tmp_path_factory.mktemp("panda")
    raw = write_panda_crowd_raw(root / "raw", n_images=45, size=(96, 54), people=(5, 15), ignore_regions=2)
    report = build_panda_crowd(raw, root / "built", size=(64, 36))
    return raw, root / "built", report


def test_builder_round_trips_the_download_format(panda):
    raw, built, report = panda
    annos = json.loads((raw / "image_annos" / "crowd_head_bbox.json").read_text())
    assert report.rows == {"train": 30, "validation": 6, "test": 9}  # the paper's 30 / 6 / 9
    assert report.notes == ["90 non-person regions (ignore / fake person / crowd) left out"]
    ds = load_dataset(str(built))
    assert set(ds["train"].features) == set(S.COUNTING_REAL_BOXES)
    rows = {r[S.IMAGE_ID]: r for split in ds.values() for r in split}
    assert len(rows) == 45 and {k.split("/")[0] for k in rows} == set(PANDA_SCENES)
    for key, record in annos.items():
        row = rows[key[:-len(".jpg")]]
        people = [o for o in record["objects list"] if o["category"] == "person"]
        assert row[S.COUNT] == len(people) == len(row[S.POINTS]) == len(row[S.BOXES])
        assert (row[S.WIDTH], row[S.HEIGHT]) == (64, 36) and row[S.IMAGE].size == (64, 36)
        want = np.array([[o["rect"]["tl"]["x"], o["rect"]["tl"]["y"], o["rect"]["br"]["x"], o["rect"]["br"]["y"]]
                         for o in people])
        want = np.clip(want, 0, 1) * [64, 36, 64, 36]  # normalised -> pixels of the stored image
        np.testing.assert_allclose(row[S.BOXES], want, atol=1e-3)
        centres = np.stack([(want[:, 0] + want[:, 2]) / 2, (want[:, 1] + want[:, 3]) / 2], 1)
        np.testing.assert_allclose(row[S.POINTS], centres, atol=1e-3)  # points = box centres
        assert row[S.JPEG_QUALITY] == 90  # re-encoded with the source's tables


def test_split_is_seeded_and_decided_from_the_sorted_list(panda):
    _, built, _ = panda
    ds = load_dataset(str(built))
    assert panda_split(45) == panda_split(45) and panda_split(45) != panda_split(45, seed=0)
    assert [panda_split(n).count("test") for n in (9, 45, 90)] == [2, 9, 18]
    from promptmix.builders.common import natural_key

    landed = {image_id: split for split in ds for image_id in ds[split][S.IMAGE_ID]}
    keys = sorted(landed, key=natural_key)
    assert [landed[k] for k in keys] == panda_split(45)  # the permutation of the sorted list, cut 30 / 6 / 9


def test_box_density_keeps_mass_and_matches_the_reference_on_random_boxes():
    rng = np.random.default_rng(0)
    for trial in range(5):
        n = int(rng.integers(1, 80))
        x0, y0 = rng.uniform(-15, 110, n), rng.uniform(-15, 70, n)
        boxes = np.stack([x0, y0, x0 + rng.uniform(0, 40, n), y0 + rng.uniform(0, 25, n)], axis=1)
        fast = box_density_map(boxes, 64, 96)
        slow = reference_box_density_map_slow(boxes, 64, 96)
        np.testing.assert_allclose(fast, slow, atol=2e-6)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = int(((cx >= 0) & (cx < 96) & (cy >= 0) & (cy < 64)).sum())
        assert fast.sum() == pytest.approx(inside, abs=1e-3)  # every in-frame person's mass is 1
    # a 15 x 15 box gets exactly the paper's fixed kernel (15 px, sigma 4)
    pt = np.array([[40.3, 30.7]])
    box = np.array([[40.3 - 7.5, 30.7 - 7.5, 40.3 + 7.5, 30.7 + 7.5]])
    np.testing.assert_allclose(box_density_map(box, 64, 96), density_map(pt, 64, 96, sigma=4.0, truncate=7 / 4),
                               atol=1e-7)
    # a wide box spreads wider than a narrow one, each along its own axis
    wide = box_density_map(np.array([[10.0, 30.0, 60.0, 34.0]]), 64, 96)
    assert (wide.sum(0) > 1e-4).sum() > 5 * (wide.sum(1) > 1e-4).sum()
    with pytest.raises(InputError, match="x1 >= x0"):
        box_density_map(np.array([[5.0, 5.0, 1.0, 9.0]]), 10, 10)


def test_training_targets_use_the_box_kernel(panda, tmp_path):
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.data import SampleSettings, TrainSet, load_training_data
    from promptmix.training.train.mixing import REAL

    _, built, _ = panda
    cfg = TrainConfig(task="counting", real=str(built), output_dir=str(tmp_path / "o"), density_kernel="box")
    data = load_training_data(cfg)
    box_set = TrainSet(data, SampleSettings.from_config(cfg, 8))
    fixed_set = TrainSet(data, SampleSettings(task="counting", output_stride=8, hflip=False))
    row = data.train[0]
    box_target, fixed_target = box_set[(REAL, 0, 0)]["target"], fixed_set[(REAL, 0, 0)]["target"]
    assert box_target.shape == fixed_target.shape == (1, 4, 8)  # 36 x 64 on the stride-8 grid: 4 x 8 cells
    full = box_density_map(np.asarray(row[S.BOXES]), 36, 64)
    # nothing is trimmed any more: the last row of cells takes the 4 leftover pixel rows, so all the mass is kept
    assert box_target.sum().item() == pytest.approx(float(full.sum()), rel=1e-4)
    assert not np.allclose(box_target.numpy(), fixed_target.numpy())
    with pytest.raises(InputError, match="no 'boxes' column"):
        from promptmix.testing.synthetic import write_real_dataset

        plain = write_real_dataset(tmp_path / "plain", "counting")
        TrainSet(load_training_data(TrainConfig(task="counting", real=str(plain), output_dir=str(tmp_path / "p"))),
                 SampleSettings(task="counting", density_kernel="box"))


def test_bad_annotations_fail_clearly(tmp_path):
    raw = write_panda_crowd_raw(tmp_path / "raw", n_images=6, size=(48, 27))
    path = raw / "image_annos" / "crowd_head_bbox.json"
    annos = json.loads(path.read_text())
    from promptmix.builders.common import natural_key

    keys = sorted(annos, key=natural_key)
    key = keys[panda_split(len(keys)).index("train")]  # a training image: leaving it out empties no split
    annos[key]["objects list"][0] = {"rect": {"x": 0.5, "y": 0.5}}  # a head point, not a box
    path.write_text(json.dumps(annos))
    with pytest.raises(InputError, match="head point.*head-box annotation"):
        build_panda_crowd(raw, tmp_path / "o1", size=(32, 18))
    annos[key]["objects list"][0] = {"rect": {"tl": {"x": 0.1, "y": 0.1}, "br": {"x": 0.2, "y": 0.2}}}
    annos[key]["image size"] = {"height": 999, "width": 48}
    path.write_text(json.dumps(annos))
    with pytest.raises(InputError, match="'image size' is 48 x 999 but the file is 48 x 27"):
        build_panda_crowd(raw, tmp_path / "o2", size=(32, 18))
    report = build_panda_crowd(raw, tmp_path / "o3", size=(32, 18), skip_bad=True)  # that image left out
    assert report.total_rows == 5 and len(report.skipped) == 1 and "image size" in report.skipped[0].reason
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object mapping image paths"):
        build_panda_crowd(raw, tmp_path / "o4")
    with pytest.raises(InputError, match="no \\*.json annotation file"):
        build_panda_crowd(tmp_path / "raw" / "image_train", tmp_path / "o5")


def test_cli_and_pipeline_config(tmp_path, capsys):
    from promptmix.cli import main
    from promptmix.pipeline.config import RealConfig

    raw = write_panda_crowd_raw(tmp_path / "raw", n_images=5, size=(48, 27))
    assert main(["real", "panda-crowd", "--root", str(raw), "--out", str(tmp_path / "out"), "--size", "32x18"]) == 0
    out = capsys.readouterr().out
    assert "panda-crowd: wrote" in out and "train 3, validation 1, test 1" in out
    assert load_dataset(str(tmp_path / "out"), split="test")[0][S.IMAGE].size == (32, 18)
    real = RealConfig.from_dict({"builder": "panda-crowd", "root": str(raw), "options": {"size": [32, 18]}},
                                section="real")
    assert real.builder_task == "counting" and real.local_inputs() == [raw]
