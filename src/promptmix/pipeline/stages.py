"""The stages of ``promptmix run``: each one calls its stage's own API with its config section.

No stage logic lives here: :func:`build_stages` turns a :class:`PipelineConfig` into
:class:`~promptmix.pipeline.runner.Stage` objects that call ``promptmix.builders``,
``caption_dataset``, ``build_prompt_bag``, ``finetune_mvc``, ``generate``, ``annotate_run``,
``filter_run``, ``publish_run`` and ``train``. What each stage reads and writes::

    real       raw files / Hub dataset        -> real_out (RUN/real)
    caption    real_out                       -> RUN/captions      (when there is a caption section)
    prompts    RUN/captions, or real_out      -> RUN/prompts       (real_out: task, classes, sources)
    finetune   RUN/captions, real_out          -> RUN/finetune      (MVC configs only; continuable)
    generate   RUN/prompts [, RUN/finetune]   -> RUN/images        (chunk files: resumes)
    annotate   RUN/images                     -> RUN/annotations   (chunk files: resumes)
    filter     RUN/images, RUN/annotations    -> RUN/fake
    publish    RUN/fake                       -> RUN/publish (and the Hub when push: true)
    train.NAME real_out [, RUN/fake]          -> RUN/train/NAME    (checkpoints: resumes; continuable)
    report     RUN/train/*                    -> RUN/report        (two or more training runs)

The settings hashed into a stage's key are its section's ``hashed_dict()`` without the wired keys
(paths the pipeline sets), so moving a run folder does not invalidate it. ``finetune`` is
*continuable* (:class:`~promptmix.pipeline.runner.Stage`): raising only ``epochs`` or
``max_train_steps`` continues from its last checkpoint instead of starting over; so does a ``train.NAME``
run when only its ``epochs`` (or ``two_phase_epochs``) grew.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from .config import WIRED, PipelineConfig
from .runner import Stage, files_fingerprint

logger = logging.getLogger(__name__)


def _settings(section, wired: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in section.hashed_dict().items() if k not in wired}


def _real_stage(cfg: PipelineConfig) -> Stage:
    real = cfg.real
    out = cfg.real_out
    fp_cache = cfg.run_dir / "pipeline" / "fingerprints.json"

    def external():
        paths = list(real.local_inputs())
        if real.builder == "folder" and Path(real.path).exists():
            paths = [Path(real.path)]
        # the stat cache is kept once a run has started (--plan on a new folder writes nothing)
        cache = fp_cache if fp_cache.parent.is_dir() else None
        return files_fingerprint(paths, cache) if paths else None

    def run():
        from .. import builders
        from ..errors import InputError

        opts = dict(real.options)
        if real.builder != "folder":
            opts.setdefault("skip_bad", real.skip_bad)
        if real.builder == "shanghaitech":
            report = builders.build_shanghaitech(real.root, real.part, out, **opts)
        elif real.builder == "ucf-qnrf":
            report = builders.build_ucf_qnrf(real.root, out, **opts)
        elif real.builder == "nyu-depth-v2":
            report = builders.build_nyu_depth_v2(real.mat, out, **opts)
        elif real.builder == "imagefolder":
            report = builders.build_imagefolder(real.root, out, reduced=real.reduced, **opts)
        elif real.builder == "hub":
            report = builders.build_from_hub(real.dataset, out, reduced=real.reduced, revision=real.revision, **opts)
        else:  # folder: a dataset built before, used as it is
            ds = builders.load_real(real.path, revision=real.revision)
            task = builders.task_of(ds)
            if task != cfg.task:
                raise InputError(f"real.path: {real.path} is a {task} dataset but the config's task is {cfg.task}")
            return {"out": str(real.path), "rows": {split: len(d) for split, d in ds.items()}, "task": task}
        if report.task != cfg.task:
            raise InputError(f"real: the {real.builder} builder made a {report.task} dataset but the config's task "
                             f"is {cfg.task}")
        for line in report.summary().splitlines()[1:]:
            logger.info("real: %s", line.strip())
        return {"out": str(out), "rows": dict(report.rows), "task": report.task, "skipped": len(report.skipped),
                "class_names": report.class_names}

    settings = {**_settings(real), "task": cfg.task}
    outputs = () if real.builder == "folder" else (out,)
    return Stage("real", run, settings=settings, outputs=outputs, external=external,
                 description=f"real dataset ({real.builder}) -> {out}", adoptable=_has(out / "README.md"))


def build_stages(cfg: PipelineConfig) -> list[Stage]:
    """The stages of ``cfg`` in order (sections left out of the config give no stage)."""
    run_dir = cfg.run_dir
    stages = [_real_stage(cfg)]

    if cfg.caption is not None:
        def caption():
            from ..generation.captions import caption_dataset

            out = caption_dataset(cfg.caption, run_dir)
            return {"out": str(out)}

        stages.append(Stage("caption", caption, inputs=("real",), settings=_settings(cfg.caption, WIRED["caption"]),
                            outputs=(run_dir / "captions",), description="captions of the real train split",
                            adoptable=_has(run_dir / "captions" / "info.json", run_dir / "captions" / ".work-*")))

    def prompts():
        from ..generation.prompts import build_prompt_bag, load_prompt_bag

        if cfg.caption is not None:
            out = build_prompt_bag(cfg.prompts, run_dir)
        else:  # no captions: the task, class names and source images come from the real dataset itself
            revision = cfg.real.revision if cfg.real.builder == "folder" else None
            out = build_prompt_bag(cfg.prompts, run_dir, real=str(cfg.real_out), real_revision=revision)
        return {"out": str(out), "prompts": len(load_prompt_bag(out))}

    stages.append(Stage("prompts", prompts, inputs=("caption",) if cfg.caption is not None else ("real",),
                        settings=_settings(cfg.prompts), outputs=(run_dir / "prompts",),
                        description="the prompt bag", adoptable=_has(run_dir / "prompts" / "info.json")))

    gen_inputs = ["prompts"]
    gen_wired = WIRED["generate"]
    if cfg.finetune is not None:
        def finetune():
            from ..training.mvc_finetune import finetune_mvc

            return {"out": str(finetune_mvc(cfg.finetune))}

        stages.append(Stage("finetune", finetune, inputs=("caption", "real"),
                            settings=_settings(cfg.finetune, WIRED["finetune"]), outputs=(cfg.finetune_out,),
                            description="MVC fine-tuning of the generator",
                            adoptable=_has(cfg.finetune_out / "training.json", cfg.finetune_out / "checkpoints"),
                            continue_settings=_finetune_continue_settings(cfg.finetune),
                            can_continue=lambda: finetune_can_continue(cfg.finetune)))
        gen_inputs.append("finetune")
        gen_wired = (*gen_wired, "model")

    def generate():
        from ..generation.runner import generate as run_generate

        report = run_generate(cfg.generate, run_dir)
        return _jsonable_report(report)

    stages.append(Stage("generate", generate, inputs=tuple(gen_inputs), settings=_settings(cfg.generate, gen_wired),
                        outputs=(run_dir / "images",), description="images (resumable chunks)",
                        adoptable=_has(run_dir / "images" / "plan.json")))

    if cfg.annotate is not None:
        ann = cfg.annotate

        def annotate():
            from ..annotation.runner import annotate_run

            report = annotate_run(run_dir, ann.annotators, batch_size=ann.batch_size, device=ann.device,
                                  dtype=ann.dtype, revision=ann.revision)
            _check_annotators(run_dir, ann.names())
            return {"annotators": [a.name for a in report.annotators],
                    "rows": {a.name: a.rows for a in report.annotators}}

        stages.append(Stage("annotate", annotate, inputs=("generate",), settings=_settings(ann),
                            outputs=(run_dir / "annotations",), description="annotations (resumable chunks)",
                            adoptable=_has(run_dir / "annotations" / "*" / "annotator.json")))

    if cfg.filter is not None:
        def filter_():
            from ..annotation.filter import filter_run

            report = filter_run(run_dir, cfg.filter)
            return {"out": str(report.out), "rows": report.rows, "kept": report.kept, "flagged": report.flagged,
                    "target": report.target, "threshold": report.threshold}

        stages.append(Stage("filter", filter_, inputs=("annotate",), settings=_settings(cfg.filter),
                            outputs=(cfg.fake_out,), description="quality filtering -> fake dataset",
                            adoptable=_has(cfg.fake_out / "README.md")))

    if cfg.publish is not None:
        pub = cfg.publish

        def publish():
            from ..publishing.publish import publish_run

            result = publish_run(run_dir, repo_id=pub.repo_id, version=pub.version, local_dir=cfg.publish_dir,
                                 private=pub.private, branch=pub.branch, dry_run=not pub.push, force=pub.force,
                                 notes=pub.notes, license=pub.license, pretty_name=pub.pretty_name,
                                 notice=pub.notice)
            return {"local_dir": str(result.local_dir) if result.local_dir else None, "pushed": result.pushed, "tag": result.tag,
                    "commit": result.commit_oid, "rows": result.rows, "url": result.url if result.pushed else None}

        stages.append(Stage("publish", publish, inputs=("filter",), settings=_settings(pub),
                            outputs=(cfg.publish_dir,) if cfg.publish_dir is not None else (),
                            description="publication (local folder, Hub)",
                            adoptable=_has(cfg.publish_dir / "provenance.json") if cfg.publish_dir else None))

    for name, run_cfg in cfg.train.items():
        stages.append(_train_stage(name, run_cfg, cfg))
    if cfg.report_out is not None:
        stages.append(_report_stage(cfg))
    return stages


def _finetune_continue_settings(ft) -> str:
    """:meth:`MVCFinetuneConfig.resume_hash` (every setting but the step count) without the wired paths, which
    stage keys leave out (the checkpoint itself is checked with its paths: :func:`finetune_can_continue`)."""
    return dataclasses.replace(ft, captions="RUN", real=None, output_dir="RUN/finetune").resume_hash()


def finetune_can_continue(ft) -> bool:
    """Can the MVC fine-tuning in ``ft.output_dir`` be continued to ``ft``'s step count?

    Yes when its newest checkpoint was made with the same :meth:`~MVCFinetuneConfig.resume_hash` (what
    ``finetune_mvc`` checks before resuming: every setting but the step count, paths included) and is at most
    at the new number of steps: ``max_train_steps``, or ``epochs`` times the optimisation steps per epoch of the
    run that made the checkpoint (known when that run counted in epochs too). Otherwise (other settings or
    paths, fewer steps than already trained, the steps per epoch unknown) it starts over.
    """
    import json

    import yaml

    from ..training.mvc_finetune import CONFIG_FILE, STATE_FILE, list_checkpoints

    if ft.resume == "never":
        return False
    out = Path(ft.output_dir)
    found = list_checkpoints(out)
    try:
        if not found:
            return False
        saved = json.loads((found[-1] / STATE_FILE).read_text(encoding="utf-8"))
        if saved.get("resume_hash") != ft.resume_hash():
            return False
        done = int(saved["global_step"])
        if ft.max_train_steps is not None:
            return done <= ft.max_train_steps
        before = yaml.safe_load((out / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
        if before.get("max_train_steps") is not None or not before.get("epochs"):
            return False
        steps_per_epoch = int(state["max_train_steps"]) // int(before["epochs"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return False
    return done <= ft.epochs * steps_per_epoch


def _report_stage(cfg: PipelineConfig) -> Stage:
    out = cfg.report_out
    args = cfg.report_arguments()

    def run():
        from ..training.report import write_report

        files = write_report(out_dir=out, **args)
        comparison = files.comparison
        return {"out": str(files.report), "baselines": comparison.baselines,
                "changes": {f"{c.run} {c.metric}": c.change for c in comparison.changes if c.change is not None}}

    settings = {"baseline": args["baseline"], "runs": args["names"]}
    return Stage("report", run, inputs=tuple(f"train.{n}" for n in cfg.train), settings=settings, outputs=(out,),
                 description="the training runs against their baseline (report.md, PNGs)",
                 adoptable=_has(out / "report.md"))


def _train_stage(name: str, run_cfg, cfg: PipelineConfig) -> Stage:
    inputs = ("real", "filter") if run_cfg.mixing != "none" else ("real",)

    def run():
        from ..training.trainer import train

        # the runner removes the output folder whenever the key changes (unless train_can_continue agrees), so
        # whatever is there belongs to an interrupted run with these settings or to a shorter one: continue it
        metrics = train(dataclasses.replace(run_cfg, resume=True))
        keep = {k: v for k, v in metrics.items() if k.startswith(("test/", "validation/"))}
        return {"output_dir": run_cfg.output_dir, "chosen_lr": metrics.get("chosen_lr"), **keep}

    out = Path(run_cfg.output_dir)
    return Stage(f"train.{name}", run, inputs=inputs, settings=_settings(run_cfg, WIRED["train"]),
                 outputs=(out,), group="train",
                 description=f"training run {name!r} ({run_cfg.model}, mixing {run_cfg.mixing})",
                 adoptable=_has(out / "config.yaml"),
                 continue_settings=_train_continue_settings(run_cfg),
                 can_continue=lambda: train_can_continue(run_cfg))


def _train_continue_settings(run_cfg) -> str:
    """:meth:`TrainConfig.resume_hash` (every setting but ``epochs`` and ``two_phase_epochs``) without the wired
    paths, which stage keys leave out (the run on disk is checked with its paths: :func:`train_can_continue`)."""
    return dataclasses.replace(run_cfg, real="RUN/real", fake="RUN/fake" if run_cfg.fake else None,
                               output_dir="RUN/train").resume_hash()


def train_can_continue(run_cfg) -> bool:
    """Can the training run in ``run_cfg.output_dir`` be continued to ``run_cfg``'s epochs?

    Yes when the config it was made with (its ``config.yaml``) has the same
    :meth:`~promptmix.training.config.TrainConfig.resume_hash` (every setting but the epoch counts, paths
    included), and every learning rate's newest checkpoint is one a straight run of ``run_cfg`` passes
    through: at most at the new number of epochs, on an epoch the new run also evaluates (a multiple of
    ``eval_every``, or its last), and for two-phase mixing with another ``epochs``, before the real-only phase
    of both runs. Otherwise (fewer epochs than trained, other settings, no checkpoint) it starts over.
    """
    import json

    import yaml

    from ..errors import PromptmixError
    from ..training.config import TrainConfig
    from ..training.trainer import STATE_FILE, latest_checkpoint, run_dir_name

    out = Path(run_cfg.output_dir)
    total = run_cfg.mixing_spec().total_epochs
    try:
        before = TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {})
        if total == 0 or before.resume_hash() != run_cfg.resume_hash():
            return False
        for lr in run_cfg.learning_rates():
            ckpt = latest_checkpoint(out / run_dir_name(lr))
            if ckpt is None:
                return False
            done = int(json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))["epoch"])
            if done > total or (done % run_cfg.eval_every and done != total):
                return False
            if run_cfg.mixing == "two-phase" and before.epochs != run_cfg.epochs \
                    and done > min(before.epochs, run_cfg.epochs):
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError, PromptmixError):
        return False
    return True


def _has(*patterns: Path):
    """``adoptable`` test: one of these files (glob patterns allowed) exists."""
    import glob

    def check() -> bool:
        return any(glob.glob(str(p)) for p in patterns)
    return check


def _check_annotators(run_dir: Path, names: list[str]) -> None:
    """RUN/annotations holds exactly the configured annotators (the filter scores every one present)."""
    from ..annotation.runner import annotated_names
    from ..errors import InputError

    extra = sorted(set(annotated_names(run_dir)) - set(names))
    if extra:
        raise InputError(f"{run_dir}/annotations also holds annotator(s) {', '.join(extra)} that annotate.annotators "
                         f"does not list; delete {run_dir}/annotations/{extra[0]} or add it to the config")


def _jsonable_report(report) -> dict[str, Any]:
    if dataclasses.is_dataclass(report):
        out = {}
        for f in dataclasses.fields(report):
            value = getattr(report, f.name)
            if isinstance(value, (int, float, str, bool)) or value is None:
                out[f.name] = value
            elif isinstance(value, Path):
                out[f.name] = str(value)
        return out
    return {}
