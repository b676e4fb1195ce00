"""Captioning a real dataset with the tiny BLIP: one caption per image, sources, resume, CLI."""

from __future__ import annotations

import io
import json

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from promptmix import schema
from promptmix.errors import ConfigError, InputError, ModelLoadError
from promptmix.generation.caption import captioner as captions_mod
from promptmix.generation.caption.captioner import CaptionConfig, caption_dataset, source_rows
from promptmix.run_folder import RunFolder
from promptmix.testing._captioner import save_tiny_captioner
from promptmix.utils.io import write_hub_folder

CLASS_NAMES = ["cat", "dog"]


def _jpeg(arr: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    return {"bytes": buf.getvalue(), "path": None}


def _image_rows(n: int, prefix: str, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        gray = i % 3 == 0
        arr = rng.integers(0, 255, (32, 32) if gray else (32, 32, 3), dtype=np.uint8)
        rows.append({schema.IMAGE: _jpeg(arr), schema.IMAGE_ID: f"{prefix}{i:03d}", schema.WIDTH: 32,
                     schema.HEIGHT: 32, schema.JPEG_QUALITY: 75, schema.IS_GRAYSCALE: gray})
    return rows


@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory):
    return save_tiny_captioner(tmp_path_factory.mktemp("captioner") / "blip")


@pytest.fixture(scope="module")
def classification_real(tmp_path_factory):
    feats = schema.classification_real(CLASS_NAMES)
    train = [{**r, schema.LABEL: i % 2} for i, r in enumerate(_image_rows(10, "train-", 0))]
    test = [{**r, schema.LABEL: i % 2} for i, r in enumerate(_image_rows(2, "test-", 1))]
    out = tmp_path_factory.mktemp("real") / "cls"
    write_hub_folder(out, {"default": {"train": datasets.Dataset.from_list(train, features=feats),
                                       "test": datasets.Dataset.from_list(test, features=feats)}})
    return out


@pytest.fixture(scope="module")
def counting_real(tmp_path_factory):
    rows = [{**r, schema.POINTS: [[1.0, 2.0]] * (i + 1), schema.COUNT: i + 1}
            for i, r in enumerate(_image_rows(3, "c-", 2))]
    out = tmp_path_factory.mktemp("real") / "count"
    write_hub_folder(out, {"default": {"train": datasets.Dataset.from_list(rows, features=schema.COUNTING_REAL)}})
    return out


@pytest.fixture(scope="module")
def vision_encoder_decoder_dir(tmp_path_factory):
    """A tiny ViT + BERT-decoder VisionEncoderDecoderModel: image processor and tokenizer, no joint processor."""
    import torch
    from transformers import (BertConfig, BertTokenizer, VisionEncoderDecoderConfig, VisionEncoderDecoderModel,
                              ViTConfig, ViTImageProcessorPil)

    from promptmix.testing._captioner import tiny_vocab

    path = tmp_path_factory.mktemp("ved") / "model"
    vocab = {tok: i for i, tok in enumerate(tiny_vocab())}
    encoder = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        image_size=32, patch_size=8)
    decoder = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, is_decoder=True, add_cross_attention=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = vocab["[CLS]"], 0, vocab["[SEP]"]
    torch.manual_seed(0)
    VisionEncoderDecoderModel(config).save_pretrained(str(path))
    BertTokenizer(vocab=vocab).save_pretrained(str(path))
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(str(path))
    return path


def _config(real, model, **kw) -> CaptionConfig:
    kw = {"max_new_tokens": 5, "batch_size": 3, "chunk_size": 4, **kw}
    return CaptionConfig(real=str(real), model=str(model), **kw)


def _read(path):
    return datasets.Dataset(pq.read_table(path))


def test_tiny_captioner_loads_offline_like_a_hub_model(captioner_dir, monkeypatch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    processor = AutoProcessor.from_pretrained(captioner_dir)
    model = AutoModelForImageTextToText.from_pretrained(captioner_dir)
    assert type(model).__name__ == "BlipForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) < 500_000
    images = [Image.fromarray(np.full((32, 32, 3), v, dtype=np.uint8)) for v in (0, 255)]
    out = model.generate(**processor(images=images, return_tensors="pt"), max_new_tokens=4, do_sample=False)
    texts = processor.batch_decode(out, skip_special_tokens=True)
    assert all(t.strip() for t in texts)
    assert texts[0] != texts[1]  # the caption depends on the image


def test_caption_every_train_image_once(classification_real, captioner_dir, tmp_path):
    run = tmp_path / "run"
    out = caption_dataset(_config(classification_real, captioner_dir), run)
    assert out == run / "captions"
    caps = _read(out / "captions.parquet")
    assert caps.features == schema.CAPTIONS
    assert caps[schema.IMAGE_ID] == [f"train-{i:03d}" for i in range(10)]
    assert caps[schema.LABEL] == [i % 2 for i in range(10)]
    assert all(c.strip() for c in caps[schema.CAPTION])
    assert len(set(caps[schema.CAPTION])) > 1
    assert set(caps[schema.CAPTIONER]) == {str(captioner_dir)}

    sources = _read(out / "sources.parquet")
    assert sources.features == schema.SOURCES
    assert sources[schema.IMAGE_ID] == caps[schema.IMAGE_ID]
    assert sources[schema.IS_GRAYSCALE] == [i % 3 == 0 for i in range(10)]
    assert sources[schema.JPEG_QUALITY] == [75] * 10
    assert sources[schema.LABEL] == [i % 2 for i in range(10)]

    info = json.loads((out / "info.json").read_text())
    assert info["task"] == "classification" and info["class_names"] == CLASS_NAMES
    assert info["real"] == {"ref": str(classification_real), "revision": None, "split": "train"}
    assert info["captioner"]["model_type"] == "blip" and info["captioner"]["local"] is True
    assert not list(out.glob(".work-*"))  # chunk files removed once complete
    stage = RunFolder(run).read_manifest()["stages"]["caption"]
    assert stage["num_captions"] == 10 and stage["models"]["captioner"]["name"] == str(captioner_dir)


def test_counting_dataset_has_no_labels(counting_real, captioner_dir, tmp_path):
    out = caption_dataset(_config(counting_real, captioner_dir), tmp_path / "run")
    assert _read(out / "captions.parquet")[schema.LABEL] == [None] * 3
    assert _read(out / "sources.parquet")[schema.LABEL] == [None] * 3
    info = json.loads((out / "info.json").read_text())
    assert info["task"] == "counting" and info["class_names"] is None


def test_resume_skips_done_chunks_and_finished_runs(classification_real, captioner_dir, tmp_path, monkeypatch):
    reference = _read(caption_dataset(_config(classification_real, captioner_dir), tmp_path / "ref")
                      / "captions.parquet")
    run = tmp_path / "run"
    seen: list[int] = []
    original = captions_mod.Captioner.__call__

    def crash_in_second_chunk(self, images):
        if len(seen) >= 4:  # chunk 0 (images 0-3) is done; fail inside chunk 1
            raise KeyboardInterrupt
        seen.extend(range(len(images)))
        return original(self, images)

    monkeypatch.setattr(captions_mod.Captioner, "__call__", crash_in_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        caption_dataset(_config(classification_real, captioner_dir), run)
    work = next((run / "captions").glob(".work-*"))
    assert [p.name for p in sorted(work.glob("chunk-*.parquet"))] == ["chunk-000000.parquet"]
    assert not (run / "captions" / "captions.parquet").exists()

    counted: list[int] = []

    def counting(self, images):
        counted.append(len(images))
        return original(self, images)

    monkeypatch.setattr(captions_mod.Captioner, "__call__", counting)
    out = caption_dataset(_config(classification_real, captioner_dir), run)
    assert sum(counted) == 6  # only images 4..9
    caps = _read(out / "captions.parquet")
    assert caps[schema.IMAGE_ID] == reference[schema.IMAGE_ID]
    assert caps[schema.CAPTION] == reference[schema.CAPTION]

    # finished with the same settings: nothing is loaded or captioned again
    def no_load(*a, **k):
        raise AssertionError("model loaded for a finished stage")

    monkeypatch.setattr(captions_mod.Captioner, "__init__", no_load)
    assert caption_dataset(_config(classification_real, captioner_dir, batch_size=5), run) == out
    # a setting that changes results (max_new_tokens) starts over
    with pytest.raises(AssertionError, match="model loaded"):
        caption_dataset(CaptionConfig(real=str(classification_real), model=str(captioner_dir), max_new_tokens=3), run)


def test_conditional_prompt_is_stripped_unless_kept(classification_real, captioner_dir, tmp_path):
    stripped = _read(caption_dataset(_config(classification_real, captioner_dir, prompt="a photo of"),
                                     tmp_path / "a") / "captions.parquet")[schema.CAPTION]
    kept = _read(caption_dataset(_config(classification_real, captioner_dir, prompt="a photo of", keep_prompt=True),
                                 tmp_path / "b") / "captions.parquet")[schema.CAPTION]
    assert all(k.startswith("a photo of ") for k in kept)
    assert [k[len("a photo of "):] for k in kept] == stripped


def test_vision_encoder_decoder_captioner(counting_real, vision_encoder_decoder_dir, tmp_path):
    out = caption_dataset(_config(counting_real, vision_encoder_decoder_dir), tmp_path / "run")
    caps = _read(out / "captions.parquet")
    assert caps[schema.IMAGE_ID] == ["c-000", "c-001", "c-002"]
    assert json.loads((out / "info.json").read_text())["captioner"]["model_type"] == "vision-encoder-decoder"
    with pytest.raises(ConfigError, match="takes no text"):
        caption_dataset(_config(counting_real, vision_encoder_decoder_dir, prompt="a photo of"), tmp_path / "r2")


def test_bad_inputs(classification_real, captioner_dir, tmp_path):
    with pytest.raises(InputError, match="no split 'validation'"):
        caption_dataset(_config(classification_real, captioner_dir, split="validation"), tmp_path / "r")
    with pytest.raises(ModelLoadError, match="does-not-exist"):
        caption_dataset(_config(classification_real, tmp_path / "does-not-exist"), tmp_path / "r")
    with pytest.raises(ModelLoadError, match="image-to-text"):
        caption_dataset(_config(classification_real, classification_real), tmp_path / "r")  # a dataset, not a model
    with pytest.raises(ConfigError, match="batch_size: expected an integer >= 1; got 0"):
        CaptionConfig(real="x", model="y", batch_size=0)


def test_source_rows_computed_when_columns_missing():
    gray = Image.fromarray(np.full((5, 7), 9, dtype=np.uint8))
    rgb_gray = Image.fromarray(np.full((4, 6, 3), 40, dtype=np.uint8))
    color = Image.fromarray(np.stack([np.zeros((3, 2)), np.ones((3, 2)), np.zeros((3, 2))], -1).astype(np.uint8) * 200)
    ds = datasets.Dataset.from_dict({schema.IMAGE: [gray, rgb_gray, color], schema.IMAGE_ID: ["a", "b", "c"]},
                                    features=datasets.Features({schema.IMAGE: datasets.Image(),
                                                                schema.IMAGE_ID: datasets.Value("string")}))
    rows = source_rows(ds, "counting")
    assert [(r[schema.WIDTH], r[schema.HEIGHT]) for r in rows] == [(7, 5), (6, 4), (2, 3)]
    assert [r[schema.IS_GRAYSCALE] for r in rows] == [True, True, False]
    assert all(r[schema.JPEG_QUALITY] is None and r[schema.LABEL] is None for r in rows)


def test_cli_caption_prints_summary(classification_real, captioner_dir, tmp_path, capsys):
    from promptmix.cli import main

    rc = main(["caption", "--real", str(classification_real), "--model", str(captioner_dir), "--out",
               str(tmp_path / "run"), "--batch-size", "5", "--max-new-tokens", "4"])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("captioned 10 images of") and "classification" in line
    rc = main(["caption", "--real", str(tmp_path / "missing"), "--model", str(captioner_dir), "--out",
               str(tmp_path / "run2")])
    assert rc == 1
