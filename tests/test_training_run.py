"""Training runs in-process with tiny models: metrics.json, the learning-rate grid, resume, two-phase,
`promptmix report`, and prompt filtering on a case built so one prompt hurts."""

from __future__ import annotations

import json

import pytest
import yaml

from promptmix.errors import InputError
from promptmix.testing.synthetic import write_fake_dataset, write_real_dataset
from promptmix.training.prompt_filter.config import PromptFilterConfig
from promptmix.training.prompt_filter.filtering import filter_prompts
from promptmix.training.train.config import TrainConfig
from promptmix.training.train.trainer import train


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    real = write_real_dataset(root / "real", "counting", sizes={"train": 6, "validation": 3, "test": 3})
    fake = write_fake_dataset(root / "fake", "counting", prompts=["p1", "p2"], per_prompt=4)
    return real, fake


def _config(real, fake, out, **kw):
    base = dict(task="counting", real=str(real), fake=str(fake), mixing="promptmix", r_mix=3, model="rescsrnet",
                width_div=16, epochs=2, batch_size=3, output_dir=str(out), report_to="none", cpu=True)
    base.update(kw)
    return TrainConfig(**base)


def test_lr_grid_metrics_json_and_report(counting, tmp_path, capsys):
    real, fake = counting
    out = tmp_path / "grid"
    metrics = train(_config(real, fake, out, lr_grid=(1e-2, 1e-5)))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test/mae"] == metrics["test/mae"]
    for key in ("validation/mae", "validation/rmse", "test/mae", "test/rmse"):
        assert isinstance(saved[key], float)
    assert saved["test/num_images"] == 3 and saved["validation/num_images"] == 3
    search = {r["lr"]: r["validation/mae"] for r in saved["lr_search"]}
    assert set(search) == {1e-2, 1e-5}
    assert saved["chosen_lr"] == min(search, key=search.get)
    assert saved["validation/mae"] == search[saved["chosen_lr"]]
    assert [h["fake_rows"] for h in saved["history"]] == [3, 3] and [h["real_rows"] for h in saved["history"]] == [6, 6]
    assert saved["history"][1]["lr"] == pytest.approx(saved["chosen_lr"] * 0.99)
    for lr in ("0.01", "1e-05"):
        assert (out / f"lr-{lr}" / "best" / "model.safetensors").exists()
        assert (out / f"lr-{lr}" / "checkpoints" / "epoch-0002" / "trainer_state.json").exists()
    assert TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text())).lr_grid == (1e-2, 1e-5)
    assert "train" in json.loads((out / "manifest.json").read_text())["stages"]
    with pytest.raises(InputError, match="already holds a training run.*--resume"):
        train(_config(real, fake, out, lr_grid=(1e-2, 1e-5)))

    base = tmp_path / "baseline"
    train(_config(real, fake, base, mixing="none", r_mix=None, lr=1e-2))
    from promptmix.cli import main

    report = tmp_path / "report"
    assert main(["report", str(out), str(base), "--out", str(report)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "model", "mixing", "r_mix", "lr", "epoch", "baseline"]
    assert lines[2].split()[:3] == ["grid", "rescsrnet", "promptmix"] and lines[2].split()[-1] == "baseline"
    assert lines[3].split()[:3] == ["baseline", "rescsrnet", "none"]
    row = next(line.split() for line in lines if line.startswith("test/mae ↓") and " grid " in line)
    base_mae = json.loads((base / "metrics.json").read_text())["test/mae"]
    assert row[3] == f"{saved['test/mae']:.4f}"
    assert float(row[4]) == pytest.approx(saved["test/mae"] - base_mae, abs=1e-4)  # change = run - baseline
    for name in ("training_curves.png", "test_metric.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Metrics" in (report / "report.md").read_text()


def test_resume_gives_the_same_run_as_no_interruption(counting, tmp_path):
    real, fake = counting
    straight = train(_config(real, fake, tmp_path / "a", epochs=3, lr=3e-3))
    train(_config(real, fake, tmp_path / "b", epochs=2, lr=3e-3))  # "interrupted" after epoch 2
    resumed = train(_config(real, fake, tmp_path / "b", epochs=3, lr=3e-3, resume=True))
    losses = [h["train_loss"] for h in straight["history"]]
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx(losses)
    assert resumed["test/mae"] == pytest.approx(straight["test/mae"])
    assert resumed["validation/mae"] == pytest.approx(straight["validation/mae"])
    again = train(_config(real, fake, tmp_path / "b", epochs=3, lr=3e-3, resume=True))  # finished: reused
    assert again["history"] == resumed["history"]


def test_two_phase_finetunes_on_real_rows_at_a_lower_rate(tmp_path):
    real = write_real_dataset(tmp_path / "real", "classification", sizes={"train": 6, "validation": 3, "test": 3},
                              size=(32, 32))
    fake = write_fake_dataset(tmp_path / "fake", "classification", prompts=["a", "b", "c"], per_prompt=2, size=(32, 32))
    m = train(TrainConfig(task="classification", real=str(real), fake=str(fake), mixing="two-phase", epochs=1,
                          two_phase_epochs=1, two_phase_lr_factor=0.1, model="wrn-28-2", width_div=8, lr=1e-2,
                          batch_size=4, output_dir=str(tmp_path / "out"), report_to="none", cpu=True))
    h = m["history"]
    assert [e["phase"] for e in h] == ["main", "real-finetune"]
    assert [(e["real_rows"], e["fake_rows"]) for e in h] == [(6, 6), (6, 0)]
    assert h[1]["lr"] == pytest.approx(1e-2 * 0.99 * 0.1)
    assert 0.0 <= m["test/top1"] <= m["test/top5"] <= 1.0


def test_prompt_filtering_drops_the_prompt_that_hurts(tmp_path):
    # "a bad crowd": 24 images whose density maps say 20x the real number of heads
    real = write_real_dataset(tmp_path / "real", "counting")
    fake = write_fake_dataset(tmp_path / "fake", "counting", prompts=["a good crowd", "a bad crowd"], per_prompt=24,
                              target_scale={"a bad crowd": 20.0}, all_extra=2)
    training = TrainConfig(task="counting", real=str(real), fake=str(fake), model="rescsrnet", width_div=16, lr=1e-2,
                           batch_size=4, output_dir=str(tmp_path / "pf"), report_to="none", cpu=True)
    config = PromptFilterConfig(training=training, output_dir=str(tmp_path / "pf"), epochs_per_prompt=4)
    result = filter_prompts(config)
    by_prompt = {r["prompt"]: r for r in result["prompts"]}
    assert by_prompt["a bad crowd"]["mae"] > result["baseline"] and not by_prompt["a bad crowd"]["kept"]
    assert by_prompt["a good crowd"]["kept"] and by_prompt["a good crowd"]["mae"] <= result["baseline"]
    assert (tmp_path / "pf" / "kept_prompts.txt").read_text() == "a good crowd\n"
    from datasets import load_dataset

    kept = load_dataset(str(tmp_path / "pf" / "fake"), "kept", split="train")
    assert set(kept["prompt"]) == {"a good crowd"} and len(kept) == 24
    everything = load_dataset(str(tmp_path / "pf" / "fake"), "all", split="train")
    assert set(everything["prompt"]) == {"a good crowd", "discarded rows"}  # prompts never tested stay
    on_disk = json.loads((tmp_path / "pf" / "prompt_filter.json").read_text())
    assert on_disk["dropped"] == 1 and on_disk["baseline"] == result["baseline"]
    assert (tmp_path / "pf" / "baseline" / "metrics.json").exists()


def test_trackers_and_weight_checks(tmp_path, monkeypatch):
    import importlib.util

    import torch
    from safetensors.torch import save_file

    from promptmix.errors import CheckpointError
    from promptmix.models import create_model
    from promptmix.training.train.trainer import _trackers, load_weights

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert _trackers("auto") is None and _trackers("none") is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorboard" else None)
    assert _trackers("auto") == ["tensorboard"] and _trackers("wandb") == ["wandb"]
    monkeypatch.undo()
    save_file(create_model("rescsrnet", width_div=16).state_dict(), str(tmp_path / "w.safetensors"))
    load_weights(create_model("rescsrnet", width_div=16), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="does not fit model rescsrnet.*--width-div"):
        load_weights(create_model("rescsrnet", width_div=8), tmp_path / "w.safetensors")
    torch.save({}, tmp_path / "w.pth")
    with pytest.raises(InputError, match="safetensors"):
        load_weights(create_model("rescsrnet", width_div=16), tmp_path / "w.pth")


def test_two_phase_run_continued_to_more_epochs_equals_a_straight_run(counting, tmp_path):
    real, fake = counting
    kw = {"mixing": "two-phase", "r_mix": None, "lr": 3e-3, "two_phase_lr_factor": 0.1}
    straight = train(_config(real, fake, tmp_path / "a", epochs=2, two_phase_epochs=1, **kw))
    train(_config(real, fake, tmp_path / "b", epochs=1, two_phase_epochs=0, **kw))
    # the checkpoint after epoch 1 holds the lr of a real-only phase starting there; the longer run resets it
    continued = train(_config(real, fake, tmp_path / "b", epochs=2, two_phase_epochs=1, resume=True, **kw))
    assert [h["phase"] for h in continued["history"]] == ["main", "main", "real-finetune"]
    assert [h["lr"] for h in continued["history"]] == pytest.approx([h["lr"] for h in straight["history"]])
    assert [h["train_loss"] for h in continued["history"]] == pytest.approx(
        [h["train_loss"] for h in straight["history"]])
    assert continued["test/mae"] == pytest.approx(straight["test/mae"])


def test_a_streamed_fake_set_trains_to_the_same_numbers(counting, tmp_path):
    """`streaming: true` (a fake set bigger than the disk) trains through the same per-epoch r_mix draw: the same
    losses and metrics as the in-memory run, seed for seed."""
    real, fake = counting
    plain = train(_config(real, fake, tmp_path / "plain", lr=1e-3))
    streamed = train(_config(real, fake, tmp_path / "streamed", lr=1e-3, streaming=True))
    assert [h["fake_rows"] for h in streamed["history"]] == [3, 3]
    assert [h["train_loss"] for h in streamed["history"]] == pytest.approx([h["train_loss"] for h in plain["history"]])
    assert streamed["test/mae"] == pytest.approx(plain["test/mae"])
