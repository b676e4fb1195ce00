"""`promptmix init`: a paper experiment's config with the paper's settings, every input with where to get it;
the docs list every input of every config with a link; configs cite docs/papers.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from promptmix.cli import main
from promptmix.pipeline.config import load_config
from promptmix.pipeline.experiments import CONFIGS_DIR, SOURCES, experiments, local_inputs, source_of

ROOT = Path(__file__).resolve().parents[1]


def test_init_writes_the_papers_settings_with_only_the_inputs_to_fill(tmp_path, capsys):
    out = tmp_path / "mine.yaml"
    assert main(["init", "shtb", "--out", str(out), "--data", "/datasets", "--checkpoints", "/weights",
                 "--run-dir", str(tmp_path / "runs" / "shtb")]) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("# Written by `promptmix init shtb` from configs/promptmix_shtb.yaml")
    assert "Section IV-A" in text and "docs/papers.md" in text  # the paper's comments are kept
    cfg = load_config(out)
    assert str(cfg.real.root) == "/datasets/ShanghaiTech" and cfg.run_dir == tmp_path / "runs" / "shtb"
    assert cfg.annotate.annotators == ["sasnet-shtb:sasnet=/weights/SASNet_SHHB.pth"]
    # the paper's settings, not the demo's toy ones
    assert (cfg.generate.steps, cfg.generate.images_per_prompt, cfg.generate.max_side) == (50, 10, 1024)
    assert cfg.generate.model == "CompVis/stable-diffusion-v1-4" and cfg.generate.device == "auto"
    assert cfg.caption.model == "Salesforce/blip-image-captioning-base"
    for run in cfg.train.values():
        assert (run.epochs, run.width_div, run.cpu) == (500, 1, False)
        assert tuple(run.lr_grid) == (1e-3, 1e-4, 1e-5, 1e-6)
    # what it printed: each input, missing, with its link; the Hub models; the next commands
    assert "[missing] real: /datasets/ShanghaiTech/part_B" in printed
    assert "https://www.kaggle.com/datasets/tthien/shanghaitech" in printed
    assert "[missing] annotate.annotators[0]: /weights/SASNet_SHHB.pth" in printed
    assert "https://github.com/TencentYoutuResearch/CrowdCounting-SASNet" in printed
    assert "CompVis/stable-diffusion-v1-4" in printed and f"promptmix run {out} --check" in printed
    # the students' ImageNet backbones are downloads too (`pretrained: imagenet` -> its Hub id), listed once each
    assert re.search(r"train\.rescsrnet-baseline\.pretrained +timm/resnet18\.tv_in1k", printed)
    assert printed.count("timm/vgg16.tv_in1k  (https://") == 1

    # `run --check` lists every missing input with its link, before anything runs
    assert main(["run", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert "2 input(s) of the config do not exist" in err and "SASNet_SHHB.pth does not exist" in err
    assert "docs/DATASETS.md" in err

    # an edited file is kept, naming it; --force replaces it
    out.write_text(text + "# my note\n")
    assert main(["init", "shtb", "--out", str(out)]) == 1
    assert f"{out} exists (maybe with your edits); keeping it" in capsys.readouterr().err
    assert out.read_text().endswith("# my note\n")
    assert main(["init", "shtb", "--out", str(out), "--force"]) == 0
    assert "runs/promptmix-shtb" in out.read_text()


def test_init_list_and_unknown_names(capsys):
    assert main(["init", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("shtb", "shta", "ucf-qnrf", "nyu-depth-v2", "panda-crowd", "mvc-caltech101", "label-prompts-cifar10"):
        assert re.search(rf"^  {re.escape(name)} +\S", listed, flags=re.M), name
    assert 'Table I column "SHTB MAE"' in listed
    assert main(["init", "sthb"]) == 1
    assert "unknown experiment 'sthb' (did you mean 'shtb'?)" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(experiments()))
def test_every_input_of_every_experiment_has_a_documented_source(name):
    cfg = load_config(experiments()[name])
    docs = (ROOT / "docs" / "DATASETS.md").read_text()
    for item in local_inputs(cfg):
        assert item.source is not None, f"{name}: {item.key} {item.path} has no entry in experiments.SOURCES"
        assert item.source.path in docs and item.source.url in docs, item.source.path
    assert f"`{name}`" in docs or name.startswith(("ten-locations-r",)), f"{name} is not in DATASETS.md"


def test_sources_and_papers_are_documented():
    docs = (ROOT / "docs" / "DATASETS.md").read_text()
    for src in SOURCES:
        assert f"`{src.path}" in docs and src.url in docs, src.path
    assert source_of("/elsewhere/ShanghaiTech/part_A").path == "data/ShanghaiTech"
    papers = (ROOT / "docs" / "papers.md").read_text()
    for needle in ("arXiv:2301.12914", "IJCNN", "2023", "arXiv:2412.15358", "WACV", "2025", "arXiv:2307.08526"):
        assert needle in papers, needle


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS_DIR.glob("*.yaml")))
def test_configs_cite_the_repositorys_own_papers_page(config):
    text = (CONFIGS_DIR / config).read_text()
    assert "shared/papers" not in text
    if config != "mvc_toy_classification.yaml":
        assert "docs/papers.md" in text and "docs/DATASETS.md" in text
    yaml.safe_load(text)
