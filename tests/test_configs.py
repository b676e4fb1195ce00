"""Every YAML under configs/ loads, validates and plans its stages (no model or dataset is loaded),
and the paper configs carry the papers' settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptmix.pipeline.config import load_config
from promptmix.pipeline.stages import build_stages

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.glob("*.yaml"))


def test_the_papers_configs_are_all_there():
    names = {p.stem for p in ALL}
    assert {"promptmix_shta", "promptmix_shtb", "promptmix_ucf_qnrf", "promptmix_nyu_depth_v2",
            "label_prompts_cifar10", "mvc_caltech101", "mvc_cifar100_reduced"} <= names


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_config_validates_and_builds_its_stages(path):
    cfg = load_config(path)
    stages = build_stages(cfg)
    names = [s.name for s in stages]
    captioned = cfg.caption is not None
    assert names[:3 if captioned else 2] == (["real", "caption", "prompts"] if captioned else ["real", "prompts"])
    assert "generate" in names
    prompts = next(s for s in stages if s.name == "prompts")
    assert prompts.inputs == (("caption",) if captioned else ("real",))
    assert captioned == cfg.prompts.needs_captions() or cfg.finetune is not None  # caption only where needed
    assert all(n in names for n in (f"train.{t}" for t in cfg.train))
    assert ("report" in names) == (len(cfg.train) >= 2) and (names[-1] == "report" or len(cfg.train) < 2)
    assert str(cfg.run_dir).startswith("runs/")
    assert "#" in path.read_text()  # settings are explained in comments


# (config, k, r_mix of the PromptMix runs, prefix, annotators, keep %): PromptMix Sec. IV-A
PROMPTMIX = {
    "promptmix_shta": (10, 500, "large crowd", 1, 100.0),
    "promptmix_shtb": (10, 500, "large crowd", 1, 100.0),
    "promptmix_ucf_qnrf": (1, 500, "large crowd", 1, 100.0),
    "promptmix_nyu_depth_v2": (2500, 1000, "", 1, 100.0),
}


@pytest.mark.parametrize("name", sorted(PROMPTMIX))
def test_promptmix_configs_follow_the_paper(name):
    k, r_mix, prefix, n_annotators, keep = PROMPTMIX[name]
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.generate.images_per_prompt == k
    assert cfg.prompts.prefix == prefix
    assert len(cfg.annotate.annotators) == n_annotators and cfg.filter.keep_percent == keep
    mixed = [r for r in cfg.train.values() if r.mixing == "promptmix"]
    baselines = [r for r in cfg.train.values() if r.mixing == "none"]
    assert mixed and len(mixed) == len(baselines)
    assert {r.r_mix for r in mixed} == {r_mix}
    for run in cfg.train.values():
        assert (run.epochs, run.lr_decay, run.weight_decay, run.seed) == (500, 0.99, 1e-4, 42)
        assert run.lr is None and run.lr_grid == (1e-3, 1e-4, 1e-5, 1e-6)
    if cfg.task == "counting":
        assert cfg.prompts.suffix == "grayscale" and cfg.prompts.use_captions
        assert {r.model for r in cfg.train.values()} == {"rescsrnet", "csrnet"}
    else:
        assert cfg.prompts.manual == ["apartment interior", "bedroom interior", "bathroom interior"]
        assert not cfg.prompts.use_captions and cfg.caption is None  # manual prompts only: nothing to caption


def test_label_prompt_baseline_follows_its_paper():
    cfg = load_config(CONFIGS / "label_prompts_cifar10.yaml")
    g = cfg.generate
    assert (g.model, g.steps, g.guidance_scale, g.min_side, g.max_side) == (
        "CompVis/stable-diffusion-v1-4", 50, 7.5, 512, 512)
    assert cfg.prompts.class_templates == ["a photo of a {label}"] and not cfg.prompts.use_captions
    assert cfg.caption is None  # label prompts: the class names and sources come from the real dataset
    assert {r.epochs for r in cfg.train.values()} == {250}


@pytest.mark.parametrize("name", ["mvc_caltech101", "mvc_cifar100_reduced"])
def test_mvc_configs_fine_tune_and_mix(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.finetune is not None and cfg.finetune.learning_rate == 1e-4
    assert cfg.finetune.batch_size * cfg.finetune.gradient_accumulation_steps == 50  # supplement Sec. 1
    assert cfg.generate.mvc.enabled and cfg.generate.model == str(cfg.run_dir / "finetune")
    assert cfg.generate.mvc.caption_prefix == "This is an image of {label}"
    for key in ("coarse", "fine", "fine_max_span", "caption_prefix", "prefix_separator"):  # as fine-tuned
        assert getattr(cfg.generate.mvc, key) == getattr(cfg.finetune, key)
    assert "two-phase" in {r.mixing for r in cfg.train.values()}
