"""The stage runner: cache by key, resume, ``--from``/``--until``, one line per stage.

A :class:`Stage` is a named unit of work with the settings that change its result, the stages
whose outputs it reads, the paths it writes, and a ``run()`` callable. Its cache key is

    stable_hash(name, settings, {input: key of input}, fingerprint of external files)

so a change anywhere upstream changes every key downstream. The state of a run folder lives in
``RUN/pipeline/state.json`` (written atomically)::

    {"version": 1, "stages": {"generate": {"key": "…", "status": "done", "outputs": ["images"],
                                           "seconds": 12.3, "started_at": "…", "finished_at": "…",
                                           "record": {…}}}}

A stage is *cached* when its record is ``done`` with the same key and its outputs exist. A stage
whose record has another key has its outputs inside the run folder removed (renamed into
``RUN/pipeline/trash`` first, so nothing half-deleted is ever read) before it reruns. A stage
whose record is ``running`` with the same key was interrupted: it is run again without clearing,
and resumes from its own chunk files. A stage that ran in this invocation forces every stage that
reads it to run too.

A *continuable* stage (``continue_settings`` set: its settings less those it can continue past, such
as the step count of a training) also records a second key, ``continue_key``, made like ``key`` from
``continue_settings``. When its key changed but its continue key did not (only e.g. ``max_train_steps``
was raised) and ``can_continue()`` agrees, its outputs are kept and it runs on them: it continues from
its last checkpoint instead of starting over.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..config import stable_hash
from ..errors import ConfigError, InputError, RunLockedError
from ..utils.io import sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

STATE_VERSION = 1
PIPELINE_DIR = "pipeline"
STATE_FILE = "state.json"

RAN, CACHED, SKIPPED, PLANNED = "ran", "cached", "skipped", "would run"


@dataclasses.dataclass
class Stage:
    """One unit of the pipeline.

    ``settings`` is the JSON-able part of its config that changes its result (run-time settings
    such as batch size or device left out). ``outputs`` are the paths it writes; those inside the
    run folder are removed when the stage must rerun with another key. ``external`` returns a
    fingerprint of files outside the run folder that the stage reads (raw downloads), or None.
    ``group`` is the name ``--from``/``--until`` use (``train`` for every ``train.NAME`` run).
    ``adoptable`` says whether outputs found without a record (written by the stage's own command,
    e.g. ``accelerate launch -m promptmix generate`` on the same run folder) are this stage's own
    kind of output: the stage then runs on them (it checks they fit its config and resumes) instead
    of the runner refusing to touch them.
    ``continue_settings``: for a stage that can continue its own finished or interrupted work after some
    settings changed (a training raised to more steps), its settings without those; ``can_continue``
    says whether the outputs on disk can be continued to the current settings (e.g. the last checkpoint
    is not past the new step count). See the module docstring.
    """

    name: str
    run: Callable[[], Mapping[str, Any] | None]
    inputs: tuple[str, ...] = ()
    settings: Any = None
    outputs: tuple[Path, ...] = ()
    external: Callable[[], Any] | None = None
    group: str = ""
    description: str = ""
    adoptable: Callable[[], bool] | None = None
    continue_settings: Any = None
    can_continue: Callable[[], bool] | None = None

    def __post_init__(self) -> None:
        self.group = self.group or self.name
        self.inputs = tuple(self.inputs)
        self.outputs = tuple(Path(p) for p in self.outputs)


@dataclasses.dataclass
class StageResult:
    name: str
    status: str  # ran | cached | skipped | would run | failed | interrupted
    key: str | None = None
    seconds: float = 0.0
    reason: str = ""

    def line(self, width: int = 12) -> str:
        """``  generate      ran      12.3 s`` — the line ``promptmix run`` prints per stage."""
        detail = f"{self.seconds:7.1f} s" if self.status in (RAN, "failed", "interrupted") else ""
        if self.reason:
            detail = f"{detail}  ({self.reason})" if detail else f"({self.reason})"
        return f"  {self.name:<{width}} {self.status:<9} {detail}".rstrip()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class PipelineState:
    """``RUN/pipeline/state.json``: the key, status and outputs of every stage that has started."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / PIPELINE_DIR / STATE_FILE
        self.stages: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InputError(f"{self.path} is not valid JSON ({exc}); delete it to recompute every stage") from None
            if data.get("version") != STATE_VERSION:
                raise InputError(f"{self.path}: expected state version {STATE_VERSION}; got {data.get('version')!r}")
            self.stages = dict(data.get("stages", {}))

    def get(self, name: str) -> dict[str, Any] | None:
        return self.stages.get(name)

    def set(self, name: str, record: dict[str, Any]) -> None:
        self.stages[name] = record
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, {"version": STATE_VERSION, "stages": self.stages})


# -- helpers -------------------------------------------------------------------------------------------
def stage_groups(stages: Sequence[Stage]) -> list[str]:
    """The names ``--from``/``--until`` accept, in pipeline order."""
    out: list[str] = []
    for s in stages:
        if s.group not in out:
            out.append(s.group)
    return out


def check_graph(stages: Sequence[Stage]) -> None:
    """Names are unique and every input names an earlier stage."""
    seen: set[str] = set()
    for s in stages:
        if s.name in seen:
            raise ConfigError(f"stage {s.name!r} is defined twice")
        for inp in s.inputs:
            if inp not in seen:
                raise ConfigError(f"stage {s.name!r} reads {inp!r}, which is not an earlier stage; "
                                  f"earlier stages: {', '.join(sorted(seen)) or '(none)'}")
        seen.add(s.name)


def _check_choice(option: str, value: str | None, allowed: Sequence[str]) -> int | None:
    if value is None:
        return None
    if value not in allowed:
        raise ConfigError(f"{option}: expected one of {', '.join(allowed)}; got {value!r}")
    return list(allowed).index(value)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _owned_outputs(stage: Stage, run_dir: Path) -> list[Path]:
    """The outputs the runner may delete: only those inside the run folder (never the run folder itself)."""
    return [p for p in stage.outputs if _inside(p, run_dir) and p.resolve() != run_dir.resolve()]


def _trash_dir(run_dir: Path) -> Path:
    return run_dir / PIPELINE_DIR / "trash"


def clear_outputs(stage: Stage, run_dir: Path) -> list[Path]:
    """Move the stage's outputs inside the run folder into the trash, then delete them.

    The rename is atomic, so a kill at any moment leaves either the old output in place (and a
    state record that says it is stale) or nothing; the trash is emptied at the next start.
    """
    removed = []
    trash = _trash_dir(run_dir)
    for path in _owned_outputs(stage, run_dir):
        if not path.exists() and not path.is_symlink():
            continue
        trash.mkdir(parents=True, exist_ok=True)
        target = trash / f"{stage.name}-{path.name}-{uuid.uuid4().hex[:8]}"
        os.replace(path, target)
        removed.append(path)
    shutil.rmtree(trash, ignore_errors=True)
    return removed


def stage_key(stage: Stage, input_keys: Mapping[str, str], fingerprint: Any = None) -> str:
    return stable_hash({"stage": stage.name, "settings": stage.settings,
                        "inputs": {name: input_keys[name] for name in stage.inputs},
                        "external": fingerprint})


def continue_key(stage: Stage, input_keys: Mapping[str, str], fingerprint: Any = None) -> str | None:
    """The key a continuable stage's record must share to be continued (None: the stage cannot continue)."""
    if stage.continue_settings is None:
        return None
    return stable_hash({"stage": stage.name, "continue": stage.continue_settings,
                        "inputs": {name: input_keys[name] for name in stage.inputs},
                        "external": fingerprint})


def _continues(stage: Stage, rec: Mapping[str, Any] | None, ckey: str | None) -> bool:
    """The record has another key but the same continue key, and the stage can continue its outputs."""
    return (ckey is not None and bool(rec) and rec.get("continue_key") == ckey and _outputs_exist(stage)
            and (stage.can_continue is None or bool(stage.can_continue())))


def _outputs_exist(stage: Stage) -> bool:
    return all(p.exists() for p in stage.outputs)


def _rel(path: Path, run_dir: Path) -> str:
    return os.path.relpath(path, run_dir) if _inside(path, run_dir) else str(path)


class _RunLock:
    """An exclusive, non-blocking lock on the run folder (released by the OS if the process dies)."""

    def __init__(self, run_dir: Path):
        from filelock import FileLock

        self.path = run_dir / PIPELINE_DIR / ".lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path), timeout=0)

    def __enter__(self):
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise RunLockedError(f"another `promptmix run` is working on {self.path.parent.parent} "
                                 f"(lock {self.path}); wait for it to finish or stop it first") from None
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


# -- the runner ------------------------------------------------------------------------------------------
def run_stages(run_dir: str | os.PathLike, stages: Sequence[Stage], *, from_stage: str | None = None,
               until_stage: str | None = None, plan_only: bool = False,
               echo: Callable[[str], None] | None = None,
               on_start: Callable[[], None] | None = None) -> list[StageResult]:
    """Run ``stages`` in order in ``run_dir``, skipping those whose cached outputs are up to date.

    ``from_stage``: stages before it are not run (they must be up to date) and it and every later
    stage run even when cached. ``until_stage``: stop after it. ``plan_only``: report what would
    run without running or changing anything. ``echo`` receives one line per stage.
    Returns one :class:`StageResult` per stage.
    """
    run_dir = Path(run_dir)
    check_graph(stages)
    groups = stage_groups(stages)
    i_from = _check_choice("--from", from_stage, groups)
    i_until = _check_choice("--until", until_stage, groups)
    if i_from is not None and i_until is not None and i_from > i_until:
        raise ConfigError(f"--from {from_stage} comes after --until {until_stage}; stage order: {', '.join(groups)}")
    width = max([len(s.name) for s in stages] + [8])
    say = echo or (lambda line: logger.info(line))

    if plan_only:
        return _plan(run_dir, stages, groups, i_from, i_until, width, say)

    run_dir.mkdir(parents=True, exist_ok=True)
    with _RunLock(run_dir):
        shutil.rmtree(_trash_dir(run_dir), ignore_errors=True)
        if on_start is not None:
            on_start()
        state = PipelineState(run_dir)
        keys: dict[str, str] = {}
        ran: set[str] = set()
        results: list[StageResult] = []
        for stage in stages:
            gi = groups.index(stage.group)
            if i_until is not None and gi > i_until:
                result = StageResult(stage.name, SKIPPED, reason=f"after --until {until_stage}")
            elif i_from is not None and gi < i_from:
                key = stage_key(stage, keys, stage.external() if stage.external else None)
                _require_up_to_date(stage, key, state, from_stage)
                keys[stage.name] = key
                result = StageResult(stage.name, SKIPPED, key, reason=f"before --from {from_stage}; up to date")
            else:
                forced = (i_from is not None) or any(inp in ran for inp in stage.inputs)
                t0 = time.perf_counter()
                try:
                    result = _run_one(stage, run_dir, state, keys, forced)
                except BaseException as exc:
                    interrupted = isinstance(exc, KeyboardInterrupt)
                    say(StageResult(stage.name, "interrupted" if interrupted else "failed",
                                    seconds=time.perf_counter() - t0,
                                    reason="rerun the same command to resume" if interrupted else
                                    "finished work is kept: fix the error and rerun the same command").line(width))
                    raise
                keys[stage.name] = result.key
                if result.status == RAN:
                    ran.add(stage.name)
            results.append(result)
            say(result.line(width))
        return results


def _require_up_to_date(stage: Stage, key: str, state: PipelineState, from_stage: str) -> None:
    rec = state.get(stage.name)
    why = None
    if rec is None or rec.get("status") != "done":
        why = "has not finished"
    elif rec.get("key") != key:
        why = "has changed since it ran (its config or an input differs)"
    elif not _outputs_exist(stage):
        why = "is missing some outputs"
    if why:
        raise ConfigError(f"--from {from_stage}: stage {stage.name} {why}; run without --from "
                          f"(or with --until {stage.group}) first")


def _run_one(stage: Stage, run_dir: Path, state: PipelineState, keys: dict[str, str], forced: bool) -> StageResult:
    fingerprint = stage.external() if stage.external else None
    key = stage_key(stage, keys, fingerprint)
    ckey = continue_key(stage, keys, fingerprint)
    rec = state.get(stage.name)
    if rec and rec.get("status") == "done" and rec.get("key") == key and _outputs_exist(stage) and not forced:
        if ckey is not None and rec.get("continue_key") != ckey:  # a record written before it had one
            state.set(stage.name, {**rec, "continue_key": ckey})
        return StageResult(stage.name, CACHED, key, reason=f"key {key}")
    resume = bool(rec) and rec.get("status") == "running" and rec.get("key") == key
    continued = not resume and not forced and rec is not None and _continues(stage, rec, ckey)
    adopted = False
    if rec is None:
        stray = [p for p in _owned_outputs(stage, run_dir) if p.exists()]
        if stray and not (stage.adoptable is not None and stage.adoptable()):
            raise InputError(f"{stray[0]} exists but was not written by `promptmix run` (no record of stage "
                             f"{stage.name!r} in {state.path}); move it away or choose another run_dir")
        adopted = bool(stray)
    elif not resume and not continued:
        removed = clear_outputs(stage, run_dir)
        if removed:
            logger.info("%s: removed stale outputs %s", stage.name, ", ".join(map(str, removed)))
    reason = ("resumed" if resume else "continued from its last checkpoint" if continued
              else "adopted the outputs already there" if adopted else "inputs changed" if forced and rec else "")
    keys_rec = {"key": key, **({"continue_key": ckey} if ckey is not None else {})}
    state.set(stage.name, {**keys_rec, "status": "running", "started_at": _now(),
                           "outputs": [_rel(p, run_dir) for p in stage.outputs]})
    t0 = time.perf_counter()
    logger.info("%s: running (key %s)", stage.name, key)
    record = stage.run() or {}
    seconds = time.perf_counter() - t0
    state.set(stage.name, {**keys_rec, "status": "done", "started_at": state.get(stage.name)["started_at"],
                           "finished_at": _now(), "seconds": round(seconds, 3),
                           "outputs": [_rel(p, run_dir) for p in stage.outputs],
                           "record": json.loads(json.dumps(dict(record), default=str))})
    return StageResult(stage.name, RAN, key, seconds, reason)


def _plan(run_dir: Path, stages: Sequence[Stage], groups: list[str], i_from: int | None, i_until: int | None,
          width: int, say: Callable[[str], None]) -> list[StageResult]:
    state = PipelineState(run_dir) if (run_dir / PIPELINE_DIR / STATE_FILE).exists() else None
    keys: dict[str, str] = {}
    will_run: set[str] = set()
    results = []
    for stage in stages:
        gi = groups.index(stage.group)
        fingerprint = stage.external() if stage.external else None
        key = stage_key(stage, keys, fingerprint)
        ckey = continue_key(stage, keys, fingerprint)
        keys[stage.name] = key
        rec = state.get(stage.name) if state else None
        up_to_date = bool(rec) and rec.get("status") == "done" and rec.get("key") == key and _outputs_exist(stage)
        if i_until is not None and gi > i_until:
            result = StageResult(stage.name, SKIPPED, key, reason="after --until")
        elif i_from is not None and gi < i_from:
            result = StageResult(stage.name, SKIPPED, key, reason="before --from" + ("" if up_to_date else "; NOT up to date"))
        elif up_to_date and i_from is None and not any(i in will_run for i in stage.inputs):
            result = StageResult(stage.name, CACHED, key, reason=f"key {key}")
        else:
            forced = i_from is not None or any(i in will_run for i in stage.inputs)
            will_run.add(stage.name)
            why = ("interrupted; resumes" if rec and rec.get("status") == "running" and rec.get("key") == key
                   else "changed; continues from its last checkpoint" if not forced and _continues(stage, rec, ckey)
                   else "changed" if rec else "new")
            result = StageResult(stage.name, PLANNED, key, reason=why)
        results.append(result)
        say(result.line(width))
    return results


def files_fingerprint(paths: Iterable[str | os.PathLike], cache_file: str | os.PathLike | None = None) -> str:
    """A content hash of files and folders (recursively), cached by (size, mtime) in ``cache_file``.

    Raw downloads are read once; later runs only ``stat`` them unless a file changed.
    """

    cache: dict[str, list] = {}
    if cache_file and Path(cache_file).exists():
        try:
            cache = json.loads(Path(cache_file).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            cache = {}
    entries = []
    fresh: dict[str, list] = {}
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            st = f.stat()
            ck = str(f.resolve())
            hit = cache.get(ck)
            if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                digest = hit[2]
            else:
                digest = sha256_file(f)
            fresh[ck] = [st.st_size, st.st_mtime_ns, digest]
            rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
            entries.append([rel, digest])
    if cache_file:
        write_json_atomic(cache_file, {**cache, **fresh})
    return stable_hash(entries, length=32)


# -- the whole pipeline ----------------------------------------------------------------------------------
@dataclasses.dataclass
class PipelineRun:
    """What :func:`run_pipeline` did: one result per stage, and the stages' records from the state file."""

    run_dir: Path
    results: list[StageResult]
    records: dict[str, dict[str, Any]]

    def result(self, name: str) -> StageResult:
        return next(r for r in self.results if r.name == name)


def run_pipeline(config, *, from_stage: str | None = None, until_stage: str | None = None,
                 plan_only: bool = False, echo: Callable[[str], None] | None = None) -> PipelineRun:
    """Run a :class:`~promptmix.pipeline.config.PipelineConfig` (or the path of its YAML file).

    The config is validated and its local inputs checked before any stage starts; the config is saved
    to ``RUN/pipeline/config.yaml``. See :func:`run_stages` for ``from_stage``/``until_stage``.
    """
    from .config import PipelineConfig, load_config
    from .stages import build_stages

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("`promptmix run` runs in one process (WORLD_SIZE is "
                          f"{os.environ['WORLD_SIZE']}); launch the heavy stages on several GPUs with their own "
                          "commands on the same run folder (`accelerate launch -m promptmix generate ...`), then "
                          "`promptmix run` again adopts what they wrote (docs/PIPELINE.md)")
    if not isinstance(config, PipelineConfig):
        config = load_config(config)
    config.check_inputs()
    stages = build_stages(config)
    run_dir = Path(config.run_dir)

    def save_config() -> None:
        from ..utils.io import write_text_atomic

        write_text_atomic(run_dir / PIPELINE_DIR / "config.yaml", config.to_yaml())

    results = run_stages(run_dir, stages, from_stage=from_stage, until_stage=until_stage, plan_only=plan_only,
                         echo=echo, on_start=save_config)
    state = PipelineState(run_dir) if (run_dir / PIPELINE_DIR / STATE_FILE).exists() else None
    records = {s.name: dict((state.get(s.name) or {}).get("record") or {}) for s in stages} if state else {}
    return PipelineRun(run_dir, results, records)
