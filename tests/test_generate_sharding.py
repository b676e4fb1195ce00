"""``torchrun --nproc_per_node 2``: the ranks split the chunks and their union equals a 1-process run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_generate import chunk_bytes, tiny_config, tiny_sd, write_bag  # noqa: F401  (tiny_sd is a fixture)


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path, tiny_sd):  # noqa: F811
    from promptmix.generation.generate.runner import generate

    bag = write_bag(tmp_path)
    config = tiny_config(bag, tiny_sd, images_per_prompt=3, chunk_size=2, batch_size=2)
    single = generate(config, tmp_path / "single")
    assert single.chunks_done == 6

    env = dict(os.environ, PROMPTMIX_NO_PROGRESS="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "promptmix", "generate", "--prompts", str(bag), "--model", str(tiny_sd),
           "--out", str(tmp_path / "multi"), "-k", "3", "--steps", "2", "--chunk-size", "2", "--batch-size", "2",
           "--size", "32x24", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the main process reports counts gathered over both ranks, once
    assert proc.stdout.count("rows: 12 planned, 12 generated") == 1, proc.stdout
    assert "2 process(es)" in proc.stdout
    assert chunk_bytes(tmp_path / "multi") == chunk_bytes(tmp_path / "single")
    assert len(chunk_bytes(tmp_path / "multi")) == 6
