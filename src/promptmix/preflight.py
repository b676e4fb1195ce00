"""Pre-flight checks: find bad inputs before the GPU hours, and name every one of them at once.

Each ``check_*`` function returns a list of :class:`Problem` (empty when all is well) and never raises
for what it checks, so a caller (``promptmix run --check``, the start of a stage command) can collect
every problem of a config and report them together:

- :func:`check_checkpoint`: the file exists and is a checkpoint of the declared architecture. Keys and
  shapes are compared without building the network or reading the tensors (the safetensors header, a
  memory-mapped ``torch.load``; the architecture's keys come from a model on the meta device). Git LFS
  pointers, HTML pages, empty, truncated and unknown files are named as such, with the fix.
- :func:`check_counter_folder`, :func:`check_annotator`: a counting-model folder, or any
  ``--annotator SPEC`` (files checked as above, folders and Hub ids as below).
- :func:`check_model_id`: a local folder (its weight files sniffed), or a Hub id that is in the local
  Hub cache or that the Hub answers for; offline mode (``HF_HUB_OFFLINE=1``) is named in the message.
- :func:`expected_generated_rows`, :func:`expected_kept_rows`, :func:`check_fake_rows`: the fake rows a
  config can produce (prompts x k, times the filter's keep share) against each training run's ``r_mix``.
- :func:`check_crop_size`, :func:`smallest_image_size`: training crops fit the real images.
- :func:`check_writable`: output folders can be created and written.
- :func:`check_pipeline`: all of the above for a ``promptmix run`` config, each problem named by its key;
  :func:`report` formats them.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".tar", ".pkl")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing that would make the run fail: what was checked (a config key or a path) and what is wrong."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


# -- checkpoints -------------------------------------------------------------------------------------------
def check_checkpoint(path: str | os.PathLike, architecture: str, *, width_div: int = 1, block_size: int = 32,
                     subject: str | None = None) -> list[Problem]:
    """``path`` is a real checkpoint of counting ``architecture`` (csrnet, dmcount, sasnet) at ``width_div``."""
    from .errors import PromptmixError
    from .models.checkpoints import checkpoint_shapes, compare_keys, sniff_checkpoint
    from .models.counting import ARCHITECTURES, CounterConfig, expected_state_shapes

    subject = subject or str(path)
    arch = str(architecture).lower()
    if arch not in ARCHITECTURES:
        return [Problem(subject, f"unknown architecture {architecture!r}; expected one of "
                                 f"{', '.join(sorted(ARCHITECTURES))}")]
    info = sniff_checkpoint(path)
    if info.problem() is not None:
        return [Problem(subject, info.problem())]
    try:
        found = checkpoint_shapes(path)
    except PromptmixError as exc:
        return [Problem(subject, str(exc))]
    try:
        config = CounterConfig.default(arch, width_div=width_div, **({"block_size": block_size} if arch == "sasnet"
                                                                      else {}))
    except PromptmixError as exc:
        return [Problem(subject, str(exc))]
    mismatch = compare_keys(expected_state_shapes(config), found, architecture=arch, source=str(path))
    return [Problem(subject, mismatch)] if mismatch else []


def check_weight_files(folder: str | os.PathLike, *, subject: str | None = None) -> list[Problem]:
    """Every weight file in a model folder (``*.safetensors``, ``*.bin``, ...) is weights, not an LFS pointer,
    an HTML page or an empty file."""
    from .models.checkpoints import sniff_checkpoint

    folder = Path(folder)
    problems = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".pth.tar")):
            info = sniff_checkpoint(p)
            if info.problem() is not None:
                problems.append(Problem(subject or str(folder), info.problem()))
    return problems


def check_counter_folder(folder: str | os.PathLike, *, architecture: str | None = None,
                         subject: str | None = None) -> list[Problem]:
    """A counting-model folder (``config.json`` + ``model.safetensors``) whose weights fit its config."""
    from .errors import PromptmixError
    from .models.counting import WEIGHTS_NAME, read_counter_config

    subject = subject or str(folder)
    try:
        config = read_counter_config(folder)
    except PromptmixError as exc:
        return [Problem(subject, str(exc))]
    if architecture is not None and config.architecture != architecture:
        return [Problem(subject, f"config.json names architecture {config.architecture!r}, not {architecture!r}")]
    return check_checkpoint(Path(folder) / WEIGHTS_NAME, config.architecture, width_div=config.width_div,
                            block_size=config.block_size, subject=subject)


# -- models on the Hub or on disk ------------------------------------------------------------------------
def hub_offline() -> bool:
    """Offline mode, as huggingface_hub sees it (set at its import) or as the environment says now."""
    import huggingface_hub.constants as hc

    return bool(hc.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes",
                                                                                               "on")


def check_model_id(name: str | os.PathLike, revision: str | None = None, *, repo_type: str = "model",
                   what: str = "model", subject: str | None = None) -> list[Problem]:
    """``name`` is a local folder (or file), or a Hub id in the local cache or known to the Hub.

    Nothing is downloaded: the cache is read with ``local_files_only``, and the Hub is asked for the repo's
    info only. A local folder's weight files are sniffed (:func:`check_weight_files`).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = str(name)
    subject = subject or text
    p = Path(text).expanduser()
    if p.exists():
        return check_weight_files(p, subject=subject) if p.is_dir() else []
    looks_like_id = text.count("/") <= 1 and not text.startswith((".", "/", "~")) and text.strip() != ""
    if not looks_like_id:
        return [Problem(subject, f"{what} {text!r} does not exist (not a local path, and not a Hub id)")]
    try:
        validate_repo_id(text)
    except HFValidationError as exc:
        return [Problem(subject, f"{what} {text!r} is neither an existing local path nor a valid Hub id ({exc})")]
    at = f" at revision {revision!r}" if revision else ""
    try:
        snapshot_download(repo_id=text, revision=revision, repo_type=repo_type, local_files_only=True)
        return []
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError), or a broken cache entry
        pass
    from .utils.model_source import network_failure, ways_out

    if hub_offline():
        return [Problem(subject, f"{what} {text!r}{at} is neither a local path nor in the local Hub cache, "
                                 f"and offline mode is on (HF_HUB_OFFLINE=1). "
                                 + ways_out(text, revision, repo_type=repo_type, offline=True))]
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().repo_info(text, revision=revision, repo_type=repo_type, timeout=10)
    except GatedRepoError:
        return [Problem(subject, f"{what} {text!r} is gated: accept its conditions on "
                                 f"https://huggingface.co/{text} and log in (`hf auth login`)")]
    except RevisionNotFoundError:
        return [Problem(subject, f"{what} {text!r} has no revision {revision!r} on the Hub")]
    except RepositoryNotFoundError:
        return [Problem(subject, f"{what} {text!r} is not on the Hub (or it is private: log in with "
                                 f"`hf auth login`), and it is not a local path")]
    except Exception as exc:  # noqa: BLE001 - network errors, timeouts, HTTP 5xx
        network = network_failure(exc)
        if network:
            return [Problem(subject, f"{what} {text!r}{at}: the Hugging Face Hub could not be reached: {network}; "
                                     f"and it is not in the local Hub cache. " + ways_out(text, revision,
                                                                                      repo_type=repo_type))]
        return [Problem(subject, f"{what} {text!r}{at}: the Hub did not answer ({type(exc).__name__}: {exc}) and "
                                 f"it is not in the local Hub cache. " + ways_out(text, revision, repo_type=repo_type))]
    return []


def check_annotator(spec: str, revision: str | None = None, *, subject: str | None = None) -> list[Problem]:
    """An ``--annotator SPEC``: a counting kind's checkpoint file or folder, or a model folder / Hub id."""
    from .annotation.annotators.registry import detect_kind, parse_spec
    from .errors import PromptmixError
    from .models.counting import ARCHITECTURES

    subject = subject or spec
    try:
        parsed = parse_spec(spec)
    except PromptmixError as exc:
        return [Problem(subject, str(exc))]
    target = Path(parsed.target).expanduser()
    if parsed.kind in ARCHITECTURES:  # as the counting factory decides: a file, a folder, else a Hub repo
        if target.is_dir():
            return check_counter_folder(target, architecture=parsed.kind, subject=subject)
        if target.exists() or target.suffix.lower() in WEIGHT_SUFFIXES or target.name.endswith(".pth.tar"):
            return check_checkpoint(target, parsed.kind, subject=subject)
        return check_model_id(parsed.target, revision, what=f"{parsed.kind} model", subject=subject)
    if target.is_dir():
        problems = check_weight_files(target, subject=subject)
        try:
            kind = detect_kind(target)
        except PromptmixError as exc:
            return problems + [Problem(subject, str(exc))]
        if kind in ARCHITECTURES:
            return check_counter_folder(target, subject=subject)
        return problems
    return check_model_id(parsed.target, revision, what="annotator", subject=subject)


# -- how many fake rows a config can give ----------------------------------------------------------------
def expected_generated_rows(num_prompts: int, images_per_prompt: int, *, mvc_images_per_class: int | None = None,
                            num_classes: int | None = None) -> int:
    """Rows ``generate`` plans: prompts x k, or (MVC) images per class x classes."""
    if mvc_images_per_class is not None:
        return int(mvc_images_per_class) * int(num_classes or 0)
    return int(num_prompts) * int(images_per_prompt)


def expected_kept_rows(generated_rows: int, keep_percent: float = 100.0, num_annotators: int = 1) -> int:
    """Rows the filter keeps of ``generated_rows`` (all of them valid): ``promptmix filter``'s own keep count
    with two or more annotators, every row with one (a keep share below 100 % then is a filter error)."""
    from .annotation.filter.filtering import keep_count

    n = int(generated_rows)
    if n <= 0:
        return 0
    if num_annotators < 2:
        return n
    return keep_count(n, float(keep_percent))


def fake_rows_needed(config: Any) -> tuple[int, str] | None:
    """The fake rows one training run needs at least, and why; None when it uses no fake rows."""
    if getattr(config, "mixing", "none") == "none":
        return None
    if config.r_mix is not None:
        return int(config.r_mix), f"r_mix {config.r_mix} fresh fake rows per epoch (mixing {config.mixing})"
    return 1, f"mixing {config.mixing} needs fake rows"


def check_fake_rows(kept_rows: int, train_configs: Mapping[str, Any], *, all_rows: int | None = None,
                    detail: str = "", prefix: str = "train") -> list[Problem]:
    """Each training run's fake-row needs (:func:`fake_rows_needed`) against the rows the fake set will have:
    ``kept_rows`` for ``fake_config: kept`` (the default), ``all_rows`` for ``fake_config: all``."""
    problems = []
    for name, cfg in train_configs.items():
        need = fake_rows_needed(cfg)
        if need is None:
            continue
        n, why = need
        config_name = getattr(cfg, "fake_config", "kept")
        have = all_rows if config_name == "all" and all_rows is not None else kept_rows
        if n > have:
            where = f" ({detail})" if detail else ""
            problems.append(Problem(f"{prefix}.{name}.r_mix" if cfg.r_mix is not None else f"{prefix}.{name}.mixing",
                                    f"{why}, but the fake dataset ({config_name}) will have about {have} rows{where}; "
                                    f"lower r_mix, or generate more (images_per_prompt, more prompts) or keep more "
                                    f"(filter.keep_percent)"))
    return problems


# -- crops and images ------------------------------------------------------------------------------------
def smallest_image_size(dataset: Any, split: str = "train") -> tuple[int, int] | None:
    """(height, width) of the smallest image of ``split`` (by its shorter side), from the width/height columns
    of a real dataset (a ``DatasetDict``, a mapping of splits, or a folder / Hub id); None without those columns."""
    from . import schema as S

    if isinstance(dataset, (str, os.PathLike)):
        from .builders.loading import load_real

        dataset = load_real(str(dataset))
    ds = dataset[split]
    if not {S.WIDTH, S.HEIGHT} <= set(ds.column_names):
        return None
    sub = ds.select_columns([S.HEIGHT, S.WIDTH])
    pairs = [(int(h), int(w)) for h, w in zip(sub[S.HEIGHT], sub[S.WIDTH]) if h is not None and w is not None]
    return min(pairs, key=lambda hw: (min(hw), hw)) if pairs else None


def check_crop_size(crop_size: int | None, smallest: tuple[int, int] | None, *, subject: str = "crop_size",
                    image_size: int | None = None) -> list[Problem]:
    """A training crop fits the smallest image (or ``image_size``, to which classification resizes first);
    a larger crop would be zero-padded, so the network would train on padding."""
    if crop_size is None:
        return []
    if image_size is not None:
        h = w = int(image_size)
        what = f"the images are resized to {image_size} px"
    elif smallest is not None:
        h, w = smallest
        what = f"the smallest training image is {h}x{w} (HxW)"
    else:
        return []
    if crop_size > min(h, w):
        return [Problem(subject, f"crops of {crop_size} px do not fit: {what}; the rest would be zero padding. Use "
                                 f"crop_size <= {min(h, w)} (a multiple of the output stride), or none")]
    return []


# -- output folders ------------------------------------------------------------------------------------------
def check_writable(paths: Iterable[str | os.PathLike], *, subject: str | None = None) -> list[Problem]:
    """Each output folder exists and is writable, or can be created (nothing is created here): the nearest
    existing folder above it accepts a new file (a temporary file is written and removed)."""
    problems = []
    for raw in paths:
        p = Path(raw).expanduser()
        label = subject or str(p)
        anchor = p
        while not anchor.exists() and anchor != anchor.parent:
            anchor = anchor.parent
        if anchor.exists() and not anchor.is_dir():
            problems.append(Problem(label, f"{anchor} is a file, so the output folder {p} cannot be created there"))
            continue
        try:
            with tempfile.NamedTemporaryFile(dir=anchor, prefix=".promptmix-check-"):
                pass
        except OSError as exc:
            problems.append(Problem(label, f"cannot write in {anchor} ({exc.strerror or exc}); choose another "
                                           f"output folder or fix its permissions"))
    return problems


# -- a whole pipeline config ------------------------------------------------------------------------------
def check_pipeline(cfg: Any, *, num_prompts: int | None = None) -> list[Problem]:
    """Every check above for a :class:`~promptmix.pipeline.config.PipelineConfig`, problems named by config key.

    Models (captioner, generator or the fine-tuning's base model, annotators, ImageNet backbones, ``weights``),
    the real dataset when it is a Hub id, the fake rows each training run needs (when the number of prompts is
    known: ``num_prompts``, or the prompt bag already in ``RUN/prompts``), training crops (when the real dataset
    is built), and the output folders.
    """
    problems: list[Problem] = []
    real = cfg.real
    if real.builder == "hub" and real.dataset:
        problems += check_model_id(real.dataset, real.revision, repo_type="dataset", what="dataset",
                                   subject="real.dataset")
    if real.builder == "folder" and real.path and not Path(real.path).exists():
        problems += check_model_id(real.path, real.revision, repo_type="dataset", what="dataset", subject="real.path")
    if cfg.caption is not None:
        problems += check_model_id(cfg.caption.model, getattr(cfg.caption, "revision", None), what="captioning model",
                                   subject="caption.model")
    if cfg.finetune is not None:
        problems += check_model_id(cfg.finetune.base_model, cfg.finetune.base_revision, what="base model",
                                   subject="finetune.base_model")
    else:
        problems += check_model_id(cfg.generate.model, cfg.generate.revision, what="diffusion model",
                                   subject="generate.model")
    if cfg.annotate is not None:
        for i, spec in enumerate(cfg.annotate.annotators):
            problems += check_annotator(spec, cfg.annotate.revision, subject=f"annotate.annotators[{i}]")
    from .models import pretrained_id

    for name, run in cfg.train.items():
        if run.pretrained:
            problems += check_model_id(pretrained_id(run.model, run.pretrained), run.pretrained_revision,
                                       what=f"pretrained backbone of {run.model}", subject=f"train.{name}.pretrained")
        if run.weights:
            from .models.checkpoints import sniff_checkpoint

            info = sniff_checkpoint(run.weights)
            if info.problem() is not None:
                problems.append(Problem(f"train.{name}.weights", info.problem()))
    bag = cfg.run_folder.prompts
    if num_prompts is None and (bag / "prompts.parquet").exists():
        from .generation.prompts.bag import load_prompt_bag

        try:
            num_prompts = len(load_prompt_bag(bag))
        except Exception:  # noqa: BLE001 - an unreadable bag is the prompts stage's to report
            num_prompts = None
    if num_prompts is not None and cfg.train and not cfg.generate.mvc_enabled:  # MVC: rows per class instead
        gen = cfg.generate
        generated = expected_generated_rows(num_prompts, gen.images_per_prompt)
        annotators = len(cfg.annotate.annotators) if cfg.annotate is not None else 0
        keep = cfg.filter.keep_percent if cfg.filter is not None else 100.0
        kept = expected_kept_rows(generated, keep, annotators)
        problems += check_fake_rows(kept, cfg.train, all_rows=generated,
                                    detail=f"{num_prompts} prompts x {gen.images_per_prompt} images, keep {keep:g} %")
    if Path(cfg.real_out, "README.md").exists():
        try:
            smallest = smallest_image_size(cfg.real_out)
        except Exception:  # noqa: BLE001 - an unreadable dataset is the real stage's to report
            smallest = None
        for name, run in cfg.train.items():
            problems += check_crop_size(run.crop_size, smallest, subject=f"train.{name}.crop_size",
                                        image_size=run.image_size)
    problems += check_pipeline_outputs(cfg)
    outputs = [cfg.run_dir, cfg.real_out, cfg.fake_out, *(Path(r.output_dir) for r in cfg.train.values())]
    if cfg.publish_dir is not None:
        outputs.append(cfg.publish_dir)
    seen: set[str] = set()
    for out in outputs:
        if str(out) not in seen:
            seen.add(str(out))
            problems += check_writable([out])
    return problems


def check_pipeline_outputs(cfg: Any) -> list[Problem]:
    """The output guard (:func:`promptmix.utils.outputs.guard_output`) for every output folder of a pipeline, with
    the rules each stage applies when it writes: no output is, holds or lies inside an input or what another
    stage writes, and an existing non-empty folder must be one the stage wrote (its marker) or its own place."""
    from .errors import OutputError
    from .publishing.layout import read_provenance
    from .utils.outputs import guard_output

    run = cfg.run_folder
    checks: list[tuple[str, Path, dict]] = []
    if cfg.real.builder != "folder":
        checks.append(("real.out", cfg.real_out, dict(command="real", inputs=cfg.real.local_inputs(), run=run,
                                                      own=[run.real], force_flag=None)))
    if cfg.prompts is not None and cfg.prompts.out is not None:
        checks.append(("prompts.out", Path(cfg.prompts.out), dict(command="prompts", run=run, own=[run.prompts],
                                                                  force=cfg.prompts.force)))
    if cfg.filter is not None:
        checks.append(("filter.out", cfg.fake_out, dict(command="filter", run=run, own=[run.fake],
                                                        force=cfg.filter.force)))
    if cfg.publish_dir is not None:
        checks.append(("publish.local_dir", cfg.publish_dir, dict(
            command="publish", run=run, own=[run.publish], force=cfg.publish.force,
            ours=lambda folder: read_provenance(folder) is not None)))
    for name, t in cfg.train.items():
        checks.append((f"train.{name}.output_dir", Path(t.output_dir), dict(
            command="train", run=run, own=[Path(t.output_dir)], inputs=[cfg.real_out] + (
                [cfg.fake_out] if t.mixing != "none" else []), force=t.overwrite, force_flag="overwrite: true",
            ours=lambda folder: (folder / "config.yaml").is_file())))
    if cfg.report_out is not None:
        checks.append(("report.out", cfg.report_out, dict(command="report", run=run, own=[run.report])))
    problems = []
    for subject, path, kwargs in checks:
        try:
            guard_output(path, flag=subject, **kwargs)
        except OutputError as exc:
            problems.append(Problem(subject, str(exc).split(": ", 1)[1] if ": " in str(exc) else str(exc)))
    return problems


def report(problems: Iterable[Problem]) -> str:
    """Every problem on its own line, numbered (empty when there are none)."""
    problems = list(problems)
    if not problems:
        return ""
    return "\n".join([f"{len(problems)} problem(s) found before running:"] +
                     [f"  {i}. {p}" for i, p in enumerate(problems, 1)])
