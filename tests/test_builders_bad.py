"""Bad raw input: every case is a clear InputError naming the file and what was expected, or with skip_bad a
skip counted in the report; nothing is ever half-written."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
import scipy.io
from datasets import ClassLabel, Dataset, Features, load_dataset
from datasets import Image as ImageFeature
from PIL import Image

from promptmix import schema as S
from promptmix.builders import build_from_hub, build_imagefolder, build_nyu_depth_v2, build_shanghaitech, build_ucf_qnrf
from promptmix.errors import InputError
from promptmix.testing.raw_datasets import (write_imagefolder, write_nyu_labeled_mat, write_shanghaitech_raw,
                                            write_ucf_qnrf_raw)


@pytest.fixture
def sht(tmp_path):
    """A ShanghaiTech Part B download: 5 train, 2 test images of 32x24."""
    root = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=5, n_test=2, size=(32, 24), people=(2, 5))
    return root, root / "part_B" / "train_data"


def _no_leftovers(parent, name):
    return not [p.name for p in parent.iterdir() if p.name.startswith(f".{name}")]


def _exif_rotated_jpeg(path, size=(20, 12)):
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:, : size[0] // 2] = (250, 10, 10)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(path, "JPEG", quality=90, exif=exif.tobytes())


def _bad_image_cases():
    def missing(train):
        (train / "images" / "IMG_3.jpg").unlink()
        return "IMG_3.jpg: image file is missing"

    def truncated_header(train):
        p = train / "images" / "IMG_3.jpg"
        p.write_bytes(p.read_bytes()[:200])
        return "IMG_3.jpg: corrupt or truncated"

    def truncated_data(train):
        p = train / "images" / "IMG_3.jpg"
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 150])
        return "IMG_3.jpg: corrupt or truncated image data"

    def not_an_image(train):
        (train / "images" / "IMG_3.jpg").write_bytes(b"this is not a picture")
        return "IMG_3.jpg: not a readable image"

    def cmyk(train):
        Image.new("CMYK", (32, 24), (0, 50, 100, 0)).save(train / "images" / "IMG_3.jpg", "JPEG")
        return "IMG_3.jpg: CMYK image; expected RGB or grayscale"

    def sixteen_bit(train):
        (train / "images" / "IMG_3.jpg").unlink()
        Image.fromarray(np.full((24, 32), 40000, dtype=np.uint16)).save(train / "images" / "IMG_3.jpeg", "PNG")
        return r"IMG_3.jpeg: 16-bit image \(mode I;16.*\); expected 8 bits"

    def exif_rotated(train):
        _exif_rotated_jpeg(train / "images" / "IMG_3.jpg")
        return "IMG_3.jpg: EXIF orientation 6.*expected orientation 1"

    def missing_key(train):
        scipy.io.savemat(train / "ground-truth" / "GT_IMG_3.mat", {"points": np.zeros((2, 2))})
        return r"GT_IMG_3.mat: no variable 'image_info' \(found \['points'\]\)"

    def corrupt_mat(train):
        (train / "ground-truth" / "GT_IMG_3.mat").write_bytes(b"\x00garbage" * 20)
        return "GT_IMG_3.mat: not a readable MATLAB .mat file"

    def missing_gt(train):
        (train / "ground-truth" / "GT_IMG_3.mat").unlink()
        return "GT_IMG_3.mat: ShanghaiTech ground-truth file is missing"

    def nan_points(train):
        st = np.zeros((1, 1), dtype=[("location", "O"), ("number", "O")])
        st[0, 0]["location"] = np.array([[1.0, np.nan]])
        st[0, 0]["number"] = np.array([[1.0]])
        cell = np.empty((1, 1), dtype=object)
        cell[0, 0] = st
        scipy.io.savemat(train / "ground-truth" / "GT_IMG_3.mat", {"image_info": cell})
        return "GT_IMG_3.mat: head points contain NaN"

    return [missing, truncated_header, truncated_data, not_an_image, cmyk, sixteen_bit, exif_rotated, missing_key, corrupt_mat, missing_gt,
            nan_points]


@pytest.mark.parametrize("damage", _bad_image_cases(), ids=lambda f: f.__name__)
def test_a_bad_item_is_an_error_naming_it_or_a_counted_skip(sht, tmp_path, damage):
    root, train = sht
    expected = damage(train)
    out = tmp_path / "built"
    with pytest.raises(InputError, match=expected) as info:
        build_shanghaitech(root, "B", out)
    assert "--skip-bad" in str(info.value)
    assert not out.exists() and _no_leftovers(tmp_path, "built")  # nothing half-written
    report = build_shanghaitech(root, "B", out, skip_bad=True)
    assert len(report.skipped) == 1 and "IMG_3" in report.skipped[0].item
    assert report.total_rows == 6 and "skipped 1 bad items" in report.summary()
    ds = load_dataset(str(out))
    assert "train_data/IMG_3" not in [i for split in ds.values() for i in split[S.IMAGE_ID]]
    assert "IMG_3" in (out / "README.md").read_text()  # the card lists the skipped items


def test_skipping_a_bad_item_does_not_move_other_images_between_splits(sht, tmp_path):
    root, train = sht
    build_shanghaitech(root, "B", tmp_path / "good")
    validation = load_dataset(str(tmp_path / "good"))["validation"][S.IMAGE_ID]
    victim = next(i for i in ("train_data/IMG_1", "train_data/IMG_2", "train_data/IMG_4") if i not in validation)
    (train / "images" / f"{victim.split('/')[1]}.jpg").write_bytes(b"broken")
    build_shanghaitech(root, "B", tmp_path / "skipped", skip_bad=True)
    assert load_dataset(str(tmp_path / "skipped"))["validation"][S.IMAGE_ID] == validation


def test_a_failed_rebuild_leaves_the_previous_dataset_untouched(sht, tmp_path):
    root, train = sht
    out = tmp_path / "built"
    build_shanghaitech(root, "B", out)
    before = sorted((p.name, p.read_bytes()) for p in (out / "data").iterdir())
    (train / "images" / "IMG_2.jpg").write_bytes(b"broken")
    with pytest.raises(InputError, match="IMG_2.jpg"):
        build_shanghaitech(root, "B", out)
    assert sorted((p.name, p.read_bytes()) for p in (out / "data").iterdir()) == before
    assert _no_leftovers(tmp_path, "built")


def test_refuses_to_replace_a_folder_that_is_not_a_dataset(sht, tmp_path):
    root, _ = sht
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(InputError, match="did not write.*thesis.tex"):
        build_shanghaitech(root, "B", precious)
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_missing_or_empty_layout_folders(tmp_path):
    with pytest.raises(InputError, match=r"no folder .*part_A.*IMG_1\.jpg"):
        build_shanghaitech(tmp_path, "A", tmp_path / "out")
    for sub in ("images", "ground-truth"):
        for split in ("train_data", "test_data"):
            (tmp_path / "part_A" / split / sub).mkdir(parents=True)
    with pytest.raises(InputError, match=r"train_data/images and .* hold no IMG_n\.jpg"):
        build_shanghaitech(tmp_path, "A", tmp_path / "out")
    with pytest.raises(InputError, match=r"no folder .*Train"):
        build_ucf_qnrf(tmp_path, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no class folders"):
        build_imagefolder(empty, tmp_path / "out")
    (empty / "cat").mkdir()
    with pytest.raises(InputError, match=r"class folder .*cat holds no images"):
        build_imagefolder(empty, tmp_path / "out")


def test_every_item_of_a_split_skipped_is_an_error(tmp_path):
    root = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=3, n_test=1, size=(32, 24), people=(2, 3))
    (root / "part_B" / "test_data" / "images" / "IMG_1.jpg").write_bytes(b"broken")
    with pytest.raises(InputError, match="the test split would be empty"):
        build_shanghaitech(root, "B", tmp_path / "out", skip_bad=True)


def test_ucf_qnrf_annotation_without_ann_points(tmp_path):
    root = write_ucf_qnrf_raw(tmp_path / "raw", n_train=3, n_test=1, size=(32, 24), people=(2, 3))
    scipy.io.savemat(root / "Train" / "img_0002_ann.mat", {"locations": np.zeros((1, 2))})
    with pytest.raises(InputError, match=r"img_0002_ann\.mat: no variable 'annPoints'"):
        build_ucf_qnrf(root, tmp_path / "out")
    assert build_ucf_qnrf(root, tmp_path / "out", skip_bad=True).total_rows == 3


def test_points_far_outside_are_kept_and_reported(tmp_path):
    root = write_ucf_qnrf_raw(tmp_path / "raw", n_train=2, n_test=1, size=(32, 24), people=(2, 3))
    pts = scipy.io.loadmat(root / "Test" / "img_0001_ann.mat")["annPoints"]
    scipy.io.savemat(root / "Test" / "img_0001_ann.mat", {"annPoints": np.concatenate([pts, [[-0.4, 3.0]]])})
    report = build_ucf_qnrf(root, tmp_path / "out")
    assert report.off_frame_points == 1 and report.off_frame_max_px == pytest.approx(0.4)
    row = load_dataset(str(tmp_path / "out"))["test"][0]
    assert row[S.COUNT] == len(pts) + 1 and row[S.POINTS][-1] == pytest.approx([-0.4, 3.0])


def test_classification_stores_exif_rotated_images_upright(tmp_path):
    root = write_imagefolder(tmp_path / "if", ["a", "b"], per_class=5, size=(20, 12))
    _exif_rotated_jpeg(root / "a" / "a_000.jpg")
    build_imagefolder(root, tmp_path / "out")
    ds = load_dataset(str(tmp_path / "out"))
    row = next(r for split in ds.values() for r in split if r[S.IMAGE_ID] == "a/a_000")
    assert row[S.IMAGE].size == (12, 20) and (row[S.WIDTH], row[S.HEIGHT]) == (12, 20)
    top = np.asarray(row[S.IMAGE])[0]  # the red left half is now on top
    assert top[:, 0].min() > 200 and row[S.JPEG_QUALITY] == 90  # re-encoded with the source's tables


def test_classification_rejects_cmyk_and_16_bit_unless_skipped(tmp_path):
    root = write_imagefolder(tmp_path / "if", ["a", "b"], per_class=5, size=(16, 16))
    Image.new("CMYK", (16, 16)).save(root / "a" / "a_001.jpg", "JPEG")
    with pytest.raises(InputError, match=r"a_001\.jpg: CMYK image"):
        build_imagefolder(root, tmp_path / "out")
    Image.fromarray(np.zeros((16, 16), dtype=np.uint16)).save(root / "b" / "deep.png")
    report = build_imagefolder(root, tmp_path / "out", skip_bad=True)
    assert sorted(s.item.rsplit("/", 1)[1] for s in report.skipped) == ["a_001.jpg", "deep.png"]
    assert report.total_rows == 9


def test_imagefolder_test_level_with_an_unknown_class(tmp_path):
    root = write_imagefolder(tmp_path / "if", ["a", "b"], per_class=3, with_split=True, size=(16, 16))
    (root / "test" / "c").mkdir()
    with pytest.raises(InputError, match=r"class folder .*test/c is not a class"):
        build_imagefolder(root, tmp_path / "out")


def test_nyu_bad_files(tmp_path):
    v5 = tmp_path / "old.mat"
    scipy.io.savemat(v5, {"images": np.zeros((1, 3, 4, 4), dtype=np.uint8)})
    with pytest.raises(InputError, match=r"old\.mat is a MATLAB v5.*v7\.3 \(HDF5\)"):
        build_nyu_depth_v2(v5, tmp_path / "out")
    with pytest.raises(InputError, match=r"nope\.mat does not exist"):
        build_nyu_depth_v2(tmp_path / "nope.mat", tmp_path / "out")
    mat = write_nyu_labeled_mat(tmp_path / "nyu.mat", n=5, size=(8, 6))
    with h5py.File(mat, "r+") as f:
        d = f["depths"][()]
        d[2, 0, 0] = np.nan
        f["depths"][...] = d
    with pytest.raises(InputError, match=r"nyu\.mat: depth map 3 has NaN"):
        build_nyu_depth_v2(mat, tmp_path / "out")
    assert build_nyu_depth_v2(mat, tmp_path / "out", skip_bad=True).total_rows == 4
    with h5py.File(mat, "r+") as f:
        del f["depths"]
    with pytest.raises(InputError, match=r"nyu\.mat has no 'depths'"):
        build_nyu_depth_v2(mat, tmp_path / "out2")


def test_hub_source_errors_name_the_column(tmp_path):
    folder = tmp_path / "src"
    (folder / "data").mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    feats = Features({"picture": ImageFeature(), "label": ClassLabel(names=["a", "b"])})
    Dataset.from_list([{"picture": {"bytes": buf.getvalue(), "path": None}, "label": i % 2} for i in range(6)],
                      features=feats).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(InputError, match=r"no column 'image'.*--image-column"):
        build_from_hub(str(folder), tmp_path / "out")
    with pytest.raises(InputError, match=r"column 'label' is ClassLabel.*expected an Image"):
        build_from_hub(str(folder), tmp_path / "out", image_column="label")
    assert build_from_hub(str(folder), tmp_path / "out", image_column="picture").total_rows == 6
    with pytest.raises(InputError, match=r"dataset .*nowhere': no such folder"):
        build_from_hub(str(tmp_path / "nowhere"), tmp_path / "out")
