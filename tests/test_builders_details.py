"""Details of the raw builders a new user runs into: colour profiles survive re-encoding, files the builder does
not read are named."""

from __future__ import annotations

import io
import logging

import numpy as np
from datasets import load_dataset
from PIL import Image, ImageCms

from promptmix import schema as S
from promptmix.builders import build_imagefolder, build_shanghaitech, build_ucf_qnrf
from promptmix.testing.raw_datasets import write_imagefolder, write_shanghaitech_raw, write_ucf_qnrf_raw

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _stored_icc(row) -> bytes | None:
    return Image.open(io.BytesIO(row[S.IMAGE]["bytes"])).info.get("icc_profile")


def test_re_encoded_images_keep_their_icc_profile(tmp_path):
    # an EXIF-rotated JPEG with a colour profile (classification builders store it upright, re-encoded)
    root = write_imagefolder(tmp_path / "if", ["a", "b"], per_class=5, size=(20, 12))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((12, 20, 3), 120, np.uint8)).save(root / "a" / "a_000.jpg", "JPEG", quality=90,
                                                                exif=exif.tobytes(), icc_profile=ICC)
    build_imagefolder(root, tmp_path / "out")
    ds = load_dataset(str(tmp_path / "out")).cast_column(S.IMAGE, __import__("datasets").Image(decode=False))
    row = next(r for split in ds.values() for r in split if r[S.IMAGE_ID] == "a/a_000")
    assert _stored_icc(row) == ICC

    # UCF-QNRF images larger than max_side are resized, hence re-encoded
    ucf = write_ucf_qnrf_raw(tmp_path / "ucf", n_train=2, n_test=1, size=(64, 48), people=(2, 3))
    img = ucf / "Train" / "img_0001.jpg"
    Image.open(img).save(img, "JPEG", quality=90, icc_profile=ICC)
    build_ucf_qnrf(ucf, tmp_path / "ucf-out", max_side=32)
    ds = load_dataset(str(tmp_path / "ucf-out")).cast_column(S.IMAGE, __import__("datasets").Image(decode=False))
    rows = [r for split in ds.values() for r in split]
    resized = next(r for r in rows if r[S.IMAGE_ID].endswith("img_0001") and "Train" in r[S.IMAGE_ID])
    assert (resized[S.WIDTH], resized[S.HEIGHT]) == (32, 24) and _stored_icc(resized) == ICC


def test_files_the_builder_does_not_read_are_named(tmp_path, caplog):
    root = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=4, n_test=2, size=(32, 24), people=(2, 4))
    images = root / "part_B" / "train_data" / "images"
    Image.new("RGB", (32, 24)).save(images / "IMG_9.png")
    (images / "notes.txt").write_text("downloaded 2024")
    with caplog.at_level(logging.WARNING, logger="promptmix.builders.counting"):
        build_shanghaitech(root, "B", tmp_path / "out")
    text = caplog.text
    assert "ShanghaiTech: 2 file(s) in" in text and "IMG_9.png, notes.txt" in text
    assert "expected JPEG images IMG_n.jpg" in text
