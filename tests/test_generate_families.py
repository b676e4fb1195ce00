"""Every text-to-image family: sizes by its rules, its guidance and negative-prompt conventions, token limits
from the tokenizer that truncates, per-row seeds, resume and ``reproduce``; MVC on SDXL; the docs table.

The models are tiny random pipelines built from each family's real classes (``promptmix.testing._families``)
and loaded through ``AutoPipelineForText2Image.from_pretrained``. Two-process sharding is tested for one
family (Flux, the one furthest from SD) in ``test_two_processes_equal_one_for_flux``: the chunk split does
not depend on the model.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from promptmix.run_folder import RunFolder
from test_generate import chunk_bytes, tiny_config, write_bag

from promptmix import schema as S

FAMILY_KEYS = ("sd", "sd-v", "sd-turbo", "lcm", "sdxl", "sdxl-turbo", "sd3", "flux", "flux-schnell", "pixart", "sana")

# key: (family, pipeline class, scheduler, size multiple, native (w, h), steps, guidance, T5/Gemma limit)
FACTS = {
    "sd": ("sd", "StableDiffusionPipeline", "DDIMScheduler", 8, (64, 64), 30, 7.5, None),
    "sd-v": ("sd", "StableDiffusionPipeline", "DDIMScheduler", 8, (64, 64), 30, 7.5, None),
    "sd-turbo": ("sd-turbo", "StableDiffusionPipeline", "EulerAncestralDiscreteScheduler", 8, (64, 64), 1, 0.0, None),
    "lcm": ("lcm", "LatentConsistencyModelPipeline", "LCMScheduler", 8, (64, 64), 4, 8.5, None),
    "sdxl": ("sdxl", "StableDiffusionXLPipeline", "EulerDiscreteScheduler", 8, (64, 64), 30, 5.0, None),
    "sdxl-turbo": ("sdxl-turbo", "StableDiffusionXLPipeline", "EulerAncestralDiscreteScheduler", 8, (64, 64), 1, 0.0,
                   None),
    "sd3": ("sd3", "StableDiffusion3Pipeline", "FlowMatchEulerDiscreteScheduler", 16, (64, 64), 28, 7.0, 256),
    "flux": ("flux", "FluxPipeline", "FlowMatchEulerDiscreteScheduler", 16, (1024, 1024), 28, 3.5, 512),
    "flux-schnell": ("flux-schnell", "FluxPipeline", "FlowMatchEulerDiscreteScheduler", 16, (1024, 1024), 4, 0.0, 256),
    "pixart": ("pixart", "PixArtSigmaPipeline", "DPMSolverMultistepScheduler", 16, (64, 64), 20, 4.5, 300),
    "sana": ("sana", "SanaPipeline", "DPMSolverMultistepScheduler", 32, (64, 64), 20, 4.5, 300),
}
# the generation size of write_bag's sources (40x24, 24x40, 32x32) and of --size 32x24, per size multiple
GEN_SIZES = {8: {(40, 24), (24, 40), (32, 32), (32, 24)}, 16: {(32, 32), (32, 48)}, 32: {(32, 32)}}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from promptmix.testing import save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("family-models"), keys=FAMILY_KEYS)


def _config(prompts, model, **kw):
    # tiny_config's settings (k=2, 2 steps, chunks of 3, batches of 2, --size 32x24, CPU); the family gives the rest
    return tiny_config(prompts, model, **kw)


@pytest.mark.parametrize("key", FAMILY_KEYS)
def test_family_facts_come_from_the_folder(models, key):
    import diffusers

    from promptmix.generation.generate import families
    from promptmix.generation.generate.config import GenerateConfig
    from promptmix.generation.generate.runner import model_default_size

    family, pipeline, scheduler, multiple, native, steps, guidance, limit = FACTS[key]
    facts = families.describe(models[key])
    assert (facts.family.key, facts.pipeline, facts.scheduler, facts.size_multiple) == (family, pipeline, scheduler,
                                                                                       multiple)
    assert model_default_size(models[key]) == native
    resolved = families.resolve_config(GenerateConfig(prompts="p.txt", model=str(models[key])), models[key])
    assert (resolved.size_multiple, resolved.steps, resolved.guidance_scale, resolved.max_sequence_length) == (
        multiple, steps, guidance, limit)
    assert resolved.max_side == (1024 if key.startswith("flux") else 768)  # max(768, native side)
    pipe = diffusers.AutoPipelineForText2Image.from_pretrained(str(models[key]))  # the path a Hub model takes
    assert type(pipe).__name__ == pipeline and type(pipe.scheduler).__name__ == scheduler
    if key == "sd-v":
        assert facts.prediction_type == "v_prediction"


@pytest.mark.parametrize("key,class_name,scheduler,expected", [
    ("sd", None, "LCMScheduler", ("sd-lcm", 4, 1.0, None)),  # an LCM-LoRA fused into SD 1.5
    ("sdxl", None, "LCMScheduler", ("sdxl-lcm", 4, 1.0, None)),
    ("pixart", None, "LCMScheduler", ("pixart-lcm", 4, 0.0, 300)),  # PixArt-LCM
    ("pixart", "PixArtAlphaPipeline", None, ("pixart", 20, 4.5, 120)),  # alpha: T5 at 120 tokens
    ("sd", "KandinskyPipeline", None, ("generic", 100, 4.0, None)),  # unknown: the pipeline's own defaults
])
def test_variants_are_recognised_from_the_configs(tmp_path, models, key, class_name, scheduler, expected):
    import shutil

    from promptmix.generation.generate import families
    from promptmix.generation.generate.config import GenerateConfig

    folder = tmp_path / "model"
    shutil.copytree(models[key], folder)
    for name, path in ((class_name, folder / "model_index.json"),
                       (scheduler, folder / "scheduler" / "scheduler_config.json")):
        if name:
            data = json.loads(path.read_text())
            data["_class_name"] = name
            path.write_text(json.dumps(data))
    facts = families.describe(folder)
    resolved = families.resolve_config(GenerateConfig(prompts="p.txt", model=str(folder)), folder, facts)
    assert (facts.key, resolved.steps, resolved.guidance_scale, resolved.max_sequence_length) == expected


@pytest.mark.parametrize("key", FAMILY_KEYS)
def test_family_generates_resumes_and_reproduces(tmp_path, models, key, monkeypatch):
    from promptmix.generation.generate.plan import load_generated
    from promptmix.generation.generate.reproduce import reproduce_row
    from promptmix.generation.generate.runner import Generator, generate
    from promptmix.generation.generate.seeds import row_seed

    multiple = FACTS[key][3]
    sizes = []
    real_generate = Generator._generate

    def spy(self, rows, **kw):
        sizes.append((rows[0].gen_width, rows[0].gen_height))
        return real_generate(self, rows, **kw)

    monkeypatch.setattr(Generator, "_generate", spy)
    bag = write_bag(tmp_path)
    config = _config(bag, models[key], jpeg_quality="source", default_jpeg_quality=85)
    report = generate(config, tmp_path / "run")
    assert (report.rows_done, report.chunks_done) == (8, 3)
    assert report.model["family"] == FACTS[key][0] and report.model["pipeline"] == FACTS[key][1]
    assert report.model["resolved"]["size_multiple"] == multiple
    assert set(sizes) <= GEN_SIZES[multiple] and all(w % multiple == 0 and h % multiple == 0 for w, h in sizes)

    rows = load_generated(tmp_path / "run")
    expected = {"s0": (40, 24), "s1": (24, 40), "s2": (32, 32), None: (32, 24)}
    pixels = {}
    for r in rows:
        assert r[S.IMAGE].size == expected[r[S.SOURCE_IMAGE_ID]] == (r[S.WIDTH], r[S.HEIGHT])
        assert r[S.SEED] == row_seed(config.seed, r[S.PROMPT_ID], r[S.IMAGE_INDEX])
        pixels[r[S.ROW_ID]] = np.asarray(r[S.IMAGE].convert("RGB"), dtype=np.float64)
    # the two images of a prompt have their own seeds, so they differ (prompts whose two sources have one size)
    first = [r[S.ROW_ID] for r in rows if r[S.IMAGE_INDEX] == 0]
    pairs = [(rid, rid[:-5] + "00001") for rid in first if pixels[rid].shape == pixels[rid[:-5] + "00001"].shape]
    assert len(pairs) == 3
    for rid, other in pairs:
        assert np.abs(pixels[rid] - pixels[other]).mean() > 1.0, (key, rid)

    # resume: a chunk lost and a partial temp file left by a killed run
    reference = chunk_bytes(tmp_path / "run")
    RunFolder(tmp_path / "run").image_chunks().path(1).unlink()
    (RunFolder(tmp_path / "run").images / ".chunk-000001.parquet.tmp-999").write_bytes(b"partial")
    again = generate(config, tmp_path / "run")
    assert (again.rows_done, again.rows_skipped) == (3, 5)
    assert chunk_bytes(tmp_path / "run") == reference

    result = reproduce_row(tmp_path / "run", 4)  # generated in a batch of 2, regenerated alone
    assert result.match, result.summary_lines()


# -- token limits --------------------------------------------------------------------------------------
def _spy_tokenizer(monkeypatch, tokenizer, seen: list):
    """Record, for each text the pipeline tokenizes with truncation, whether words were cut."""
    cls = type(tokenizer)
    original = cls.__call__

    def spy(self, text=None, *args, **kw):
        out = original(self, text, *args, **kw)
        if self is tokenizer and kw.get("truncation") and kw.get("max_length"):
            texts = [text] if isinstance(text, str) else list(text)
            full = original(self, texts, padding=False, truncation=False,
                            add_special_tokens=kw.get("add_special_tokens", True))["input_ids"]
            seen.extend((t, len(ids) > kw["max_length"]) for t, ids in zip(texts, full) if "word" in t)
        return out

    monkeypatch.setattr(cls, "__call__", spy)


# which tokenizer truncates (a subfolder), and how many of the prompts below it cuts: "word" is 4 tokens of the
# tiny CLIP tokenizer ("w o r d</w>", so all but the 3-word prompt pass 77) and one of T5 ("▁word", + "</s>":
# n words are n + 1 tokens, so 256 is the first count T5-256 cuts, 300 for PixArt's 300, 512 for Flux-dev's 512);
# Sana tokenizes instruction + prompt to (instruction tokens + 300 - 2) Gemma tokens
TRUNCATING = {"sd": ("tokenizer", 8), "sdxl": ("tokenizer_2", 8), "sd3": ("tokenizer_3", 6),
              "flux": ("tokenizer_2", 2), "flux-schnell": ("tokenizer_2", 6), "pixart": ("tokenizer", 4),
              "sana": ("tokenizer", 4)}
WORD_COUNTS = (3, 75, 255, 256, 299, 300, 511, 512, 600)


@pytest.mark.parametrize("key", sorted(TRUNCATING))
def test_truncation_is_counted_with_the_tokenizer_that_truncates(tmp_path, models, key, monkeypatch):
    from promptmix.generation.generate import plan as rf
    from promptmix.generation.generate.runner import Generator, truncation_report
    from promptmix.utils.model_source import resolve_model

    prompts = [" ".join(["word"] * n) for n in WORD_COUNTS]
    config = _config(tmp_path / "p.txt", models[key], steps=1, batch_size=len(prompts))
    gen = Generator(config, resolve_model(str(models[key]), None, what="diffusion model"),
                    device=__import__("torch").device("cpu"), dtype=__import__("torch").float32)
    sub, expected = TRUNCATING[key]
    seen: list = []
    _spy_tokenizer(monkeypatch, getattr(gen.pipe, sub), seen)
    m = gen.facts.size_multiple
    rows = [rf.PlannedRow(position=i, row_id=f"r{i}", prompt=p, prompt_id=f"p{i}", image_index=0, source_image_id=None,
                          label=None, seed=i, width=m, height=m, gen_width=m, gen_height=m, jpeg_quality=90,
                          grayscale=False) for i, p in enumerate(prompts)]
    gen(rows)  # the pipeline tokenizes every prompt as it always does
    cut_by_pipeline = {t for t, cut in seen if cut}
    counted = truncation_report(models[key], prompts, max_sequence_length=gen.config.max_sequence_length)
    assert len(cut_by_pipeline) == counted["count"] == expected, (seen, counted)
    assert counted["max_tokens"] == (gen.config.max_sequence_length or 77)
    assert any(t.startswith(f"{sub} ") for t in counted["tokenizers"])


# -- guidance and negative prompts --------------------------------------------------------------------------
def _image(tmp_path, name, model, **kw):
    from promptmix.generation.generate.plan import load_generated
    from promptmix.generation.generate.runner import generate

    prompts = tmp_path / "one.txt"
    prompts.write_text("a cat on the street\n")
    generate(_config(prompts, model, images_per_prompt=1, **kw), tmp_path / name)
    return np.asarray(load_generated(tmp_path / name)[0][S.IMAGE].convert("RGB"), dtype=np.float64)


def test_settings_without_meaning_are_refused_or_warned(tmp_path, models, caplog):
    from promptmix.errors import ConfigError
    from promptmix.generation.generate.runner import generate

    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    refused = [("flux", dict(negative_prompt="blurry"), r"FluxPipeline.*negative prompt.*distils guidance"),
               ("flux-schnell", dict(negative_prompt="blurry"), r"no unconditional branch"),
               ("lcm", dict(negative_prompt="blurry"), r"LCM pipeline embeds guidance"),
               ("sd", dict(max_sequence_length=128), r"max_sequence_length.*no T5 or Gemma"),
               ("flux", dict(size_multiple=8), r"size_multiple.*divisible by 16"),
               ("sana", dict(size_multiple=16), r"size_multiple.*divisible by 32"),
               ("sd3", dict(max_sequence_length=600), r"at most 512 T5 tokens")]
    for key, kw, message in refused:
        with pytest.raises(ConfigError, match=message):
            generate(_config(prompts, models[key], **kw), tmp_path / f"run-{key}")
        assert not (tmp_path / f"run-{key}" / "images").exists()  # refused before anything is written
    with caplog.at_level(logging.WARNING, logger="promptmix"):
        a = _image(tmp_path, "schnell-0", models["flux-schnell"], guidance_scale=0.0)
        b = _image(tmp_path, "schnell-7", models["flux-schnell"], guidance_scale=7.0)
    assert "has no effect" in caplog.text and np.array_equal(a, b)  # schnell has no guidance at all
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="promptmix"):
        _image(tmp_path, "turbo-neg", models["sd-turbo"], negative_prompt="blurry")
    assert "negative_prompt is ignored" in caplog.text


@pytest.mark.parametrize("key,kw_a,kw_b", [
    ("flux", dict(guidance_scale=1.0), dict(guidance_scale=6.0)),  # distilled guidance: embedded, changes the image
    ("sdxl", dict(), dict(negative_prompt="blurry, low quality")),  # true CFG with a negative branch
    ("sd3", dict(), dict(negative_prompt="blurry, low quality")),
    ("pixart", dict(), dict(negative_prompt="blurry, low quality")),
    ("sana", dict(), dict(negative_prompt="blurry, low quality")),
    ("lcm", dict(guidance_scale=1.0), dict(guidance_scale=8.5)),  # the w-embedding
])
def test_guidance_and_negative_prompts_act_where_they_mean_something(tmp_path, models, key, kw_a, kw_b):
    a = _image(tmp_path, "a", models[key], **kw_a)
    b = _image(tmp_path, "b", models[key], **kw_b)
    assert np.abs(a - b).mean() > 0.05, key


# -- MVC --------------------------------------------------------------------------------------------------
def test_mvc_on_sdxl_mixes_both_encoders_with_the_same_spans_and_reproduces(tmp_path, models):
    import torch

    from promptmix.generation.generate.plan import load_generated
    from promptmix.generation.generate.reproduce import reproduce_row
    from promptmix.generation.generate.runner import Generator, generate
    from promptmix.generation.mvc import MVCConfig, replay_mixing
    from promptmix.generation.prompts.bag import load_prompt_bag
    from promptmix.utils.model_source import resolve_model

    bag_dir = write_bag(tmp_path, second_dog=True)
    mvc = MVCConfig(enabled=True, images_per_class=3, coarse=2, fine=1)
    config = _config(bag_dir, models["sdxl"], mvc=mvc)
    assert generate(config, tmp_path / "run").rows_done == 6
    rows = load_generated(tmp_path / "run")
    gen = Generator(config, resolve_model(str(models["sdxl"]), None, what="m"), device=torch.device("cpu"),
                    dtype=torch.float32)
    bag = load_prompt_bag(bag_dir)
    clip_l = gen.pipe.text_encoder.config.hidden_size
    for r in rows:
        record = json.loads(r[S.MIXING])
        emb, _ = gen.class_embeddings(bag, r[S.LABEL])
        assert list(emb.shape[1:]) == record["shape"] == [77, clip_l + gen.pipe.text_encoder_2.config.hidden_size]
        mixed = replay_mixing(emb, record)
        for op in record["coarse"]:  # one span, both encoders: CLIP-L columns and OpenCLIP-G columns
            r0, s = op["r"] - 1, op["s"]
            assert torch.equal(mixed[r0:s, :clip_l], emb[op["src"], r0:s, :clip_l])
            assert torch.equal(mixed[r0:s, clip_l:], emb[op["src"], r0:s, clip_l:])
        pooled, eos = gen._pooled[r[S.LABEL]]
        owner = record["base"]
        for op in record["coarse"]:
            if op["r"] <= eos[record["base"]] <= op["s"]:
                owner = op["src"]
        assert record["pooled"] == {"eos_row": eos[record["base"]], "src": owner}
        assert torch.equal(gen._pooled_for(r[S.LABEL], record), pooled[owner])
    result = reproduce_row(tmp_path / "run", 4)
    assert result.match and result.mixing_ok, result.summary_lines()


@pytest.mark.parametrize("key", ["sd3", "flux", "pixart", "sana"])
def test_mvc_is_refused_for_t5_and_gemma_models_naming_those_that_work(tmp_path, models, key):
    from promptmix.errors import ConfigError
    from promptmix.generation.generate.runner import generate
    from promptmix.generation.mvc import MVCConfig

    bag = write_bag(tmp_path, second_dog=True)
    with pytest.raises(ConfigError, match=r"cannot use MVC.*SD 1\.x/2\.x \(the paper's setup.*SDXL"):
        generate(_config(bag, models[key], mvc=MVCConfig(enabled=True, images_per_class=2)), tmp_path / "run")


# -- docs -----------------------------------------------------------------------------------------------
def test_docs_family_table_is_the_generated_one():
    from promptmix.generation.generate.families import FAMILIES, family_table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "families.md").read_text(encoding="utf-8")
    assert family_table() in docs
    tested = {k for f in FAMILIES for k in f.tested}
    assert tested <= set(FAMILY_KEYS) | {"pix2pix"}  # every family in the table runs in these tests


# -- sharding (one family) -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_equal_one_for_flux(tmp_path, models):
    from promptmix.generation.generate.runner import generate

    bag = write_bag(tmp_path)
    config = _config(bag, models["flux"], images_per_prompt=3, chunk_size=2, batch_size=2)
    assert generate(config, tmp_path / "single").chunks_done == 6
    env = dict(os.environ, PROMPTMIX_NO_PROGRESS="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "promptmix", "generate", "--prompts", str(bag), "--model", str(models["flux"]),
           "--out", str(tmp_path / "multi"), "-k", "3", "--steps", "2", "--chunk-size", "2", "--batch-size", "2",
           "--size", "32x24", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("rows: 12 planned, 12 generated") == 1 and "2 process(es)" in proc.stdout
    assert chunk_bytes(tmp_path / "multi") == chunk_bytes(tmp_path / "single")
