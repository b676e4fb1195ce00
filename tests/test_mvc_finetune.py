"""MVC fine-tuning: pairs, the widened U-Net, conditioning dropout, 2 steps + save + reload + resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image

from promptmix import schema
from promptmix.errors import CheckpointError, ConfigError, InputError
from promptmix.training.finetune import finetune as mf
from promptmix.training.finetune.pairs import load_pairs, make_pairs
from promptmix.utils.io import write_hub_folder

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog"]


def write_classification_run(root: Path, per_class: int = 3, size: int = 32) -> tuple[Path, Path]:
    """A tiny real dataset (Hub layout) and RUN/captions as `promptmix caption` writes them."""
    rng = np.random.default_rng(0)
    rows = {schema.IMAGE: [], schema.IMAGE_ID: [], schema.LABEL: []}
    for y in range(len(CLASSES)):
        for j in range(per_class):
            noise = rng.integers(0, 30, (size, size, 3), dtype=np.uint8)
            arr = np.full((size, size, 3), 40 + 150 * y, np.uint8) + noise
            rows[schema.IMAGE].append(Image.fromarray(arr))
            rows[schema.IMAGE_ID].append(f"{CLASSES[y]}_{j}")
            rows[schema.LABEL].append(y)
    n = len(rows[schema.LABEL])
    meta = {schema.WIDTH: [size] * n, schema.HEIGHT: [size] * n, schema.JPEG_QUALITY: [None] * n,
            schema.IS_GRAYSCALE: [False] * n}
    ds = Dataset.from_dict({**rows, **meta}, features=schema.classification_real(CLASSES))
    real = write_hub_folder(root / "real", {"default": {"train": ds}})
    caps = Dataset.from_dict({
        schema.IMAGE_ID: rows[schema.IMAGE_ID],
        schema.CAPTION: [f"a {'small' if j % 2 else 'large'} {CLASSES[y]} on a mat number {j}"
                         for y in range(len(CLASSES)) for j in range(per_class)],
        schema.LABEL: rows[schema.LABEL], schema.CAPTIONER: ["test"] * n}, features=schema.CAPTIONS)
    run = root / "run"
    (run / "captions").mkdir(parents=True)
    caps.to_parquet(str(run / "captions" / "captions.parquet"))
    (run / "captions" / "info.json").write_text(json.dumps({
        "task": "classification", "class_names": CLASSES,
        "real": {"ref": str(real), "revision": None, "split": "train"}}))
    return real, run


@pytest.fixture(scope="module")
def mvc_run(tmp_path_factory):
    return write_classification_run(tmp_path_factory.mktemp("mvc-data"))


def make_config(run: Path, out: Path, sd: Path, **kw) -> mf.FinetuneConfig:
    settings = dict(captions=str(run), output_dir=str(out), base_model=str(sd), resolution=32, batch_size=2,
                    gradient_accumulation_steps=1, max_train_steps=2, checkpointing_steps=1,
                    conditioning_dropout_prob=0.2, sample_images=1, sample_steps=2, learning_rate=1e-3)
    settings.update(kw)
    return mf.FinetuneConfig(**settings)


# -- pairs ------------------------------------------------------------------------------------------------
def test_pairs_are_same_class_indices_never_self_and_seeded():
    labels = [0, 1, 0, 2, 1, 0, 1, 1]
    pairs = make_pairs(labels, seed=3)
    assert pairs.features == schema.MVC_PAIRS
    cond, target, lab = pairs[schema.CONDITIONING_INDEX], pairs[schema.TARGET_INDEX], pairs[schema.LABEL]
    # as many pairs per class as the class has images (supplement, "Dataset Preparation")
    assert sorted(lab) == sorted(labels)
    for c, t, y in zip(cond, target, lab):
        assert labels[c] == y and labels[t] == y
        if y != 2:  # class 2 has one image: paired with itself
            assert c != t
    assert make_pairs(labels, seed=3)[:] == pairs[:]
    assert make_pairs(labels, seed=4)[:] != pairs[:]
    more = make_pairs(labels, pairs_per_class=50, seed=3)
    assert np.bincount(more[schema.LABEL]).tolist() == [50, 50, 50]
    # every other image of the class is drawn as a target
    targets_of_0 = {t for c, t, y in zip(more[schema.CONDITIONING_INDEX], more[schema.TARGET_INDEX], more[schema.LABEL])
                    if y == 0 and c == 0}
    assert targets_of_0 == {2, 5}
    with pytest.raises(InputError, match="row 1 .* no label"):
        make_pairs([0, None, 1])


def test_load_pairs_rejects_indices_past_the_split(tmp_path):
    from promptmix.training.finetune.pairs import save_pairs

    save_pairs(make_pairs([0, 0, 1, 1]), tmp_path)
    assert len(load_pairs(tmp_path, num_rows=4)) == 4
    with pytest.raises(InputError, match="names row 3 .* has 3 rows"):
        load_pairs(tmp_path, num_rows=3)


# -- model pieces --------------------------------------------------------------------------------------------
def test_widened_unet_starts_as_the_base_model(tiny_models):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(tiny_models["sd"]), subfolder="unet")
    x = torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 500])
    text = torch.randn(2, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        before = unet(x, t, text).sample
        mf.expand_conv_in(unet, 8)
        after = unet(torch.cat([x, torch.randn(2, 4, 8, 8)], dim=1), t, text).sample
    assert unet.config.in_channels == 8 and unet.conv_in.weight.shape[1] == 8
    assert torch.count_nonzero(unet.conv_in.weight[:, 4:]) == 0
    torch.testing.assert_close(after, before)
    assert mf.expand_conv_in(unet, 8) is unet  # already widened: unchanged


def test_conditioning_dropout_drops_text_image_and_both_with_the_same_probability():
    p = torch.arange(1000) / 1000
    drop_text, drop_image = mf.conditioning_dropout_masks(p, 0.05)
    text_only = (drop_text & ~drop_image).sum().item()
    image_only = (drop_image & ~drop_text).sum().item()
    both = (drop_text & drop_image).sum().item()
    assert (text_only, image_only, both) == (50, 50, 50)
    none_t, none_i = mf.conditioning_dropout_masks(p, 0.0)
    assert not none_t.any() and not none_i.any()


def test_config_validates_and_round_trips(tmp_path):
    cfg = mf.FinetuneConfig(captions="run", output_dir="out")
    assert (cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2) == (1e-4, 0.9, 0.999)  # paper: Adam, lr 1e-4
    cfg.save(tmp_path / "c.yaml")
    assert mf.FinetuneConfig.from_yaml(tmp_path / "c.yaml") == cfg
    with pytest.raises(ConfigError, match="finetune.conditioning_dropout_prob: expected .* got 0.5"):
        mf.FinetuneConfig.from_dict({"captions": "r", "output_dir": "o", "conditioning_dropout_prob": 0.5},
                                       section="finetune")
    with pytest.raises(ConfigError, match="caption_prefix"):
        mf.FinetuneConfig(captions="r", output_dir="o", caption_prefix="{klass}")
    # run-time settings do not change the hash; the resume hash ignores the step budget only
    assert cfg.config_hash() == mf.FinetuneConfig(captions="run", output_dir="out", resume="never").config_hash()
    longer = mf.FinetuneConfig(captions="run", output_dir="out", max_train_steps=9)
    assert longer.config_hash() != cfg.config_hash() and longer.resume_hash() == cfg.resume_hash()


# -- end to end ------------------------------------------------------------------------------------------------
def test_finetune_two_steps_saves_a_pix2pix_pipeline_and_resumes(tiny_models, mvc_run, tmp_path):
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel


    real, run = mvc_run
    out = tmp_path / "mvc"
    cfg = make_config(run, out, tiny_models["sd"])
    assert mf.finetune_mvc(cfg) == out

    # the pipeline loads as InstructPix2Pix, with 8 input channels and trained weights
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(str(out))
    assert pipe.unet.config.in_channels == 8
    base = UNet2DConditionModel.from_pretrained(str(tiny_models["sd"]), subfolder="unet")
    assert torch.count_nonzero(pipe.unet.conv_in.weight[:, 4:]) > 0
    assert not torch.equal(pipe.unet.conv_in.weight[:, :4], base.conv_in.weight)
    # it generates from an image and an MVC embedding
    bank = mf.CaptionBank.build(mf.load_captions(run)[0], CLASSES, cfg.mvc_config(), pipe.tokenizer,
                                pipe.text_encoder, "cpu")
    emb, record = bank.sample(1, seed=0)
    assert record["base"] in range(3) and len(record["coarse"]) == 1 and len(record["fine"]) == 1
    image = pipe(prompt_embeds=emb[None], image=Image.new("RGB", (32, 32), "red"), num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()
    assert bank.texts[1][0] == "This is an image of dog. a large dog on a mat number 0"

    # what the run leaves beside the pipeline
    pairs = load_pairs(out)
    assert len(pairs) == 6
    labels = Dataset.from_parquet(str(next((real / "data").glob("train-*.parquet"))))[schema.LABEL]
    assert all(labels[c] == labels[t] == y for c, t, y in zip(pairs[schema.CONDITIONING_INDEX],
                                                              pairs[schema.TARGET_INDEX], pairs[schema.LABEL]))
    losses = json.loads((out / mf.LOSSES_FILE).read_text())
    assert [r["step"] for r in losses] == [1, 2] and all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in losses)
    assert (out / mf.LOSS_CURVE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(out / mf.SAMPLES_FILE).size == (64, 32)
    assert mf.FinetuneConfig.from_yaml(out / mf.CONFIG_FILE) == cfg
    state = json.loads((out / mf.STATE_FILE).read_text())
    assert state["status"] == "finished" and state["global_step"] == 2 and state["class_names"] == CLASSES
    assert [p.name for p in mf.list_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and f"base model: `{tiny_models['sd']}`" in card
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["finetune"]["steps"] == 2

    # the same settings again: nothing to do
    mtime = (out / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    mf.finetune_mvc(cfg)
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == mtime

    # a larger step budget continues from checkpoint-2 ...
    mf.finetune_mvc(make_config(run, out, tiny_models["sd"], max_train_steps=3))
    resumed = json.loads((out / mf.LOSSES_FILE).read_text())
    assert [r["step"] for r in resumed] == [1, 2, 3] and resumed[:2] == losses
    assert json.loads((out / mf.STATE_FILE).read_text())["global_step"] == 3
    assert [p.name for p in mf.list_checkpoints(out)] == ["checkpoint-2", "checkpoint-3"]  # total limit 2

    # ... and ends where an uninterrupted 3-step run ends
    straight = tmp_path / "straight"
    mf.finetune_mvc(make_config(run, straight, tiny_models["sd"], max_train_steps=3, checkpointing_steps=100,
                                sample_images=0))
    assert json.loads((straight / mf.LOSSES_FILE).read_text()) == resumed
    a = UNet2DConditionModel.from_pretrained(str(out), subfolder="unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(str(straight), subfolder="unet").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # other settings cannot resume from these checkpoints
    with pytest.raises(CheckpointError, match="other settings"):
        mf.finetune_mvc(make_config(run, out, tiny_models["sd"], max_train_steps=4, learning_rate=5e-4))


def test_inputs_are_checked_with_clear_errors(tiny_models, mvc_run, tmp_path):
    real, run = mvc_run
    with pytest.raises(InputError, match="captions.parquet"):
        mf.finetune_mvc(make_config(tmp_path / "nowhere", tmp_path / "o1", tiny_models["sd"]))
    with pytest.raises(ConfigError, match="resolution: expected a multiple of 16 .* got 40"):
        mf.finetune_mvc(make_config(run, tmp_path / "o2", tiny_models["sd"], resolution=40))
    # a class with a single caption cannot be mixed
    from promptmix.generation.mvc import MVCConfig

    caps = Dataset.from_dict({schema.CAPTION: ["a cat", "a cat too", "a dog", " a dog"], schema.LABEL: [0, 0, 1, 1]})
    with pytest.raises(InputError, match="class 'dog' .* 1 distinct caption"):
        mf.CaptionBank.build(caps, CLASSES, MVCConfig(), None, None, "cpu", labels_needed=[0, 1])


def test_script_runs_from_a_config_file_with_flag_overrides(tiny_models, mvc_run, tmp_path, monkeypatch):
    import runpy

    real, run = mvc_run
    cfg_file = tmp_path / "pipeline.yaml"
    cfg_file.write_text(f"run_dir: somewhere\nfinetune:\n  captions: {run}\n  output_dir: {tmp_path / 'x'}\n"
                        f"  base_model: {tiny_models['sd']}\n  resolution: 32\n  batch_size: 3\n"
                        "  gradient_accumulation_steps: 1\n  max_train_steps: 5\n  sample_images: 0\n")
    script = runpy.run_path(str(ROOT / "training" / "finetune_mvc.py"))
    args = script["build_parser"]().parse_args(["--config", str(cfg_file), "--max-train-steps", "1",
                                                "--output-dir", str(tmp_path / "y"), "--fine-max-span", "null"])
    cfg = script["config_from_args"](args)
    assert (cfg.max_train_steps, cfg.output_dir, cfg.batch_size, cfg.fine_max_span) == (1, str(tmp_path / "y"), 3, None)
    assert script["main"](["--config", str(cfg_file), "--max-train-steps", "1", "--output-dir",
                           str(tmp_path / "y")]) == 0
    assert json.loads((tmp_path / "y" / mf.STATE_FILE).read_text())["global_step"] == 1
    assert script["main"](["--config", str(cfg_file), "--learning-rate", "-1"]) == 1


@pytest.mark.slow
def test_accelerate_launch_trains_one_model_on_two_processes(tiny_models, mvc_run, tmp_path):
    """`accelerate launch` with 2 processes (gloo on CPU): one process group, one model, per-rank RNG states."""
    import os
    import socket
    import subprocess

    from diffusers import StableDiffusionInstructPix2PixPipeline

    real, run = mvc_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           str(ROOT / "training" / "finetune_mvc.py"), "--captions", str(run), "--output-dir", str(out),
           "--base-model", str(tiny_models["sd"]), "--resolution", "32", "--batch-size", "1",
           "--gradient-accumulation-steps", "1", "--max-train-steps", "2", "--checkpointing-steps", "1",
           "--sample-images", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / mf.STATE_FILE).read_text())
    assert (state["num_processes"], state["global_step"], state["status"]) == (2, 2, "finished")
    assert {p.name for p in (out / "checkpoints" / "checkpoint-2").glob("random_states_*.pkl")} == \
        {"random_states_0.pkl", "random_states_1.pkl"}
    assert len(json.loads((out / mf.LOSSES_FILE).read_text())) == 2
    assert StableDiffusionInstructPix2PixPipeline.from_pretrained(str(out)).unet.config.in_channels == 8


# -- EMA and trackers ----------------------------------------------------------------------------------------
def test_ema_and_report_to_enter_the_hashes_as_they_should():
    base = mf.FinetuneConfig(captions="run", output_dir="out")
    # without EMA the decay changes nothing, so hashes (and those of runs made before EMA existed) stay put
    assert base.config_hash() == mf.FinetuneConfig(captions="run", output_dir="out", ema_decay=0.5).config_hash()
    assert "use_ema" not in base.hashed_dict()
    ema = mf.FinetuneConfig(captions="run", output_dir="out", use_ema=True)
    assert ema.config_hash() != base.config_hash() and ema.resume_hash() != base.resume_hash()
    other_decay = mf.FinetuneConfig(captions="run", output_dir="out", use_ema=True, ema_decay=0.99)
    assert other_decay.resume_hash() != ema.resume_hash()
    # trackers are a run-time setting
    assert mf.FinetuneConfig(captions="run", output_dir="out", report_to="none").config_hash() == base.config_hash()
    with pytest.raises(ConfigError, match="ema_decay: expected a number in \\[0, 1\\]; got 1.5"):
        mf.FinetuneConfig(captions="run", output_dir="out", ema_decay=1.5)
    with pytest.raises(ConfigError, match="report_to: expected one of"):
        mf.FinetuneConfig(captions="run", output_dir="out", report_to="mlflow-x")


def _unet_state(folder: Path) -> dict:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet").state_dict()


def _ema_weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / mf.EMA_DIR / "diffusion_pytorch_model.safetensors"))


def test_ema_resumes_bit_identically_and_is_the_saved_unet(tiny_models, mvc_run, tmp_path, monkeypatch):
    from accelerate.tracking import GeneralTracker
    from safetensors.torch import load_file

    _real, run = mvc_run
    fast = dict(use_ema=True, ema_decay=0.9, sample_images=0, learning_rate=1e-2)

    # 2 steps with EMA, then continued to 3
    out = tmp_path / "ema"
    mf.finetune_mvc(make_config(run, out, tiny_models["sd"], report_to="none", **fast))
    mf.finetune_mvc(make_config(run, out, tiny_models["sd"], max_train_steps=3, report_to="none", **fast))

    # a straight 3-step run, logging to a tracker (which must not change the result)
    class Recorder(GeneralTracker):
        name, requires_logging_directory, main_process_only = "recorder", False, True
        configs: list = []
        logs: list = []

        def __init__(self):
            super().__init__()

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            self.configs.append(dict(values))

        def log(self, values, step=None, **kwargs):
            self.logs.append((step, dict(values)))

    seen = []
    monkeypatch.setattr(mf, "_trackers", lambda report_to: seen.append(report_to) or [Recorder()])
    straight = tmp_path / "straight"
    cfg = make_config(run, straight, tiny_models["sd"], max_train_steps=3, checkpointing_steps=100,
                      report_to="tensorboard", **fast)
    mf.finetune_mvc(cfg)
    assert seen == ["tensorboard"]
    assert len(Recorder.configs) == 1 and Recorder.configs[0]["config_hash"] == cfg.config_hash()
    assert Recorder.configs[0]["use_ema"] is True and Recorder.configs[0]["ema_decay"] == 0.9
    losses = json.loads((straight / mf.LOSSES_FILE).read_text())
    assert Recorder.logs == [(r["step"], {"loss": r["loss"], "lr": r["lr"]}) for r in losses]

    # resumed and straight runs agree bit for bit: losses, raw weights, EMA weights and its step counter
    assert json.loads((out / mf.LOSSES_FILE).read_text()) == losses
    raw_a = load_file(str(out / "checkpoints" / "checkpoint-3" / "model.safetensors"))
    raw_b = load_file(str(straight / "checkpoints" / "checkpoint-3" / "model.safetensors"))
    assert raw_a.keys() == raw_b.keys() and all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)
    ema_a, ema_b = _ema_weights(out / "checkpoints" / "checkpoint-3"), _ema_weights(straight / "checkpoints" /
                                                                                  "checkpoint-3")
    assert ema_a.keys() == ema_b.keys() and all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    ema_config = json.loads((out / "checkpoints" / "checkpoint-3" / mf.EMA_DIR / "config.json").read_text())
    assert ema_config["optimization_step"] == 3

    # the saved pipeline holds the EMA weights, not the raw ones
    saved = _unet_state(out)
    assert saved.keys() == ema_a.keys()
    assert all(torch.equal(saved[k], ema_a[k]) for k in saved)
    assert not torch.equal(saved["conv_in.weight"], raw_a["conv_in.weight"])
    assert all(torch.equal(saved[k], v) for k, v in _unet_state(straight).items())
    assert "exponential moving average" in (out / "README.md").read_text()

    # a checkpoint made without EMA cannot be continued with it
    plain = tmp_path / "plain"
    mf.finetune_mvc(make_config(run, plain, tiny_models["sd"], max_train_steps=1, sample_images=0, report_to="none"))
    with pytest.raises(CheckpointError, match="other settings"):
        mf.finetune_mvc(make_config(run, plain, tiny_models["sd"], report_to="none", **fast))


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_logging_does_not_change_the_weights(tiny_models, mvc_run, tmp_path):
    _real, run = mvc_run
    for name, report_to in (("none", "none"), ("tb", "tensorboard")):
        mf.finetune_mvc(make_config(run, tmp_path / name, tiny_models["sd"], max_train_steps=1, sample_images=0,
                                    report_to=report_to))
    assert any((tmp_path / "tb" / mf.LOGS_DIR).rglob("events.out.tfevents.*"))
    assert not (tmp_path / "none" / mf.LOGS_DIR).exists()
    a, b = _unet_state(tmp_path / "none"), _unet_state(tmp_path / "tb")
    assert all(torch.equal(a[k], b[k]) for k in a)
