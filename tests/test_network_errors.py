"""When the Hub cannot be reached, model loading says so and gives the three ways out (no network used: the
Hub endpoint is a closed local port)."""

from __future__ import annotations

import os
import subprocess
import sys


def _promptmix(args, tmp_path, **env):
    full = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": "http://127.0.0.1:9",
            "PROMPTMIX_NO_PROGRESS": "1", **env}
    return subprocess.run([sys.executable, "-m", "promptmix", *args], capture_output=True, text=True, env=full,
                          cwd=tmp_path, timeout=300)


def test_an_unreachable_hub_is_named_with_the_three_ways_out(tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n")
    args = ["generate", "--prompts", "p.txt", "--model", "someorg/some-model", "--out", "run", "--size", "32x32"]
    res = _promptmix(args, tmp_path, HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
    assert res.returncode == 1, res.stderr
    err = res.stderr
    assert "the Hugging Face Hub could not be reached" in err and "Connection refused" in err
    assert "HF_HUB_OFFLINE=1" in err and "`hf download someorg/some-model`" in err
    assert "--local-dir models/some-model`, then give models/some-model" in err
    assert "Traceback" not in err

    offline = _promptmix(args, tmp_path, HF_HUB_OFFLINE="1")
    assert offline.returncode == 1
    assert "nor in the local Hub cache, and offline mode is on (HF_HUB_OFFLINE=1)" in offline.stderr
    assert "unset HF_HUB_OFFLINE" in offline.stderr and "hf download someorg/some-model" in offline.stderr


def test_an_unreachable_hub_dataset_is_named_too(tmp_path):
    args = ["real", "hub", "--dataset", "someorg/some-data", "--out", "real"]
    res = _promptmix(args, tmp_path, HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0")
    assert res.returncode == 1, res.stderr
    assert "the Hugging Face Hub could not be reached" in res.stderr and "OfflineMode" not in res.stderr
    assert "hf download someorg/some-data --repo-type dataset" in res.stderr
    offline = _promptmix(args, tmp_path, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    assert offline.returncode == 1 and "could not be reached" not in offline.stderr
    assert "unset HF_HUB_OFFLINE" in offline.stderr
