"""`promptmix demo`: writes its inputs, runs them through `promptmix run`, prints the table and the paths."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptmix.cli import main
from promptmix.pipeline.demo import DemoSettings, run_demo

pytestmark = pytest.mark.slow

SMALL = DemoSettings.tiny_random(n_train=6, n_test=2, size=(64, 48), images_per_prompt=2, steps=2, r_mix=4, epochs=1)


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
    # published locally as version 0.1.0: the card loads the folder by its path, with no Hub id or git tag (issue 16;
    # this assertion used to expect "(git tag `v0.1.0`", the fake tag of a plain folder)
    card_text = card.read_text()
    assert "`0.1.0` (a local folder" in card_text and "git tag `v0.1.0`" not in card_text
    assert f'load_dataset("{(run / "publish").resolve().as_posix()}", split="train")' in card_text
    assert str(tmp_path) not in (run / "publish" / "provenance.json").read_text()  # no local absolute paths
    assert (run / "publish" / "assets" / "samples.png").stat().st_size > 0
    assert "generate.model: stabilityai/stable-diffusion-2-1-base" in text  # the one-line change
    raw = tmp_path / "demo" / "raw" / "part_B"
    assert len(list((raw / "train_data" / "images").glob("IMG_*.jpg"))) == SMALL.n_train
    assert len(list((raw / "train_data" / "ground-truth").glob("GT_IMG_*.mat"))) == SMALL.n_train

    again: list[str] = []
    assert run_demo(tmp_path / "demo", settings=SMALL, echo=again.append) == 0  # second run: all cached
    again = "\n".join(again).splitlines()
    assert sum(" cached " in line for line in again) == 10 and not any(" ran " in line for line in again)
    assert "promptmix init shtb" in "\n".join(again)  # the way to a real run

    # a stage command run by hand on the pipeline folder: `promptmix run` notices, names what is stale, runs nothing
    assert main(["filter", str(run), "--keep", "40"]) == 0
    config = tmp_path / "demo" / "demo.yaml"
    from promptmix.pipeline import load_config, run_pipeline

    plan = run_pipeline(load_config(config), plan_only=True)
    statuses = {r.name: r.status for r in plan.results}
    assert statuses["filter"] == "changed" and statuses["train.real-only"] == "cached"
    assert statuses["train.promptmix"] == "stale" and statuses["publish"] == "stale"
    from promptmix.errors import InputError

    with pytest.raises(InputError, match=r"keep_percent: 40.0 there, 75.0 in the config.*stale: publish, "
                                         r"train.promptmix, report.*--set filter.keep_percent=40.0.*--from filter"):
        run_pipeline(load_config(config))
    # back to the config's 75 %: filter and what reads it rerun; the real-only baseline is not retrained
    res = run_pipeline(load_config(config), from_stage="filter")
    statuses = {r.name: r.status for r in res.results}
    assert statuses["filter"] == "ran" and statuses["train.promptmix"] == "ran" and statuses["report"] == "ran"
    assert statuses["train.real-only"] == "cached"
    from promptmix.run_folder import RunFolder

    assert RunFolder(run).stage_record("filter")["keep_percent"] == 75.0

    # the README's Python API example, run as written (from the folder holding the demo), prints no library bars
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("## Python API")[1].split("```python\n")[1].split("```")[0]
    (tmp_path / "promptmix-demo").symlink_to(tmp_path / "demo")
    env = {k: v for k, v in os.environ.items() if not k.endswith("DISABLE_PROGRESS_BARS")}
    env.pop("PROMPTMIX_NO_PROGRESS", None)
    res = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^\d+ of \d+ images kept$", res.stdout, flags=re.M), res.stdout
    assert "filter" in res.stdout and " ran " in res.stdout
    bars = [line for line in res.stderr.splitlines() if re.search(r"\d+%\|", line) and "filter" not in line]
    assert not bars, res.stderr


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

    # an edited demo.yaml is kept (the demo invites editing it); an untouched one is rewritten
    edited = text.replace("keep_percent: 75.0", "keep_percent: 50.0")
    assert edited != text
    path.write_text(edited)
    assert main(["demo", "--config-only", "--out", str(tmp_path / "d")]) == 0
    assert "your edited version, kept" in capsys.readouterr().out
    assert path.read_text() == edited
    path.unlink()
    assert main(["demo", "--config-only", "--out", str(tmp_path / "d")]) == 0
    assert path.read_text() == text and "edited" not in capsys.readouterr().out
