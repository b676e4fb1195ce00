"""The pipeline engine: the stages of a config in order, cached by key, resumed, ``--from``/``--until``.

:func:`pipeline_steps` turns a :class:`~promptmix.pipeline.config.PipelineConfig` into one :class:`Step` per
stage of :data:`promptmix.stage.STAGES` that the config has (each ``train.NAME`` run is a step): a stage
bound to its config section and the run folder. A step has the settings that change its result, the
steps whose outputs it reads, the paths it writes, and its stage's ``run``. Its cache key is

    stable_hash(name, settings, {input: key of input}, fingerprint of external files)

so a change anywhere upstream changes every key downstream. The state of a run folder lives in
``RUN/pipeline/state.json`` (written atomically)::

    {"version": 1, "stages": {"generate": {"key": "…", "status": "done", "outputs": ["images"],
                                           "seconds": 12.3, "started_at": "…", "finished_at": "…",
                                           "record": {…}}}}

A stage is *cached* when its record is ``done`` with the same key, its outputs exist and pass its own
check (:meth:`~promptmix.stage.Stage.verify_outputs`: every chunk of ``generate`` and ``annotate`` opens,
holds its rows and, for labels, labels the images there now); one whose outputs fail it is run again
on them, as an interrupted stage is, and redoes what is bad (with a warning naming it). A stage
whose record has another key has its outputs inside the run folder removed (renamed into
``RUN/pipeline/trash`` first, so nothing half-deleted is ever read) before it reruns. A stage
whose record is ``running`` with the same key was interrupted: it is run again without clearing,
and resumes from its own chunk files. A stage that ran in this invocation forces every stage that
reads it to run too; ``--from STAGE`` forces that stage, so it and the stages that read what it
writes (directly or through others) rerun, and the others stay cached.

A finished stage also records ``output``: a fingerprint of the record its own code wrote for its
outputs (its manifest entry, e.g. the settings ``promptmix filter`` ran with). When that record has
changed since, the outputs were rewritten outside ``promptmix run`` (``promptmix filter RUN --keep 40``
on a pipeline folder): the run stops before anything runs and names the stage, what differs and the
stages that read it, which are stale; ``--plan`` shows the same.

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
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError, InputError
from ..run_folder import RunFolder
from ..stage import Status, get_stage, status_of
from ..utils.hashing import stable_hash
from ..utils.io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

STATE_VERSION = 1

RAN, CACHED, SKIPPED, PLANNED = "ran", "cached", "skipped", "would run"


@dataclasses.dataclass
class Step:
    """One unit of the pipeline: a stage bound to its config and the run folder (:func:`step_of`).

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
    fingerprint: Callable[[], str | None] | None = None
    describe_change: Callable[[], str] | None = None
    verify: Callable[[], list[str]] | None = None
    _problems: list[str] | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.group = self.group or self.name
        self.inputs = tuple(self.inputs)
        self.outputs = tuple(Path(p) for p in self.outputs)

    def problems(self) -> list[str]:
        """What :meth:`~promptmix.stage.Stage.verify_outputs` finds wrong with the outputs (checked once)."""
        if self._problems is None:
            self._problems = list(self.verify() or []) if self.verify is not None else []
            if self._problems:
                logger.warning("%s: its outputs exist but are not intact, so it runs again on them: %s", self.name,
                               "; ".join(self._problems[:3]) + (" ..." if len(self._problems) > 3 else ""))
        return self._problems

    def status(self, key: str, continue_key: str | None, record: Mapping[str, Any] | None) -> Status:
        """Where the step stands (:func:`promptmix.stage.status_of`); a finished step whose outputs fail their
        check (:meth:`problems`) is resumable: it runs again on them and redoes what is bad."""
        status = status_of(record, key=key, continue_key=continue_key, outputs_exist=_outputs_exist(self),
                           can_continue=self.can_continue or (lambda: True))
        if status is Status.DONE and self.problems():
            return Status.RESUMABLE
        return status


def step_of(stage, config, run: RunFolder, present: Sequence[str], *, name: str | None = None,
            description: str = "") -> Step:
    """The :class:`Step` of ``stage`` run with ``config`` in ``run``; ``present``: the pipeline's step names."""
    return Step(name or stage.name, lambda: stage.run(config, run), inputs=stage.input_stages(config, present),
                settings=stage.settings(config), outputs=stage.outputs(config, run),
                external=lambda: stage.external(config, run), group=stage.name, description=description,
                adoptable=lambda: stage.adoptable(config, run), continue_settings=stage.continue_settings(config),
                can_continue=lambda: stage.can_continue(config, run),
                fingerprint=lambda: stage.output_fingerprint(config, run),
                describe_change=lambda: stage.describe_output_change(config, run),
                verify=lambda: stage.verify_outputs(config, run))


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

    def __init__(self, run: RunFolder | str | os.PathLike):
        self.run = RunFolder.of(run)
        self.path = self.run.pipeline_state
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
def stage_groups(steps: Sequence[Step]) -> list[str]:
    """The names ``--from``/``--until`` accept, in pipeline order."""
    out: list[str] = []
    for s in steps:
        if s.group not in out:
            out.append(s.group)
    return out


def check_graph(steps: Sequence[Step]) -> None:
    """Names are unique and every input names an earlier step."""
    seen: set[str] = set()
    for s in steps:
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


def _owned_outputs(step: Step, run: RunFolder) -> list[Path]:
    """The outputs the runner may delete: only those inside the run folder (never the run folder itself)."""
    root = run.root.resolve()
    return [p for p in step.outputs if run.inside(p) and p.resolve() != root]


def clear_outputs(step: Step, run: RunFolder) -> list[Path]:
    """Move the step's outputs inside the run folder into the trash, then delete them.

    The rename is atomic, so a kill at any moment leaves either the old output in place (and a
    state record that says it is stale) or nothing; the trash is emptied at the next start.
    """
    removed = []
    trash = run.trash
    for path in _owned_outputs(step, run):
        if not path.exists() and not path.is_symlink():
            continue
        trash.mkdir(parents=True, exist_ok=True)
        target = trash / f"{step.name}-{path.name}-{uuid.uuid4().hex[:8]}"
        os.replace(path, target)
        removed.append(path)
    shutil.rmtree(trash, ignore_errors=True)
    return removed


def stage_key(step: Step, input_keys: Mapping[str, str], fingerprint: Any = None) -> str:
    return stable_hash({"stage": step.name, "settings": step.settings,
                        "inputs": {name: input_keys[name] for name in step.inputs},
                        "external": fingerprint})


def continue_key(step: Step, input_keys: Mapping[str, str], fingerprint: Any = None) -> str | None:
    """The key a continuable step's record must share to be continued (None: the step cannot continue)."""
    if step.continue_settings is None:
        return None
    return stable_hash({"stage": step.name, "continue": step.continue_settings,
                        "inputs": {name: input_keys[name] for name in step.inputs},
                        "external": fingerprint})


def _outputs_exist(step: Step) -> bool:
    return all(p.exists() for p in step.outputs)


# -- the runner ------------------------------------------------------------------------------------------
def _changed_outside(step: Step, rec: Mapping[str, Any] | None) -> bool:
    """The record of ``step``'s outputs differs from the one ``promptmix run`` saw when the step finished."""
    if not rec or rec.get("output") is None or step.fingerprint is None:
        return False
    return step.fingerprint() != rec["output"]


@dataclasses.dataclass
class _Survey:
    """What a run would do with each step, worked out without running anything (``--plan`` and the checks
    a run makes before it starts)."""

    key: dict[str, str]
    status: dict[str, Status]
    forced: dict[str, bool]
    outside: list[Step]  # steps whose outputs were rewritten outside `promptmix run` and would be used as cached
    stale: dict[str, str]  # step -> the changed step it reads (directly or through others)


def _survey(stages: Sequence[Step], state: "PipelineState | None", groups: list[str], i_from: int | None,
            i_until: int | None) -> _Survey:
    keys: dict[str, str] = {}
    statuses: dict[str, Status] = {}
    forced_of: dict[str, bool] = {}
    will_run: set[str] = set()
    outside: list[Step] = []
    stale: dict[str, str] = {}
    for step in stages:
        gi = groups.index(step.group)
        fingerprint = step.external() if step.external else None
        key = stage_key(step, keys, fingerprint)
        ckey = continue_key(step, keys, fingerprint)
        keys[step.name] = key
        rec = state.get(step.name) if state else None
        status = step.status(key, ckey, rec)
        statuses[step.name] = status
        if i_until is not None and gi > i_until:
            continue
        reads_changed = next((stale.get(i, i) for i in step.inputs if i in stale or i in {o.name for o in outside}),
                             None)
        if i_from is not None and gi < i_from:
            if status is Status.DONE and _changed_outside(step, rec):
                outside.append(step)
            continue
        forced = (i_from is not None and gi == i_from) or any(i in will_run for i in step.inputs)
        forced_of[step.name] = forced
        if status is Status.DONE and not forced:
            if _changed_outside(step, rec):
                outside.append(step)
            elif reads_changed is not None:
                stale[step.name] = reads_changed
            continue
        if reads_changed is not None:
            stale[step.name] = reads_changed
        will_run.add(step.name)
    return _Survey(keys, statuses, forced_of, outside, stale)


def _outside_message(survey: _Survey, stages: Sequence[Step], run: RunFolder, *, from_stage: str | None) -> str:
    """The error ``promptmix run`` stops with when a step's outputs were rewritten outside it."""
    parts = []
    for step in survey.outside:
        what = ", ".join(run.relative(p) if run.inside(p) else str(p) for p in step.outputs) or step.name
        detail = step.describe_change() if step.describe_change else ""
        readers = [n for n, src in survey.stale.items() if src == step.name]
        parts.append(f"stage {step.name}: {what} changed outside `promptmix run` since it ran here"
                     + (f" ({detail})" if detail else "")
                     + (f"; the stages that read it are stale: {', '.join(readers)}" if readers else ""))
    first = survey.outside[0]
    hint = ""
    detail = first.describe_change() if first.describe_change else ""
    if detail and " there, " in detail:
        key, _, rest = detail.partition(": ")
        value = rest.split(" there, ")[0]
        hint = f" (e.g. --set {first.name}.{key}={value})"
    before_from = from_stage is not None and first.group != from_stage
    advice = (f"To keep what is there, put the same settings in the config{hint} and rerun: `promptmix run` then "
              f"reruns {first.name} with them and every stale stage. To return to the config's settings, rerun "
              f"with --from {first.group}.")
    if before_from:
        advice = f"--from {from_stage} starts after it. " + advice
    return "; ".join(parts) + ". " + advice


def run_stages(run_dir: RunFolder | str | os.PathLike, stages: Sequence[Step], *, from_stage: str | None = None,
               until_stage: str | None = None, plan_only: bool = False,
               echo: Callable[[str], None] | None = None,
               on_start: Callable[[], None] | None = None) -> list[StageResult]:
    """Run ``stages`` in order in ``run_dir``, skipping those whose cached outputs are up to date.

    ``from_stage``: stages before it are not run (they must be up to date); it runs even when cached, and
    so does every later stage that reads what it writes (directly or through other stages); the others
    stay cached. ``until_stage``: stop after it. ``plan_only``: report what would run without running or
    changing anything. ``echo`` receives one line per stage. A stage whose outputs were rewritten outside
    ``promptmix run`` stops the run before anything runs (:class:`InputError` naming it and its readers).
    Returns one :class:`StageResult` per stage.
    """
    run = RunFolder.of(run_dir)
    check_graph(stages)
    groups = stage_groups(stages)
    i_from = _check_choice("--from", from_stage, groups)
    i_until = _check_choice("--until", until_stage, groups)
    if i_from is not None and i_until is not None and i_from > i_until:
        raise ConfigError(f"--from {from_stage} comes after --until {until_stage}; stage order: {', '.join(groups)}")
    width = max([len(s.name) for s in stages] + [8])
    say = echo or (lambda line: logger.info(line))

    if plan_only:
        return _plan(run, stages, groups, i_from, i_until, width, say, from_stage=from_stage)

    run.root.mkdir(parents=True, exist_ok=True)
    with run.lock("run"):
        shutil.rmtree(run.trash, ignore_errors=True)
        state = PipelineState(run)
        survey = _survey(stages, state, groups, i_from, i_until)
        if survey.outside:
            raise InputError(_outside_message(survey, stages, run, from_stage=from_stage))
        if on_start is not None:
            on_start()
        keys: dict[str, str] = {}
        ran: set[str] = set()
        results: list[StageResult] = []
        for step in stages:
            gi = groups.index(step.group)
            if i_until is not None and gi > i_until:
                result = StageResult(step.name, SKIPPED, reason=f"after --until {until_stage}")
            elif i_from is not None and gi < i_from:
                key = stage_key(step, keys, step.external() if step.external else None)
                _require_up_to_date(step, key, state, from_stage)
                keys[step.name] = key
                result = StageResult(step.name, SKIPPED, key, reason=f"before --from {from_stage}; up to date")
            else:
                forced = (i_from is not None and gi == i_from) or any(inp in ran for inp in step.inputs)
                t0 = time.perf_counter()
                try:
                    result = _run_one(step, run, state, keys, forced)
                except BaseException as exc:
                    interrupted = isinstance(exc, KeyboardInterrupt)
                    say(StageResult(step.name, "interrupted" if interrupted else "failed",
                                    seconds=time.perf_counter() - t0,
                                    reason="rerun the same command to resume" if interrupted else
                                    "finished work is kept: fix the error and rerun the same command").line(width))
                    raise
                keys[step.name] = result.key
                if result.status == RAN:
                    ran.add(step.name)
            results.append(result)
            say(result.line(width))
        return results


def _require_up_to_date(step: Step, key: str, state: PipelineState, from_stage: str) -> None:
    rec = state.get(step.name)
    why = None
    if rec is None or rec.get("status") != "done":
        why = "has not finished"
    elif rec.get("key") != key:
        why = "has changed since it ran (its config or an input differs)"
    elif not _outputs_exist(step):
        why = "is missing some outputs"
    elif step.problems():
        why = f"has outputs that are not intact ({step.problems()[0]})"
    if why:
        raise ConfigError(f"--from {from_stage}: stage {step.name} {why}; run without --from "
                          f"(or with --until {step.group}) first")


def _run_one(step: Step, run: RunFolder, state: PipelineState, keys: dict[str, str], forced: bool) -> StageResult:
    fingerprint = step.external() if step.external else None
    key = stage_key(step, keys, fingerprint)
    ckey = continue_key(step, keys, fingerprint)
    rec = state.get(step.name)
    status = step.status(key, ckey, rec)
    if status is Status.DONE and not forced:
        extra = {}
        if ckey is not None and rec.get("continue_key") != ckey:  # a record written before it had one
            extra["continue_key"] = ckey
        if rec.get("output") is None and step.fingerprint is not None:  # a record written before outputs had one
            output = step.fingerprint()
            if output is not None:
                extra["output"] = output
        if extra:
            state.set(step.name, {**rec, **extra})
        return StageResult(step.name, CACHED, key, reason=f"key {key}")
    resume = status is Status.RESUMABLE
    continued = status is Status.CONTINUABLE and not forced
    adopted = False
    if rec is None:
        stray = [p for p in _owned_outputs(step, run) if p.exists()]
        if stray and not (step.adoptable is not None and step.adoptable()):
            raise InputError(f"{stray[0]} exists but was not written by `promptmix run` (no record of stage "
                             f"{step.name!r} in {state.path}); move it away or choose another run_dir")
        adopted = bool(stray)
    elif not resume and not continued:
        removed = clear_outputs(step, run)
        if removed:
            logger.info("%s: removed stale outputs %s", step.name, ", ".join(map(str, removed)))
    reason = ("resumed" if resume else "continued from its last checkpoint" if continued
              else "adopted the outputs already there" if adopted else "inputs changed" if forced and rec else "")
    keys_rec = {"key": key, **({"continue_key": ckey} if ckey is not None else {})}
    state.set(step.name, {**keys_rec, "status": "running", "started_at": _now(),
                          "outputs": [run.relative(p) for p in step.outputs]})
    t0 = time.perf_counter()
    logger.info("%s: running (key %s)", step.name, key)
    record = step.run() or {}
    seconds = time.perf_counter() - t0
    output = step.fingerprint() if step.fingerprint is not None else None
    state.set(step.name, {**keys_rec, "status": "done", "started_at": state.get(step.name)["started_at"],
                          "finished_at": _now(), "seconds": round(seconds, 3),
                          "outputs": [run.relative(p) for p in step.outputs],
                          **({"output": output} if output is not None else {}),
                          "record": json.loads(json.dumps(dict(record), default=str))})
    return StageResult(step.name, RAN, key, seconds, reason)


_PLAN_REASONS = {Status.RESUMABLE: "interrupted; resumes", Status.CONTINUABLE: "changed; continues from its last "
                 "checkpoint", Status.STALE: "changed", Status.NEW: "new"}
OUTSIDE, STALE = "changed", "stale"


def _plan(run: RunFolder, stages: Sequence[Step], groups: list[str], i_from: int | None, i_until: int | None,
          width: int, say: Callable[[str], None], *, from_stage: str | None = None) -> list[StageResult]:
    state = PipelineState(run) if run.pipeline_state.exists() else None
    survey = _survey(stages, state, groups, i_from, i_until)
    holder = run.held_by_another()
    if holder:
        say(f"  note: {holder}")
    outside = {s.name for s in survey.outside}
    results = []
    for step in stages:
        gi = groups.index(step.group)
        key = survey.key[step.name]
        status = survey.status[step.name]
        rec = state.get(step.name) if state else None
        if i_until is not None and gi > i_until:
            result = StageResult(step.name, SKIPPED, key, reason="after --until")
        elif step.name in outside:
            detail = step.describe_change() if step.describe_change else ""
            result = StageResult(step.name, OUTSIDE, key, reason="outside `promptmix run`" + (f": {detail}"
                                                                                               if detail else ""))
        elif i_from is not None and gi < i_from:
            ok = status is Status.DONE
            result = StageResult(step.name, SKIPPED, key, reason="before --from" + ("" if ok else "; NOT up to date"))
        elif step.name in survey.stale and (status is Status.DONE and not survey.forced.get(step.name)):
            result = StageResult(step.name, STALE, key, reason=f"reads {survey.stale[step.name]}, changed outside "
                                                               "`promptmix run`")
        elif status is Status.DONE and not survey.forced.get(step.name):
            result = StageResult(step.name, CACHED, key, reason=f"key {key}")
        else:
            if survey.forced.get(step.name) and status in (Status.CONTINUABLE, Status.DONE):
                status = Status.STALE
            reason = _PLAN_REASONS[status] if rec else "new"
            if status is Status.RESUMABLE and holder:
                reason = "running now in another process (the run folder is locked)"
            elif status is Status.RESUMABLE and rec and rec.get("status") == "done" and step.problems():
                reason = "outputs not intact; redoes the bad chunks"
            result = StageResult(step.name, PLANNED, key, reason=reason)
        results.append(result)
        say(result.line(width))
    if survey.outside:
        say("  " + _outside_message(survey, stages, run, from_stage=from_stage))
    return results


# -- the whole pipeline ----------------------------------------------------------------------------------
def pipeline_steps(config, run: RunFolder | None = None) -> list[Step]:
    """The steps of a :class:`~promptmix.pipeline.config.PipelineConfig`, in :data:`promptmix.stage.STAGES` order
    (a section left out gives no step; every ``train.NAME`` run is one)."""
    run = run or config.run_folder
    sections = config.stage_sections()
    present = [name for name, _, _ in sections]
    steps = []
    for name, stage_name, section in sections:
        stage = get_stage(stage_name)
        steps.append(step_of(stage, section, run, present, name=name, description=config.describe(name)))
    return steps


@dataclasses.dataclass
class PipelineRun:
    """What :func:`run_pipeline` did: one result per stage, and the stages' records from the state file."""

    run_dir: Path
    results: list[StageResult]
    records: dict[str, dict[str, Any]]

    def result(self, name: str) -> StageResult:
        return next(r for r in self.results if r.name == name)


def run_pipeline(config, *, from_stage: str | None = None, until_stage: str | None = None,
                 plan_only: bool = False, echo: Callable[[str], None] | None = None,
                 quiet: bool = True) -> PipelineRun:
    """Run a :class:`~promptmix.pipeline.config.PipelineConfig` (or the path of its YAML file).

    The config is validated and its local inputs checked before any stage starts; the config is saved
    to ``RUN/pipeline/config.yaml``. See :func:`run_stages` for ``from_stage``/``until_stage``.
    ``quiet`` keeps the libraries' own progress bars and warnings (datasets, transformers, diffusers,
    huggingface_hub) off, as ``promptmix run`` does without ``-v``; promptmix's own bars stay.
    """
    from .config import PipelineConfig, load_config

    if quiet:
        from ..utils.verbosity import quiet_libraries

        quiet_libraries()

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("`promptmix run` runs in one process (WORLD_SIZE is "
                          f"{os.environ['WORLD_SIZE']}); launch the heavy stages on several GPUs with their own "
                          "commands on the same run folder (`accelerate launch -m promptmix generate ...`), then "
                          "`promptmix run` again adopts what they wrote (docs/PIPELINE.md)")
    if not isinstance(config, PipelineConfig):
        config = load_config(config)
    config.check_inputs("prompts" if plan_only else until_stage)  # a plan needs only what the stage keys read
    run = config.run_folder
    steps = pipeline_steps(config, run)

    def save_config() -> None:
        write_text_atomic(run.pipeline_config, config.to_yaml())

    results = run_stages(run, steps, from_stage=from_stage, until_stage=until_stage, plan_only=plan_only,
                         echo=echo, on_start=save_config)
    state = PipelineState(run) if run.pipeline_state.exists() else None
    records = {s.name: dict((state.get(s.name) or {}).get("record") or {}) for s in steps} if state else {}
    return PipelineRun(run.root, results, records)
