"""`promptmix demo`: writes its inputs, runs them through `promptmix run`, prints the table and the paths."""

from __future__ import annotations

import json

import pytest
import yaml

from promptmix.cli import main
from promptmix.pipeline.demo import DemoSettings, run_demo

pytestmark = pytest.mark.slow

SMALL = DemoSettings(n_train=6, n_test=2, size=(64, 48), images_per_prompt=2, steps=2, r_mix=4, epochs=1)


def test_demo_runs_the_pipeline_and_reports(tmp_path):
    lines: list[str] = []
    assert run_demo(tmp_path / "demo", settings=SMALL, echo=lines.append) == 0
    text = "\n".join(lines)
    lines = text.splitlines()
    assert "TINY RANDOM models" in text and "mean nothing" in text
    stages = [line.split()[0] for line in lines if line.startswith("  ") and " ran " in line]
    assert stages == ["real", "caption", "prompts", "generate", "annotate", "filter", "publish",
                      "train.real-only", "train.promptmix"]
    table = lines[lines.index("results (test split; tiny random models, so the numbers are meaningless):") + 1:][:4]
    assert table[0].split() == ["training", "run", "test", "MAE", "test", "RMSE", "lr"]
    assert set(table[1].replace(" ", "")) == {"-"}
    run = tmp_path / "demo" / "run"
    for name in ("real-only", "promptmix"):
        row = next(r for r in table if r.split()[0] == name)
        metrics = json.loads((run / "train" / name / "metrics.json").read_text())
        assert row.split()[1] == f"{metrics['test/mae']:.2f}" and row.split()[2] == f"{metrics['test/rmse']:.2f}"
    # where everything is: every path printed exists
    card = run / "publish" / "README.md"
    assert f"dataset card                {card}" in text and "(missing)" not in text
    assert "(git tag `v0.1.0`" in card.read_text()  # published as version 0.1.0
    assert (run / "publish" / "assets" / "samples.png").stat().st_size > 0
    assert "generate.model: stabilityai/stable-diffusion-2-1-base" in text  # the one-line change
    raw = tmp_path / "demo" / "raw" / "part_B"
    assert len(list((raw / "train_data" / "images").glob("IMG_*.jpg"))) == SMALL.n_train
    assert len(list((raw / "train_data" / "ground-truth").glob("GT_IMG_*.mat"))) == SMALL.n_train

    again: list[str] = []
    assert run_demo(tmp_path / "demo", settings=SMALL, echo=again.append) == 0  # second run: all cached
    again = "\n".join(again).splitlines()
    assert sum(" cached " in line for line in again) == 9 and not any(" ran " in line for line in again)


def test_demo_config_only_writes_a_valid_config(tmp_path, capsys):
    from promptmix.pipeline import load_config

    assert main(["demo", "--config-only", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "d" / "demo.yaml"
    assert f"promptmix run {path}" in out and not (tmp_path / "d" / "run").exists()
    text = path.read_text()
    assert text.startswith("# promptmix demo") and "generate: model: stabilityai/stable-diffusion-2-1-base" in text
    cfg = load_config(path)
    data = yaml.safe_load(text)
    assert cfg.task == "counting" and cfg.publish.version == "0.1.0" and not cfg.publish.push
    assert [r.mixing for r in cfg.train.values()] == ["none", "promptmix"]
    assert {r.model for r in cfg.train.values()} == {"rescsrnet"}
    assert data["real"]["builder"] == "shanghaitech"
    assert main(["demo", "--epochs", "0", "--out", str(tmp_path / "e")]) == 2
