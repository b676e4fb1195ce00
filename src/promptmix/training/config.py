"""``TrainConfig``: every setting of a training run, from flags and/or a YAML file.

``training/train_counter.py --config run.yaml --lr 1e-4`` reads ``run.yaml`` (keys are the field
names below) and lets flags override it; the final config is saved to ``OUTPUT/config.yaml``.
Flags are the field names with dashes (``r_mix`` -> ``--r-mix``); booleans take ``--x``/``--no-x``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence


from ..config import StageConfig, field, read_yaml_mapping, stable_hash
from ..errors import ConfigError
from ..schema import TASKS
from .mixing import STOPPING_STRATEGIES, STRATEGIES, MixingSpec
from .models import DEFAULT_MODEL, MODEL_NAMES, MODEL_TASKS

PAPER_LR_GRID = (1e-3, 1e-4, 1e-5, 1e-6)
REPORT_TO = ("auto", "none", "tensorboard", "wandb", "all")
PRECISIONS = ("auto", "no", "fp16", "bf16")
# settings that only say how long to train: a run's checkpoints can be continued past a change of these
LENGTH_SETTINGS = ("epochs", "two_phase_epochs")


@dataclasses.dataclass
class TrainConfig(StageConfig):
    """A training run: data, mixing, model, recipe (PromptMix Section IV-A) and run-time settings."""

    # -- data ------------------------------------------------------------------------------------
    task: str = field("counting", choices=TASKS, help="counting, depth or classification (set by the entry script)")
    real: str = field("", help="real dataset: Hub id or local folder (splits train/validation/test)")
    real_revision: str | None = field(None, help="branch, tag or commit of the real dataset on the Hub")
    fake: str | None = field(None, help="fake dataset (promptmix filter / publish): Hub id or local folder")
    fake_revision: str | None = field(None, help="branch, tag (e.g. v1.0.0) or commit of the fake dataset")
    fake_config: str = field("kept", help="fake dataset config: 'kept' (after quality filtering) or 'all'")
    target_annotator: str | None = field(
        None, help="take fake targets from this annotator's output instead of the dataset's target column")
    # -- mixing ----------------------------------------------------------------------------------
    mixing: str = field("none", choices=STRATEGIES, help="how fake rows join training (see promptmix.training.mixing)")
    r_mix: int | None = field(None, help="fake rows drawn afresh every epoch (promptmix; optional for two-phase "
                                         "and fake-only); the paper uses 500 (counting) and 1000 (depth)")
    interleave_probability: float = field(0.5, help="interleave: probability that the next row is fake")
    interleave_stopping: str = field("first_exhausted", choices=STOPPING_STRATEGIES,
                                     help="interleave: end the epoch when the first or the last source runs out")
    rsp_probability: float = field(0.8, help="rsp: probability that a real row brings a fake row into its batch")
    two_phase_epochs: int = field(10, help="two-phase: epochs of real-only fine-tuning after --epochs mixed ones")
    two_phase_lr_factor: float = field(0.1, help="two-phase: learning-rate multiplier of the fine-tuning phase")
    # -- model -----------------------------------------------------------------------------------
    model: str | None = field(None, choices=(None, *MODEL_NAMES),
                              help="network; default: rescsrnet (counting), guidedepth (depth), resnet18 "
                                   "(classification)")
    pretrained: str | None = field(None, help="ImageNet backbone (safetensors, torchvision keys): file, folder, "
                                              "Hub id, or 'imagenet' for the default Hub weights; none: random init")
    pretrained_revision: str | None = field(None, help="revision of a Hub --pretrained")
    width_div: int = field(1, help="divide every channel width by this (tiny models for tests)")
    cifar_stem: bool | None = field(None, help="resnet18: 3x3 stem without max-pool; default: on when the real "
                                               "images are at most 64 px")
    weights: str | None = field(None, help="start from these model weights (.safetensors); with --epochs 0 the "
                                           "run only evaluates them")
    # -- recipe ----------------------------------------------------------------------------------
    epochs: int = field(500, help="training epochs (phase 1 for two-phase); the paper trains 500")
    lr: float | None = field(None, help="learning rate; when unset every value of --lr-grid is tried and the "
                                        "best on the validation split is kept")
    lr_grid: tuple[float, ...] = field(PAPER_LR_GRID, help="learning rates searched when --lr is unset")
    lr_decay: float = field(0.99, help="learning-rate multiplier applied after every epoch")
    weight_decay: float = field(1e-4, help="AdamW weight decay")
    batch_size: int = field(1, help="images per batch per process (1 handles images of any size)")
    grad_accumulation: int = field(1, help="batches per optimizer step")
    crop_size: int | None = field(None, help="random square crops of this size for training (counting/depth; "
                                             "a multiple of the output stride); none: whole images")
    image_size: int | None = field(None, help="classification: resize images to this square size")
    hflip: bool = field(True, help="random horizontal flips in training")
    density_sigma: float = field(4.0, help="counting: Gaussian sigma (pixels) of the real rows' density maps")
    density_kernel_size: int | None = field(15, help="counting: Gaussian kernel size (15 in the paper); "
                                                     "none: 4 sigma each side")
    max_depth: float = field(10.0, help="depth: largest depth in metres (model output range and metric mask)")
    min_depth: float = field(1e-3, help="depth: smallest valid depth in metres (metric mask)")
    seed: int = field(42, help="seed of weights, mixing and augmentation (the paper's is 42)")
    eval_every: int = field(1, help="evaluate the validation split every N epochs")
    max_steps: int | None = field(None, help="stop each run after this many optimizer steps (smoke tests)")
    # -- run time --------------------------------------------------------------------------------
    output_dir: str = field("", help="folder for metrics.json, config.yaml, checkpoints and logs", runtime=True)
    eval_batch_size: int = field(1, help="images per evaluation batch per process", runtime=True)
    num_workers: int = field(0, help="DataLoader worker processes", runtime=True)
    save_every: int = field(1, help="save a resumable checkpoint every N epochs", runtime=True)
    keep_checkpoints: int = field(1, help="resumable checkpoints kept per learning rate", runtime=True)
    resume: bool = field(False, help="continue the run in --output-dir from its last checkpoint", runtime=True)
    overwrite: bool = field(False, help="start again even if --output-dir holds a run", runtime=True)
    report_to: str = field("auto", choices=REPORT_TO, help="accelerate trackers; auto: tensorboard when installed",
                           runtime=True)
    mixed_precision: str = field("auto", choices=PRECISIONS, help="auto: bf16 (or fp16) on CUDA, none on CPU",
                                 runtime=True)
    cpu: bool = field(False, help="train on the CPU even when a GPU is present", runtime=True)

    def __post_init__(self) -> None:
        if self.model is None and self.task in DEFAULT_MODEL:
            self.model = DEFAULT_MODEL[self.task]
        if isinstance(self.lr_grid, list):
            self.lr_grid = tuple(self.lr_grid)
        super().__post_init__()

    def validate(self) -> None:
        if not self.real:
            self.fail("real", "a Hub id or local folder of the real dataset (--real)")
        if not self.output_dir:
            self.fail("output_dir", "a folder for the run's outputs (--output-dir)")
        if MODEL_TASKS[self.model] != self.task:
            allowed = ", ".join(n for n, t in MODEL_TASKS.items() if t == self.task)
            self.fail("model", f"a {self.task} model ({allowed})")
        if self.mixing != "none" and not self.fake:
            self.fail("fake", f"a fake dataset (--fake) for mixing {self.mixing!r}")
        for name in ("epochs", "two_phase_epochs"):
            if getattr(self, name) < 0:
                self.fail(name, "an integer >= 0")
        for name in ("batch_size", "grad_accumulation", "eval_batch_size", "eval_every", "save_every",
                     "keep_checkpoints", "width_div"):
            if getattr(self, name) < 1:
                self.fail(name, "an integer >= 1")
        if self.num_workers < 0:
            self.fail("num_workers", "an integer >= 0")
        if self.lr is not None and not self.lr > 0:
            self.fail("lr", "a positive learning rate")
        if self.lr is None and (not self.lr_grid or any(not lr > 0 for lr in self.lr_grid)):
            self.fail("lr_grid", "one or more positive learning rates")
        if not 0 < self.lr_decay <= 1:
            self.fail("lr_decay", "a factor in (0, 1]")
        if self.weight_decay < 0:
            self.fail("weight_decay", "a non-negative number")
        if self.two_phase_lr_factor <= 0:
            self.fail("two_phase_lr_factor", "a positive factor")
        if self.max_steps is not None and self.max_steps < 1:
            self.fail("max_steps", "an integer >= 1 (or unset)")
        if self.crop_size is not None:
            stride = 8 if self.task == "counting" else 1
            if self.crop_size < 1 or self.crop_size % stride:
                self.fail("crop_size", f"a positive multiple of the model's output stride ({stride})")
        if self.image_size is not None and self.image_size < 1:
            self.fail("image_size", "a positive size in pixels")
        if self.density_sigma <= 0:
            self.fail("density_sigma", "a positive sigma in pixels")
        if self.density_kernel_size is not None and self.density_kernel_size < 1:
            self.fail("density_kernel_size", "a positive kernel size (or unset)")
        if not 0 < self.min_depth < self.max_depth:
            self.fail("max_depth", f"a depth above min_depth ({self.min_depth})")
        self.mixing_spec()  # checks r_mix and the probabilities

    def mixing_spec(self) -> MixingSpec:
        return MixingSpec(strategy=self.mixing, r_mix=self.r_mix, interleave_probability=self.interleave_probability,
                          interleave_stopping=self.interleave_stopping, rsp_probability=self.rsp_probability,
                          epochs=self.epochs, two_phase_epochs=self.two_phase_epochs,
                          two_phase_lr_factor=self.two_phase_lr_factor)

    def resume_hash(self) -> str:
        """Hash of every result-changing setting but the length ones (:data:`LENGTH_SETTINGS`): a run whose
        checkpoints were made with the same resume hash can be continued to more epochs."""
        d = self.hashed_dict()
        for k in LENGTH_SETTINGS:
            d.pop(k, None)
        return stable_hash(d)

    def learning_rates(self) -> list[float]:
        return [self.lr] if self.lr is not None else list(self.lr_grid)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)


# -- command line --------------------------------------------------------------------------------------
_FLAG_ALIASES = {"output_dir": ["--out"]}


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(inner type, is_optional) of an annotation such as ``int | None``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def add_config_arguments(parser: argparse.ArgumentParser, *, skip: Sequence[str] = ("task",)) -> None:
    """One flag per :class:`TrainConfig` field, default ``SUPPRESS`` (so YAML values survive), plus ``--config``."""
    parser.add_argument("--config", metavar="YAML", help="YAML file of settings (field names as keys); "
                                                         "flags override it")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flags = [f"--{f.name.replace('_', '-')}", *_FLAG_ALIASES.get(f.name, [])]
        kind, optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "")
        if default not in (None, "", ()):
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS, "dest": f.name}
        choices = [c for c in f.metadata.get("choices", ()) if c is not None]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            kwargs.update(nargs="+", type=float, metavar="LR")
        else:
            kwargs["type"] = kind if kind in (int, float) else str
            if choices:
                kwargs["choices"] = choices
            kwargs["metavar"] = f.name.upper() if not choices else None
            if kwargs["metavar"] is None:
                del kwargs["metavar"]
        parser.add_argument(*flags, **kwargs)


def config_from_args(args: argparse.Namespace, *, task: str) -> TrainConfig:
    """YAML (``--config``) overridden by the flags given; ``task`` comes from the entry script."""
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        loaded = read_yaml_mapping(args.config)
        data.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    if data.get("task", task) != task:
        raise ConfigError(f"task: this script trains a {task} model but the config file says {data['task']!r}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    data.update({k: v for k, v in vars(args).items() if k in names})
    data["task"] = task
    return TrainConfig.from_dict(data)


def build_parser(task: str, *, prog: str | None = None, description: str = "",
                 epilog: str = "") -> argparse.ArgumentParser:
    """The argument parser of a training script for ``task`` (every TrainConfig flag but --task)."""
    description = description or f"Train a {task} network on real + fake data."
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    return parser
