"""configs/mvc_toy_classification.yaml end to end (MVC paper, Table 5 at toy scale) through `promptmix run`.

Image folder (reduced) -> captions -> MVC fine-tuning -> image-conditioned MVC generation ->
classifier + CLIP zero-shot annotation -> filtering -> baseline, combined, two-phase and RSP classifier runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, load_dataset

from promptmix import schema as S

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "mvc_toy_classification.yaml"
STRATEGIES = {"baseline": "none", "combined": "two-phase", "two-phase": "two-phase", "rsp": "rsp"}


def write_toy_inputs(folder: Path, tiny_models: dict) -> None:
    """What the config's header says to make: tiny models under models/ and a 2-class image folder."""
    from promptmix.testing import save_tiny_models
    from promptmix.testing.raw_datasets import write_imagefolder

    models = folder / "models"
    models.mkdir()
    for key in ("sd", "captioner", "classifier"):
        os.symlink(tiny_models[key], models / key)
    save_tiny_models(models, keys=("clip",))
    write_imagefolder(folder / "data" / "toy-imagefolder", ["cat", "dog"], per_class=4, with_split=True,
                      test_per_class=2, size=(32, 32))


@pytest.fixture(scope="module")
def toy_run(tiny_models, tmp_path_factory):
    from promptmix.cli import main

    folder = tmp_path_factory.mktemp("mvc-e2e")
    write_toy_inputs(folder, tiny_models)
    cwd = os.getcwd()
    os.chdir(folder)  # the config's paths are relative to where `promptmix run` starts
    try:
        assert main(["run", str(CONFIG)]) == 0
    finally:
        os.chdir(cwd)
    return folder / "runs" / "mvc-toy"


def _rows(folder: Path) -> list[dict]:
    return [r for p in sorted(folder.glob("chunk-*.parquet")) for r in Dataset.from_parquet(str(p)).to_list()]


def test_the_fine_tuned_generator_is_a_pix2pix_pipeline(toy_run):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(str(toy_run / "finetune"))
    assert pipe.unet.config.in_channels == 8
    state = json.loads((toy_run / "finetune" / "training.json").read_text())
    assert state["status"] == "finished" and state["global_step"] == 2 and state["class_names"] == ["cat", "dog"]
    # one pair per training image of the reduced train split, within its class
    real = load_dataset(str(toy_run / "real"), split="train")
    assert len(real) <= 8
    pairs = Dataset.from_parquet(str(toy_run / "finetune" / "pairs.parquet"))
    labels = list(real[S.LABEL])
    assert sorted(pairs[S.LABEL]) == sorted(labels)
    assert all(labels[c] == labels[t] == y for c, t, y in
               zip(pairs[S.CONDITIONING_INDEX], pairs[S.TARGET_INDEX], pairs[S.LABEL]))


def test_rows_are_image_conditioned_mvc_rows_that_reproduce(toy_run, capsys, monkeypatch):
    from promptmix.cli import main

    rows = _rows(toy_run / "images")
    assert len(rows) == 2 * 3  # images_per_class 3, two classes
    real = load_dataset(str(toy_run / "real"), split="train")
    label_of = dict(zip(real[S.IMAGE_ID], real[S.LABEL]))
    for row in rows:
        record = json.loads(row[S.MIXING])
        assert len(record["coarse"]) == 1 and len(record["fine"]) == 1
        assert label_of[row[S.CONDITIONING_IMAGE_ID]] == row[S.LABEL]  # conditioning image of the row's class
        assert row[S.PROMPT].startswith("This is an image of " + ["cat", "dog"][row[S.LABEL]])
    capsys.readouterr()
    monkeypatch.chdir(toy_run.parent.parent)  # the run's recorded paths are relative, as the config's are
    assert main(["reproduce", "runs/mvc-toy", "--row", "4"]) == 0
    out = capsys.readouterr().out
    assert "MATCH" in out and "MISMATCH" not in out


def test_both_annotators_labelled_every_row_and_the_filter_kept_75_percent(toy_run):
    from promptmix.annotation.filter.filtering import keep_count

    row_ids = {r[S.ROW_ID] for r in _rows(toy_run / "images")}
    for name in ("classifier", "clip"):
        ann = _rows(toy_run / "annotations" / name)
        assert {r[S.ROW_ID] for r in ann} == row_ids
        assert all(r[S.LABEL] in (0, 1) and 0 <= r[S.PROBABILITY] <= 1 for r in ann)
    fake_all = load_dataset(str(toy_run / "fake"), "all", split="train")
    kept = load_dataset(str(toy_run / "fake"), "kept", split="train")
    assert len(fake_all) == 6
    assert [a[S.ANNOTATOR] for a in fake_all[0][S.ANNOTATIONS]] == ["classifier", "clip"]
    assert len(kept) == sum(fake_all[S.KEPT]) == keep_count(6, 75)
    assert kept[S.LABEL] == [r[S.LABEL] for r in fake_all if r[S.KEPT]]  # the generated-for class


def test_baseline_and_the_three_mvc_strategies_trained_and_compare_in_a_report(toy_run, capsys, monkeypatch):
    from promptmix.cli import main

    metrics = {}
    for name, mixing in STRATEGIES.items():
        metrics[name] = json.loads((toy_run / "train" / name / "metrics.json").read_text())
        assert metrics[name]["mixing"] == mixing
        assert 0.0 <= metrics[name]["test/top1"] <= 1.0
    two_phase = yaml.safe_load((toy_run / "train" / "two-phase" / "config.yaml").read_text())
    assert two_phase["two_phase_epochs"] == 1
    # the report stage: Table 5, every strategy against the real-only baseline
    comparison = json.loads((toy_run / "report" / "comparison.json").read_text())
    assert [r["name"] for r in comparison["runs"]] == list(STRATEGIES)
    assert {r["name"]: r["baseline"] for r in comparison["runs"]} == {
        "baseline": None, "combined": "baseline", "two-phase": "baseline", "rsp": "baseline"}
    for c in comparison["changes"]:
        if c["metric"] == "test/top1" and c["run"] != "baseline":
            change = metrics[c["run"]]["test/top1"] - metrics["baseline"]["test/top1"]
            assert c["change"] == pytest.approx(change)
            assert c["verdict"] == ("better" if change > 0 else "worse" if change < 0 else "same")  # higher is better
    report = (toy_run / "report" / "report.md").read_text()
    assert "| test/top1 ↑ | rsp |" in report and (toy_run / "report" / "test_metric.png").is_file()
    # a second run of the same config changes nothing
    monkeypatch.chdir(toy_run.parent.parent)
    capsys.readouterr()
    assert main(["run", str(CONFIG)]) == 0
    out = capsys.readouterr().out
    stage_lines = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert stage_lines and all(parts[1] == "cached" for parts in stage_lines)


def test_raising_the_fine_tuning_steps_continues_from_the_last_checkpoint(toy_run, capsys, monkeypatch):
    """Runs last: it changes the run folder. Only finetune.max_train_steps changes (2 -> 3): the stage continues
    from checkpoint-2 instead of deleting its outputs and training from step 0."""
    from promptmix.cli import main

    finetune = toy_run / "finetune"
    losses = json.loads((finetune / "losses.json").read_text())
    pairs = (finetune / "pairs.parquet").stat().st_mtime_ns
    monkeypatch.chdir(toy_run.parent.parent)
    capsys.readouterr()
    assert main(["run", str(CONFIG), "--set", "finetune.max_train_steps=3", "--until", "finetune"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["finetune"])
    assert line.split()[1] == "ran" and "continued from its last checkpoint" in line
    state = json.loads((finetune / "training.json").read_text())
    assert state["status"] == "finished" and state["global_step"] == 3
    after = json.loads((finetune / "losses.json").read_text())
    assert [r["step"] for r in after] == [1, 2, 3] and after[:2] == losses  # steps 1-2 were not redone
    assert (finetune / "pairs.parquet").stat().st_mtime_ns == pairs
    # the same as fine-tuning 3 steps from the start (constant learning rate)
    import dataclasses

    from safetensors.torch import load_file

    from promptmix.pipeline import load_config
    from promptmix.training.finetune.finetune import finetune_mvc

    ft = load_config(CONFIG, overrides=["finetune.max_train_steps=3"]).finetune
    fresh = finetune_mvc(dataclasses.replace(ft, output_dir=str(toy_run.parent / "fresh-finetune"), sample_images=0))
    assert json.loads((fresh / "losses.json").read_text()) == after
    weights = sorted((finetune / "unet").glob("*.safetensors"))
    assert weights
    for path in weights:
        a, b = load_file(str(path)), load_file(str(fresh / "unet" / path.name))
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
