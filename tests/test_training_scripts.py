"""The entry scripts end to end in subprocesses: each under `accelerate launch` for 2 steps with a tiny
model, and a 2-process `torchrun` evaluation that must equal the 1-process one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptmix.testing.synthetic import write_fake_dataset, write_real_dataset

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PROMPTMIX_NO_PROGRESS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def _launch(script: str, args: list[str], tmp_path) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--cpu", str(ROOT / "training" / script), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)


def _check_run(proc, out: Path, metric: str) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"validation/{metric}" in metrics and f"test/{metric}" in metrics
    assert metrics["history"][-1]["steps"] == 2  # --max-steps 2
    assert "wrote" in proc.stdout and f"test/{metric}" in proc.stdout
    return metrics


@pytest.mark.parametrize("script,task,model,mixing,metric", [
    ("train_counter.py", "counting", "csrnet", ["--mixing", "promptmix", "--r-mix", "2"], "mae"),
    ("train_depth.py", "depth", "guidedepth", ["--mixing", "interleave", "--interleave-probability", "0.5"], "rmse"),
    ("train_classifier.py", "classification", "resnet18", ["--mixing", "rsp", "--rsp-probability", "0.5"], "top1"),
])
def test_script_under_accelerate_launch(tmp_path, script, task, model, mixing, metric):
    size = (32, 32) if task == "classification" else (32, 40)
    real = write_real_dataset(tmp_path / "real", task, sizes={"train": 4, "validation": 2, "test": 2}, size=size)
    fake = write_fake_dataset(tmp_path / "fake", task, per_prompt=4, size=size)
    config = tmp_path / "run.yaml"  # settings from YAML, overridden by flags
    config.write_text(yaml.safe_dump({"real": str(real), "fake": str(fake), "model": model, "epochs": 50,
                                      "width_div": 32, "lr": 1e-3, "report_to": "none"}))
    out = tmp_path / "out"
    proc = _launch(script, ["--config", str(config), *mixing, "--epochs", "3", "--max-steps", "2", "--batch-size", "2",
                            "--output-dir", str(out)], tmp_path)
    metrics = _check_run(proc, out, metric)
    assert metrics["mixing"] == mixing[1] and metrics["model"] == model and metrics["chosen_lr"] == 1e-3
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 3 and saved["width_div"] == 32 and saved["task"] == task


def test_two_process_evaluation_equals_one_process(tmp_path):
    import torch
    from safetensors.torch import save_file

    from promptmix.models import create_model
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.trainer import train

    # 5 images per split and 2 per batch: the last batch is uneven across the 2 processes
    real = write_real_dataset(tmp_path / "real", "depth", sizes={"train": 2, "validation": 5, "test": 5},
                              size=(32, 40))
    torch.manual_seed(0)
    weights = tmp_path / "model.safetensors"
    save_file(create_model("guidedepth", width_div=16).state_dict(), str(weights))
    flags = ["--real", str(real), "--model", "guidedepth", "--width-div", "16", "--epochs", "0", "--weights",
             str(weights), "--eval-batch-size", "2", "--cpu", "--report-to", "none"]
    out2 = tmp_path / "two"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(ROOT / "training" / "train_depth.py"),
           *flags, "--output-dir", str(out2)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((out2 / "metrics.json").read_text())
    assert two["num_processes"] == 2
    assert proc.stdout.count("wrote") == 1  # printed by the main process only

    one = train(TrainConfig(task="depth", real=str(real), model="guidedepth", width_div=16, epochs=0,
                            weights=str(weights), eval_batch_size=2, cpu=True, report_to="none",
                            output_dir=str(tmp_path / "one")))
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    assert one["num_processes"] == 1
    keys = [k for k in one if k.startswith(("validation/", "test/"))]
    assert one["validation/num_images"] == 5 and one["test/num_images"] == 5
    assert {k: two[k] for k in keys} == pytest.approx({k: one[k] for k in keys}, rel=1e-6)
