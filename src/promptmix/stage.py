"""The stage contract, and the table of every stage in pipeline order.

A stage is one step of the pipeline. Each lives in its own folder (``builders/`` for ``real``,
``generation/caption/``, ``generation/prompts/``, ``generation/generate/``, ``annotation/annotate/``,
``annotation/filter/``, ``publishing/``, ``training/finetune/``, ``training/train/``,
``training/report/``) holding its config class (``config.py``), its code, and its entry
(``stage.py``): a :class:`Stage` subclass. A stage has

- a ``name``, the same in the CLI (``promptmix NAME``), the pipeline config (section ``NAME:``), the run
  manifest (``stages.NAME``) and the docs;
- a ``config_class`` (a :class:`~promptmix.config.StageConfig`) whose fields are its YAML keys and its
  command-line flags (``promptmix.cli_args`` generates the flags from the fields);
- ``inputs`` (the stages whose outputs it reads) and :meth:`Stage.outputs` (the paths it writes);
- one entry point, :meth:`Stage.run` ``(config, run_folder) -> record``;
- a :meth:`Stage.status` it computes itself: :class:`Status` ``done``, ``resumable``, ``continuable``,
  ``stale`` or ``new``.

``promptmix run`` (:mod:`promptmix.pipeline.engine`) iterates :data:`STAGES`; each command of the CLI
is generated from the same classes. Stages are registered here, by name, in an explicit table (module
paths, imported only when used), not by import side effects.
"""

from __future__ import annotations

import enum
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Collection, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    from .config import StageConfig
    from .run_folder import RunFolder


class Status(str, enum.Enum):
    """Where a stage stands in a run folder, against the settings it is asked to run with."""

    DONE = "done"  # finished with these settings; nothing to do
    RESUMABLE = "resumable"  # started with these settings and interrupted: continues from its own files
    CONTINUABLE = "continuable"  # finished or started with settings it can continue past (more epochs/steps)
    STALE = "stale"  # made with other settings or inputs: its outputs are replaced
    NEW = "new"  # never ran here


def status_of(record: Mapping[str, Any] | None, *, key: str, continue_key: str | None, outputs_exist: bool,
              can_continue: "Callable[[], bool]") -> Status:
    """The :class:`Status` of a stage from its pipeline record (``key``, ``status``, ``continue_key``).

    ``done`` when the record is finished with this key and the outputs exist; ``resumable`` when it was started
    with this key; ``continuable`` when only settings the stage can continue past changed (the continue keys
    agree), its outputs exist and ``can_continue()`` agrees; otherwise ``stale`` (``new`` without a record).
    """
    if not record:
        return Status.NEW
    if record.get("key") == key:
        if record.get("status") == "done" and outputs_exist:
            return Status.DONE
        if record.get("status") == "running":
            return Status.RESUMABLE
    if continue_key is not None and record.get("continue_key") == continue_key and outputs_exist and can_continue():
        return Status.CONTINUABLE
    return Status.STALE


#: every stage, in pipeline order: name -> "module:Class" (imported lazily)
STAGES: dict[str, str] = {
    "real": "promptmix.builders.stage:RealStage",
    "caption": "promptmix.generation.caption.stage:CaptionStage",
    "prompts": "promptmix.generation.prompts.stage:PromptsStage",
    "finetune": "promptmix.training.finetune.stage:FinetuneStage",
    "generate": "promptmix.generation.generate.stage:GenerateStage",
    "annotate": "promptmix.annotation.annotate.stage:AnnotateStage",
    "filter": "promptmix.annotation.filter.stage:FilterStage",
    "publish": "promptmix.publishing.stage:PublishStage",
    "train": "promptmix.training.train.stage:TrainStage",
    "report": "promptmix.training.report.stage:ReportStage",
}


def get_stage(name: str) -> "Stage":
    """The stage called ``name`` (an instance of its class)."""
    try:
        module, cls = STAGES[name].split(":")
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}") from None
    return getattr(importlib.import_module(module), cls)()


class Stage:
    """Base class of every stage (see the module docstring). Subclasses set the class attributes and
    implement :meth:`run`; the other methods have defaults that fit most stages."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type]
    inputs: ClassVar[tuple[str, ...]] = ()
    #: config keys the pipeline sets from the run folder and the other sections (paths); left out of the key
    wired: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""  # one line: `promptmix --help`
    description: ClassVar[str] = ""  # `promptmix NAME --help`
    examples: ClassVar[str] = ""  # the epilog of `promptmix NAME --help`
    #: how the command line names the run folder: "RUN" (positional), an option such as "--out", or None
    run_folder_arg: ClassVar[str | None] = "RUN"
    run_folder_help: ClassVar[str] = "run folder"
    run_folder_required: ClassVar[bool] = True
    #: files whose presence marks outputs this stage's own command wrote (``promptmix run`` then adopts them)
    marker_files: ClassVar[tuple[str, ...]] = ()

    # -- the entry point ---------------------------------------------------------------------------------
    def run(self, config: "StageConfig", run: "RunFolder") -> dict[str, Any]:
        """Do the stage's work in ``run`` with ``config``; return its record (JSON-able)."""
        raise NotImplementedError

    def input_stages(self, config: "StageConfig", present: "Collection[str]") -> tuple[str, ...]:
        """The stages of a pipeline (``present``: the names of its stages) whose outputs this one reads."""
        return tuple(n for n in self.inputs if n in present)

    # -- what it writes -------------------------------------------------------------------------------------
    def outputs(self, config: "StageConfig", run: "RunFolder") -> tuple[Path, ...]:
        """The paths this stage writes (those inside the run folder are replaced when it reruns)."""
        return ()

    def adoptable(self, config: "StageConfig", run: "RunFolder") -> bool:
        """Outputs found without a pipeline record were written by this stage's own command (so ``promptmix run``
        runs on them: the stage checks they fit and resumes) rather than by something else."""
        import glob

        return any(glob.glob(str(out / marker)) for out in self.outputs(config, run) for marker in self.marker_files)

    def verify_outputs(self, config: "StageConfig", run: "RunFolder") -> list[str]:
        """What is wrong with outputs that exist (a truncated, empty or wrong-rows chunk, labels of images generated
        again since): one line each, empty when nothing is. ``promptmix run`` does not count a stage whose
        outputs fail this as done: it runs it again on them, and the stage redoes what is bad."""
        return []

    # -- its cache key --------------------------------------------------------------------------------------
    def settings(self, config: "StageConfig") -> dict[str, Any]:
        """The settings that change its result: the config's hashed fields without the wired ones."""
        return {k: v for k, v in config.hashed_dict().items() if k not in self.wired}

    def external(self, config: "StageConfig", run: "RunFolder") -> Any:
        """A fingerprint of files outside the run folder that it reads (raw downloads), or None."""
        return None

    def continue_settings(self, config: "StageConfig") -> Any:
        """For a stage that can continue its own work after some settings changed (a training given more
        epochs): its settings without those. None: it cannot."""
        return None

    # -- what its own code recorded of its outputs ------------------------------------------------------------
    def output_record(self, config: "StageConfig", run: "RunFolder") -> dict[str, Any] | None:
        """The record this stage's own code writes with its outputs (its manifest entry), or None."""
        return run.stage_record(self.name) or None

    def output_fingerprint(self, config: "StageConfig", run: "RunFolder") -> str | None:
        """A fingerprint of :meth:`output_record` that changes when another command rewrites the outputs with
        other settings (``promptmix filter RUN --keep 40`` on a pipeline folder); None: not tracked.

        The record's ``config_hash`` (the settings the outputs were made with), so rerunning the stage's own
        command with the same settings is not a change."""
        from .utils.hashing import stable_hash

        record = self.output_record(config, run)
        if not record or not record.get("config_hash"):
            return None
        return stable_hash({"stage": self.name, "config_hash": record["config_hash"]})

    def describe_output_change(self, config: "StageConfig", run: "RunFolder") -> str:
        """What differs between the settings in :meth:`output_record` and ``config`` (``key: A there, B in the
        config``), for the message of a change made outside ``promptmix run``."""
        import json

        record = self.output_record(config, run) or {}
        there = record.get("config")
        if not isinstance(there, Mapping):
            return ""
        here = self.settings(config)
        diffs = [f"{k}: {json.dumps(there.get(k), default=str)} there, {json.dumps(v, default=str)} in the config"
                 for k, v in here.items() if k in there and there.get(k) != v]
        return "; ".join(diffs[:3])

    def can_continue(self, config: "StageConfig", run: "RunFolder") -> bool:
        """Can the outputs on disk be continued to ``config`` (e.g. the last checkpoint is not past it)?"""
        return False

    def status(self, config: "StageConfig", run: "RunFolder", *, key: str, record: Mapping[str, Any] | None,
               continue_key: str | None = None) -> Status:
        """Where this stage stands given the pipeline's ``record`` of it and its current ``key``."""
        return status_of(record, key=key, continue_key=continue_key,
                         outputs_exist=all(p.exists() for p in self.outputs(config, run)),
                         can_continue=lambda: self.can_continue(config, run))

    # -- before the GPU hours ------------------------------------------------------------------------------
    def preflight(self, config: "StageConfig", run: "RunFolder | None") -> list:
        """What would make this stage fail, found before any model runs (:mod:`promptmix.preflight` problems):
        checkpoints that are Git LFS pointers or junk, model ids that cannot be resolved, ..."""
        return []

    # -- the command line ---------------------------------------------------------------------------------
    def add_cli_arguments(self, parser: "argparse.ArgumentParser") -> None:
        """Flags of the command that are not config keys (``--dry-run``...)."""

    def cli_defaults(self) -> dict[str, Any]:
        """Defaults of the command that differ from the config's (a ``--config`` file and the flags win)."""
        return {}

    def cli_overrides(self, args: "argparse.Namespace") -> dict[str, Any]:
        """Config values the command derives from its own flags (applied after the file and the flags)."""
        return {}

    def cli(self, config: "StageConfig", run: "RunFolder | None", args: "argparse.Namespace") -> int:
        """Run the stage for ``promptmix NAME`` and print its summary; returns the exit code."""
        record = self.run(config, run)
        for line in self.summary_lines(record):
            print(line)
        return 0

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        """What ``promptmix NAME`` prints when it finishes."""
        return []
