"""The stage runner: caching by key, downstream invalidation, --from/--until, resume, locking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptmix.errors import ConfigError, InputError, RunLockedError
from promptmix.pipeline.engine import CACHED, PLANNED, RAN, SKIPPED, PipelineState, Step, run_stages, step_of
from promptmix.run_folder import RunFolder
from promptmix.utils.io import files_fingerprint


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
        return [Step(name, self._runner(name, inputs), inputs=inputs, settings={"v": self.settings[name]},
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
    lines = []
    with pytest.raises(RuntimeError):
        run_stages(tmp_path, Toy(tmp_path, fail={"c"}).stages(), echo=lines.append)
    assert lines[-1].split()[:2] == ["c", "failed"] and "rerun the same command" in lines[-1]
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
    with RunFolder(tmp_path).lock("run"):
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
    bad = [Step("b", lambda: None, inputs=("a",)), Step("a", lambda: None)]
    with pytest.raises(ConfigError, match="reads 'a', which is not an earlier stage"):
        run_stages(tmp_path, bad)


def test_files_fingerprint_follows_content_not_timestamps(tmp_path):
    root = tmp_path / "raw"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "x.mat").write_bytes(b"123")
    cache = tmp_path / "fp.sqlite"
    first = files_fingerprint([root], cache)
    import os
    os.utime(root / "sub" / "x.mat", ns=(1, 1))
    assert files_fingerprint([root], cache) == first
    (root / "sub" / "x.mat").write_bytes(b"124")
    assert files_fingerprint([root], cache) != first
    assert files_fingerprint([root], False) == files_fingerprint([root], cache)  # the cache changes no result
    with pytest.raises(InputError, match="does not exist"):
        files_fingerprint([tmp_path / "nope"])


def _forge(path, data, like):
    """Write ``data`` to ``path`` and give it ``like``'s mtime (a file changed behind a stat cache's back)."""
    import os

    st = os.stat(like)
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("change", ["size", "mtime", "inode", "in-place"])
def test_files_fingerprint_rehashes_a_file_whose_stat_changed(tmp_path, change, monkeypatch):
    import os

    from promptmix.utils import io as io_mod

    root = tmp_path / "raw"
    root.mkdir()
    f = root / "a.bin"
    f.write_bytes(b"aaaa")
    (root / "b.bin").write_bytes(b"bbbb")
    cache = tmp_path / "fp.sqlite"
    first = files_fingerprint([root], cache)
    st = os.stat(f)
    if change == "size":
        f.write_bytes(b"aaaaa")
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "mtime":  # same size, new content, a new mtime
        f.write_bytes(b"abcd")
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif change == "inode":  # same size and mtime, another file renamed over it
        other = tmp_path / "new.bin"
        _forge(other, b"zzzz", f)
        os.replace(other, f)
        assert os.stat(f).st_ino != st.st_ino and os.stat(f).st_mtime_ns == st.st_mtime_ns
    else:  # same size, same mtime, same inode: only ctime tells
        _forge(f, b"zzzz", f)
        assert (os.stat(f).st_ino, os.stat(f).st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    hashed = []
    real = io_mod.sha256_file
    monkeypatch.setattr(io_mod, "sha256_file", lambda p: hashed.append(os.path.basename(p)) or real(p))
    assert files_fingerprint([root], cache) != first
    assert hashed == ["a.bin"]  # the unchanged file comes from the cache
    hashed.clear()
    files_fingerprint([root], cache)
    assert hashed == []  # warm: nothing read
    import sqlite3

    (root / "b.bin").unlink()
    files_fingerprint([root], cache)
    with sqlite3.connect(cache) as db:  # the row of a file that is gone is dropped
        assert [os.path.basename(p) for (p,) in db.execute("SELECT path FROM files")] == ["a.bin"]


def test_files_fingerprint_cache_is_used_before_any_run_folder_and_a_bad_cache_is_not_fatal(tmp_path, monkeypatch,
                                                                                            caplog):
    import os

    from promptmix.utils import io as io_mod
    from promptmix.utils.statcache import default_cache_path

    monkeypatch.setenv("PROMPTMIX_CACHE_DIR", str(tmp_path / "user-cache"))
    assert default_cache_path() == tmp_path / "user-cache" / "fingerprints.sqlite"
    root = tmp_path / "raw"
    root.mkdir()
    (root / "a.bin").write_bytes(b"a")
    first = files_fingerprint([root])
    assert default_cache_path().is_file()
    hashed = []
    real = io_mod.sha256_file
    monkeypatch.setattr(io_mod, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert files_fingerprint([root]) == first and hashed == []
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database" * 100)
    with caplog.at_level("WARNING"):
        assert files_fingerprint([root], bad) == first
    assert "bad.sqlite" in caplog.text and bad.read_bytes() == b"not a database" * 100  # left as it was
    assert os.path.exists(bad)


def test_outputs_of_the_stage_own_command_are_adopted(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "chunk-0.bin").write_bytes(b"made by `promptmix a` under accelerate launch")
    toy = Toy(tmp_path)
    stages = toy.stages()
    stages[0].adoptable = lambda: (tmp_path / "a" / "chunk-0.bin").exists()
    res = run_stages(tmp_path, stages)
    assert statuses(res)["a"] == RAN and res[0].reason == "adopted the outputs already there"
    assert (tmp_path / "a" / "chunk-0.bin").exists()  # not cleared: the stage resumed from it
    stages = Toy(tmp_path).stages()
    stages[0].adoptable = lambda: False
    assert statuses(run_stages(tmp_path, stages))["a"] == CACHED  # recorded now


@pytest.mark.slow
def test_generation_run_by_its_own_command_is_adopted_by_promptmix_run(tmp_path, tiny_models):
    """The multi-GPU recipe: `promptmix run --until prompts`, then `[accelerate launch -m] promptmix generate`
    on the same run folder, then `promptmix run` picks the images up instead of generating them again."""
    import yaml

    from promptmix.cli import main
    from promptmix.pipeline import load_config, run_pipeline
    from promptmix.testing.raw_datasets import write_shanghaitech_raw

    raw = write_shanghaitech_raw(tmp_path / "raw", part="B", n_train=4, n_test=2, size=(64, 48), seed=1)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"),
        "real": {"builder": "shanghaitech", "root": str(raw), "part": "B"},
        "caption": {"model": str(tiny_models["captioner"]), "max_new_tokens": 5},
        "generate": {"model": str(tiny_models["sd"]), "images_per_prompt": 2, "steps": 2, "max_side": 64,
                     "chunk_size": 2, "device": "cpu"},
        "annotate": {"annotators": [f"a:{tiny_models['counter_a']}"], "device": "cpu"},
        "filter": {"keep_percent": 100},
    }))
    run = tmp_path / "run"
    run_pipeline(load_config(cfg_path), until_stage="prompts")
    assert main(["generate", "--config", str(cfg_path), "--prompts", str(run / "prompts"), "--out", str(run)]) == 0
    chunks = {p: p.stat().st_mtime_ns for p in (run / "images").glob("chunk-*.parquet")}
    assert len(chunks) >= 2
    result = run_pipeline(load_config(cfg_path))
    gen = result.result("generate")
    assert (gen.status, gen.reason) == (RAN, "adopted the outputs already there")
    assert {p: p.stat().st_mtime_ns for p in (run / "images").glob("chunk-*.parquet")} == chunks  # not redone
    import pyarrow.parquet as pq

    generated = sum(pq.ParquetFile(p).metadata.num_rows for p in chunks)
    assert result.result("filter").status == RAN and result.records["filter"]["rows"] == generated


class Steps:
    """A continuable stage 'train' (settings: lr, steps) and a stage 'use' reading it. 'train' appends one line
    per step to RUN/train/log.txt, from where its outputs left off, like a training continuing a checkpoint."""

    def __init__(self, run_dir: Path, lr: float = 0.1, steps: int = 2, can_continue: bool = True):
        self.run_dir, self.lr, self.steps, self.ok = run_dir, lr, steps, can_continue

    def stages(self):
        log = self.run_dir / "train" / "log.txt"

        def train():
            log.parent.mkdir(parents=True, exist_ok=True)
            done = log.read_text().splitlines() if log.exists() else []
            log.write_text("".join(f"{line}\n" for line in done + [f"lr={self.lr} step={i + 1}"
                                                                    for i in range(len(done), self.steps)]))
            return {"steps": self.steps}

        def use():
            (self.run_dir / "use").mkdir(exist_ok=True)
            (self.run_dir / "use" / "out.txt").write_text(log.read_text())

        return [Step("train", train, settings={"lr": self.lr, "steps": self.steps}, outputs=(log.parent,),
                      continue_settings={"lr": self.lr}, can_continue=lambda: self.ok),
                Step("use", use, inputs=("train",), settings={}, outputs=(self.run_dir / "use",))]


def test_a_continuable_stage_continues_when_only_its_step_count_changes(tmp_path):
    log = tmp_path / "train" / "log.txt"
    run_stages(tmp_path, Steps(tmp_path, steps=2).stages())
    assert PipelineState(tmp_path).get("train")["continue_key"]
    res = run_stages(tmp_path, Steps(tmp_path, steps=4).stages(), plan_only=True)
    assert res[0].reason == "changed; continues from its last checkpoint"
    res = run_stages(tmp_path, Steps(tmp_path, steps=4).stages())
    assert statuses(res) == {"train": RAN, "use": RAN} and res[0].reason == "continued from its last checkpoint"
    assert log.read_text().splitlines() == [f"lr=0.1 step={i}" for i in (1, 2, 3, 4)]  # steps 1-2 kept
    assert (tmp_path / "use" / "out.txt").read_text() == log.read_text()  # what reads it ran again
    assert statuses(run_stages(tmp_path, Steps(tmp_path, steps=4).stages())) == {"train": CACHED, "use": CACHED}

    # another learning rate: not a continuation; the old steps are cleared first
    run_stages(tmp_path, Steps(tmp_path, lr=0.5, steps=3).stages())
    assert log.read_text().splitlines() == [f"lr=0.5 step={i}" for i in (1, 2, 3)]
    # the stage says its outputs cannot be continued (e.g. fewer steps than trained): cleared too
    res = run_stages(tmp_path, Steps(tmp_path, lr=0.5, steps=2, can_continue=False).stages())
    assert res[0].reason == "" and log.read_text().splitlines() == ["lr=0.5 step=1", "lr=0.5 step=2"]
    # --from reruns from scratch
    res = run_stages(tmp_path, Steps(tmp_path, lr=0.5, steps=5).stages(), from_stage="train")
    assert res[0].reason == "inputs changed" and len(log.read_text().splitlines()) == 5
    assert log.read_text().splitlines()[0] == "lr=0.5 step=1"


def _fake_finetune(out: Path, *, steps_done: int, config: dict, max_steps: int, resume_hash: str) -> None:
    """What an MVC fine-tuning leaves behind, enough for finetune_can_continue: config.yaml, training.json and
    its newest checkpoint's training.json."""
    import yaml

    ckpt = out / "checkpoints" / f"checkpoint-{steps_done}"
    ckpt.mkdir(parents=True)
    (ckpt / "training.json").write_text(json.dumps({"global_step": steps_done, "resume_hash": resume_hash}))
    (out / "training.json").write_text(json.dumps({"status": "finished", "global_step": steps_done,
                                                   "max_train_steps": max_steps}))
    (out / "config.yaml").write_text(yaml.safe_dump(config))


def test_finetune_can_continue_only_up_to_more_steps(tmp_path):
    from promptmix.training.finetune.config import FinetuneConfig
    from promptmix.training.finetune.stage import FinetuneStage

    def finetune_can_continue(config):
        return FinetuneStage().can_continue(config, None)

    def ft(**kw):
        return FinetuneConfig(captions="RUN", output_dir=str(tmp_path / "ft"), **kw)

    made_with = ft().resume_hash()
    assert not finetune_can_continue(ft(max_train_steps=8))  # nothing to continue
    _fake_finetune(tmp_path / "ft", steps_done=4, config={"max_train_steps": 4, "epochs": 100}, max_steps=4,
                   resume_hash=made_with)
    assert finetune_can_continue(ft(max_train_steps=8)) and finetune_can_continue(ft(max_train_steps=4))
    assert not finetune_can_continue(ft(max_train_steps=3))  # already past it: start over
    assert not finetune_can_continue(ft(max_train_steps=8, resume="never"))
    assert not finetune_can_continue(ft(epochs=10))  # steps per epoch unknown: trained by step count
    assert not finetune_can_continue(ft(max_train_steps=8, learning_rate=1e-3))  # the checkpoint's settings differ
    import shutil

    shutil.rmtree(tmp_path / "ft")  # trained 2 epochs of 3 steps
    _fake_finetune(tmp_path / "ft", steps_done=6, config={"max_train_steps": None, "epochs": 2}, max_steps=6,
                   resume_hash=made_with)
    assert finetune_can_continue(ft(epochs=3)) and finetune_can_continue(ft(epochs=2))
    assert not finetune_can_continue(ft(epochs=1))


def test_a_training_run_continues_when_only_its_epochs_grow(tmp_path, monkeypatch, fresh_accelerate_state):
    from promptmix.testing.synthetic import write_real_dataset
    from promptmix.training.train import trainer
    from promptmix.training.train.config import TrainConfig
    from promptmix.training.train.stage import TrainStage

    real = write_real_dataset(tmp_path / "real", "counting", sizes={"train": 4, "validation": 2, "test": 2})
    run = tmp_path / "run"
    out = run / "train" / "base"

    def config(**kw):
        base = {"task": "counting", "real": str(real), "model": "rescsrnet", "width_div": 16, "lr": 3e-3,
                "epochs": 2, "batch_size": 2, "output_dir": str(out), "report_to": "none", "cpu": True}
        return TrainConfig(**{**base, **kw})

    def train_can_continue(cfg):
        return TrainStage().can_continue(cfg, None)

    def stages(**kw):
        return [Step("real", dict, settings={}),
                step_of(TrainStage(), config(**kw), RunFolder(run), ["real"], name="train.base")]

    trained: list[int] = []  # the epochs trainer.train actually runs
    batches = trainer.epoch_batches
    monkeypatch.setattr(trainer, "epoch_batches", lambda *a, **kw: trained.append(kw["epoch"]) or batches(*a, **kw))

    run_stages(run, stages())
    assert trained == [0, 1]
    ckpt = out / "lr-0.003" / "checkpoints" / "epoch-0002" / "trainer_state.json"
    before = json.loads(ckpt.read_text())
    assert [r.reason for r in run_stages(run, stages(epochs=3), plan_only=True)][1] == \
        "changed; continues from its last checkpoint"
    assert run_stages(run, stages(lr=1e-3, epochs=3), plan_only=True)[1].reason == "changed"  # another lr
    assert not train_can_continue(config(epochs=3, eval_every=2))  # epoch 2 was evaluated only as the last one

    trained.clear()
    res = run_stages(run, stages(epochs=3))[1]
    assert (res.status, res.reason) == (RAN, "continued from its last checkpoint")
    assert trained == [2]  # epochs 1-2 were not trained again
    continued = json.loads((out / "metrics.json").read_text())
    state = json.loads((out / "lr-0.003" / "checkpoints" / "epoch-0003" / "trainer_state.json").read_text())
    assert state["history"][:2] == before["history"] and state["epoch"] == 3

    straight = trainer.train(config(epochs=3, output_dir=str(tmp_path / "straight")))
    losses = [h["train_loss"] for h in straight["history"]]
    assert [h["train_loss"] for h in continued["history"]] == pytest.approx(losses)
    assert [h["lr"] for h in continued["history"]] == pytest.approx([3e-3 * 0.99 ** i for i in range(3)])
    for key in ("test/mae", "test/rmse", "validation/mae", "best_epoch"):
        assert continued[key] == pytest.approx(straight[key])
    assert PipelineState(run).get("train.base")["record"]["test/mae"] == pytest.approx(straight["test/mae"])

    trained.clear()  # fewer epochs than trained: starts over
    res = run_stages(run, stages(epochs=2))[1]
    assert (res.status, res.reason) == (RAN, "") and trained == [0, 1]
    assert not (out / "lr-0.003" / "checkpoints" / "epoch-0003").exists()
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2


def test_from_reruns_only_the_stages_that_read_what_it_writes(tmp_path):
    """`--from b` reruns b and c (reads b), not d (reads only a): `--from filter` leaves the real-only baseline."""
    run_stages(tmp_path, Toy(tmp_path).stages())
    toy = Toy(tmp_path)
    lines = []
    res = run_stages(tmp_path, toy.stages(), from_stage="b", echo=lines.append)
    assert statuses(res) == {"a": SKIPPED, "b": RAN, "c": RAN, "d": CACHED}
    assert toy.calls == ["b", "c"]
    plan = run_stages(tmp_path, Toy(tmp_path).stages(), from_stage="b", plan_only=True)
    assert statuses(plan) == {"a": SKIPPED, "b": PLANNED, "c": PLANNED, "d": CACHED}


class Recorded(Toy):
    """Toy stages that record their settings like a stage's own code does (a manifest-style record per stage),
    so a rewrite by another command can be told apart."""

    def stages(self):
        steps = super().stages()
        for step in steps:
            inner = step.run

            def run(inner=inner, name=step.name):
                out = inner()
                (self.run_dir / name / "record.json").write_text(json.dumps({"config_hash": f"v{self.settings[name]}"}))
                return out
            step.run = run
            step.fingerprint = (lambda name=step.name: json.loads((self.run_dir / name / "record.json").read_text())
                                ["config_hash"])
            step.describe_change = (lambda name=step.name: "v: " + json.loads(
                (self.run_dir / name / "record.json").read_text())["config_hash"][1:] + " there, "
                f"{self.settings[name]} in the config")
        return steps


def test_an_output_rewritten_outside_the_runner_is_named_with_its_stale_readers(tmp_path):
    """`promptmix filter RUN --keep 40` on a pipeline folder: the next run stops and says which stages are stale;
    --plan shows it; the config's settings (--from) or the new ones (the config changed) both resolve it."""
    run_stages(tmp_path, Recorded(tmp_path).stages())
    (tmp_path / "b" / "record.json").write_text(json.dumps({"config_hash": "v7"}))  # another command rewrote b
    (tmp_path / "b" / "out.txt").write_text("b7(a1())")

    plan = run_stages(tmp_path, Recorded(tmp_path).stages(), plan_only=True, echo=(lines := []).append)
    assert statuses(plan) == {"a": CACHED, "b": "changed", "c": "stale", "d": CACHED}
    assert "v: 7 there, 1 in the config" in "\n".join(lines)

    toy = Recorded(tmp_path)
    with pytest.raises(InputError) as err:
        run_stages(tmp_path, toy.stages())
    message = str(err.value)
    assert "stage b: b changed outside `promptmix run`" in message and "stale: c" in message
    assert "--set b.v=7" in message and "--from b" in message
    assert toy.calls == []  # nothing ran

    toy = Recorded(tmp_path, {"b": 7})  # the config now says what is there: b reruns with it, then c
    assert statuses(run_stages(tmp_path, toy.stages())) == {"a": CACHED, "b": RAN, "c": RAN, "d": CACHED}
    assert (tmp_path / "c" / "out.txt").read_text() == "c1(b7(a1()))"

    (tmp_path / "b" / "record.json").write_text(json.dumps({"config_hash": "v9"}))
    toy = Recorded(tmp_path, {"b": 7})
    res = run_stages(tmp_path, toy.stages(), from_stage="b")  # back to the config's settings
    assert statuses(res) == {"a": SKIPPED, "b": RAN, "c": RAN, "d": CACHED}
    assert statuses(run_stages(tmp_path, Recorded(tmp_path, {"b": 7}).stages())) == {s: CACHED for s in "abcd"}


def test_plan_says_a_stage_is_running_when_another_process_holds_the_lock(tmp_path):
    import subprocess
    import sys

    toy = Toy(tmp_path)
    state = PipelineState(tmp_path)
    run_stages(tmp_path, toy.stages(), until_stage="a")
    state = PipelineState(tmp_path)
    key = state.get("a")["key"]
    state.set("b", {"key": "x", "status": "running", "outputs": ["b"]})
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from promptmix.run_folder import RunFolder\n"
        f"with RunFolder({str(tmp_path)!r}).lock('generate'):\n"
        "    print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lines = []
        res = run_stages(tmp_path, Toy(tmp_path).stages(), plan_only=True, echo=lines.append)
        text = "\n".join(lines)
        assert "locked by another run" in text and "`promptmix generate`" in text
        assert key and statuses(res)["a"] == CACHED
    finally:
        holder.kill()
        holder.wait()
    lines = []
    run_stages(tmp_path, Toy(tmp_path).stages(), plan_only=True, echo=lines.append)
    assert "locked" not in "\n".join(lines)


def test_files_fingerprint_is_the_one_runs_were_keyed_on_before_the_stat_cache(tmp_path):
    """Same value as the plain walk it replaced (sorted ``rglob``, relative posix names), so no run's key changes."""
    import os

    from promptmix.utils.hashing import sha256_file, stable_hash

    root = tmp_path / "raw"
    for rel in ["a-b/x", "a/b", "a.b", "a/b-c/d", "A/z", ".hidden", "a/.x/y", "b"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    os.symlink(root / "a", root / "link-dir")  # a folder link is not entered, a file link is followed
    os.symlink(root / "b", root / "link-file")
    single = tmp_path / "one.bin"
    single.write_bytes(b"1")
    entries = []
    for r in (root, single):
        files = sorted(p for p in r.rglob("*") if p.is_file()) if r.is_dir() else [r]
        entries += [[f.relative_to(r).as_posix() if r.is_dir() else f.name, sha256_file(f)] for f in files]
    expected = stable_hash(entries, length=32)
    cache = tmp_path / "fp.sqlite"
    assert files_fingerprint([root, single], False) == expected
    assert files_fingerprint([root, single], cache) == expected == files_fingerprint([root, single], cache)
