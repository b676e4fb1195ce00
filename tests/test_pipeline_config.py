"""PipelineConfig: sections are the stages' own configs, wired keys, errors that name the key and the allowed values."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from promptmix.errors import ConfigError
from promptmix.pipeline.config import PipelineConfig, apply_override, load_config
from promptmix.pipeline.engine import stage_key

BASE = yaml.safe_load("""
run_dir: RUN
real: {builder: shanghaitech, root: raw, part: B}
caption: {model: models/captioner}
prompts: {prefix: large crowd, suffix: grayscale}
generate: {model: models/sd, images_per_prompt: 2, steps: 2}
annotate: {annotators: ["a:csrnet=a.pth", "b:dmcount=b.pth"]}
filter: {keep_percent: 60, target: a}
publish: {repo_id: local/demo, version: 0.1.0}
train:
  baseline: {mixing: none, epochs: 2, lr: 1e-3}
  promptmix: {mixing: promptmix, r_mix: 4, epochs: 2, lr: 1e-3}
""")


def with_value(path: str, value, data=None):
    data = copy.deepcopy(data or BASE)
    *keys, last = path.split(".")
    node = data
    for k in keys:
        node = node.setdefault(k, {})
    if value is _DELETE:
        node.pop(last)
    else:
        node[last] = value
    return data


_DELETE = object()


def error_of(data) -> str:
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_dict(data)
    return str(info.value)


def test_sections_are_the_stage_configs_with_wired_keys():
    from promptmix.generation.caption.captioner import CaptionConfig
    from promptmix.generation.generate.config import GenerateConfig
    from promptmix.training.train.config import TrainConfig

    cfg = PipelineConfig.from_dict(BASE)
    assert isinstance(cfg.caption, CaptionConfig) and isinstance(cfg.generate, GenerateConfig)
    assert cfg.task == "counting"  # from real.builder
    assert cfg.caption.real == str(Path("RUN") / "real")
    assert cfg.generate.prompts == str(Path("RUN") / "prompts")
    run = cfg.train["promptmix"]
    assert isinstance(run, TrainConfig)
    assert (run.task, run.real, run.fake, run.output_dir) == (
        "counting", str(Path("RUN/real")), str(Path("RUN/fake")), str(Path("RUN/train/promptmix")))
    assert cfg.train["baseline"].fake is None
    assert run.lr == 1e-3  # YAML reads 1e-3 as a string; the float field takes it


@pytest.mark.parametrize("path,value,message", [
    ("stepz", 1, "stepz: unknown key; allowed keys are annotate, caption, filter, finetune, generate, prompts, "
                 "publish, real, report, run_dir, task, train"),
    ("generate.stepz", 1, "generate.stepz: unknown key; allowed keys are batch_size, chunk_size,"),
    ("generate.steps", -1, "generate.steps: expected an integer >= 1; got -1"),
    ("generate.steps", "abc", "generate.steps: expected an integer; got 'abc'"),
    ("generate.match_grayscale", "yes", "generate.match_grayscale: expected true or false; got 'yes'"),
    ("generate.prompts", "elsewhere", "generate.prompts: set by the pipeline"),
    ("real.builder", "zip", "real.builder: expected one of 'shanghaitech', 'ucf-qnrf', 'panda-crowd', 'nyu-depth-v2', "
                            "'imagefolder', 'hub', 'folder'; got 'zip'"),
    ("real.part", "C", "real.part: expected one of None, 'A', 'B'; got 'C'"),
    ("real.root", _DELETE, "real.root: expected a value for builder 'shanghaitech' (it needs root, part)"),
    ("real.mat", "x.mat", "real.mat: expected nothing for builder 'shanghaitech'"),
    ("real.options", {"validation_fraction": 0.2, "max_sid": 9},
     "real.options.max_sid: not an option of build_shanghaitech; allowed: max_pixels, seed, validation_fraction"),
    ("task", "depth", "task: real.builder 'shanghaitech' gives a counting dataset; got 'depth'"),
    ("caption", _DELETE, "prompts.use_captions: true needs captions; add a caption section"),
    ("generate", _DELETE, "generate: required key is missing"),
    ("run_dir", _DELETE, "run_dir: required key is missing"),
    ("prompts.suffix", "gray", "prompts.suffix: expected one of 'none', 'grayscale'; got 'gray'"),
    ("annotate.annotators", ["a:nosuchkind=x.pth"], "annotate.annotators[0]: annotator spec 'a:nosuchkind=x.pth': "
                                                    "unknown kind 'nosuchkind'"),
    ("annotate.annotators", ["a:csrnet=a.pth"], "filter.keep_percent: 60 needs at least two annotators"),
    ("filter.target", "c", "filter.target: expected one of first, mean, a, b; got 'c'"),
    ("publish.version", "1.0", "publish.version: expected X.Y.Z"),
    ("train.promptmix.r_mix", None, "train.promptmix.r_mix: mixing 'promptmix' needs the number of fake rows"),
    ("train.promptmix.mixing", "magic", "train.promptmix.mixing: expected one of 'none', 'promptmix',"),
    ("train.baseline.output_dir", "x", "train.baseline.output_dir: set by the pipeline"),
    ("train.baseline.model", "guidedepth", "train.baseline.model: expected a counting model"),
    ("report.baseline", "nope", "report.baseline: expected one of the training runs (baseline, promptmix); "
                                "got 'nope'"),
    ("report.baselin", "x", "report.baselin: unknown key; allowed keys are baseline"),
])
def test_errors_name_the_key_and_the_allowed_values(path, value, message):
    assert message in error_of(with_value(path, value))


def test_cross_section_rules():
    no_filter = with_value("filter", _DELETE, with_value("publish", _DELETE))
    assert "train.promptmix.mixing: 'promptmix' needs the fake dataset" in error_of(no_filter)
    assert "publish: needs a filter section" in error_of(with_value("filter", _DELETE))
    hub = with_value("real", {"builder": "hub", "dataset": "uoft-cs/cifar10"})
    assert "task: required when real.builder is 'hub'" in error_of(hub)
    mvc = with_value("generate.mvc", {"enabled": True})
    assert "generate.mvc.enabled: MVC needs a classification dataset" in error_of(mvc)


def test_wired_key_with_the_same_value_is_accepted_and_yaml_round_trips(tmp_path):
    cfg = PipelineConfig.from_dict(with_value("caption.real", str(Path("RUN") / "real")))
    text = cfg.to_yaml()
    assert "prompts: RUN" not in text and "output_dir" not in text  # wired keys left out
    path = tmp_path / "c.yaml"
    path.write_text(text)
    again = load_config(path)
    assert again.to_dict() == cfg.to_dict()


def test_load_config_overrides_and_file_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    cfg = load_config(path, overrides=["generate.images_per_prompt=5", "run_dir=/tmp/elsewhere",
                                       "prompts.manual=[a, b]"])
    assert cfg.generate.images_per_prompt == 5 and cfg.generate.prompts == "/tmp/elsewhere/prompts"
    assert cfg.prompts.manual == ["a", "b"]
    with pytest.raises(ConfigError, match=r"c\.yaml: generate\.steps: expected an integer >= 1; got 0"):
        load_config(path, overrides=["generate.steps=0"])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        apply_override({}, "generate.steps")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(tmp_path / "list.yaml")


def test_stage_keys_ignore_wired_paths_and_runtime_settings_but_follow_results():
    from promptmix.pipeline.engine import pipeline_steps

    def keys(data):
        stages = pipeline_steps(PipelineConfig.from_dict(data))
        out = {}
        for s in stages:
            if s.name != "real":
                out[s.name] = stage_key(s, out, None)
            else:
                out[s.name] = stage_key(s, out, "raw-fingerprint")
        return out

    base = keys(BASE)
    assert list(base) == ["real", "caption", "prompts", "generate", "annotate", "filter", "publish",
                          "train.baseline", "train.promptmix", "report"]
    moved = keys(with_value("run_dir", "/somewhere/else"))
    assert moved == base  # moving a run folder keeps every cache key
    batch = keys(with_value("generate.batch_size", 32))
    assert batch == base  # run-time settings are not in the keys
    k = keys(with_value("generate.images_per_prompt", 3))
    changed = {n for n in base if base[n] != k[n]}
    assert changed == {"generate", "annotate", "filter", "publish", "train.promptmix", "report"}  # not train.baseline
    assert keys(with_value("report", {"baseline": "baseline"}))["report"] != base["report"]
    one_run = with_value("train", {"baseline": {"mixing": "none", "epochs": 2}})
    assert "report" not in keys(one_run)  # nothing to compare
    assert "report: compares training runs; needs at least two in train (it has 1)" in error_of(
        with_value("report", {}, one_run))


def test_cli_check_and_error_exit(tmp_path, capsys, monkeypatch, tiny_models):
    from promptmix.cli import main

    raw = tmp_path / "raw" / "part_B"
    raw.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # relative inputs are read from the folder the command runs in
    data = with_value("real.root", str(tmp_path / "raw"))
    # --check looks at the models too (pre-flight): point the config at real (tiny) ones
    data = with_value("caption.model", str(tiny_models["captioner"]), data)
    data = with_value("generate.model", str(tiny_models["sd"]), data)
    data = with_value("annotate.annotators", [f"a:csrnet={tiny_models['counter_a']}",
                                              f"b:dmcount={tiny_models['counter_b']}"], data)
    data = with_value("run_dir", str(tmp_path / "RUN"), data)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--check"]) == 0
    assert "valid (counting" in capsys.readouterr().out
    path.write_text(yaml.safe_dump(with_value("generate.steps", 0, data)))
    assert main(["run", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "promptmix run: error:" in err and "generate.steps: expected an integer >= 1; got 0" in err
    path.write_text(yaml.safe_dump(with_value("real.root", str(tmp_path / "nope"), data)))
    assert main(["run", str(path), "--check"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_run_refuses_to_start_under_a_distributed_launcher(monkeypatch):
    from promptmix.pipeline import run_pipeline

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="runs in one process .*accelerate launch -m promptmix generate"):
        run_pipeline(PipelineConfig.from_dict(BASE))


MVC = yaml.safe_load("""
run_dir: RUN
real: {builder: imagefolder, root: raw}
caption: {model: models/captioner}
prompts: {class_templates: ["a photo of a {label}"]}
finetune: {base_model: models/sd, coarse: 2, fine: 0, caption_prefix: "A photo of {label}", max_train_steps: 4}
generate: {mvc: {enabled: true, images_per_class: 2}, steps: 2}
""")


def test_mvc_settings_of_finetune_fill_generate_mvc_and_must_agree():
    cfg = PipelineConfig.from_dict(MVC)
    mvc, ft = cfg.generate.mvc, cfg.finetune
    assert (mvc.coarse, mvc.fine, mvc.caption_prefix) == (2, 0, "A photo of {label}")  # copied from finetune
    assert (mvc.fine_max_span, mvc.prefix_separator) == (ft.fine_max_span, ft.prefix_separator)  # its defaults too
    assert mvc.images_per_class == 2 and cfg.generate.model == str(Path("RUN") / "finetune")
    same = PipelineConfig.from_dict(with_value("generate.mvc.coarse", 2, MVC))  # set in both, equal: fine
    assert same.generate.mvc.coarse == 2
    assert ("generate.mvc.coarse: 3 differs from finetune.coarse: 2; the generator is fine-tuned with "
            "finetune.coarse") in error_of(with_value("generate.mvc.coarse", 3, MVC))
    message = error_of(with_value("generate.mvc.prefix_separator", " - ", MVC))
    assert "generate.mvc.prefix_separator: ' - ' differs from finetune.prefix_separator: '. ' (its default)" in message
    assert "leave generate.mvc.prefix_separator out" in message
    again = PipelineConfig.from_dict(yaml.safe_load(cfg.to_yaml()))  # the saved config loads again
    assert again.generate.mvc == mvc


def test_without_a_caption_section_the_prompt_bag_reads_the_real_dataset():
    from promptmix.pipeline.engine import pipeline_steps

    data = with_value("caption", _DELETE, with_value("prompts.use_captions", False))
    cfg = PipelineConfig.from_dict(data)
    stages = {s.name: s for s in pipeline_steps(cfg)}
    assert cfg.caption is None and "caption" not in stages and stages["prompts"].inputs == ("real",)
    assert "caption" not in yaml.safe_load(cfg.to_yaml())
    assert "prompts.use_captions: true needs captions; add a caption section" in error_of(
        with_value("caption", None))
    cls = with_value("caption", _DELETE, with_value("prompts.use_captions", False, MVC))
    assert "finetune: MVC fine-tuning mixes caption embeddings; add a caption section" in error_of(cls)
    cls = with_value("finetune", _DELETE, with_value("generate.model", "models/sd", cls))
    assert "generate.mvc.enabled: MVC mixes caption embeddings" in error_of(cls)
    cls = with_value("generate.mvc", _DELETE, cls)
    assert PipelineConfig.from_dict(cls).caption is None  # label prompts only: no captions needed
    assert "a template with {caption} needs captions" in error_of(
        with_value("prompts.class_templates", ["{label}, {caption}"], cls))


def test_finetune_stage_continues_when_only_the_step_count_changes():
    from promptmix.pipeline.engine import continue_key, pipeline_steps

    def finetune_keys(data):
        done = {}
        for s in pipeline_steps(PipelineConfig.from_dict(data)):
            done[s.name] = stage_key(s, done, "fp" if s.name == "real" else None)
            if s.name == "finetune":
                return done[s.name], continue_key(s, done, None)

    key, ckey = finetune_keys(MVC)
    more_steps = finetune_keys(with_value("finetune.max_train_steps", 8, MVC))
    assert more_steps[0] != key and more_steps[1] == ckey  # another result, but it continues
    assert finetune_keys(with_value("finetune.epochs", 3, MVC))[1] == ckey
    lr = finetune_keys(with_value("finetune.learning_rate", 1e-3, MVC))
    assert lr[0] != key and lr[1] != ckey  # starts over
    assert finetune_keys(with_value("run_dir", "/elsewhere", MVC)) == (key, ckey)  # a moved run folder continues
    caption = finetune_keys(with_value("caption.max_new_tokens", 5, MVC))
    assert caption[1] != ckey  # other captions: start over
