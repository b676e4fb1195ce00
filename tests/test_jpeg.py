"""JPEG quality from quantization tables: exact for every Pillow quality (4:2:0, 4:4:4, grayscale), fit scores
for non-standard tables, non-JPEGs, bad files and the ``promptmix jpeg-quality`` command."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from promptmix.errors import InputError
from promptmix.jpeg import (STD_LUMINANCE, JpegQuality, estimate_jpeg_quality, ijg_table, jpeg_quality,
                            quality_from_tables)


def _jpeg(quality: int, mode: str = "RGB", subsampling: int | None = None, size=(16, 16), **kwargs) -> bytes:
    rng = np.random.default_rng(quality)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    im = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    buf = io.BytesIO()
    if subsampling is not None:
        kwargs["subsampling"] = subsampling
    im.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("mode,subsampling", [("RGB", 2), ("RGB", 0), ("L", None)],
                         ids=["4:2:0", "4:4:4", "grayscale"])
def test_every_pillow_quality_is_recovered_exactly(mode, subsampling):
    wrong = []
    for q in range(1, 101):
        data = _jpeg(q, mode, subsampling)
        with Image.open(io.BytesIO(data)) as im:
            assert len(im.quantization) == (1 if mode == "L" else 2)
        got = estimate_jpeg_quality(io.BytesIO(data))
        if got != JpegQuality(quality=q, fit=1.0, standard=True):
            wrong.append((q, got))
    assert not wrong


def test_paths_bytes_and_pil_images_are_accepted(tmp_path):
    data = _jpeg(83, size=(40, 24))
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    assert jpeg_quality(path) == jpeg_quality(str(path)) == jpeg_quality(data) == 83
    with Image.open(path) as im:
        assert estimate_jpeg_quality(im).quality == 83


def test_non_standard_tables_get_the_closest_quality_and_a_fit_below_one():
    tables = {0: [min(255, round(v * 1.15)) for v in ijg_table(STD_LUMINANCE, 80)],
              1: list(ijg_table(np.full(64, 99), 80))}
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 30)).save(buf, "JPEG", qtables=tables)
    got = estimate_jpeg_quality(io.BytesIO(buf.getvalue()))
    assert not got.standard and 0.8 < got.fit < 1.0
    assert 74 <= got.quality <= 80
    flat = quality_from_tables({0: [3] * 64})  # nothing like IJG's tables: a poor fit
    assert not flat.standard and flat.fit < 0.75


def test_tables_beyond_baseline_are_matched_without_the_255_clamp():
    extended = ijg_table(STD_LUMINANCE, 4, baseline=False)
    assert extended.max() > 255
    assert quality_from_tables([extended.tolist()]) == JpegQuality(4, 1.0, True)


def test_not_a_jpeg_missing_and_corrupt_files(tmp_path):
    png = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(png)
    assert jpeg_quality(png) is None
    with pytest.raises(InputError, match=r"a\.png: not a JPEG"):
        estimate_jpeg_quality(png)
    with pytest.raises(InputError, match=r"missing\.jpg: no such file"):
        jpeg_quality(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xdb\x00\x04garbage")
    with pytest.raises(InputError, match=r"broken\.jpg"):
        jpeg_quality(broken)
    with pytest.raises(InputError, match="64 values"):
        quality_from_tables({0: [1, 2, 3]})


def test_generated_images_carry_the_quality_they_were_encoded_at():
    from promptmix.generation.generate.encode import encode_jpeg

    for q in (35, 75, 95):
        assert jpeg_quality(encode_jpeg(Image.new("RGB", (16, 16), (1, 2, 3)), q)) == q


def test_jpeg_quality_command(tmp_path, capsys):
    from promptmix.cli import main

    a, b = tmp_path / "a.jpg", tmp_path / "b.png"
    a.write_bytes(_jpeg(75))
    Image.new("L", (8, 8)).save(b)
    assert main(["jpeg-quality", str(a), str(b)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{a}\t75", f"{b}\t-"]
    assert main(["jpeg-quality", "--fit", str(a)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{a}\t75\t1.0000\tstandard"]
    assert main(["jpeg-quality", str(tmp_path / "nope.jpg"), str(a)]) == 1
    captured = capsys.readouterr()
    assert "nope.jpg: no such file" in captured.err and captured.out.splitlines() == [f"{a}\t75"]
