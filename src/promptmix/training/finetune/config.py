"""``FinetuneConfig``: the settings of stage ``finetune`` (MVC fine-tuning of the generator)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ...config import StageConfig, field
from ...errors import ConfigError
from ...generation.mvc import FINE_MAX_SPAN, MVCConfig
from ...utils.hashing import stable_hash
from ..train.config import REPORT_TO

#: Settings a run may change when it resumes from a checkpoint (everything else must match).
RESUMABLE_CHANGES = ("epochs", "max_train_steps")


# -- config ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FinetuneConfig(StageConfig):
    """Fine-tuning of the image-conditioned MVC generator (``training/finetune_mvc.py``, ``finetune:`` section)."""

    _section: ClassVar[str] = "finetune"

    captions: str = field("", help="captions of the real train split: a run folder (RUN, with captions/) or its "
                                   "captions/ folder, as `promptmix caption` writes it")
    output_dir: str = field("", runtime=True,
                            help="folder of the fine-tuned pipeline, its checkpoints, pairs and loss curve")
    real: str | None = field(None, help="real dataset (folder or Hub id, `promptmix real` layout) whose train split "
                                        "is paired; default: the one recorded with the captions")
    real_revision: str | None = field(None, help="Hub revision of `real`")
    split: str = field("train", help="split of the real dataset to fine-tune on")
    base_model: str = field("stable-diffusion-v1-5/stable-diffusion-v1-5",
                            help="Stable Diffusion pipeline to start from (Hub id or folder); an InstructPix2Pix "
                                 "pipeline (8 input channels) is fine-tuned as it is")
    base_revision: str | None = field(None, help="Hub revision of base_model")
    # MVC text conditioning (the same settings `promptmix generate` uses with `mvc:`)
    coarse: int = field(1, help="P: coarse mixes per text embedding (token rows r..s from another caption)")
    fine: int = field(1, help="Q: fine mixes per text embedding (elements u..v of one row from another caption)")
    fine_max_span: int | None = field(FINE_MAX_SPAN, help="most elements one fine mix replaces (supplement: 'less "
                                                          "than 10'); null = any u < v")
    caption_prefix: str = field("This is an image of {label}", help="sentence put before each caption "
                                                                    "({label} = class name)")
    prefix_separator: str = field(". ", help="text between the prefix sentence and the caption")
    # pairs
    pairs_per_class: int | None = field(None, help="same-class pairs drawn per class (default: as many as the class "
                                                   "has images, as in the supplement)")
    seed: int = field(0, help="seed of the pairs, data order, noise, timesteps, dropout and MVC mixing")
    # images
    resolution: int = field(256, help="side of the square training images (resized, then cropped); a multiple of "
                                      "the model's latent factor (64 for SD 1.x/2.x)")
    center_crop: bool = field(True, help="cut the centre square (false: a random square)")
    random_flip: bool = field(False, help="mirror images left-right at random (leave off for data where "
                                          "left and right differ)")
    # optimisation (paper: Adam, lr 1e-4)
    epochs: int = field(100, help="passes over the pair list (ignored when max_train_steps is set)")
    max_train_steps: int | None = field(None, help="optimisation steps in total; overrides epochs")
    batch_size: int = field(4, help="pairs per batch and process")
    gradient_accumulation_steps: int = field(4, help="batches per optimisation step")
    learning_rate: float = field(1e-4, help="Adam learning rate (paper: 1e-4)")
    adam_beta1: float = field(0.9, help="Adam beta1 (torch default)")
    adam_beta2: float = field(0.999, help="Adam beta2 (torch default)")
    adam_epsilon: float = field(1e-8, help="Adam epsilon (torch default)")
    adam_weight_decay: float = field(0.0, help="Adam L2 weight decay (torch default 0)")
    lr_scheduler: str = field("constant", choices=("constant", "constant_with_warmup", "linear", "cosine"),
                              help="learning-rate schedule")
    lr_warmup_steps: int = field(0, help="warm-up steps of the schedule")
    max_grad_norm: float = field(1.0, help="gradient norm clipping")
    conditioning_dropout_prob: float = field(0.05, help="probability of dropping the text only, the image only, and "
                                                        "both (each), for classifier-free guidance on text and image")
    use_ema: bool = field(False, help="keep an exponential moving average of the U-Net weights and save it as the "
                                      "result (diffusers' EMAModel, as its InstructPix2Pix example)")
    ema_decay: float = field(0.9999, help="largest EMA decay (EMAModel's warm-up (1+t)/(10+t) applies below it); "
                                          "used with use_ema only")
    # run-time settings (no effect on the result)
    checkpointing_steps: int = field(500, runtime=True,
                                     help="save a resumable checkpoint every N steps (and at the end)")
    checkpoints_total_limit: int | None = field(2, runtime=True, help="keep only the newest N checkpoints")
    resume: str = field("latest", runtime=True, help="'latest': continue from the newest checkpoint in output_dir "
                                                     "if any; 'never': start over; or a checkpoint folder")
    mixed_precision: str = field("auto", runtime=True, choices=("auto", "no", "fp16", "bf16"),
                                 help="auto: what `accelerate launch --mixed_precision` says, else fp16 on CUDA "
                                      "and fp32 elsewhere")
    gradient_checkpointing: bool = field(False, runtime=True, help="trade compute for U-Net memory")
    num_workers: int = field(0, runtime=True, help="data-loading worker processes")
    sample_images: int = field(4, runtime=True, help="images generated with the result for samples.png (0: none)")
    sample_steps: int = field(20, runtime=True, help="denoising steps of the samples")
    report_to: str = field("auto", runtime=True, choices=REPORT_TO,
                           help="accelerate trackers for loss and learning rate (in output_dir/logs); auto: "
                                "tensorboard when installed")

    def validate(self) -> None:
        for name in ("captions", "output_dir"):
            if not str(getattr(self, name)).strip():
                self.fail(name, "a folder path")
        for name in ("coarse", "fine", "lr_warmup_steps", "num_workers", "sample_images"):
            if int(getattr(self, name)) < 0:
                self.fail(name, "an integer >= 0")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "checkpointing_steps", "sample_steps"):
            if int(getattr(self, name)) < 1:
                self.fail(name, "an integer >= 1")
        for name in ("pairs_per_class", "max_train_steps", "checkpoints_total_limit"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                self.fail(name, "null or an integer >= 1")
        if self.resolution < 8 or self.resolution % 8:
            self.fail("resolution", "a positive multiple of 8")
        if not self.learning_rate > 0:
            self.fail("learning_rate", "a number > 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                self.fail(name, "a number in [0, 1)")
        if not 0 <= self.conditioning_dropout_prob <= 1 / 3:
            self.fail("conditioning_dropout_prob", "a number in [0, 1/3] (text, image and both are each dropped "
                                                   "with this probability)")
        if self.max_grad_norm <= 0:
            self.fail("max_grad_norm", "a number > 0")
        if not 0 <= self.ema_decay <= 1:
            self.fail("ema_decay", "a number in [0, 1]")
        self.mvc_config()  # checks coarse, fine, fine_max_span, caption_prefix

    def mvc_config(self) -> MVCConfig:
        """The MVC settings as :class:`MVCConfig`, so training mixes exactly as ``promptmix generate`` does."""
        try:
            return MVCConfig(enabled=True, coarse=self.coarse, fine=self.fine, fine_max_span=self.fine_max_span,
                             caption_prefix=self.caption_prefix, prefix_separator=self.prefix_separator)
        except ConfigError as exc:
            raise ConfigError(f"{self._section}.{exc}") from None

    def hashed_dict(self) -> dict[str, Any]:
        """The settings that change results; the EMA settings only count with ``use_ema`` (so runs made before
        they existed, or without EMA, keep their hash whatever ``ema_decay`` says)."""
        d = super().hashed_dict()
        if not self.use_ema:
            d.pop("use_ema", None)
            d.pop("ema_decay", None)
        return d

    def resume_hash(self) -> str:
        """Hash of the settings a checkpoint must share with the run that resumes from it."""
        d = self.hashed_dict()
        for k in RESUMABLE_CHANGES:
            d.pop(k, None)
        return stable_hash(d)
