"""The learned toy world (issue 14): scenes, the training functions, the shipped models and what they can do."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from promptmix.toy import world as W


def test_scenes_are_seeded_and_captioned_by_what_they_show():
    a = list(W.scenes(5, 12))
    b = list(W.scenes(5, 12))
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b))
    assert all(np.array_equal(x.points, y.points) for x, y in zip(a, b))
    for s in a:
        lo, hi = W.DENSITIES[s.density]
        assert lo <= s.count <= hi
        assert s.caption == f"a {s.colour} photo of a {s.density} {W.PLACES[s.place]} {s.place}"
        assert s.image.mode == ("L" if s.colour == "black and white" else "RGB")
        assert s.image.size == (128, 96)
        assert ((s.points >= 0) & (s.points <= [128, 96])).all()
    # every place, density and colour is reachable, and a fixed choice is honoured
    many = list(W.scenes(0, 200))
    assert {s.place for s in many} == set(W.PLACES) and {s.density for s in many} == set(W.DENSITIES)
    assert {s.colour for s in many} == set(W.COLOURS)
    s = W.draw_scene(np.random.default_rng(0), place="beach", density="large crowd", colour="color")
    assert (s.place, s.density, s.colour) == ("beach", "large crowd", "color") and s.count >= 80
    with pytest.raises(ValueError, match="place: expected one of"):
        W.draw_scene(np.random.default_rng(0), place="moon")


def test_places_look_different():
    """The captioner can only name a place that shows: the mean colour of the ground differs per place."""
    grounds = {}
    for place in W.PLACES:
        rng = np.random.default_rng(1)
        arr = np.stack([np.asarray(W.draw_scene(rng, place=place, density="sparse crowd", colour="color").image,
                                   dtype=np.float32)[-10:].mean(axis=(0, 1)) for _ in range(8)])
        grounds[place] = arr.mean(axis=0)
    names = list(grounds)
    gaps = [np.abs(grounds[a] - grounds[b]).max() for i, a in enumerate(names) for b in names[i + 1:]]
    assert min(gaps) > 20, grounds


def test_perspective_heads_grow_towards_the_camera():
    from promptmix.testing.raw_datasets import draw_crowd

    rng = np.random.default_rng(3)
    radii: list = []
    _, pts = draw_crowd(rng, (128, 96), 200, radii=radii, background=W.BACKGROUNDS["park"], near_frac=(0.05, 0.05))
    r = np.asarray(radii)
    assert np.corrcoef(pts[:, 1], r)[0, 1] > 0.95


def test_toy_shanghaitech_is_read_by_the_real_builder(tmp_path):
    from promptmix.builders.counting import build_shanghaitech
    from promptmix.builders.loading import load_real

    root = W.write_toy_shanghaitech(tmp_path / "raw", n_train=6, n_test=3, seed=4)
    record = json.loads((root / "scenes.json").read_text())
    build_shanghaitech(root, part="B", out=tmp_path / "real")
    ds = load_real(str(tmp_path / "real"))
    test = ds["test"]
    assert sorted(test["count"]) == sorted(v["count"] for k, v in record.items() if k.startswith("test_data"))
    assert len(ds["train"]) + len(ds["validation"]) == 6


# -- training functions (a few steps each: they run, save, and load through the real paths) ------------
def test_train_counter_saves_a_counting_folder(tmp_path):
    from promptmix.annotation.annotators.registry import build_annotator
    from promptmix.toy.train import train_counter

    lines: list[str] = []
    rec = train_counter(tmp_path / "c", architecture="dmcount", steps=2, seed=0, world=W.WorldSettings(),
                        n_scenes=6, n_eval=4, batch_size=2, log=lines.append)
    assert rec.steps == 2 and np.isfinite(rec.final_loss) and "toy_mae" in rec.evaluation
    assert any("held-out toy MAE" in line for line in lines)
    ann = build_annotator(f"c:{tmp_path / 'c'}", device="cpu")
    out = ann.annotate([s.image for s in W.scenes(9, 2)])
    assert len(out) == 2 and out[0]["density"].shape == (12, 16)


def test_train_captioner_saves_a_blip_folder(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from promptmix.toy.train import train_captioner

    rec = train_captioner(tmp_path / "cap", steps=2, seed=0, world=W.WorldSettings(), n_scenes=8, n_eval=4,
                          batch_size=4, log=lambda line: None)
    assert set(rec.evaluation) >= {"exact", "place", "density", "colour"}
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "cap")
    assert type(model).__name__ == "BlipForConditionalGeneration"
    assert AutoProcessor.from_pretrained(tmp_path / "cap").tokenizer.convert_tokens_to_ids("stadium") > 5


def test_train_generator_saves_a_text_to_image_pipeline(tmp_path):
    from diffusers import AutoPipelineForText2Image

    from promptmix.toy.train import train_generator

    rec = train_generator(tmp_path / "sd", vae_steps=2, unet_steps=2, seed=0, world=W.WorldSettings(), n_scenes=8,
                          vae_batch=2, unet_batch=2, log=lambda line: None)
    assert rec.kind == "text-to-image" and rec.settings["latent_scale_factor"] == 4
    pipe = AutoPipelineForText2Image.from_pretrained(tmp_path / "sd")
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.vae_scale_factor == 4
    ids = pipe.tokenizer("a color photo of a large crowd on a beach")["input_ids"]
    assert len(ids) == 12  # one token per word (10), plus start and end
    im = pipe("a color photo of a crowd in a park", num_inference_steps=2, height=96, width=128,
              generator=torch.Generator().manual_seed(0)).images[0]
    assert im.size == (128, 96)


def test_train_generator_continues_a_trained_pipeline(tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file

    from promptmix.toy.train import train_generator

    quiet = dict(seed=0, world=W.WorldSettings(), n_scenes=8, vae_batch=2, unet_batch=2, log=lambda line: None)
    train_generator(tmp_path / "sd", vae_steps=2, unet_steps=2, **quiet)
    first = load_file(tmp_path / "sd" / "unet" / "diffusion_pytorch_model.safetensors")
    # lr 0: the saved U-Net is the loaded one, so training started from it (not from a fresh init)
    rec = train_generator(tmp_path / "same", vae_steps=2, unet_steps=1, unet_from=tmp_path / "sd", lr=0.0, **quiet)
    same = load_file(tmp_path / "same" / "unet" / "diffusion_pytorch_model.safetensors")
    assert set(same) == set(first) and all(torch.equal(same[k], first[k]) for k in first)
    assert rec.settings["unet_from"] == str(tmp_path / "sd") and rec.settings["vae_steps"] == 0
    assert AutoencoderKL.from_pretrained(tmp_path / "same" / "vae").config.scaling_factor == \
        AutoencoderKL.from_pretrained(tmp_path / "sd" / "vae").config.scaling_factor
    # Min-SNR weighting, a real step: the weights move away from the start
    rec = train_generator(tmp_path / "more", vae_steps=2, unet_steps=2, unet_from=tmp_path / "sd", snr_gamma=5.0,
                          **quiet)
    more = UNet2DConditionModel.from_pretrained(tmp_path / "more" / "unet").state_dict()
    assert rec.settings["snr_gamma"] == 5.0 and any(not torch.equal(more[k], first[k]) for k in first)


def test_train_toy_models_script_quick(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from promptmix.toy.models import check_manifest, read_manifest

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_toy_models.py"
    res = subprocess.run([sys.executable, str(script), "--quick", "--only", "counter_b", "captioner", "--out",
                          str(tmp_path / "m")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = read_manifest(tmp_path / "m")
    assert set(manifest["models"]) == {"counter_b", "captioner"} and manifest["world"]["size"] == [128, 96]
    assert manifest["models"]["counter_b"]["mode"] == "quick"
    assert check_manifest(tmp_path / "m", names=("counter_b", "captioner")) == []
    assert "[counter_b] done" in (tmp_path / "m" / "train_log.txt").read_text()


# -- the shipped models --------------------------------------------------------------------------------
def test_shipped_models_match_their_manifest(tmp_path):
    from promptmix.toy.models import MODELS_DIR, check_manifest, read_manifest

    assert check_manifest() == []
    manifest = read_manifest()
    assert manifest["script"] == "scripts/train_toy_models.py"
    assert all(m["mode"] == "full" for m in manifest["models"].values())
    size = sum(p.stat().st_size for p in MODELS_DIR.rglob("*") if p.is_file())
    assert size <= 25e6
    # a changed byte is named
    copy = tmp_path / "models"
    shutil.copytree(MODELS_DIR, copy)
    f = copy / "counter_a" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    problems = check_manifest(copy)
    assert len(problems) == 1 and "counter_a/model.safetensors is not the file the manifest records" in problems[0]


def test_shipped_counters_count_toy_crowds():
    """Both annotators, loaded as `promptmix annotate` loads them, count fresh toy scenes far better than the mean."""
    from promptmix.annotation.annotators.registry import build_annotator
    from promptmix.toy.models import toy_models

    models = toy_models()
    fresh = list(W.scenes(777, 60))  # a seed no model was trained on
    truth = np.array([s.count for s in fresh], dtype=float)
    baseline = np.abs(truth - truth.mean()).mean()
    for key in ("counter_a", "counter_b"):
        ann = build_annotator(f"{key}:{models[key]}", device="cpu")
        got = np.array([o["count"] for o in ann.annotate([s.image for s in fresh])])
        mae = np.abs(got - truth).mean()
        assert mae < 0.3 * baseline, (key, mae, baseline)


def test_shipped_captioner_names_the_scene():
    from promptmix.generation.caption.captioner import Captioner
    from promptmix.toy.models import toy_models
    from promptmix.utils.model_source import resolve_model

    fresh = list(W.scenes(778, 40))
    cap = Captioner(resolve_model(toy_models()["captioner"]), device=torch.device("cpu"), dtype=torch.float32,
                    max_new_tokens=16)
    got = cap([s.image for s in fresh])
    colour = np.mean([g.startswith(f"a {s.colour} ") for g, s in zip(got, fresh)])
    place = np.mean([g.endswith(f" {s.place}") for g, s in zip(got, fresh)])
    assert colour >= 0.9 and place >= 0.8, list(zip(got, [s.caption for s in fresh]))[:5]


def test_every_shipped_file_is_package_data():
    """pyproject's package-data globs reach every file of the manifest (a wheel then ships them, not only -e)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    from promptmix.toy.models import LOG_NAME, MANIFEST_NAME, SAMPLES_NAME, read_manifest

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["promptmix"]
    files = [f"toy/models/{name}/{rel}" for name, m in read_manifest()["models"].items() for rel in m["files"]]
    files += [f"toy/models/{n}" for n in (MANIFEST_NAME, LOG_NAME, SAMPLES_NAME)]

    def covered(path: str) -> bool:  # setuptools globs: "*" stays inside one folder level
        depth = path.count("/")
        return any(fnmatch.fnmatch(path, p) and p.count("/") == depth for p in patterns if "**" not in p) or \
            (path.endswith((".json", ".md", ".yaml")))

    assert [f for f in files if not covered(f)] == []
