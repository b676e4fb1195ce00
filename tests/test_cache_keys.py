"""Cache keys follow every setting that changes pixels or labels: dtype, scheduler, annotator dtype.

``auto`` is keyed as the dtype it resolves to (float16 on CUDA, float32 on CPU), so a CPU run and a GPU run
of the same config do not share a cache, while ``auto`` and ``float32`` on a CPU do.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from promptmix.errors import ConfigError
from promptmix.pipeline import load_config, run_pipeline
from promptmix.pipeline.engine import CACHED, PLANNED, RAN


@pytest.fixture()
def base(tmp_path, tiny_models):
    from promptmix.testing.raw_datasets import write_shanghaitech_raw

    raw = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=2, n_test=1, size=(48, 32), seed=1)
    return {
        "run_dir": str(tmp_path / "run"),
        "real": {"builder": "shanghaitech", "root": str(raw), "part": "B"},
        "prompts": {"use_captions": False, "manual": ["a crowd", "a street"]},
        "generate": {"model": str(tiny_models["sd"]), "images_per_prompt": 1, "steps": 1, "size": "32x32",
                     "chunk_size": 2, "device": "cpu", "dtype": "float32"},
        "annotate": {"annotators": [f"a:{tiny_models['counter_a']}"], "device": "cpu", "dtype": "float32"},
        "filter": {"keep_percent": 100},
    }


def _run(tmp_path, cfg: dict, **kw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = run_pipeline(load_config(path), **kw)
    return {r.name: r.status for r in result.results}


def _with(cfg: dict, section: str, **values) -> dict:
    out = copy.deepcopy(cfg)
    out[section].update(values)
    return out


def test_changing_dtype_scheduler_or_annotator_dtype_reruns_its_stage(tmp_path, base, monkeypatch):
    assert set(_run(tmp_path, base).values()) == {RAN}
    assert set(_run(tmp_path, base).values()) == {CACHED}

    # generate.dtype: new pixels, so generate and everything after it run again
    cfg = _with(base, "generate", dtype="bfloat16")
    assert _run(tmp_path, cfg) == {"real": CACHED, "prompts": CACHED, "generate": RAN, "annotate": RAN, "filter": RAN}
    # the scheduler
    cfg = _with(cfg, "generate", scheduler="EulerDiscreteScheduler")
    assert _run(tmp_path, cfg)["generate"] == RAN
    # annotate.dtype: new labels, the images stay
    cfg = _with(cfg, "annotate", dtype="bfloat16")
    assert _run(tmp_path, cfg) == {"real": CACHED, "prompts": CACHED, "generate": CACHED, "annotate": RAN,
                                   "filter": RAN}

    # auto is keyed as what it resolves to: on this CPU, float32 ...
    assert set(_run(tmp_path, base).values()) >= {RAN}  # back to float32 everywhere
    auto = _with(_with(base, "generate", dtype="auto", device="auto"), "annotate", dtype=None, device=None)
    assert set(_run(tmp_path, auto).values()) == {CACHED}
    # ... and on a CUDA machine float16: the same config does not reuse the CPU run's images or labels
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    planned = _run(tmp_path, auto, plan_only=True)
    assert planned == {"real": CACHED, "prompts": CACHED, "generate": PLANNED, "annotate": PLANNED, "filter": PLANNED}


def test_generate_refuses_a_folder_made_with_another_dtype(tmp_path, base):
    from promptmix.cli import main
    from promptmix.generation.generate.config import GenerateConfig
    from promptmix.generation.generate.runner import generate

    _run(tmp_path, base, until_stage="generate")
    run = tmp_path / "run"
    saved = yaml.safe_load((run / "images" / "config.yaml").read_text())
    assert saved["dtype"] == "float32"  # the folder records the dtype its images were made in
    settings = {k: v for k, v in base["generate"].items() if k != "dtype"}
    with pytest.raises(ConfigError, match=r"dtype: 'float32' in the folder, 'bfloat16' now"):
        generate(GenerateConfig(prompts=str(run / "prompts"), dtype="bfloat16", **settings), run)
    cfg_path = tmp_path / "c.yaml"
    assert main(["generate", "--config", str(cfg_path), "--prompts", str(run / "prompts"), "--out", str(run),
                 "--dtype", "float16"]) != 0
    # the same effective dtype resumes: auto is float32 here
    report = generate(GenerateConfig(prompts=str(run / "prompts"), dtype="auto", **settings), run)
    assert report.rows_done == 0 and report.rows_skipped == report.rows_planned == 2


def test_annotate_refuses_a_folder_made_with_another_dtype(tmp_path, base):
    from promptmix.annotation.annotate.runner import annotate_run

    _run(tmp_path, base, until_stage="annotate")
    run = tmp_path / "run"
    spec = base["annotate"]["annotators"][0]
    with pytest.raises(ConfigError, match="differs in dtype"):
        annotate_run(run, [spec], device="cpu", dtype="bfloat16")
    assert annotate_run(run, [spec], device="cpu", dtype="auto").annotators[0].chunks_written == 0
