"""Real-dataset builders on small fixtures in the exact raw formats: round trip through datasets.load_dataset,
splits, stored bytes and metadata, the CLI, and the one loader (load_real, task_of)."""

from __future__ import annotations

import io
import os

import h5py
import numpy as np
import pytest
import scipy.io
from datasets import ClassLabel, Dataset, Features, Value, load_dataset
from datasets import Image as ImageFeature
from PIL import Image

from promptmix import maps
from promptmix import schema as S
from promptmix.builders import build_from_hub, build_imagefolder, build_shanghaitech, build_ucf_qnrf, load_real, task_of
from promptmix.errors import InputError
from promptmix.jpeg import estimate_jpeg_quality
from promptmix.testing.raw_datasets import (write_imagefolder, write_nyu_labeled_mat, write_shanghaitech_raw,
                                            write_ucf_qnrf_raw)


def _undecoded(ds):
    return ds.cast_column(S.IMAGE, ImageFeature(decode=False))


def _load(path):
    return load_dataset(str(path))


# -- ShanghaiTech ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sht_a(tmp_path_factory):
    root = write_shanghaitech_raw(tmp_path_factory.mktemp("raw"), part="A", n_train=10, n_test=3, size=(48, 32),
                                  grayscale_every=4, people=(3, 12), off_frame=1, seed=4)
    out = tmp_path_factory.mktemp("built") / "shta"
    report = build_shanghaitech(root, "A", out)
    return root, out, report


def test_shanghaitech_round_trip(sht_a):
    root, out, report = sht_a
    assert (out / "README.md").is_file() and list((out / "data").glob("train-*.parquet"))
    ds = _load(out)
    assert list(ds) == ["train", "validation", "test"]
    assert {k: len(v) for k, v in ds.items()} == {"train": 8, "validation": 2, "test": 3} == report.rows  # A: 20 %
    assert ds["train"].features == S.COUNTING_REAL
    ids = [i for split in ds.values() for i in split[S.IMAGE_ID]]
    assert len(set(ids)) == 13 and "test_data/IMG_1" in ids and "train_data/IMG_1" in ids
    gray = 0
    for split in ds.values():
        for row in _undecoded(split):
            folder, name = row[S.IMAGE_ID].split("/")
            src = root / "part_A" / folder / "images" / f"{name}.jpg"
            assert row[S.IMAGE]["bytes"] == src.read_bytes()  # stored as downloaded
            pts = scipy.io.loadmat(root / "part_A" / folder / "ground-truth" / f"GT_{name}.mat")["image_info"][0, 0][0, 0][0]
            np.testing.assert_array_equal(np.asarray(row[S.POINTS], dtype=np.float32), pts.astype(np.float32))
            assert row[S.COUNT] == len(pts)
            with Image.open(src) as im:
                assert (row[S.WIDTH], row[S.HEIGHT]) == im.size == (48, 32)
                assert row[S.IS_GRAYSCALE] == (im.mode == "L")
                gray += im.mode == "L"
            assert row[S.JPEG_QUALITY] == 75
    assert gray == 3  # every 4th of 13 images
    # one point per image a fraction of a pixel off-frame: kept, counted and reported
    assert report.off_frame_points == report.off_frame_images == 13
    assert 0 < report.off_frame_max_px < 0.9
    assert "13 annotated points in 13 images lie outside the frame" in report.summary()


def test_shanghaitech_validation_split_is_seeded_and_part_b_takes_ten_percent(sht_a, tmp_path):
    root, out, _ = sht_a
    again = build_shanghaitech(root, "A", tmp_path / "again")
    assert again.rows == {"train": 8, "validation": 2, "test": 3}
    first = sorted(_load(out)["validation"][S.IMAGE_ID])
    assert sorted(_load(tmp_path / "again")["validation"][S.IMAGE_ID]) == first
    raw_b = write_shanghaitech_raw(tmp_path / "rawb", part="B", n_train=10, n_test=2, size=(32, 24), people=(2, 5))
    assert build_shanghaitech(raw_b, "b", tmp_path / "shtb").rows == {"train": 9, "validation": 1, "test": 2}


def test_shanghaitech_command_line(tmp_path, capsys):
    from promptmix.cli import build_parser, main

    raw = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=4, n_test=2, size=(32, 24), people=(2, 4))
    assert main(["real", "shanghaitech", "--root", str(raw), "--part", "B", "--out", str(tmp_path / "d")]) == 0
    assert "train 3, validation 1, test 2" in capsys.readouterr().out
    assert task_of(load_real(str(tmp_path / "d"))) == "counting"
    assert main(["real", "shanghaitech", "--root", str(tmp_path / "nothing"), "--part", "B",
                 "--out", str(tmp_path / "e")]) == 1
    assert "nothing" in capsys.readouterr().err and not (tmp_path / "e").exists()
    real = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "real" in a.choices).choices["real"]
    sub = next(a for a in real._actions if getattr(a, "choices", None) and "hub" in a.choices).choices
    for name in ("shanghaitech", "ucf-qnrf", "nyu-depth-v2", "imagefolder", "hub"):
        assert f"promptmix real {name} " in sub[name].format_help()  # every subcommand's --help has an example


# -- UCF-QNRF ----------------------------------------------------------------------------------------------------
def test_ucf_qnrf_resizes_to_fit_1920_and_scales_points(tmp_path):
    raw = write_ucf_qnrf_raw(tmp_path / "raw", n_train=3, n_test=1, size=(2400, 40), people=(4, 8), quality=85)
    report = build_ucf_qnrf(raw, tmp_path / "q")
    assert report.rows == {"train": 2, "validation": 1, "test": 1}
    ds = _load(tmp_path / "q")
    row = _undecoded(ds["test"])[0]
    assert row[S.IMAGE_ID] == "Test/img_0001"
    assert (row[S.WIDTH], row[S.HEIGHT]) == (1920, 32)
    with Image.open(io.BytesIO(row[S.IMAGE]["bytes"])) as im:
        assert im.size == (1920, 32)
    assert estimate_jpeg_quality(row[S.IMAGE]["bytes"]).quality == row[S.JPEG_QUALITY] == 85  # tables kept
    src = scipy.io.loadmat(raw / "Test" / "img_0001_ann.mat")["annPoints"]
    np.testing.assert_allclose(row[S.POINTS], src * [1920 / 2400, 32 / 40], rtol=1e-6)
    assert row[S.COUNT] == len(src)


def test_ucf_qnrf_small_images_are_stored_unchanged(tmp_path):
    raw = write_ucf_qnrf_raw(tmp_path / "raw", n_train=2, n_test=1, size=(40, 30), people=(2, 4))
    build_ucf_qnrf(raw, tmp_path / "q")
    row = _undecoded(_load(tmp_path / "q")["test"])[0]
    assert row[S.IMAGE]["bytes"] == (raw / "Test" / "img_0001.jpg").read_bytes()
    np.testing.assert_allclose(row[S.POINTS], scipy.io.loadmat(raw / "Test" / "img_0001_ann.mat")["annPoints"],
                               rtol=1e-6)


# -- NYU Depth V2 -------------------------------------------------------------------------------------------------
def test_nyu_depth_v2_round_trip(tmp_path, capsys):
    from promptmix.cli import main

    mat = write_nyu_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", n=10, size=(24, 16))
    assert main(["real", "nyu-depth-v2", "--mat", str(mat), "--out", str(tmp_path / "nyu")]) == 0
    assert "train 7, validation 1, test 2" in capsys.readouterr().out  # 70/10/20
    ds = load_real(str(tmp_path / "nyu"))
    assert task_of(ds["train"].features) == "depth" and ds["train"].features == S.DEPTH_REAL
    with h5py.File(mat, "r") as f:
        images, depths = f["images"][()], f["depths"][()]
        scenes = ["".join(chr(c) for c in f[r][()].ravel()) for r in f["scenes"][0]]
    seen = set()
    for split in ds.values():
        for row in split.with_format("numpy"):
            i = int(row[S.IMAGE_ID].split("_")[1]) - 1
            seen.add(i)
            np.testing.assert_array_equal(maps.decode(row[S.DEPTH]), depths[i].T)
            assert row[S.SCENE] == scenes[i]
        for row in split:
            i = int(row[S.IMAGE_ID].split("_")[1]) - 1
            np.testing.assert_array_equal(np.asarray(row[S.IMAGE]), images[i].transpose(2, 1, 0))  # PNG: lossless
            assert (row[S.WIDTH], row[S.HEIGHT], row[S.JPEG_QUALITY]) == (24, 16, None)
    assert seen == set(range(10))


# -- classification --------------------------------------------------------------------------------------------------
def test_imagefolder_with_train_test_levels_and_reduced(tmp_path, capsys):
    from promptmix.cli import main

    root = write_imagefolder(tmp_path / "if", ["dog", "cat", "bird"], per_class=10, with_split=True,
                             test_per_class=2, size=(16, 16))
    assert main(["real", "imagefolder", "--root", str(root), "--reduced", "9", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "train 9, validation 3, test 6" in out and "3 classes: bird, cat, dog" in out
    ds = _load(tmp_path / "c")
    assert ds["train"].features == S.classification_real(["bird", "cat", "dog"])
    names = ds["train"].features[S.LABEL].names
    for split in ds.values():
        for row in _undecoded(split):
            level, cls, stem = row[S.IMAGE_ID].split("/")
            assert names[row[S.LABEL]] == cls
            assert row[S.IMAGE]["bytes"] == (root / level / cls / f"{stem}.jpg").read_bytes()
            assert row[S.JPEG_QUALITY] == 90
    assert all(i.startswith("test/") for i in ds["test"][S.IMAGE_ID])
    assert sorted(np.bincount(ds["train"][S.LABEL]).tolist()) == [3, 3, 3]  # stratified
    assert sorted(np.bincount(ds["validation"][S.LABEL]).tolist()) == [1, 1, 1]
    assert not set(ds["train"][S.IMAGE_ID]) & set(ds["validation"][S.IMAGE_ID])


def test_imagefolder_without_split_level_takes_test_and_validation_from_all(tmp_path):
    root = write_imagefolder(tmp_path / "flat", ["a", "b"], per_class=10, size=(16, 16))
    report = build_imagefolder(root, tmp_path / "c")
    assert report.rows == {"train": 14, "validation": 2, "test": 4}  # 20 % of 20, then 10 % of 16
    ds = _load(tmp_path / "c")
    assert np.bincount(ds["test"][S.LABEL]).tolist() == [2, 2]
    ids = [i for split in ds.values() for i in split[S.IMAGE_ID]]
    assert len(set(ids)) == 20
    report = build_imagefolder(root, tmp_path / "c", reduced=50)  # more than there are: all kept, with a note
    assert report.rows["train"] == 14 and "reduced=50" in report.summary()


def _write_parquet_dataset(folder, features, rows):
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(rows, features=features).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (value, 255 - value, 40)).save(buf, "PNG")
    return buf.getvalue()


def test_hub_source_with_string_labels_and_custom_columns(tmp_path):
    feats = Features({"img": ImageFeature(), "kind": Value("string"), "extra": Value("int32")})
    rows = [{"img": {"bytes": _png(i * 10), "path": None}, "kind": ["zebra", "apple"][i % 2], "extra": i}
            for i in range(20)]
    _write_parquet_dataset(tmp_path / "src", feats, rows)
    report = build_from_hub(str(tmp_path / "src"), tmp_path / "c", image_column="img", label_column="kind",
                            reduced=6)
    assert report.rows == {"train": 6, "validation": 2, "test": 4} and report.class_names == ["apple", "zebra"]
    ds = load_real(str(tmp_path / "c"))
    assert task_of(ds) == "classification"
    for split in ds.values():
        for row in split:
            i = int(row[S.IMAGE_ID].split("-")[1])
            assert row[S.LABEL] == (1 if i % 2 == 0 else 0)
            assert np.asarray(row[S.IMAGE])[0, 0].tolist() == [i * 10, 255 - i * 10, 40]
            assert row[S.JPEG_QUALITY] is None


def test_hub_source_keeps_its_splits_and_class_label(tmp_path):
    feats = Features({"image": ImageFeature(), "fine_label": ClassLabel(names=["x", "y", "z"])})
    folder = tmp_path / "src"
    (folder / "data").mkdir(parents=True)
    for split, n in (("train", 9), ("test", 3)):
        Dataset.from_list([{"image": {"bytes": _png(i), "path": None}, "fine_label": i % 3} for i in range(n)],
                          features=feats).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    report = build_from_hub(str(folder), tmp_path / "c", label_column="fine_label")
    assert report.rows == {"train": 8, "validation": 1, "test": 3}
    ds = _load(tmp_path / "c")
    assert ds["test"][S.IMAGE_ID] == ["test-000000", "test-000001", "test-000002"]
    assert ds["test"].features[S.LABEL].names == ["x", "y", "z"]


def test_hub_source_can_be_a_save_to_disk_folder(tmp_path):
    feats = Features({"image": ImageFeature(), "label": ClassLabel(names=["x", "y"])})
    rows = [{"image": {"bytes": _png(i), "path": None}, "label": i % 2} for i in range(10)]
    Dataset.from_list(rows, features=feats).save_to_disk(str(tmp_path / "one"))  # a single Dataset: train
    report = build_from_hub(str(tmp_path / "one"), tmp_path / "c")
    assert sum(report.rows.values()) == 10 and report.class_names == ["x", "y"]


# -- the loader ---------------------------------------------------------------------------------------------------------
def test_load_real_errors_name_the_reference(tmp_path):
    with pytest.raises(InputError, match=r"real dataset '.*missing-folder': no such folder"):
        load_real(str(tmp_path / "missing-folder"))
    with pytest.raises(InputError, match=r"real dataset 'nobody/no-such-dataset'.*Hub"):
        load_real("nobody/no-such-dataset")  # tests run offline
    with pytest.raises(InputError, match="cannot tell the task"):
        task_of(Features({"image": ImageFeature(), "caption": Value("string")}))


def test_load_real_never_serves_a_stale_cache_for_a_folder_rewritten_by_another_tool(tmp_path):
    feats = Features({"image": ImageFeature(), "image_id": Value("string"), "label": ClassLabel(names=["a", "b"])})
    readme = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*.parquet\n---\n"
    for tag, n in (("first", 3), ("second", 5)):
        folder = tmp_path / tag / "real"  # same base name, same README: datasets' own cache key collides
        _write_parquet_dataset(folder, feats, [{"image": {"bytes": _png(i), "path": None}, "image_id": f"{tag}-{i}",
                                                "label": i % 2} for i in range(n)])
        (folder / "README.md").write_text(readme)
    assert load_real(str(tmp_path / "first" / "real"))["train"]["image_id"][0] == "first-0"
    assert load_real(str(tmp_path / "second" / "real"))["train"]["image_id"] == [f"second-{i}" for i in range(5)]
    # rewritten in place by another tool
    folder = tmp_path / "first" / "real"
    for p in (folder / "data").iterdir():
        os.remove(p)
    Dataset.from_list([{"image": {"bytes": _png(1), "path": None}, "image_id": "rewritten", "label": 1}],
                      features=feats).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    assert load_real(str(folder))["train"]["image_id"] == ["rewritten"]


def test_progress_bars_stay_silent_for_quick_steps(monkeypatch):
    from promptmix.utils.progress import progress

    monkeypatch.delenv("PROMPTMIX_NO_PROGRESS", raising=False)
    quiet, shown = io.StringIO(), io.StringIO()
    assert sum(progress(range(5), desc="quick", file=quiet)) == 10
    assert quiet.getvalue() == ""
    assert sum(progress(range(5), desc="shown", file=shown, delay=0)) == 10
    assert "shown" in shown.getvalue()
