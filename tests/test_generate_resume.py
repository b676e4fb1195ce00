"""Resume after ``kill -9`` in the middle of a run: the rerun gives exactly the planned rows, byte-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_generate import chunk_bytes, tiny_config, tiny_sd  # noqa: F401  (tiny_sd is a fixture)

from promptmix import schema as S


def _cli_env():
    env = dict(os.environ, PROMPTMIX_NO_PROGRESS="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("RANK", None)
    return env


@pytest.mark.slow
def test_kill_9_then_rerun_is_byte_identical(tmp_path, tiny_sd):  # noqa: F811
    from promptmix.generation.generate.plan import load_generated
    from promptmix.generation.generate.runner import generate
    from promptmix.run_folder import RunFolder

    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"a photo of thing number {i}\n" for i in range(8)))
    config = tiny_config(prompts, tiny_sd, images_per_prompt=4, chunk_size=2, batch_size=2, size="24x24")
    total_chunks = 16

    reference = tmp_path / "reference"
    assert generate(config, reference).rows_done == 32

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "promptmix", "generate", "--prompts", str(prompts), "--model", str(tiny_sd),
           "--out", str(run), "-k", "4", "--steps", "2", "--chunk-size", "2", "--batch-size", "2",
           "--size", "24x24", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while len(RunFolder(run).image_chunks().list()) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(RunFolder(run).image_chunks().list())
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    assert 2 <= written < total_chunks, f"the kill came too late to test a resume ({written} chunks written)"

    report = generate(config, run)  # the same command again
    assert report.rows_skipped == 2 * written and report.rows_done == 32 - 2 * written
    assert report.rows_done + report.rows_skipped == 32
    assert chunk_bytes(run) == chunk_bytes(reference)
    assert len(chunk_bytes(run)) == total_chunks
    ids = load_generated(run)[S.ROW_ID]
    assert len(ids) == len(set(ids)) == 32
    assert not [p.name for p in RunFolder(run).images.iterdir() if ".tmp-" in p.name]  # no partial files left
