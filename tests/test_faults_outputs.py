"""Fault-injection probes of issue 18 (outputs, locks, errors, clean-up, token): each is a command a hostile or
unlucky user runs, and each must end in a clear one-line error (or the right result) with nothing lost.

docs/SAFETY.md lists the rules these probes keep."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promptmix import schema as S
from promptmix.annotation.annotate import runner
from promptmix.annotation.filter.filtering import FilterConfig, filter_run
from promptmix.errors import InputError, OutputError, RunLockedError, WriteError
from promptmix.run_folder import RunFolder
from promptmix.testing._annotators import write_generated_run
from promptmix.utils.io import write_json_atomic


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
        RunFolder(run_dir).annotation_chunks(name).write(c, ds, footer=runner.label_footer(path))
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
        filter_run(annotated, FilterConfig(keep_percent=50, out=out))
    assert "nothing was written" in _one_line(exc)
    assert _tree(parent) == before
    with pytest.raises(OutputError):  # --force covers a folder of the user's own only, never these
        filter_run(annotated, FilterConfig(keep_percent=50, out=out, force=True))
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
    (dataset / "data").mkdir()  # the folder looks like a dataset folder (README.md + data/) and holds the raw download
    (dataset / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    (dataset / "README.md").write_text("# my dataset\n")
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


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_models):
    """A whole run (real ... filter) by the real stages; its manual prompt holds a NUL, HTML and Markdown."""
    from promptmix.testing.runs import make_run

    return make_run(tmp_path_factory.mktemp("finished"), task="counting", n_real=3, k=2, models=tiny_models,
                    manual_prompts=(EVIL_PROMPT,))


EVIL_PROMPT = "a crowd\x00 <script>alert(1)</script> [click here](http://evil.example) **shout** # heading"


@pytest.fixture
def run_copy(finished, tmp_path):
    """A copy of the finished run (with its real dataset beside it) that a test may damage."""
    shutil.copytree(finished.real_dir, tmp_path / finished.real_dir.name)
    return Path(shutil.copytree(finished.run_dir, tmp_path / "run"))


def test_publish_local_dir_force_never_deletes_the_run(run_copy):
    before = _tree(run_copy.parent)
    for local in (run_copy, run_copy / "images", run_copy.parent):
        with pytest.raises(OutputError) as exc:
            _publish(run_copy, local, force=True)
        _one_line(exc)
    assert _tree(run_copy.parent) == before


def test_an_earlier_publish_folder_now_holding_the_run_is_refused(run_copy, tmp_path):
    pub = tmp_path / "pub"
    _publish(run_copy, pub)  # a publication, then the user keeps the run inside it
    moved = pub / "run"
    run_copy.rename(moved)
    before = _tree(pub)
    with pytest.raises(OutputError, match="contains the run folder") as exc:
        _publish(moved, pub)
    _one_line(exc)
    assert _tree(pub) == before


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_report_out_is_never_a_training_run_or_around_one(tmp_path):
    from promptmix.training.report.report import write_report
    from promptmix.training.train.trainer import train

    runs = tmp_path / "runs"
    run_a = runs / "a"
    train(_train_config(tmp_path, run_a, epochs=0))  # a finished (evaluation-only) training run
    before = _tree(runs)
    with pytest.raises(OutputError, match="contains the input"):
        write_report([run_a], runs)
    with pytest.raises(OutputError, match="is the input"):
        write_report([run_a], run_a)
    assert _tree(runs) == before
    assert write_report([run_a], tmp_path / "report").report.is_file()


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_training_output_dir_is_never_its_data_or_a_folder_of_the_users(tmp_path):
    from promptmix.training.train.trainer import train

    _train_config(tmp_path, tmp_path / "unused")  # writes tmp_path/real and tmp_path/fake
    before = _tree(tmp_path)
    for out, rel in ((tmp_path / "real", "is"), (tmp_path / "real" / "train-out", "lies inside"),
                     (tmp_path, "contains")):
        with pytest.raises(OutputError, match=f"{rel} the input") as exc:
            train(_train_config(tmp_path, out, epochs=0))
        _one_line(exc)
    assert _tree(tmp_path) == before
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "paper.tex").write_text("x")
    with pytest.raises(OutputError, match="--overwrite"):
        train(_train_config(tmp_path, busy, epochs=0))
    assert _tree(busy) == {"paper.tex": b"x"}


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


# -- 6. the token never reaches a log -------------------------------------------------------------------------
TOKEN = "hf_" + "Zq7" * 11 + "x"  # shaped like a Hub token


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with its Authorization header echoed in a response header and in the body."""

    seen: list[str] = []

    def _answer(self):
        auth = self.headers.get("Authorization", "")
        _Echo.seen.append(auth)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"error": "echo", "authorization": auth}).encode()
        self.send_response(404)
        self.send_header("X-Echo-Authorization", auth)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, *args):  # the server's own access log stays out of the captured output
        pass


def test_debug_logs_of_a_publish_never_show_the_token(run_copy):
    import promptmix

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Echo.seen = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_HUB_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}", HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0",
               HF_HUB_DISABLE_IMPLICIT_TOKEN="0", HF_DEBUG="1",
               PYTHONPATH=os.pathsep.join([str(Path(promptmix.__file__).parents[1]), env.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run([sys.executable, "-m", "promptmix", "publish", str(run_copy), "--repo-id",
                               "someone/crowds", "--version", "1.0.0", "-vv"], env=env, capture_output=True,
                              text=True, timeout=300)
    finally:
        server.shutdown()
        server.server_close()
    out = proc.stdout + proc.stderr
    assert any(TOKEN in a for a in _Echo.seen)  # the token was sent, and echoed back
    assert "DEBUG" in out and "127.0.0.1" in out  # -vv logged the HTTP traffic
    assert TOKEN not in out and TOKEN[3:20] not in out
    assert proc.returncode != 0 and "promptmix publish: error:" in proc.stderr


def test_the_scrub_filter_covers_every_logger_and_handler(tmp_path):
    from promptmix.publishing.publish import scrubbed_logs

    stream = tmp_path / "log.txt"
    handler = logging.FileHandler(stream)
    lib = logging.getLogger("some.library.deep")
    lib.addHandler(handler)
    lib.setLevel(logging.DEBUG)
    lib.propagate = True
    root_handler = logging.StreamHandler(open(tmp_path / "root.txt", "w"))
    logging.getLogger().addHandler(root_handler)
    old = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        with scrubbed_logs(["s3cr3t-value"]):
            lib.debug("header %s", {"authorization": "Bearer s3cr3t-value"})
            logging.getLogger("httpcore2.http11").debug("echo %r", [(b"X-Echo", b"Bearer s3cr3t-value")])
            try:
                raise RuntimeError("failed with s3cr3t-value")
            except RuntimeError:
                logging.getLogger("huggingface_hub.x").exception("boom")
    finally:
        lib.removeHandler(handler)
        handler.close()
        logging.getLogger().removeHandler(root_handler)
        root_handler.close()
        logging.getLogger().setLevel(old)
    text = stream.read_text() + (tmp_path / "root.txt").read_text()
    assert "***" in text and "s3cr3t" not in text and "boom" in text


# -- 7. errors while writing: one line, the path, the free space, nothing half-written ----------------------
def _disk_full_parquet(monkeypatch, target, path_arg: int = 0):
    """Make ``target`` (a function or class that writes a file) write a few bytes to its ``path_arg``-th path
    argument, then fail as a full disk does."""
    module, name = target

    def full(*args, **kwargs):
        paths = [a for a in list(args) + list(kwargs.values()) if isinstance(a, (str, os.PathLike))]
        where = paths[path_arg] if len(paths) > path_arg else None
        if where is not None:
            Path(where).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module, name, full)


def _no_temps(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_disk_full_in_filter_is_one_line_and_leaves_nothing(annotated, monkeypatch, capsys):
    import pyarrow.parquet as pq

    from promptmix.cli import main

    _disk_full_parquet(monkeypatch, (pq, "ParquetWriter"))  # the filter's shard writer
    with pytest.raises(WriteError) as exc:
        filter_run(annotated, FilterConfig(keep_percent=50))
    text = _one_line(exc)
    assert "disk is full" in text and "free" in text and str(annotated / "fake") in text
    assert not (annotated / "fake").exists() and _no_temps(annotated)
    assert main(["filter", str(annotated), "--keep", "50"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("promptmix filter: error:") and "disk is full" in err and "\n" not in err
    monkeypatch.undo()
    assert filter_run(annotated, FilterConfig(keep_percent=50)).kept == 2  # the rerun is whole


def test_disk_full_in_a_chunk_write_generate_and_annotate_share(annotated, monkeypatch, tiny_models, capsys):
    import pyarrow.parquet as pq

    from promptmix.cli import main

    store = RunFolder(annotated).annotation_chunks("c")
    _disk_full_parquet(monkeypatch, (pq, "write_table"))
    with pytest.raises(WriteError, match="disk is full") as exc:
        store.write(0, pq.read_table(str(RunFolder(annotated).image_chunks().path(0))))
    assert str(store.path(0)) in _one_line(exc)
    assert not store.folder.exists() or not list(store.folder.iterdir())
    assert main(["annotate", str(annotated), "--annotator", f"c:{tiny_models['counter_a']}", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert "promptmix annotate: error:" in err and "disk is full" in err and "\n" not in err
    assert _no_temps(annotated) and not RunFolder(annotated).annotation_chunks("c").list()


def test_disk_full_in_a_local_publication(run_copy, monkeypatch, tmp_path):
    import shutil as shutil_module

    _disk_full_parquet(monkeypatch, (shutil_module, "copyfile"), path_arg=1)  # publish copies the filter's shards
    with pytest.raises(WriteError, match="disk is full") as exc:
        _publish(run_copy, tmp_path / "pub")
    assert str(tmp_path / "pub") in _one_line(exc)
    assert not (tmp_path / "pub").exists() and _no_temps(tmp_path)


def test_a_weights_only_refusal_inside_transformers_is_ours(tiny_models, tmp_path):
    import argparse

    import torch
    from safetensors.torch import load_file

    from promptmix.annotation.annotators.registry import build_annotator
    from promptmix.errors import CheckpointError

    folder = Path(shutil.copytree(tiny_models["depth"], tmp_path / "depth"))
    state = dict(load_file(str(folder / "model.safetensors")))
    state["extra"] = argparse.Namespace(note="a pickled object")
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as exc:
        build_annotator(f"d:{folder}", device="cpu", dtype="float32").load()
    text = _one_line(exc)
    assert "pytorch_model.bin" in text and "argparse.Namespace" in text and "only loads weights" in text


def test_a_corrupt_stage_config_names_its_file(annotated, capsys):
    from promptmix.cli import main
    from promptmix.errors import ConfigError
    from promptmix.generation.generate.plan import read_run_config

    cfg = annotated / "images" / "config.yaml"
    cfg.write_text(":::\n")
    with pytest.raises(ConfigError) as exc:
        read_run_config(annotated)
    assert str(cfg) in _one_line(exc)
    (annotated / "images" / "plan.json").write_text("{not json")
    assert main(["filter", str(annotated)]) == 1
    err = capsys.readouterr().err.strip()
    assert "plan.json" in err and "Traceback" not in err and "\n" not in err


# -- 8. clean-up of a killed run's temporary names -----------------------------------------------------------
def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_stale_build_folders_beside_a_real_dataset_are_removed(tmp_path, caplog):
    from promptmix.builders import build_shanghaitech
    from promptmix.testing.raw_datasets import write_shanghaitech_raw

    raw = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=3, n_test=1, size=(48, 32), seed=1)
    out = tmp_path / "shtb"
    dead = _dead_pid()
    stale = [tmp_path / ".shtb.build-k2j4h1", tmp_path / f".shtb.build-{dead}-x8y7", tmp_path / f".shtb.tmp-{dead}-2"]
    for s in stale:
        s.mkdir()
        (s / "rows.arrow").write_bytes(b"x" * 2500)
    keep = [tmp_path / ".shtb.notes", tmp_path / ".other.build-k2j4h1", tmp_path / "shtb-old"]
    for k in keep:
        k.write_text("mine")
    with caplog.at_level(logging.WARNING, logger="promptmix"):
        build_shanghaitech(raw, "B", out)
    assert not any(s.exists() for s in stale) and all(k.read_text() == "mine" for k in keep)
    assert "2.5 KB" in caplog.text and ".shtb.build-k2j4h1" in caplog.text


def test_stale_publication_state_and_chunk_temps_are_removed(run_copy, tmp_path, caplog):
    from promptmix.pipeline.engine import run_stages

    run = RunFolder(run_copy)
    dead = _dead_pid()
    pub_tmp = run.root / f".pub.tmp-{dead}-abcd"
    pub_tmp.mkdir()
    (pub_tmp / "README.md").write_text("half")
    run.pipeline.mkdir(parents=True, exist_ok=True)
    state_tmp = run.pipeline / f".state.json.tmp-{dead}-abcd"
    state_tmp.write_text("{")
    chunk_tmp = run.annotator("csrnet") / f".chunk-000000.parquet.tmp-{dead}-abcd"
    chunk_tmp.write_bytes(b"PAR1")
    manifest_tmp = run.root / f".manifest.json.tmp-{dead}-abcd"
    manifest_tmp.write_text("{")
    mine = run.root / ".pub.notes"
    mine.write_text("mine")
    with caplog.at_level(logging.WARNING, logger="promptmix"):
        _publish(run.root, run.root / "pub")
        run_stages(run, [])
        assert run.annotation_chunks("csrnet").remove_temps() == 1
        run.record_stage("probe", {"ok": True})
    assert not any(p.exists() for p in (pub_tmp, state_tmp, chunk_tmp, manifest_tmp))
    assert mine.read_text() == "mine" and (run.root / "pub" / "README.md").is_file()
    assert caplog.text.count("left by an interrupted earlier run") == 4


# -- 9. an empty kept set --------------------------------------------------------------------------------------
def test_an_empty_kept_set_is_an_error_unless_asked_for_and_then_loads(tmp_path):
    import datasets

    nan = float("nan")
    run = _annotated_run(tmp_path, a=(10, 10, 10, 10), b=(nan, nan, nan, nan))
    with pytest.raises(InputError, match=r"every row was filtered out \(4 flagged NaN/inf") as exc:
        filter_run(run, FilterConfig(keep_percent=50))
    _one_line(exc)
    assert not (run / "fake").exists()
    report = filter_run(run, FilterConfig(keep_percent=50, allow_empty=True))
    assert report.kept == 0
    cache = str(tmp_path / "hf-cache")
    # datasets loads no split of zero rows: the folder holds config 'all' alone (the default), nothing kept
    loaded = datasets.load_dataset(str(report.out), split="train", cache_dir=cache)
    assert len(loaded) == 4 and not any(loaded[S.KEPT])
    assert len(datasets.load_dataset(str(report.out), "all", split="train", cache_dir=cache)) == 4


# -- 10. locks, checkpoints, the card -------------------------------------------------------------------------
_HOLD = """
import sys, time
from pathlib import Path
from promptmix.run_folder import RunFolder
with RunFolder(sys.argv[1]).lock("generate"):
    Path(sys.argv[2]).write_text("held")
    time.sleep(120)
"""


@pytest.fixture
def held():
    """Hold the run lock of a folder from another process (as a running `promptmix generate` does)."""
    import promptmix

    procs = []

    def hold(folder: Path) -> int:
        flag = folder.parent / f"{folder.name}.held"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(promptmix.__file__).parents[1]),
                                                            os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder), str(flag)], env=env)
        procs.append(proc)
        for _ in range(600):
            if flag.exists():
                return proc.pid
            if proc.poll() is not None:
                raise RuntimeError("the lock holder exited")
            threading.Event().wait(0.05)
        raise RuntimeError("the lock holder did not start")

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_every_writer_of_a_run_folder_is_refused_while_another_holds_it(run_copy, held, tiny_models, capsys):
    from promptmix.cli import main

    before = _tree(run_copy)
    pid = held(run_copy)
    for argv in (["filter", str(run_copy), "--keep", "50"],
                 ["annotate", str(run_copy), "--annotator", f"c:{tiny_models['counter_a']}", "--device", "cpu"],
                 ["publish", str(run_copy), "--repo-id", "someone/crowds", "--version", "2.0.0", "--dry-run",
                  "--local-dir", str(run_copy / "pub")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"another `promptmix generate` (process {pid})" in err, argv
    assert {k: v for k, v in _tree(run_copy).items() if not k.startswith(".lock")} == \
        {k: v for k, v in before.items() if not k.startswith(".lock")}


def _train_config(tmp_path, out, **kw):
    from promptmix.testing.synthetic import write_fake_dataset, write_real_dataset
    from promptmix.training.train.config import TrainConfig

    real = tmp_path / "real"
    fake = tmp_path / "fake"
    if not real.exists():
        write_real_dataset(real, "counting", sizes={"train": 6, "validation": 3, "test": 3})
        write_fake_dataset(fake, "counting", prompts=["p1", "p2"], per_prompt=4)
    base = dict(task="counting", real=str(real), fake=str(fake), mixing="promptmix", r_mix=3, model="rescsrnet",
                width_div=16, epochs=2, batch_size=3, output_dir=str(out), report_to="none", cpu=True, lr=3e-3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_training_takes_the_lock_of_its_output_folder(tmp_path, held):
    from promptmix.training.train.trainer import train

    out = tmp_path / "train-out"
    config = _train_config(tmp_path, out)
    out.mkdir()
    pid = held(out)
    with pytest.raises(RunLockedError, match=f"process {pid}"):
        train(config)
    assert not (out / "metrics.json").exists()


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_resume_skips_a_broken_newest_checkpoint(tmp_path, caplog):
    from accelerate.state import AcceleratorState, GradientState

    from promptmix.training.train.trainer import train

    out = tmp_path / "train-out"
    train(_train_config(tmp_path, out, epochs=2, keep_checkpoints=2))
    ckpts = sorted((out / "lr-0.003" / "checkpoints").glob("epoch-*")) or sorted(out.rglob("epoch-*"))
    assert len(ckpts) == 2
    (ckpts[-1] / "model.safetensors").unlink()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    with caplog.at_level(logging.WARNING, logger="promptmix"):
        metrics = train(_train_config(tmp_path, out, epochs=3, keep_checkpoints=2, resume=True))
    assert "skipping the broken checkpoint" in caplog.text and ckpts[-1].name in caplog.text
    assert len(metrics["history"]) == 3 and np.isfinite(metrics["test/mae"])
    from promptmix.errors import CheckpointError

    for ckpt in (out / "lr-0.003" / "checkpoints").glob("epoch-*"):  # every one broken: never a half-loaded run
        (ckpt / "model.safetensors").unlink()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    with pytest.raises(CheckpointError, match="none of the 2 checkpoint"):
        train(_train_config(tmp_path, out, epochs=4, keep_checkpoints=2, resume=True))


def test_the_card_escapes_prompt_text(finished, tmp_path):
    out = tmp_path / "pub"
    _publish(finished.run_dir, out)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "\x00" not in card
    prose = re.sub(r"`[^`\n]*`", "", card)  # code spans show text as typed: only the prose renders it
    assert "<script>" not in prose and "](http://evil.example)" not in prose and "**shout**" not in prose
    assert r"\[click here\]\(http://evil.example\)" in card and "&lt;script&gt;" in card


def test_demo_never_replaces_a_folder_of_the_users_own(tmp_path, tiny_models):
    from promptmix.pipeline.demo import DemoSettings, write_demo_inputs

    tiny = DemoSettings.tiny_random()
    mine = tmp_path / "a" / "models" / "sd"
    mine.mkdir(parents=True)
    (mine / "weights.ckpt").write_bytes(b"my own model")
    with pytest.raises(OutputError, match="did not write"):
        write_demo_inputs(tmp_path / "a", tiny)
    assert (mine / "weights.ckpt").read_bytes() == b"my own model"

    out = tmp_path / "b"
    for key in ("sd", "captioner", "counter_a", "counter_b"):  # the demo's models, already written
        shutil.copytree(tiny_models[key], out / "models" / key)
    (out / "raw").mkdir()
    (out / "raw" / "photos.zip").write_bytes(b"holiday")
    with pytest.raises(OutputError, match="did not write.*photos.zip"):
        write_demo_inputs(out, tiny)
    assert (out / "raw" / "photos.zip").read_bytes() == b"holiday"


def test_an_empty_kept_set_is_never_published_as_kept(run_copy):
    from promptmix.dataset_cards.card import read_hub_folder
    from promptmix.utils.io import write_hub_folder

    configs, _ = read_hub_folder(run_copy / "fake")  # what `filter --allow-empty` writes when nothing is kept
    everything = {"train": configs["all"]["train"]}
    shutil.rmtree(run_copy / "fake")
    write_hub_folder(run_copy / "fake", {"all": everything}, default="all")
    with pytest.raises(InputError, match="no kept rows") as exc:
        _publish(run_copy, run_copy.parent / "pub")
    _one_line(exc)
    assert not (run_copy.parent / "pub").exists()


def test_outputs_written_before_markers_existed_are_still_recognised(annotated, tmp_path):
    from promptmix.builders import build_shanghaitech
    from promptmix.testing.raw_datasets import write_shanghaitech_raw
    from promptmix.utils.outputs import MARKER

    raw = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=3, n_test=1, size=(48, 32), seed=1)
    build_shanghaitech(raw, "B", tmp_path / "shtb")
    out = tmp_path / "elsewhere" / "fake"
    filter_run(annotated, FilterConfig(keep_percent=50, out=out))
    for folder in (tmp_path / "shtb", out):  # as an older promptmix wrote them: no marker
        (folder / MARKER).unlink()
    build_shanghaitech(raw, "B", tmp_path / "shtb")
    filter_run(annotated, FilterConfig(keep_percent=50, out=out))
    assert (tmp_path / "shtb" / MARKER).is_file() and (out / MARKER).is_file()
