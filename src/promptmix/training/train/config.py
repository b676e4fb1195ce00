"""``TrainConfig``: every setting of a training run, from flags and/or a YAML file.

``training/train_counter.py --config run.yaml --lr 1e-4`` reads ``run.yaml`` (keys are the field
names below) and lets flags override it; the final config is saved to ``OUTPUT/config.yaml``.
Flags are the field names with dashes (``r_mix`` -> ``--r-mix``); booleans take ``--x``/``--no-x``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...config import StageConfig, field
from ...errors import ConfigError
from .recipes import RECIPE_NAMES, resolve_recipe
from ...models import DEFAULT_MODEL, MODEL_NAMES, MODEL_TASKS
from ...schema import TASKS
from ...utils.hashing import stable_hash
from ...models.norm import BN_MODES, resolve_bn_mode

STRATEGIES = ("none", "promptmix", "interleave", "two-phase", "rsp", "fake-only", "swap")


STOPPING_STRATEGIES = ("first_exhausted", "all_exhausted")
STREAMING_STRATEGIES = ("promptmix", "fake-only", "two-phase")  # the ones a streamed fake set supports (an r_mix draw)


@dataclasses.dataclass(frozen=True)
class MixingSpec:
    """The settings a strategy needs (a slice of the training config)."""

    strategy: str = "none"
    r_mix: int | None = None
    interleave_probability: float = 0.5
    interleave_stopping: str = "first_exhausted"
    rsp_probability: float = 0.8
    epochs: int = 1  # phase 1 for two-phase
    two_phase_epochs: int = 0
    two_phase_lr_factor: float = 0.1
    swap_fraction: float = 0.5
    swap_redraw: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"mixing: expected one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        if self.strategy == "promptmix" and self.r_mix is None:
            raise ConfigError("r_mix: mixing 'promptmix' needs the number of fake rows per epoch (--r-mix; "
                              "the paper uses 500 for crowd counting and 1000 for depth); got None")
        if self.r_mix is not None and self.r_mix < 0:
            raise ConfigError(f"r_mix: expected a non-negative integer; got {self.r_mix!r}")
        if self.strategy == "promptmix" and self.r_mix == 0:
            raise ConfigError("r_mix: mixing 'promptmix' with r_mix 0 draws no fake row, so it would train on the "
                              "real rows alone under the promptmix label; give the fake rows per epoch (--r-mix N > 0, "
                              "the paper uses 500 for counting, 1000 for depth) or use --mixing none for a real-only "
                              "baseline")
        for name in ("interleave_probability", "rsp_probability", "swap_fraction"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name}: expected a probability in [0, 1]; got {p!r}")
        if self.interleave_stopping not in STOPPING_STRATEGIES:
            raise ConfigError(f"interleave_stopping: expected one of {STOPPING_STRATEGIES}; "
                              f"got {self.interleave_stopping!r}")

    @property
    def uses_fake(self) -> bool:
        return self.strategy != "none"

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.two_phase_epochs if self.strategy == "two-phase" else 0)

    def phase(self, epoch: int) -> str:
        if self.strategy == "two-phase" and epoch >= self.epochs:
            return "real-finetune"
        return "main"


#: the augmentation policies of promptmix.training.train.augment
AUGMENTS = ("crop-flip", "none", "autoaugment-cifar", "autoaugment-imagenet", "randaugment", "policy-file")
PAPER_LR_GRID = (1e-3, 1e-4, 1e-5, 1e-6)
REPORT_TO = ("auto", "none", "tensorboard", "wandb", "all")
PRECISIONS = ("auto", "no", "fp16", "bf16")
OPTIMIZERS = ("adamw", "adam", "sgd")
LR_SCHEDULES = ("exponential", "cosine", "multistep")
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
    streaming: bool = field(False, runtime=True,
                            help="read the fake dataset by streaming (load_dataset(..., streaming=True)): nothing "
                                 "is downloaded or cached whole, for fake sets bigger than the disk; each epoch's "
                                 "r_mix rows (the same draw as without it) are fetched in one pass over the stream. "
                                 "Needs r_mix and mixing promptmix, fake-only or two-phase")
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
    swap_fraction: float = field(0.5, help="swap: share of the real rows replaced by fake rows of the same class "
                                           "each epoch (the diffusion-augmentation paper's 'swap half': 0.5)")
    swap_redraw: bool = field(True, help="swap: draw the replaced real rows and their fake stand-ins afresh every "
                                         "epoch (--no-swap-redraw: one draw, kept for every epoch)")
    # -- model -----------------------------------------------------------------------------------
    model: str | None = field(None, choices=(None, *MODEL_NAMES),
                              help="network; default: rescsrnet (counting), guidedepth (depth: GuideDepth, "
                                   "DDRNet-23-slim encoder), resnet18 (classification)")
    pretrained: str | None = field(None, help="ImageNet backbone (safetensors, torchvision keys): file, folder, "
                                              "Hub id, or 'imagenet' for the default Hub weights; none: random init")
    pretrained_revision: str | None = field(None, help="revision of a Hub --pretrained")
    width_div: int = field(1, help="divide every channel width by this (tiny models for tests)")
    cifar_stem: bool | None = field(None, help="resnet18: 3x3 stem without max-pool; default: on when the real "
                                               "images are at most 64 px")
    weights: str | None = field(None, help="start from these model weights (.safetensors); with --epochs 0 the "
                                           "run only evaluates them")
    bn: str = field("auto", choices=BN_MODES,
                    help="BatchNorm in training: 'train' normalises by each batch (its running statistics updated), "
                         "'frozen' by the running statistics, never updated, scale and shift still trained "
                         "(mmcv's norm_eval; for batch size 1); auto: frozen when batch_size is 1, else train")
    # -- recipe ----------------------------------------------------------------------------------
    recipe: str = field("promptmix", choices=RECIPE_NAMES,
                        help="named preset of optimiser, schedule and augmentation (promptmix.training.train."
                             "recipes): promptmix (AdamW, x0.99/epoch), autoaugment-cifar, randaugment-cifar, "
                             "fast-autoaugment-cifar, caltech101-adam, brain-tumour-adam, brain-tumour-efficientnet; "
                             "the recipe settings below left unset take the preset's values")
    epochs: int = field(500, help="training epochs (phase 1 for two-phase); the paper trains 500")
    lr: float | None = field(None, help="learning rate; unset: the recipe's, or (recipe promptmix) every value of "
                                        "--lr-grid is tried and the best on the validation split is kept")
    lr_grid: tuple[float, ...] = field(PAPER_LR_GRID, help="learning rates searched when --lr is unset")
    optimizer: str | None = field(None, choices=(None, *OPTIMIZERS),
                                  help="adamw, adam or sgd (recipe promptmix: adamw)")
    momentum: float | None = field(None, help="sgd: momentum (recipes: 0.9)")
    nesterov: bool | None = field(None, help="sgd: Nesterov momentum (the CIFAR recipes: on)")
    weight_decay: float | None = field(None, help="weight decay: decoupled for adamw, L2 for adam and sgd "
                                                  "(recipe promptmix: 1e-4)")
    lr_schedule: str | None = field(None, choices=(None, *LR_SCHEDULES),
                                    help="exponential (x lr_decay after every epoch), cosine (to 0 over the epochs "
                                         "of phase 1) or multistep (x lr_gamma at each of lr_milestones)")
    lr_decay: float | None = field(None, help="exponential: learning-rate multiplier applied after every epoch "
                                              "(recipe promptmix: 0.99)")
    lr_milestones: tuple[int, ...] | None = field(None, help="multistep: epochs after which the lr is multiplied "
                                                             "by lr_gamma; empty: half and three quarters of epochs")
    lr_gamma: float | None = field(None, help="multistep: lr factor at each milestone (0.1)")
    batch_size: int = field(1, help="images per batch per process (1 handles images of any size)")
    grad_accumulation: int = field(1, help="batches per optimizer step")
    crop_size: int | None = field(None, help="random square crops of this size for training (counting/depth; "
                                             "a multiple of the output stride); none: whole images")
    image_size: int | None = field(None, help="classification: resize images to this square size")
    hflip: bool = field(True, help="random horizontal flips in training")
    augment: str | None = field(None, choices=(None, *AUGMENTS),
                                help="classification: crop-flip (pad 4 px + random crop, or --crop-size), none, "
                                     "autoaugment-cifar, autoaugment-imagenet, randaugment or policy-file (a searched "
                                     "policy, --augment-policy), each followed by crop and flip "
                                     "(promptmix.training.train.augment)")
    augment_policy: str | None = field(None, help="policy-file: JSON list of sub-policies [[op, probability, level "
                                                  "in [0, 1]], ...] (Fast AutoAugment's format)")
    randaugment_ops: int | None = field(None, help="randaugment: operations per image, N")
    randaugment_magnitude: float | None = field(None, help="randaugment: magnitude M on the paper's 0-10 scale")
    cutout: int | None = field(None, help="classification: side in pixels of the Cutout square zeroed in every "
                                          "training image (0: off; the CIFAR recipes: 16)")
    density_sigma: float = field(4.0, help="counting: Gaussian sigma (pixels) of the real rows' density maps")
    density_kernel_size: int | None = field(15, help="counting: Gaussian kernel size (15 in the paper); "
                                                     "none: 4 sigma each side")
    density_kernel: str = field("fixed", choices=("fixed", "box"),
                                help="counting: fixed (every head: sigma --density-sigma, kernel --density-kernel-"
                                     "size) or box (each person's Gaussian matched to its box, PANDA-Crowd; needs a "
                                     "real dataset with a boxes column, promptmix.density.box_density_map)")
    max_depth: float = field(10.0, help="depth: largest depth in metres (model output range and metric mask)")
    min_depth: float = field(1e-3, help="depth: smallest valid depth in metres (metric mask)")
    seed: int = field(42, help="seed of weights, mixing and augmentation (the paper's is 42)")
    eval_every: int = field(1, help="evaluate the validation split every N epochs")
    max_steps: int | None = field(None, help="stop each run after this many optimizer steps (smoke tests)")
    # -- run time --------------------------------------------------------------------------------
    output_dir: str = field("", help="folder for metrics.json, config.yaml, checkpoints and logs", runtime=True,
                            flags=("--out",))
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
        if isinstance(self.lr_milestones, list):
            self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        if self.recipe in RECIPE_NAMES:
            resolve_recipe(self)  # unset recipe settings take the preset's values
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
        if not 0 <= self.momentum < 1:
            self.fail("momentum", "a momentum in [0, 1)")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            self.fail("nesterov", "false unless optimizer is sgd with a momentum > 0")
        if not 0 < self.lr_gamma <= 1:
            self.fail("lr_gamma", "a factor in (0, 1]")
        if any(m < 1 for m in self.lr_milestones) or list(self.lr_milestones) != sorted(set(self.lr_milestones)):
            self.fail("lr_milestones", "increasing epochs >= 1 (or empty)")
        if self.task != "classification" and (self.augment not in ("crop-flip", "none") or self.cutout):
            self.fail("augment", f"crop-flip for a {self.task} run (AutoAugment, RandAugment and Cutout are for "
                                 "classification)")
        if self.augment == "policy-file" and not self.augment_policy:
            self.fail("augment_policy", "a JSON policy file for augment: policy-file")
        if self.augment_policy and self.augment != "policy-file":
            self.fail("augment_policy", "nothing unless augment is policy-file")
        if self.randaugment_ops < 1:
            self.fail("randaugment_ops", "an integer >= 1")
        if not 0 <= self.randaugment_magnitude <= 30:
            self.fail("randaugment_magnitude", "a magnitude in [0, 30] (the paper's scale is 0-10)")
        if self.cutout < 0:
            self.fail("cutout", "a side in pixels >= 0")
        if self.two_phase_lr_factor <= 0:
            self.fail("two_phase_lr_factor", "a positive factor")
        if self.max_steps is not None and self.max_steps < 1:
            self.fail("max_steps", "an integer >= 1 (or unset)")
        if self.crop_size is not None:
            from ...tasks import get_task

            stride = get_task(self.task).crop_multiple
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
        if self.streaming and (self.mixing not in STREAMING_STRATEGIES or self.r_mix is None):
            self.fail("streaming", f"false unless mixing is one of {', '.join(STREAMING_STRATEGIES)} with r_mix set "
                                   f"(a streamed fake set is read by a per-epoch draw of r_mix rows); got mixing "
                                   f"{self.mixing!r}, r_mix {self.r_mix!r}")
        self.mixing_spec()  # checks r_mix and the probabilities

    def mixing_spec(self) -> MixingSpec:
        return MixingSpec(strategy=self.mixing, r_mix=self.r_mix, interleave_probability=self.interleave_probability,
                          interleave_stopping=self.interleave_stopping, rsp_probability=self.rsp_probability,
                          epochs=self.epochs, two_phase_epochs=self.two_phase_epochs,
                          two_phase_lr_factor=self.two_phase_lr_factor, swap_fraction=self.swap_fraction,
                          swap_redraw=self.swap_redraw)

    def resume_hash(self) -> str:
        """Hash of every result-changing setting but the length ones (:data:`LENGTH_SETTINGS`): a run whose
        checkpoints were made with the same resume hash can be continued to more epochs."""
        d = self.hashed_dict()
        for k in LENGTH_SETTINGS:
            d.pop(k, None)
        return stable_hash(d)

    @property
    def bn_mode(self) -> str:
        """``bn`` with ``auto`` resolved: ``train`` or ``frozen``."""
        return resolve_bn_mode(self.bn, self.batch_size)

    def learning_rates(self) -> list[float]:
        return [self.lr] if self.lr is not None else list(self.lr_grid)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)
