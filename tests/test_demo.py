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
                      "train.real-only", "train.promptmix", "report"]
    # the report stage's table (promptmix.training.report), printed once: the runs, then every metric
    table = lines[lines.index("results (tiny random models, so the numbers are meaningless):") + 1:]
    assert table[0].split() == ["run", "model", "mixing", "r_mix", "lr", "epoch", "baseline"]
    assert table[3].split()[:3] == ["promptmix", "rescsrnet", "promptmix"] and table[3].split()[-1] == "real-only"
    run = tmp_path / "demo" / "run"
    metrics = {name: json.loads((run / "train" / name / "metrics.json").read_text())
               for name in ("real-only", "promptmix")}
    for key in ("test/mae", "test/rmse"):
        base = next(r.split()[3:] for r in table if r.split()[:3] == [key, "↓", "real-only"])
        assert base == [f"{metrics['real-only'][key]:.4f}", "baseline"]
        row = next(r.split()[3:] for r in table if r.split()[:3] == [key, "↓", "promptmix"])
        change = metrics["promptmix"][key] - metrics["real-only"][key]
        assert row[0] == f"{metrics['promptmix'][key]:.4f}" and float(row[1]) == pytest.approx(change, abs=1e-4)
        assert row[-1] == ("better" if change < 0 else "worse" if change > 0 else "same")
    assert sum(line.startswith("run ") for line in lines) == 1  # one table, not two
    # where everything is: every path printed exists
    card = run / "publish" / "README.md"
    assert f"dataset card                {card}" in text and "(missing)" not in text
    assert f"report                      {run / 'report' / 'report.md'}" in text
    assert (run / "report" / "test_metric.png").read_bytes()[:4] == b"\x89PNG"
    assert "(git tag `v0.1.0`" in card.read_text()  # published as version 0.1.0
    assert (run / "publish" / "assets" / "samples.png").stat().st_size > 0
    assert "generate.model: stabilityai/stable-diffusion-2-1-base" in text  # the one-line change
    raw = tmp_path / "demo" / "raw" / "part_B"
    assert len(list((raw / "train_data" / "images").glob("IMG_*.jpg"))) == SMALL.n_train
    assert len(list((raw / "train_data" / "ground-truth").glob("GT_IMG_*.mat"))) == SMALL.n_train

    again: list[str] = []
    assert run_demo(tmp_path / "demo", settings=SMALL, echo=again.append) == 0  # second run: all cached
    again = "\n".join(again).splitlines()
    assert sum(" cached " in line for line in again) == 10 and not any(" ran " in line for line in again)


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
