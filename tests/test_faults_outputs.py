"""Fault-injection probes of issue 18 (outputs, locks, errors, clean-up, token): each is a command a hostile or
unlucky user runs, and each must end in a clear one-line error (or the right result) with nothing lost.

docs/SAFETY.md lists the rules these probes keep."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promptmix import schema as S
from promptmix.annotation.annotate import runner
from promptmix.annotation.filter.filtering import FilterConfig, filter_run
from promptmix.errors import InputError, OutputError, PromptmixError
from promptmix.run_folder import CHUNK_PATTERN, RunFolder
from promptmix.testing._annotators import write_generated_run
from promptmix.utils.io import write_json_atomic, write_parquet_atomic


# -- a small annotated run (the filter's input), written by the real chunk writers -----------------------------
def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (what must survive a refused command)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _store(run_dir, name, counts, side=2):
    import pyarrow.parquet as pq

    folder = RunFolder(run_dir).annotator(name)
    write_json_atomic(folder / runner.ANNOTATOR_JSON, {"name": name, "task": "counting", "spec": f"test:{name}"})
    i = 0
    for c, path in RunFolder(run_dir).image_chunks().list():
        row_ids = pq.read_table(str(path), columns=[S.ROW_ID]).column(0).to_pylist()
        outputs = [{S.COUNT: float(n), S.DENSITY: np.full((side, side), n / side**2, np.float16),
                    S.OK: bool(np.isfinite(n))} for n in counts[i:i + len(row_ids)]]
        ds = runner._rows_to_dataset("counting", row_ids, outputs, name)
        write_parquet_atomic(ds, folder / CHUNK_PATTERN.format(c))
        i += len(row_ids)


def _annotated_run(root: Path, a=(10, 10, 10, 10), b=(10, 12, 9, 15)) -> Path:
    images = [Image.new("RGB", (16, 16), (30 * i, 50, 90)) for i in range(len(a))]
    run = write_generated_run(root / "run", images, task="counting", chunk_size=2)
    _store(run, "a", a)
    _store(run, "b", b)
    return run


@pytest.fixture
def annotated(tmp_path):
    return _annotated_run(tmp_path)


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# -- 1. the output guard ------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["RUN", "RUN/images", "RUN/annotations", "RUN/..", "PARENT"])
def test_filter_never_writes_over_the_run_or_around_it(annotated, where):
    parent = annotated.parent
    (parent / "thesis.txt").write_text("four years of work")
    (parent / "other_project").mkdir()
    (parent / "other_project" / "data.csv").write_text("1,2,3")
    out = {"RUN": annotated, "RUN/images": annotated / "images", "RUN/annotations": annotated / "annotations",
           "RUN/..": annotated / "..", "PARENT": parent}[where]
    before = _tree(parent)
    with pytest.raises(OutputError) as exc:
        filter_run(annotated, FilterConfig(keep_percent=50, out=out, force=True))  # --force never covers these
    assert "nothing was written" in _one_line(exc)
    assert _tree(parent) == before


def test_filter_refuses_a_folder_it_did_not_write_unless_forced_and_rewrites_its_own(annotated, tmp_path):
    mine = tmp_path / "elsewhere" / "my-data"
    mine.mkdir(parents=True)
    (mine / "notes.md").write_text("mine")
    with pytest.raises(OutputError, match="did not write.*notes.md.*--force") as exc:
        filter_run(annotated, FilterConfig(keep_percent=50, out=mine))
    _one_line(exc)
    assert (mine / "notes.md").read_text() == "mine"
    # a folder the filter wrote (its marker) is replaced; so is RUN/fake, and a new folder inside the run
    own = tmp_path / "elsewhere" / "fake"
    for out in (own, own, annotated / "fake", annotated / "fake-40"):
        report = filter_run(annotated, FilterConfig(keep_percent=50, out=out))
        assert report.out == out and (out / ".promptmix-output.json").is_file()
    # --force: the user's own folder is replaced on request
    filter_run(annotated, FilterConfig(keep_percent=50, out=mine, force=True))
    assert not (mine / "notes.md").exists() and (mine / "README.md").is_file()


def test_prompts_out_refuses_an_existing_folder(tmp_path):
    from promptmix.generation.prompts.bag import build_prompt_bag
    from promptmix.generation.prompts.config import PromptsConfig

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("keep")
    config = PromptsConfig(use_captions=False, manual=["a crowded street"])
    with pytest.raises(OutputError, match="did not write") as exc:
        build_prompt_bag(config, tmp_path / "run", existing)
    _one_line(exc)
    assert _tree(existing) == {"keep.txt": b"keep"}
    out = build_prompt_bag(config, tmp_path / "run", tmp_path / "bag")
    assert build_prompt_bag(config, tmp_path / "run", out) == out  # its own folder is rewritten


def test_real_out_may_not_hold_the_raw_download(tmp_path):
    from promptmix.builders import build_shanghaitech
    from promptmix.testing.raw_datasets import write_shanghaitech_raw

    dataset = tmp_path / "DATASET"
    raw = write_shanghaitech_raw(dataset / "raw", part="B", n_train=3, n_test=1, size=(48, 32), seed=1)
    before = _tree(dataset)
    with pytest.raises(OutputError, match="contains the input") as exc:
        build_shanghaitech(raw, "B", dataset)
    _one_line(exc)
    assert _tree(dataset) == before
    with pytest.raises(OutputError, match="lies inside the input"):
        build_shanghaitech(raw, "B", raw / "built")
    assert _tree(dataset) == before


def _publish(run, local, **kw):
    from promptmix.publishing.publish import publish_run

    return publish_run(run, repo_id="someone/crowds", version="1.0.0", local_dir=local, dry_run=True, **kw)


@pytest.mark.parametrize("force", [False, True])
def test_publish_local_dir_is_never_the_run_or_around_it(annotated, force):
    before = _tree(annotated)
    for local in (annotated, annotated / "images", annotated.parent):
        with pytest.raises(OutputError) as exc:
            _publish(annotated, local, force=force)
        _one_line(exc)
    assert _tree(annotated) == before


def test_an_earlier_publish_folder_now_holding_the_run_is_refused(annotated, tmp_path):
    from promptmix.dataset_cards.card import PROVENANCE_FILE

    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / PROVENANCE_FILE).write_text(json.dumps({"dataset": {"repo_id": "someone/crowds"}, "history": []}))
    moved = pub / "run"
    annotated.rename(moved)
    before = _tree(pub)
    with pytest.raises(OutputError, match="contains the run folder") as exc:
        _publish(moved, pub)
    _one_line(exc)
    assert _tree(pub) == before


def test_report_and_training_outputs_are_guarded(tmp_path):
    from promptmix.training.report.report import write_report
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.trainer import train

    runs = tmp_path / "runs"
    run_a = runs / "a"
    run_a.mkdir(parents=True)
    (run_a / "metrics.json").write_text("{}")
    with pytest.raises(OutputError, match="contains the input"):
        write_report([run_a], runs)
    with pytest.raises(OutputError, match="is the input"):
        write_report([run_a], run_a)
    assert _tree(runs) == {"a/metrics.json": b"{}"}

    real = tmp_path / "real"
    real.mkdir()
    (real / "README.md").write_text("a dataset")
    for out in (real, real / "train-out", tmp_path):
        cfg = TrainConfig(task="counting", model="csrnet", real=str(real), output_dir=str(out), cpu=True)
        with pytest.raises(OutputError):
            train(cfg)
    assert _tree(real) == {"README.md": b"a dataset"}
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "paper.tex").write_text("x")
    cfg = TrainConfig(task="counting", model="csrnet", real=str(real), output_dir=str(busy), cpu=True)
    with pytest.raises(OutputError, match="--overwrite"):
        train(cfg)


def test_run_check_refuses_a_filter_out_that_is_an_existing_folder(tmp_path, capsys):
    import yaml

    from promptmix.cli import main
    from promptmix.testing.raw_datasets import write_shanghaitech_raw

    raw = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=2, n_test=1, size=(48, 32), seed=1)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "results.csv").write_text("1")
    config = {"run_dir": str(tmp_path / "run"),
              "real": {"builder": "shanghaitech", "root": str(raw), "part": "B"},
              "prompts": {"manual": ["a crowd"], "use_captions": False},
              "generate": {"model": "stabilityai/stable-diffusion-2-1-base"},
              "annotate": {"annotators": ["a:csrnet"]},
              "filter": {"out": str(existing)}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml"), "--check"]) != 0
    err = capsys.readouterr().err
    assert "filter.out" in err and "did not write" in err
    assert _tree(existing) == {"results.csv": b"1"}
