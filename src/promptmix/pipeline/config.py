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

from ..annotation.filter import FilterConfig
from ..config import StageConfig, field, read_yaml_mapping
from ..errors import ConfigError, InputError
from ..generation.captions import CaptionConfig
from ..generation.config import GenerateConfig
from ..generation.prompts import PromptBagConfig
from ..schema import TASKS
from ..training.config import TrainConfig
from ..training.mvc_finetune import MVCFinetuneConfig

BUILDERS = ("shanghaitech", "ucf-qnrf", "nyu-depth-v2", "imagefolder", "hub", "folder")
BUILDER_TASK = {"shanghaitech": "counting", "ucf-qnrf": "counting", "nyu-depth-v2": "depth",
                "imagefolder": "classification"}
#: which keys each builder needs (the others must be left out)
BUILDER_KEYS = {"shanghaitech": ("root", "part"), "ucf-qnrf": ("root",), "nyu-depth-v2": ("mat",),
                "imagefolder": ("root",), "hub": ("dataset",), "folder": ("path",)}
BUILDER_FUNCTIONS = {"shanghaitech": "build_shanghaitech", "ucf-qnrf": "build_ucf_qnrf",
                     "nyu-depth-v2": "build_nyu_depth_v2", "imagefolder": "build_imagefolder", "hub": "build_from_hub"}


@dataclasses.dataclass
class RealConfig(StageConfig):
    """Where the real dataset comes from: a raw download (built with ``promptmix real ...``), a Hub
    dataset, or a folder already built."""

    _section = "real"

    builder: str = field(help="shanghaitech | ucf-qnrf | nyu-depth-v2 | imagefolder (raw downloads, built like "
                              "`promptmix real BUILDER`), hub (a Hub dataset with an image and a label/points "
                              "column), folder (a dataset already built by `promptmix real`, used as it is)",
                         choices=BUILDERS)
    root: Path | None = field(None, help="shanghaitech, ucf-qnrf, imagefolder: the raw dataset's root folder")
    part: str | None = field(None, help="shanghaitech: A or B", choices=(None, "A", "B"))
    mat: Path | None = field(None, help="nyu-depth-v2: nyu_depth_v2_labeled.mat")
    dataset: str | None = field(None, help="hub: dataset id, e.g. uoft-cs/cifar10")
    revision: str | None = field(None, help="hub, folder (a Hub id): dataset revision (branch, tag or commit)")
    path: str | None = field(None, help="folder: a built real dataset (folder or Hub id), e.g. runs/shtb/real")
    reduced: int | None = field(None, help="imagefolder, hub: keep this many training images, a seeded class-"
                                           "balanced subset (e.g. 4000 for 'CIFAR reduced')")
    skip_bad: bool = field(False, help="every builder: skip a missing, corrupt, CMYK, 16-bit or (counting) EXIF-rotated "
                                       "image or an unreadable annotation file (counted in the build summary) "
                                       "instead of stopping")
    options: dict[str, Any] = field(default_factory=dict,
                                    help="further keyword arguments of the builder function (promptmix.builders."
                                         "build_*): seed for every builder, validation_fraction for "
                                         "shanghaitech and ucf-qnrf (e.g. {validation_fraction: 0.2, seed: 42}), "
                                         "image_column/label_column for hub (e.g. {image_column: img, label_column: "
                                         "fine_label})")
    out: Path | None = field(None, help="where the built dataset goes (default RUN/real); not used by 'folder'",
                             runtime=True)

    def validate(self) -> None:
        need = BUILDER_KEYS[self.builder]
        for key in need:
            if getattr(self, key) in (None, ""):
                self.fail(key, f"a value for builder {self.builder!r} (it needs {', '.join(need)})")
        allowed = set(need) | {"builder", "options", "out"} | ({"revision", "reduced"} if self.builder == "hub" else set()) \
            | ({"revision"} if self.builder == "folder" else set()) \
            | ({"reduced"} if self.builder == "imagefolder" else set()) \
            | ({"skip_bad"} if self.builder != "folder" else set())
        for f in dataclasses.fields(self):
            if f.name in allowed:
                continue
            if getattr(self, f.name) not in (None, False, {}, f.default):
                self.fail(f.name, f"nothing for builder {self.builder!r} (its keys: {', '.join(sorted(allowed))})")
        if self.reduced is not None and self.reduced < 1:
            self.fail("reduced", "null or an integer >= 1")
        if not isinstance(self.options, dict):
            self.fail("options", "a mapping of builder keyword arguments")
        if self.builder != "folder":
            import inspect

            from .. import builders

            func = getattr(builders, BUILDER_FUNCTIONS[self.builder])
            params = inspect.signature(func).parameters
            taken = {"out", "root", "part", "mat", "dataset", "reduced", "revision", "skip_bad"}
            allowed_opts = sorted(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in taken)
            for key in self.options:
                if key not in allowed_opts:
                    raise ConfigError(f"real.options.{key}: not an option of {func.__name__}; allowed: "
                                      f"{', '.join(allowed_opts) or '(none)'}")

    @property
    def task(self) -> str | None:
        return BUILDER_TASK.get(self.builder)

    def local_inputs(self) -> list[Path]:
        """The local files this section reads (checked before the run; their content is in the stage key)."""
        out = [p for p in (self.root, self.mat) if p is not None]
        if self.builder == "shanghaitech" and self.root is not None:
            out = [Path(self.root) / f"part_{self.part}"]
        return [Path(p) for p in out]


@dataclasses.dataclass
class AnnotateConfig(StageConfig):
    """The ``annotate`` section: the annotators of ``promptmix annotate`` (one SPEC each)."""

    _section = "annotate"

    annotators: list[str] = field(default_factory=list,
                                  help="annotator SPECs as `promptmix annotate --annotator` takes them: "
                                       "[NAME:]FOLDER_OR_HUB_ID or [NAME:]KIND=ARGUMENT, e.g. "
                                       "shtb:sasnet=SHHB.pth; the first one is the default training target")
    revision: str | None = field(None, help="Hub revision of annotators given by Hub id")
    batch_size: int = field(8, runtime=True, help="images per annotator call")
    device: str | None = field(None, runtime=True, help="auto, cpu, cuda, cuda:N or mps")
    dtype: str | None = field(None, runtime=True, help="auto (fp16 on CUDA), float32, float16, bfloat16")

    def validate(self) -> None:
        if not isinstance(self.annotators, list) or not self.annotators \
                or not all(isinstance(a, str) and a.strip() for a in self.annotators):
            self.fail("annotators", "a non-empty list of annotator SPECs (strings)")
        if self.batch_size < 1:
            self.fail("batch_size", "an integer >= 1")

    def names(self) -> list[str]:
        """The annotators' names (output folders), in order; raises ConfigError for a bad SPEC."""
        from ..annotation.registry import default_name, parse_spec

        names = []
        for i, spec in enumerate(self.annotators):
            try:
                names.append(default_name(parse_spec(spec)))
            except InputError as exc:
                raise ConfigError(f"annotate.annotators[{i}]: {exc}") from None
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"annotate.annotators: names must be unique; {dupes[0]!r} occurs twice (name them "
                              f"NAME:SPEC)")
        return names


@dataclasses.dataclass
class PublishConfig(StageConfig):
    """The ``publish`` section: arguments of ``promptmix publish`` (:func:`promptmix.publishing.publish.publish_run`)."""

    _section = "publish"

    repo_id: str = field(help="Hub dataset repo, e.g. me/promptmix-shtb-fake")
    version: str = field(help="semantic version X.Y.Z; tagged vX.Y.Z on the Hub")
    push: bool = field(False, help="push to the Hub (needs a token: HF_TOKEN or `hf auth login`); false: only "
                                   "write local_dir")
    local_dir: Path | None = field(None, help="write the repo to this folder too (default: RUN/publish when push is "
                                              "false, none when pushing)")
    private: bool = field(False, help="create the Hub repo private")
    branch: str | None = field(None, help="Hub branch to commit to (default main)")
    force: bool = field(False, help="replace an existing version tag")
    notes: str | None = field(None, help="what changed in this version (version history, commit message)")
    license: str | None = field(None, help="license id; default: derived from the models and the real dataset")
    pretty_name: str | None = field(None, help="the dataset's display name on the Hub")
    notice: str | None = field(None, help="a notice shown at the top of the dataset card")

    def validate(self) -> None:
        from ..publishing.publish import check_repo_id, parse_version

        try:
            check_repo_id(self.repo_id)
        except InputError as exc:
            raise ConfigError(f"publish.repo_id: {_strip_flag(exc)}") from None
        try:
            parse_version(str(self.version))
        except InputError as exc:
            raise ConfigError(f"publish.version: {_strip_flag(exc)}") from None


@dataclasses.dataclass
class ReportConfig(StageConfig):
    """The ``report`` section: how the training runs are compared (``promptmix report``). The report stage runs
    whenever there are two or more training runs; this section is needed only to choose the baseline."""

    _section = "report"

    baseline: str | None = field(None, help="the training run (a train NAME) every other run is compared with; "
                                            "default: for each run, the real-only run (mixing: none) of the same "
                                            "model, or the only real-only run")


#: settings a ``finetune`` section and ``generate.mvc`` share: generation mixes embeddings as the generator was
#: trained to; set in ``finetune``, they are copied into ``generate.mvc`` (set in both, they must agree)
MVC_SHARED = ("coarse", "fine", "fine_max_span", "caption_prefix", "prefix_separator")

#: keys of each section set by the pipeline (run_dir and the other sections), never by the config
WIRED: dict[str, tuple[str, ...]] = {
    "caption": ("real",),
    "finetune": ("captions", "output_dir", "real"),
    "generate": ("prompts",),  # and model, when a finetune section is present
    "train": ("task", "real", "fake", "output_dir"),
}


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
    prompts: PromptBagConfig = field(default_factory=PromptBagConfig,
                                     help="the prompt bag (PromptBagConfig; `promptmix prompts --help`)")
    finetune: MVCFinetuneConfig | None = field(None, help="MVC fine-tuning of the generator (MVCFinetuneConfig); "
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
            raise ConfigError(f"{unknown[0]}: unknown key; allowed keys are {', '.join(sorted(fields))}")
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
        if real.task and task and task != real.task:
            raise ConfigError(f"task: real.builder {real.builder!r} gives a {real.task} dataset; got {task!r}")
        task = task or real.task
        if task is None:
            raise ConfigError(f"task: required when real.builder is {real.builder!r}; expected one of {', '.join(TASKS)}")
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
        if data.get("prompts") is not None:
            kwargs["prompts"] = PromptBagConfig.from_dict(data["prompts"], section="prompts")
        if data.get("finetune") is not None:
            kwargs["finetune"] = section_of("finetune", MVCFinetuneConfig, data["finetune"], wires["finetune"])
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
            kwargs["filter"] = FilterConfig.from_dict(data["filter"], section="filter")
        if data.get("publish") is not None:
            kwargs["publish"] = PublishConfig.from_dict(data["publish"], section="publish")
        train = {}
        for name, raw in (data.get("train") or {}).items():
            if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"train.{name}: a run name is letters, digits, '-' and '_'")
            if not isinstance(raw, Mapping):
                raise ConfigError(f"train.{name}: expected a mapping of TrainConfig settings; got {raw!r}")
            wired = {"task": task, "real": str(wires["real_out"]), "output_dir": str(run_dir / "train" / name)}
            if raw.get("mixing", "none") != "none":
                wired["fake"] = str(wires["fake_out"])
            train[name] = section_of(f"train.{name}", TrainConfig, raw, wired)
        kwargs["train"] = train
        if data.get("report") is not None:
            kwargs["report"] = ReportConfig.from_dict(data["report"], section="report")
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
        if self.finetune is not None and self.task != "classification":
            raise ConfigError(f"finetune: MVC fine-tuning is for classification datasets; the task is {self.task}")
        if self.generate.mvc is not None and self.generate.mvc.enabled and self.task != "classification":
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

    def check_inputs(self) -> None:
        """Local files the config names exist (raw datasets, manual prompt files)."""
        for path in self.real.local_inputs():
            if not path.exists():
                raise InputError(f"real: {path} does not exist (real.builder {self.real.builder}); check real.root / "
                                 "real.mat / real.part")
        if self.prompts.manual_file is not None and not Path(self.prompts.manual_file).is_file():
            raise InputError(f"prompts.manual_file: {self.prompts.manual_file} does not exist")

    # -- paths ------------------------------------------------------------------------------------------
    @property
    def real_out(self) -> Path:
        return _real_out(self.run_dir, self.real)

    @property
    def fake_out(self) -> Path:
        return Path(self.filter.out) if self.filter is not None and self.filter.out is not None \
            else self.run_dir / "fake"

    @property
    def publish_dir(self) -> Path | None:
        """Where the published repo is written: publish.local_dir, else RUN/publish unless it is pushed."""
        if self.publish is None:
            return None
        if self.publish.local_dir is not None:
            return Path(self.publish.local_dir)
        return None if self.publish.push else self.run_dir / "publish"

    @property
    def finetune_out(self) -> Path:
        return self.run_dir / "finetune"

    @property
    def report_out(self) -> Path | None:
        """RUN/report when there are two or more training runs (the report stage), else None."""
        return self.run_dir / "report" if len(self.train) >= 2 else None

    def report_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`promptmix.training.report.compare_runs` / ``write_report`` for the
        training runs: their folders, their names in the config and the baseline (``report.baseline``)."""
        return {"run_dirs": [Path(run.output_dir) for run in self.train.values()], "names": list(self.train),
                "baseline": self.report.baseline if self.report is not None else None}

    def user_dict(self) -> dict[str, Any]:
        """The config as a user writes it: wired keys and unset optional sections left out."""
        out = self.to_dict()
        for name, keys in WIRED.items():
            sections = out.get(name)
            if not sections:
                continue
            for sec in (sections.values() if name == "train" else [sections]):
                for key in keys:
                    sec.pop(key, None)
        if self.finetune is not None:
            out["generate"].pop("model", None)
        order = ("run_dir", "task", "real", "caption", "prompts", "finetune", "generate", "annotate", "filter",
                 "publish", "train", "report")
        return {k: out[k] for k in sorted(out, key=lambda k: order.index(k) if k in order else len(order))
                if out[k] not in (None, {})}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.user_dict(), sort_keys=False)


def _strip_flag(exc: Exception) -> str:
    """``"--version: expected ..."`` -> ``"expected ..."`` (the config names the key itself)."""
    import re

    return re.sub(r"^--[\w-]+: ", "", str(exc))


def _share_mvc_settings(finetune: MVCFinetuneConfig, finetune_raw: Mapping[str, Any],
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
    return Path(real.out) if real.out is not None else run_dir / "real"


def _wiring(run_dir: Path, real: RealConfig, data: Mapping[str, Any]) -> dict[str, Any]:
    real_out = _real_out(run_dir, real)
    flt = data.get("filter") or {}
    fake_out = Path(flt["out"]) if flt.get("out") else run_dir / "fake"
    return {
        "real_out": real_out,
        "fake_out": fake_out,
        "caption": {"real": str(real_out)},
        "finetune": {"captions": str(run_dir), "output_dir": str(run_dir / "finetune"), "real": str(real_out)},
        "generate": {"prompts": str(run_dir / "prompts")},
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
        raise ConfigError(f"{path}: {exc}") from None


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
