"""The stage runner: caching by key, downstream invalidation, --from/--until, resume, locking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptmix.errors import ConfigError, InputError, RunLockedError
from promptmix.pipeline.runner import (CACHED, PLANNED, RAN, SKIPPED, PipelineState, Stage, files_fingerprint,
                                       run_stages)


class Toy:
    """A chain a -> b -> c plus d (reads only a): each stage writes RUN/<name>/out.txt from its inputs."""

    def __init__(self, run_dir: Path, settings: dict | None = None, fail: set | None = None):
        self.run_dir = run_dir
        self.settings = {"a": 1, "b": 1, "c": 1, "d": 1, **(settings or {})}
        self.fail = fail or set()
        self.calls: list[str] = []

    def _runner(self, name, inputs):
        def run():
            self.calls.append(name)
            out = self.run_dir / name
            out.mkdir(parents=True, exist_ok=True)
            (out / "partial.txt").write_text("started")
            if name in self.fail:
                raise RuntimeError(f"{name} failed")
            text = f"{name}{self.settings[name]}(" + ",".join((self.run_dir / i / "out.txt").read_text()
                                                                for i in inputs) + ")"
            (out / "out.txt").write_text(text)
            return {"text": text}
        return run

    def stages(self):
        spec = [("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ("a",))]
        return [Stage(name, self._runner(name, inputs), inputs=inputs, settings={"v": self.settings[name]},
                      outputs=(self.run_dir / name,), group="d" if name == "d" else "")
                for name, inputs in spec]


def statuses(results):
    return {r.name: r.status for r in results}


def test_rerun_is_cached_and_change_reruns_only_downstream(tmp_path):
    toy = Toy(tmp_path)
    lines = []
    res = run_stages(tmp_path, toy.stages(), echo=lines.append)
    assert statuses(res) == {"a": RAN, "b": RAN, "c": RAN, "d": RAN}
    assert (tmp_path / "c" / "out.txt").read_text() == "c1(b1(a1()))"
    assert len(lines) == 4 and lines[2].split()[:2] == ["c", "ran"]
    state = json.loads((tmp_path / "pipeline" / "state.json").read_text())
    assert state["stages"]["c"]["status"] == "done" and state["stages"]["c"]["outputs"] == ["c"]

    toy2 = Toy(tmp_path)
    assert statuses(run_stages(tmp_path, toy2.stages())) == {s: CACHED for s in "abcd"}
    assert toy2.calls == []

    toy3 = Toy(tmp_path, {"b": 2})
    res = run_stages(tmp_path, toy3.stages())
    assert statuses(res) == {"a": CACHED, "b": RAN, "c": RAN, "d": CACHED}
    assert toy3.calls == ["b", "c"]
    assert (tmp_path / "c" / "out.txt").read_text() == "c1(b2(a1()))"


def test_changed_stage_clears_its_stale_outputs_first(tmp_path):
    run_stages(tmp_path, Toy(tmp_path).stages())
    (tmp_path / "b" / "leftover.bin").write_bytes(b"old")
    run_stages(tmp_path, Toy(tmp_path, {"b": 5}).stages())
    assert not (tmp_path / "b" / "leftover.bin").exists()
    assert not (tmp_path / "pipeline" / "trash").exists()


def test_interrupted_stage_resumes_without_clearing(tmp_path):
    with pytest.raises(RuntimeError):
        run_stages(tmp_path, Toy(tmp_path, fail={"c"}).stages())
    assert PipelineState(tmp_path).get("c")["status"] == "running"
    (tmp_path / "c" / "chunk-0.bin").write_bytes(b"finished chunk")
    toy = Toy(tmp_path)
    res = run_stages(tmp_path, toy.stages())
    assert statuses(res) == {"a": CACHED, "b": CACHED, "c": RAN, "d": RAN}
    assert (tmp_path / "c" / "chunk-0.bin").read_bytes() == b"finished chunk"  # kept for the stage to resume from
    assert res[2].reason == "resumed"


def test_until_and_from(tmp_path):
    toy = Toy(tmp_path)
    res = run_stages(tmp_path, toy.stages(), until_stage="b")
    assert statuses(res) == {"a": RAN, "b": RAN, "c": SKIPPED, "d": SKIPPED}
    assert not (tmp_path / "c").exists()

    with pytest.raises(ConfigError, match="stage b has changed"):
        run_stages(tmp_path, Toy(tmp_path, {"b": 3}).stages(), from_stage="c")

    toy = Toy(tmp_path)
    res = run_stages(tmp_path, toy.stages(), from_stage="b")
    assert statuses(res) == {"a": SKIPPED, "b": RAN, "c": RAN, "d": RAN}  # forced even though b was cached
    assert toy.calls == ["b", "c", "d"]

    with pytest.raises(ConfigError, match=r"--until: expected one of a, b, c, d; got 'x'"):
        run_stages(tmp_path, toy.stages(), until_stage="x")
    with pytest.raises(ConfigError, match="comes after"):
        run_stages(tmp_path, toy.stages(), from_stage="c", until_stage="a")


def test_missing_output_reruns_stage_and_forces_downstream(tmp_path):
    run_stages(tmp_path, Toy(tmp_path).stages())
    (tmp_path / "b" / "out.txt").unlink()
    (tmp_path / "b" / "partial.txt").unlink()
    import shutil
    shutil.rmtree(tmp_path / "b")
    toy = Toy(tmp_path)
    res = run_stages(tmp_path, toy.stages())
    assert statuses(res) == {"a": CACHED, "b": RAN, "c": RAN, "d": CACHED}


def test_stray_output_without_record_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mine.txt").write_text("user data")
    with pytest.raises(InputError, match="was not written by `promptmix run`"):
        run_stages(tmp_path, Toy(tmp_path).stages())
    assert (tmp_path / "a" / "mine.txt").read_text() == "user data"


def test_second_runner_on_same_folder_is_locked_out(tmp_path):
    from promptmix.pipeline.runner import _RunLock

    with _RunLock(tmp_path):
        with pytest.raises(RunLockedError, match="another `promptmix run`"):
            run_stages(tmp_path, Toy(tmp_path).stages())


def test_plan_only_changes_nothing(tmp_path):
    run_stages(tmp_path, Toy(tmp_path).stages(), until_stage="b")
    before = (tmp_path / "pipeline" / "state.json").read_text()
    toy = Toy(tmp_path, {"a": 9})
    res = run_stages(tmp_path, toy.stages(), plan_only=True)
    assert statuses(res) == {"a": PLANNED, "b": PLANNED, "c": PLANNED, "d": PLANNED}
    assert toy.calls == [] and (tmp_path / "pipeline" / "state.json").read_text() == before
    res = run_stages(tmp_path, Toy(tmp_path).stages(), plan_only=True)
    assert statuses(res) == {"a": CACHED, "b": CACHED, "c": PLANNED, "d": PLANNED}


def test_graph_errors(tmp_path):
    bad = [Stage("b", lambda: None, inputs=("a",)), Stage("a", lambda: None)]
    with pytest.raises(ConfigError, match="reads 'a', which is not an earlier stage"):
        run_stages(tmp_path, bad)


def test_files_fingerprint_follows_content_not_timestamps(tmp_path):
    root = tmp_path / "raw"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "x.mat").write_bytes(b"123")
    cache = tmp_path / "fp.json"
    first = files_fingerprint([root], cache)
    import os
    os.utime(root / "sub" / "x.mat", ns=(1, 1))
    assert files_fingerprint([root], cache) == first
    (root / "sub" / "x.mat").write_bytes(b"124")
    assert files_fingerprint([root], cache) != first
    with pytest.raises(InputError, match="does not exist"):
        files_fingerprint([tmp_path / "nope"])
