"""Whole-pipeline reliability: kill -9 `promptmix run` at random points, rerun until done, and get the
same bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _config(root: Path, models: dict, raw: Path, run_name: str) -> dict:
    train = {"model": "rescsrnet", "width_div": 8, "epochs": 2, "lr": 1e-3, "batch_size": 2, "crop_size": 32,
             "report_to": "none", "cpu": True}
    return {
        "run_dir": str(root / run_name),
        "real": {"builder": "shanghaitech", "root": str(raw), "part": "B"},
        "caption": {"model": str(models["captioner"]), "max_new_tokens": 6, "batch_size": 2, "chunk_size": 2},
        "prompts": {"prefix": "large crowd", "suffix": "grayscale"},
        "generate": {"model": str(models["sd"]), "images_per_prompt": 3, "steps": 3, "max_side": 64,
                     "chunk_size": 2, "batch_size": 2, "device": "cpu"},
        "annotate": {"annotators": [f"a:{models['counter_a']}", f"b:{models['counter_b']}"], "batch_size": 2,
                     "device": "cpu"},
        "filter": {"keep_percent": 70, "target": "a"},
        "publish": {"repo_id": "local/kill-test", "version": "0.1.0"},
        "train": {"promptmix": {**train, "mixing": "promptmix", "r_mix": 4}},
    }


def _files(run: Path) -> dict[str, bytes]:
    """Every data file of the run (chunks, fake dataset shards, published shards), by relative path."""
    out = {}
    for pattern in ("images/chunk-*.parquet", "annotations/*/chunk-*.parquet", "fake/**/*.parquet",
                    "publish/data/**/*.parquet", "captions/*.parquet", "prompts/*.parquet", "real/**/*.parquet"):
        for p in run.glob(pattern):
            out[str(p.relative_to(run))] = p.read_bytes()
    return out


def _state(run: Path) -> dict:
    path = run / "pipeline" / "state.json"
    try:
        return json.loads(path.read_text())["stages"] if path.exists() else {}
    except (json.JSONDecodeError, KeyError):  # never half-written, but be safe while polling
        return {}


def test_kill_minus_9_at_random_points_gives_the_uninterrupted_result(tmp_path, tiny_models, monkeypatch):
    from promptmix.pipeline import load_config, run_pipeline
    from promptmix.testing.raw_datasets import write_shanghaitech_raw

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the card's date
    raw = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=6, n_test=2, size=(64, 48), seed=3,
                                 grayscale_every=3)
    ref_root, kill_root = tmp_path / "ref", tmp_path / "kill"
    for root in (ref_root, kill_root):
        root.mkdir()
        (root / "c.yaml").write_text(yaml.safe_dump(_config(root, tiny_models, raw, "run")))

    run_pipeline(load_config(ref_root / "c.yaml"))  # the uninterrupted reference, in this process
    reference = _files(ref_root / "run")
    ref_metrics = json.loads((ref_root / "run" / "train" / "promptmix" / "metrics.json").read_text())

    cmd = [sys.executable, "-m", "promptmix", "run", str(kill_root / "c.yaml")]
    run = kill_root / "run"
    rng = random.Random(1234)
    # once at a random moment, then inside each resumable stage: a stage has started in this process
    # when the line of the stage before it is printed
    targets = [(None, 0.5, 3.0), ("prompts", 0.0, 1.0), ("generate", 0.0, 0.5), ("publish", 0.0, 1.0)]
    kills = 0
    for i, (after, lo, hi) in enumerate(targets):
        log_path = kill_root / f"attempt-{i}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        delay, started, deadline = rng.uniform(lo, hi), None, time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if started is None and (after is None or f"  {after} " in log_path.read_text()):
                started = time.monotonic()
            if started is not None and time.monotonic() - started >= delay:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.01)
        proc.wait(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), log_path.read_text()[-3000:]
    assert kills >= 2

    final = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    state = _state(run)
    assert {name: s["status"] for name, s in state.items()} == {name: "done" for name in state}
    assert set(state) == {"real", "caption", "prompts", "generate", "annotate", "filter", "publish",
                          "train.promptmix"}

    result = _files(run)
    assert sorted(result) == sorted(reference)
    different = [name for name in reference if result[name] != reference[name]]
    assert different == []
    metrics = json.loads((run / "train" / "promptmix" / "metrics.json").read_text())
    assert {k: v for k, v in metrics.items() if k.startswith("test/")} == \
        {k: v for k, v in ref_metrics.items() if k.startswith("test/")}
    assert not (run / "pipeline" / "trash").exists()

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # everything cached now
    assert again.returncode == 0 and again.stdout.count(" cached ") == len(state), again.stdout
