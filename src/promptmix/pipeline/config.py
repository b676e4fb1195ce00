"""``PipelineConfig``: the whole pipeline in one YAML file, validated before anything runs.

Each section is the stage's own config class (``caption`` is a
:class:`~promptmix.generation.captions.CaptionConfig`, ``generate`` a
:class:`~promptmix.generation.config.GenerateConfig`, each ``train`` run a
:class:`~promptmix.training.config.TrainConfig`, ...), so a section accepts exactly the keys the
stage's own command accepts (``promptmix caption --help`` etc.). The keys that connect stages — where
the real dataset is, which prompt bag to generate from, where a training run writes — are *wired*
by the pipeline from ``run_dir`` and the other sections; a config leaves them out (a wired key
given with another value is an error that names it).

::

    run_dir: runs/shtb                 # every stage writes here (RUN/)
    task: counting                     # optional: read from real.builder when it can be
    real:     {builder: shanghaitech, root: data/ShanghaiTech, part: B}
    caption:  {model: Salesforce/blip-image-captioning-base}   # optional when no prompt needs captions
    prompts:  {prefix: large crowd, suffix: grayscale}
    generate: {model: stabilityai/stable-diffusion-2-1-base, images_per_prompt: 10}
    annotate: {annotators: ["sasnet=SHHB.pth"]}
    filter:   {keep_percent: 100}
    publish:  {repo_id: me/promptmix-shtb, version: 1.0.0, push: false}   # optional
    train:                                                                 # optional, named runs
      baseline:  {model: rescsrnet, mixing: none}
      promptmix: {model: rescsrnet, mixing: promptmix, r_mix: 500}
    report:   {baseline: baseline}     # optional: RUN/report compares 2+ runs with their real-only baseline

Relative paths are relative to the current directory (run ``promptmix run`` from the folder the
config's paths are written for).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..annotation.annotate.config import AnnotateConfig
from ..annotation.filter.config import FilterConfig
from ..builders.config import RealConfig
from ..config import StageConfig, field, read_yaml_mapping
from ..errors import ConfigError, InputError
from ..generation.caption.config import CaptionConfig
from ..generation.generate.config import GenerateConfig
from ..generation.prompts.config import PromptsConfig
from ..publishing.config import PublishConfig
from ..run_folder import RunFolder
from ..schema import TASKS
from ..stage import get_stage
from ..tasks import get_task
from ..training.finetune.config import FinetuneConfig
from ..training.report.config import ReportConfig
from ..training.train.config import TrainConfig

#: settings a ``finetune`` section and ``generate.mvc`` share: generation mixes embeddings as the generator was
#: trained to; set in ``finetune``, they are copied into ``generate.mvc`` (set in both, they must agree)
MVC_SHARED = ("coarse", "fine", "fine_max_span", "caption_prefix", "prefix_separator")


def wired_keys(section: str) -> tuple[str, ...]:
    """Keys of a section set by the pipeline (from run_dir and the other sections), never by the config:
    the stage's ``wired`` keys (``generate.model`` too when a finetune section is present)."""
    return get_stage(section).wired


@dataclasses.dataclass
class PipelineConfig(StageConfig):
    """The whole pipeline: one section per stage (see the module docstring)."""

    run_dir: Path = field(help="the run folder every stage writes into (RUN/)")
    real: RealConfig = field(help="the real dataset (RealConfig)")
    generate: GenerateConfig = field(help="image generation (GenerateConfig; `promptmix generate --help`)")
    task: str | None = field(None, choices=(None, *TASKS),
                             help="counting, depth or classification; read from real.builder when omitted")
    caption: CaptionConfig | None = field(None, help="captioning of the real train split (CaptionConfig; `promptmix "
                                                     "caption --help`); needed when captions are prompts "
                                                     "(prompts.use_captions), fill {caption} templates or feed MVC. "
                                                     "Without it the prompt bag reads the task, class names and "
                                                     "source images from the real dataset")
    prompts: PromptsConfig = field(default_factory=PromptsConfig,
                                     help="the prompt bag (PromptsConfig; `promptmix prompts --help`)")
    finetune: FinetuneConfig | None = field(None, help="MVC fine-tuning of the generator (FinetuneConfig); "
                                                          "generate then uses the fine-tuned pipeline")
    annotate: AnnotateConfig | None = field(None, help="annotators (AnnotateConfig)")
    filter: FilterConfig | None = field(None, help="quality-score filtering into RUN/fake (FilterConfig)")
    publish: PublishConfig | None = field(None, help="publishing of RUN/fake (PublishConfig)")
    train: dict[str, TrainConfig] = field(default_factory=dict,
                                          help="named training runs (each a TrainConfig; `training/train_*.py "
                                               "--help`), e.g. {baseline: {mixing: none}, promptmix: {...}}")
    report: ReportConfig | None = field(None, help="the comparison of the training runs in RUN/report "
                                                   "(ReportConfig); written whenever there are two or more runs")

    # -- loading --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, section: str = "") -> "PipelineConfig":
        data = dict(data or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            from ..utils.suggest import did_you_mean

            raise ConfigError(f"{unknown[0]}: unknown key; allowed keys are {', '.join(sorted(fields))}"
                              f"{did_you_mean(unknown[0], fields)}")
        for key in ("run_dir", "real", "generate"):
            if data.get(key) in (None, "", {}):
                raise ConfigError(f"{key}: required key is missing ({fields[key].metadata['help']})")
        for key in ("real", "caption", "prompts", "finetune", "generate", "annotate", "filter", "publish", "train",
                    "report"):
            if data.get(key) is not None and not isinstance(data[key], Mapping):
                raise ConfigError(f"{key}: expected a mapping of settings; got {data[key]!r}")
        if not isinstance(data["run_dir"], (str, Path)):
            raise ConfigError(f"run_dir: expected a path (string); got {data['run_dir']!r}")
        run_dir = Path(data["run_dir"])
        real = RealConfig.from_dict(data["real"], section="real")
        task = data.get("task")
        if task is not None and task not in TASKS:
            raise ConfigError(f"task: expected one of {', '.join(TASKS)}; got {task!r}")
        if real.builder_task and task and task != real.builder_task:
            raise ConfigError(f"task: real.builder {real.builder!r} gives a {real.builder_task} dataset; got {task!r}")
        task = task or real.builder_task
        if task is None:
            raise ConfigError(f"task: required when real.builder is {real.builder!r}; expected one of {', '.join(TASKS)}")
        if data["real"].get("task") not in (None, task):
            raise ConfigError(f"real.task: set by the pipeline (to {task}, the config's task); leave it out")
        real = dataclasses.replace(real, task=task)
        wires = _wiring(run_dir, real, data)

        def section_of(name, klass, raw, wired_values):
            raw = dict(raw)
            for key, value in wired_values.items():
                if key in raw and raw[key] is not None and _norm(raw[key]) != _norm(value):
                    raise ConfigError(f"{name}.{key}: set by the pipeline (to {value}); leave it out of the config")
                raw[key] = value
            return klass.from_dict(raw, section=name)

        kwargs: dict[str, Any] = {"run_dir": run_dir, "real": real, "task": task}
        if data.get("caption") is not None:
            kwargs["caption"] = section_of("caption", CaptionConfig, data["caption"], wires["caption"])
        if data.get("prompts") is not None or data.get("caption") is None:
            kwargs["prompts"] = section_of("prompts", PromptsConfig, data.get("prompts") or {}, wires["prompts"](
                data.get("caption") is not None))
        if data.get("finetune") is not None:
            kwargs["finetune"] = section_of("finetune", FinetuneConfig, data["finetune"], wires["finetune"])
        generate_wires = dict(wires["generate"])
        generate_raw = dict(data["generate"])
        if data.get("finetune") is not None:
            if generate_raw.get("model"):
                raise ConfigError("generate.model: leave it out when a finetune section is present (generation "
                                  f"uses the fine-tuned pipeline in {wires['finetune']['output_dir']})")
            generate_wires["model"] = wires["finetune"]["output_dir"]
            generate_raw = _share_mvc_settings(kwargs["finetune"], data["finetune"], generate_raw)
        kwargs["generate"] = section_of("generate", GenerateConfig, generate_raw, generate_wires)
        if data.get("annotate") is not None:
            kwargs["annotate"] = AnnotateConfig.from_dict(data["annotate"], section="annotate")
        if data.get("filter") is not None:
            # the filter scores exactly the configured annotators (not others left in RUN/annotations)
            names = kwargs["annotate"].names() if "annotate" in kwargs else None
            kwargs["filter"] = section_of("filter", FilterConfig, data["filter"], {"annotators": names})
        if data.get("publish") is not None:
            kwargs["publish"] = PublishConfig.from_dict(data["publish"], section="publish")
        train = {}
        for name, raw in (data.get("train") or {}).items():
            if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"train.{name}: a run name is letters, digits, '-' and '_'")
            if not isinstance(raw, Mapping):
                raise ConfigError(f"train.{name}: expected a mapping of TrainConfig settings; got {raw!r}")
            wired = {"task": task, "real": str(wires["real_out"]), "output_dir": str(RunFolder(run_dir).train_run(name))}
            if raw.get("mixing", "none") != "none":
                wired["fake"] = str(wires["fake_out"])
            train[name] = section_of(f"train.{name}", TrainConfig, raw, wired)
        kwargs["train"] = train
        if data.get("report") is not None or len(train) >= 2:
            # with two or more training runs, RUN/report compares them with their real-only baseline
            kwargs["report"] = section_of("report", ReportConfig, data.get("report") or {}, {
                "runs": [run_cfg.output_dir for run_cfg in train.values()], "names": list(train)})
        config = cls(**kwargs)
        config.check_sections()
        return config

    def validate(self) -> None:
        pass  # the sections validate themselves; check_sections() checks how they fit together

    def check_sections(self) -> None:
        """Cross-section rules: what each stage needs from the others."""
        if self.caption is None:
            if self.prompts.use_captions:
                raise ConfigError("prompts.use_captions: true needs captions; add a caption section (the captioning "
                                  "model) or set prompts.use_captions: false (the prompt bag then reads the task, "
                                  "class names and source images from the real dataset)")
            if self.prompts.needs_captions():
                raise ConfigError("prompts.class_templates: a template with {caption} needs captions; add a caption "
                                  "section or use only {label} templates")
            if self.finetune is not None:
                raise ConfigError("finetune: MVC fine-tuning mixes caption embeddings; add a caption section")
            if self.generate.mvc is not None and self.generate.mvc.enabled:
                raise ConfigError("generate.mvc.enabled: MVC mixes caption embeddings; add a caption section")
        if self.finetune is not None and not get_task(self.task).has_classes:
            raise ConfigError(f"finetune: MVC fine-tuning is for classification datasets; the task is {self.task}")
        if self.generate.mvc is not None and self.generate.mvc.enabled and not get_task(self.task).has_classes:
            raise ConfigError(f"generate.mvc.enabled: MVC needs a classification dataset; the task is {self.task}")
        names = self.annotate.names() if self.annotate is not None else []
        if self.filter is not None:
            if self.annotate is None:
                raise ConfigError("filter: needs an annotate section (the quality score compares annotators)")
            if self.filter.keep_percent < 100 and len(names) < 2:
                raise ConfigError(f"filter.keep_percent: {self.filter.keep_percent:g} needs at least two annotators "
                                  f"(the quality score compares them); annotate.annotators has {len(names)}")
            if self.filter.target not in ("first", "mean", *names):
                raise ConfigError(f"filter.target: expected one of first, mean, {', '.join(names)}; "
                                  f"got {self.filter.target!r}")
        if self.publish is not None and self.filter is None:
            raise ConfigError("publish: needs a filter section (it publishes RUN/fake)")
        for name, run in self.train.items():
            if run.mixing != "none" and self.filter is None:
                raise ConfigError(f"train.{name}.mixing: {run.mixing!r} needs the fake dataset; add annotate and "
                                  "filter sections (or use mixing: none)")
            if run.target_annotator is not None and run.target_annotator not in names:
                raise ConfigError(f"train.{name}.target_annotator: expected one of {', '.join(names) or '(none)'}; "
                                  f"got {run.target_annotator!r}")
        if self.report is not None:
            if len(self.train) < 2:
                raise ConfigError(f"report: compares training runs; needs at least two in train (it has "
                                  f"{len(self.train)})")
            if self.report.baseline is not None and self.report.baseline not in self.train:
                raise ConfigError(f"report.baseline: expected one of the training runs ({', '.join(self.train)}); "
                                  f"got {self.report.baseline!r}")

    def missing_inputs(self, until: str | None = None) -> list:
        """The local files the config names that do not exist (raw datasets, annotator checkpoints, backbone
        weights, policy files, manual prompts), each with its config key and where to get it. ``until``: only
        the inputs of that stage and the ones before it (``promptmix run --until STAGE``)."""
        from ..stage import STAGES
        from .inputs import local_inputs

        order = list(STAGES)
        last = order.index(until) if until in order else len(order)
        return [i for i in local_inputs(self) if not i.present
                and order.index(i.key.split(".")[0].split("[")[0]) <= last]

    def missing_inputs_message(self, missing: list) -> str:
        """One message for :meth:`missing_inputs` (empty when none is missing)."""
        from .inputs import DOCS, missing_message

        if not missing:
            return ""
        first = missing[0]
        if len(missing) == 1 and first.key == "real" and first.source is None:
            return (f"real: {first.path} does not exist (real.builder {self.real.builder}); check real.root / "
                    "real.mat / real.part")
        relative = " (relative paths are read from the folder you run from)" if any(
            not i.path.is_absolute() for i in missing) else ""
        return (f"{len(missing)} input(s) of the config do not exist{relative}:\n{missing_message(missing)}"
                f"\nWhat goes where, per experiment: {DOCS}")

    def check_inputs(self, until: str | None = None) -> None:
        """Raise one :class:`InputError` listing every missing input (:meth:`missing_inputs`), if any."""
        message = self.missing_inputs_message(self.missing_inputs(until))
        if message:
            raise InputError(message)

    # -- paths ------------------------------------------------------------------------------------------
    @property
    def real_out(self) -> Path:
        return _real_out(self.run_dir, self.real)

    @property
    def run_folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def fake_out(self) -> Path:
        return Path(self.filter.out) if self.filter is not None and self.filter.out is not None \
            else self.run_folder.fake

    @property
    def publish_dir(self) -> Path | None:
        """Where the published repo is written: publish.local_dir, else RUN/publish unless it is pushed."""
        if self.publish is None:
            return None
        if self.publish.local_dir is not None:
            return Path(self.publish.local_dir)
        return None if self.publish.push else self.run_folder.publish

    @property
    def finetune_out(self) -> Path:
        return self.run_folder.finetune

    @property
    def report_out(self) -> Path | None:
        """RUN/report when there are two or more training runs (the report stage), else None."""
        return self.run_folder.report if len(self.train) >= 2 else None

    def stage_sections(self) -> list[tuple[str, str, StageConfig]]:
        """``(step name, stage name, config as the stage runs it)`` for every stage of this pipeline, in order.

        Each ``train.NAME`` run is a step of stage ``train``; ``publish`` writes ``RUN/publish`` unless it pushes
        (or ``publish.local_dir`` says where)."""
        out: list[tuple[str, str, StageConfig]] = [("real", "real", self.real)]
        for name in ("caption", "prompts", "finetune", "generate", "annotate", "filter"):
            section = getattr(self, name)
            if section is not None:
                out.append((name, name, section))
        if self.publish is not None:
            out.append(("publish", "publish", dataclasses.replace(self.publish, local_dir=self.publish_dir)))
        out += [(f"train.{name}", "train", run) for name, run in self.train.items()]
        if self.report is not None:
            out.append(("report", "report", self.report))
        return out

    def describe(self, step: str) -> str:
        """One line on what a step does, for ``--plan``."""
        if step.startswith("train."):
            run = self.train[step.split(".", 1)[1]]
            return f"training run {step.split('.', 1)[1]!r} ({run.model}, mixing {run.mixing})"
        return get_stage(step).summary

    def report_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`promptmix.training.report.compare_runs` / ``write_report`` for the
        training runs: their folders, their names in the config and the baseline (``report.baseline``)."""
        return {"run_dirs": [Path(run.output_dir) for run in self.train.values()], "names": list(self.train),
                "baseline": self.report.baseline if self.report is not None else None}

    def user_dict(self) -> dict[str, Any]:
        """The config as a user writes it: wired keys and unset optional sections left out."""
        out = self.to_dict()
        for name in ("real", "caption", "prompts", "finetune", "generate", "filter", "train", "report"):
            sections = out.get(name)
            if not sections:
                continue
            for sec in (sections.values() if name == "train" else [sections]):
                for key in wired_keys(name):
                    sec.pop(key, None)
        if self.finetune is not None:
            out["generate"].pop("model", None)
        order = ("run_dir", "task", "real", "caption", "prompts", "finetune", "generate", "annotate", "filter",
                 "publish", "train", "report")
        return {k: out[k] for k in sorted(out, key=lambda k: order.index(k) if k in order else len(order))
                if out[k] not in (None, {})}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.user_dict(), sort_keys=False)


def _share_mvc_settings(finetune: FinetuneConfig, finetune_raw: Mapping[str, Any],
                        generate_raw: dict[str, Any]) -> dict[str, Any]:
    """``generate`` with the MVC settings of ``finetune`` (:data:`MVC_SHARED`) copied into ``generate.mvc`` where
    it leaves them out; a setting given in ``generate.mvc`` with another value than the generator was fine-tuned
    with is an error naming both keys."""
    mvc = generate_raw.get("mvc")
    if mvc is None:
        return generate_raw
    if not isinstance(mvc, Mapping):
        raise ConfigError(f"generate.mvc: expected a mapping of MVC settings; got {mvc!r}")
    mvc = dict(mvc)
    for key in MVC_SHARED:
        tuned = getattr(finetune, key)
        if key not in mvc:
            mvc[key] = tuned
        elif mvc[key] != tuned:
            where = "" if key in finetune_raw else " (its default)"
            raise ConfigError(f"generate.mvc.{key}: {mvc[key]!r} differs from finetune.{key}: {tuned!r}{where}; the "
                              f"generator is fine-tuned with finetune.{key}, so generation must mix the same way: "
                              f"set it once, in finetune, and leave generate.mvc.{key} out")
    return {**generate_raw, "mvc": mvc}


def _norm(value: Any) -> str:
    return str(Path(value)) if isinstance(value, (str, Path)) else str(value)


def _real_out(run_dir: Path, real: RealConfig) -> Path:
    if real.builder == "folder":
        return Path(real.path)
    return Path(real.out) if real.out is not None else RunFolder(run_dir).real


def _wiring(run_dir: Path, real: RealConfig, data: Mapping[str, Any]) -> dict[str, Any]:
    """The wired keys of each section: the paths under RUN/ (and the real dataset) that connect the stages."""
    run = RunFolder(run_dir)
    real_out = _real_out(run_dir, real)
    flt = data.get("filter") or {}
    fake_out = Path(flt["out"]) if flt.get("out") else run.fake

    def prompts(with_captions: bool) -> dict[str, Any]:
        # without captions the prompt bag reads the task, class names and source images from the real dataset
        revision = real.revision if real.builder == "folder" else None
        return {"real": None if with_captions else str(real_out), "real_revision": None if with_captions else revision,
                "out": None}

    return {
        "real_out": real_out,
        "fake_out": fake_out,
        "caption": {"real": str(real_out)},
        "prompts": prompts,
        "finetune": {"captions": str(run_dir), "output_dir": str(run.finetune), "real": str(real_out)},
        "generate": {"prompts": str(run.prompts)},
    }


def load_config(path: str | Path, *, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML file; ``overrides`` are ``KEY.PATH=VALUE`` strings (YAML values).

    Example: ``load_config("shtb.yaml", overrides=["generate.images_per_prompt=2", "run_dir=/tmp/x"])``.
    """
    path = Path(path)
    data = read_yaml_mapping(path)
    for item in overrides or []:
        apply_override(data, item)
    try:
        return PipelineConfig.from_dict(data)
    except ConfigError as exc:
        culprit = _override_of(str(exc), overrides or [])
        where = f" (from --set {culprit}, not from the file)" if culprit else ""
        raise ConfigError(f"{path}: {exc}{where}") from None


def _override_of(message: str, overrides: list[str]) -> str | None:
    """The ``--set`` item whose key the error ``message`` is about (``generate.steps: expected ...``), if any."""
    key = message.split(":", 1)[0].strip()
    for item in reversed(overrides):
        path = item.partition("=")[0].strip()
        if key == path or key.startswith(path + ".") or key.startswith(path + "["):
            return item
    return None


def apply_override(data: dict, item: str) -> None:
    """Set ``a.b.c=VALUE`` in a nested dict (VALUE parsed as YAML: 2, true, [a, b], 'text')."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set: expected KEY.PATH=VALUE; got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item}: VALUE is not valid YAML ({exc})") from None
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {item}: {'.'.join(parts[:i + 1])} is not a section")
        node = nxt
    node[parts[-1]] = value
