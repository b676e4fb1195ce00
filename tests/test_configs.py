"""Every YAML under configs/ loads, validates and plans its stages (no model or dataset is loaded),
and the paper configs carry the papers' settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptmix.pipeline.config import load_config
from promptmix.pipeline.engine import pipeline_steps
from promptmix.schema import BOXES as S_BOXES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.glob("*.yaml"))


def test_the_papers_configs_are_all_there():
    names = {p.stem for p in ALL}
    assert {"promptmix_shta", "promptmix_shtb", "promptmix_ucf_qnrf", "promptmix_nyu_depth_v2",
            "label_prompts_cifar10", "mvc_caltech101", "mvc_cifar100_reduced"} <= names


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_config_validates_and_builds_its_stages(path):
    cfg = load_config(path)
    stages = pipeline_steps(cfg)
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


# -- every table row at toy scale ------------------------------------------------------------------------------
NEW_CONFIGS = {"promptmix_panda_crowd", "promptmix_large_crowd_k500", "promptmix_large_crowd_k1000",
               "promptmix_large_crowd_k10000", "promptmix_large_crowd_k1000_fp32", "promptmix_train_station",
               "promptmix_mecca", "promptmix_ten_locations", "promptmix_ten_locations_r10",
               "promptmix_ten_locations_r40", "promptmix_ten_locations_r60", "mvc_cifar10", "mvc_cifar10_reduced",
               "mvc_cifar100", "mvc_brain_tumour", "mvc_caltech101_pretrained_sd",
               "mvc_cifar100_reduced_pretrained_sd"}
_DONE: dict[tuple, dict] = {}  # toy experiments already trained (several table rows share one at toy scale)
_DATA: dict = {}  # loaded training data per (real, fake)


def test_the_new_table_rows_are_configured():
    assert NEW_CONFIGS <= {p.stem for p in ALL}
    docs = (CONFIGS.parent / "docs" / "CONFIGS.md").read_text()
    assert all(f"`{p.stem}.yaml`" in docs for p in ALL)  # docs/CONFIGS.md lists every config


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    """Tiny real and fake datasets per task (and a PANDA-Crowd build with boxes), shared by every config."""
    from promptmix.builders import build_panda_crowd
    from promptmix.testing.raw_datasets import write_panda_crowd_raw
    from promptmix.testing.synthetic import write_real_dataset
    from promptmix.testing.toy_configs import write_toy_policy

    root = tmp_path_factory.mktemp("toy-configs")
    sizes = {"train": 6, "validation": 2, "test": 2}
    real = {"counting": write_real_dataset(root / "counting", "counting", sizes=sizes, size=(48, 64)),
            "depth": write_real_dataset(root / "depth", "depth", sizes=sizes, size=(32, 40)),
            "classification": write_real_dataset(root / "classification", "classification", sizes=sizes,
                                                 size=(32, 32))}
    raw = write_panda_crowd_raw(root / "panda-raw", n_images=10, size=(96, 54), people=(3, 8))
    real["panda"] = root / "panda"
    build_panda_crowd(raw, real["panda"], size=(64, 36))
    import gc

    gc.freeze()  # accelerate's free_memory() runs gc.collect() after every run: leave what lives now out of it
    return root, real, write_toy_policy(root / "policy.json"), sizes


def _fake_for(cfg, root, task):
    from promptmix.testing.synthetic import write_fake_dataset

    names = tuple(cfg.annotate.names()) if cfg.annotate is not None else ("annotator_a",)
    names = names + ("extra-annotator",) if len(names) == 1 else names
    folder = root / "fake" / cfg.run_dir.name
    if not folder.exists():
        size = {"counting": (48, 64), "depth": (32, 40), "classification": (32, 32)}[task]
        write_fake_dataset(folder, task, prompts=["a", "b", "c"], per_prompt=4, size=size, annotators=names)
    return folder, 12


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_config_trains_every_run_at_toy_scale(path, toy_data):
    """Each training run of each config -- its network, recipe, mixing and kernel: the table row -- trains one toy
    epoch on tiny data (runs that are the same experiment at toy scale train once)."""
    import math

    from promptmix.testing.toy_configs import toy_key, toy_train_config
    from promptmix.training.train.trainer import train

    root, real, policy, sizes = toy_data
    cfg = load_config(path)
    fake, n_fake = _fake_for(cfg, root, cfg.task) if cfg.filter is not None else (None, 0)
    for name, run in cfg.train.items():
        data = real["panda"] if run.density_kernel == "box" else real[cfg.task]
        toy = toy_train_config(run, real=data, fake=fake, n_fake=n_fake, policy=policy,
                               output_dir=root / "out" / cfg.run_dir.name / name)
        # the row's own settings survive the shrinking
        for key in ("model", "recipe", "optimizer", "lr_schedule", "augment", "cutout", "mixing", "swap_fraction",
                    "rsp_probability", "density_kernel", "target_annotator", "weight_decay"):
            assert getattr(toy, key) == getattr(run, key), (name, key)
        key = toy_key(toy)
        if key not in _DONE:
            from promptmix.training.train.data import load_training_data

            loaded = _DATA.setdefault((str(data), str(toy.fake)), load_training_data(toy))
            metrics = train(toy, loaded)
            (epoch,) = [h for h in metrics["history"] if h["phase"] == "main"]
            expect_fake = {"none": 0, "swap": round(run.swap_fraction * sizes["train"])}
            if run.mixing in expect_fake:
                assert epoch["fake_rows"] == expect_fake[run.mixing]
            elif run.mixing == "promptmix":
                assert epoch["fake_rows"] == toy.r_mix
            elif run.mixing in ("two-phase", "fake-only"):
                assert epoch["fake_rows"] == n_fake
            if run.mixing == "fake-only":
                assert epoch["real_rows"] == 0
            assert math.isfinite(epoch["train_loss"]) and epoch["steps"] == 1
            _DONE[key] = metrics
        metrics = _DONE[key]
        assert metrics["model"] == run.model and metrics["mixing"] == run.mixing


# -- whole configs end to end at toy scale ---------------------------------------------------------------------
def _panda_raw(folder):
    from promptmix.testing.raw_datasets import write_panda_crowd_raw

    return write_panda_crowd_raw(folder / "panda", n_images=10, size=(96, 54), people=(3, 8)), \
        {"size": [64, 36], "split": [30, 6, 9], "seed": 42}


def _nyu_raw(folder):
    from promptmix.testing.raw_datasets import write_nyu_labeled_mat

    return write_nyu_labeled_mat(folder / "nyu.mat", n=8, size=(40, 32)), None


def _cifar_like(folder):
    from promptmix.testing.synthetic import write_real_dataset

    real = write_real_dataset(folder / "cifar", "classification", sizes={"train": 6, "validation": 2, "test": 2},
                              size=(32, 32))
    return real, {"image_column": "image", "label_column": "label"}


E2E = {"promptmix_panda_crowd": _panda_raw, "promptmix_nyu_depth_v2": _nyu_raw, "label_prompts_cifar10": _cifar_like}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(E2E))
def test_config_runs_end_to_end_at_toy_scale(name, tiny_models, tmp_path):
    """`promptmix run CONFIG --set ...` with the data and models pointed at tiny local ones (the new builder, the
    paper's GuideDepth, and the add / swap / synthetic-only rows), every stage from the raw files to the report."""
    import json

    import yaml

    from promptmix.cli import main
    from promptmix.testing.toy_configs import toy_overrides

    path = CONFIGS / f"{name}.yaml"
    raw, options = E2E[name](tmp_path)
    sets = toy_overrides(yaml.safe_load(path.read_text()), raw=raw, models=tiny_models, run_dir=tmp_path / "run",
                         real_options=options)
    assert main(["run", str(path), *(f for s in sets for f in ("--set", s))]) == 0
    cfg = load_config(path, overrides=sets)
    for run_name, run in cfg.train.items():
        metrics = json.loads((tmp_path / "run" / "train" / run_name / "metrics.json").read_text())
        assert metrics["model"] == run.model and metrics["mixing"] == run.mixing
        assert metrics["history"][0]["steps"] == 1
        if run.mixing == "swap":
            assert metrics["history"][0]["fake_rows"] == 3  # half of the 6 real training images
    assert (tmp_path / "run" / "report" / "report.md").is_file()
    if name == "promptmix_panda_crowd":
        from datasets import load_dataset

        real = load_dataset(str(tmp_path / "run" / "real"), split="train")
        assert S_BOXES in real.features and real[0]["width"] == 64


def test_new_promptmix_configs_follow_the_paper():
    panda = load_config(CONFIGS / "promptmix_panda_crowd.yaml")
    assert panda.real.builder == "panda-crowd" and panda.real.options["size"] == [2560, 1440]
    assert panda.real.options["split"] == [30, 6, 9] and panda.generate.images_per_prompt == 10
    assert {(r.model, r.batch_size, r.density_kernel) for r in panda.train.values()} == {("csrnet", 1, "box")}
    assert [r.r_mix for r in panda.train.values() if r.mixing == "promptmix"] == [36]  # IV-A
    # Table IV (k, r_mix): (1000, 1000), (500, 500), (1000, 500), (10000, 500); Table V: SHTA- and SHTB-trained SASNet
    rows = set()
    for name in ("promptmix_large_crowd_k500", "promptmix_large_crowd_k1000", "promptmix_large_crowd_k10000"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.prompts.manual == ["large crowd"] and cfg.generate.size == "1024x768"
        for run in cfg.train.values():
            assert run.model == "rescsrnet" and run.epochs == 500 and run.batch_size == 32
            if run.mixing == "promptmix":
                rows.add((cfg.generate.images_per_prompt, run.r_mix, run.target_annotator or "sasnet-shtb"))
    assert rows == {(1000, 1000, "sasnet-shtb"), (500, 500, "sasnet-shtb"), (1000, 500, "sasnet-shtb"),
                    (1000, 500, "sasnet-shta"), (10000, 500, "sasnet-shtb"), (10000, 500, "sasnet-shta")}
    assert load_config(CONFIGS / "promptmix_large_crowd_k1000_fp32.yaml").generate.dtype == "float32"  # Table VI
    # Table VII: prompts and r_img
    assert load_config(CONFIGS / "promptmix_mecca.yaml").prompts.manual == ["large crowd in mecca"]
    keep = {load_config(CONFIGS / f"promptmix_ten_locations{s}.yaml").filter.keep_percent
            for s in ("", "_r10", "_r40", "_r60")}
    assert keep == {100, 10, 40, 60}
    assert len(load_config(CONFIGS / "promptmix_ten_locations.yaml").prompts.locations) == 10
    nyu = load_config(CONFIGS / "promptmix_nyu_depth_v2.yaml")
    assert {r.model for r in nyu.train.values()} == {"guidedepth"} and "zoedepth-nyu" in nyu.annotate.names()


def test_new_classification_configs_follow_their_papers():
    c10 = load_config(CONFIGS / "mvc_cifar10.yaml")
    columns = {n.split("-", 3)[-1] if n.startswith("wrn-28-10") else None for n in c10.train}
    assert {"baseline", "faa", "aa", "ra", "syn", "faa-syn", "aa-syn", "ra-syn"} <= columns  # Table 1's columns
    aa = c10.train["wrn-28-10-aa"]
    assert (aa.optimizer, aa.nesterov, aa.lr, aa.weight_decay, aa.lr_schedule, aa.epochs, aa.batch_size, aa.cutout) \
        == ("sgd", True, 0.1, 5e-4, "cosine", 200, 128, 16)
    assert c10.train["wrn-28-10-baseline"].augment == "crop-flip" and c10.train["wrn-28-10-syn"].mixing == "two-phase"
    red = load_config(CONFIGS / "mvc_cifar100_reduced.yaml")
    assert red.real.reduced == 4000 and red.real.options["reduced_counts"] == "labelled"
    brain = load_config(CONFIGS / "mvc_brain_tumour.yaml")
    eff = brain.train["efficientnet-b0-baseline"]
    assert (eff.optimizer, eff.lr, eff.lr_schedule, eff.lr_gamma) == ("sgd", 0.02, "multistep", 0.1)  # supplement
    assert {(r.optimizer, r.lr, r.batch_size) for n, r in brain.train.items() if not n.startswith("efficientnet")} \
        == {("adam", 1e-3, 50)}
    assert {r.model for r in brain.train.values()} == {"resnet50", "efficientnet-b0", "wide-resnet50-2"}
    cal = load_config(CONFIGS / "mvc_caltech101.yaml")
    assert {(r.optimizer, r.lr, r.batch_size) for r in cal.train.values()} == {("adam", 1e-4, 50)}
    assert {r.mixing for r in cal.train.values()} == {"none", "two-phase", "rsp"}  # Table 5's strategies
    for path in ALL:  # MVC generation mixes caption embeddings only: no class template that it would ignore
        cfg = load_config(path)
        if cfg.generate.mvc is not None and cfg.generate.mvc.enabled:
            assert cfg.prompts.class_templates == []
    label = load_config(CONFIGS / "label_prompts_cifar10.yaml")
    assert {r.mixing for r in label.train.values()} == {"none", "two-phase", "swap", "fake-only"}
    assert {r.swap_fraction for r in label.train.values() if r.mixing == "swap"} == {0.5}
