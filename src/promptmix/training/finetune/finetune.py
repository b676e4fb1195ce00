"""Fine-tune a Stable Diffusion U-Net for Mixing Visual Concepts (MVC paper, Sec. 3.3 and Fig. 3).

The U-Net's input layer is widened from 4 to 8 channels: the noisy latent of a training image and
the VAE latent of another image *of the same class* (the conditioning image). The extra weights
start at zero, as InstructPix2Pix does, so before training the model is exactly the base model.
Text conditioning is a new embedding mixed by Algorithm 1 (:mod:`promptmix.generation.mvc`) from
the caption embeddings of the class ("This is an image of <label>. <caption>"). The loss is the
MSE between the predicted and the true noise. With probability ``conditioning_dropout_prob`` each
the text, the image, or both are dropped (null text embedding, zero image latent), so classifier-
free guidance works for text and image at generation time (InstructPix2Pix, Sec. 3.2.1).

The result is a ``StableDiffusionInstructPix2PixPipeline`` folder, which ``promptmix generate``
uses as an image-conditioned generator::

    OUTPUT/
      model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/   the fine-tuned pipeline
      README.md            model card (base model, data, settings)
      config.yaml          the FinetuneConfig used
      training.json        status, steps done, config hash, class names, base model record
      pairs.parquet        same-class (conditioning, target) index pairs (schema.MVC_PAIRS)
      losses.json          loss and learning rate of every optimisation step
      loss_curve.png       the loss curve
      samples.png          a few conditioning images and images generated from them
      checkpoints/checkpoint-STEP/   accelerate state (model, optimizer, scheduler) + losses, to resume
                           (+ unet_ema/ with ``use_ema``: EMAModel.save_pretrained)
      logs/                tracker logs of loss and learning rate (``report_to``; tensorboard when installed)

With ``use_ema`` the run keeps an exponential moving average of the U-Net weights (diffusers'
``EMAModel``, stepped after every optimisation step, as diffusers' InstructPix2Pix example does); it is
checkpointed and restored with the rest of the state, and the saved pipeline holds the averaged weights.

Run it with ``accelerate launch training/finetune_mvc.py --config CONFIG.yaml`` (any number of
GPUs; fp16 mixed precision on CUDA, fp32 on CPU) or call :func:`finetune_mvc`. An interrupted run
resumes from its newest checkpoint; a finished one is not trained again unless a setting changes
(raising ``max_train_steps`` continues from the last step).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ... import schema
from ...errors import CheckpointError, ConfigError, InputError, ModelLoadError
from ...generation.mvc import MVCConfig, encode_texts
from ...run_folder import RunFolder
from ...utils.checkpoints import save_checkpoint
from ...utils.device import pick_device, pick_dtype
from ...utils.hashing import stable_hash
from ...utils.io import atomic_path, render_readme, write_json_atomic, write_text_atomic
from ...utils.model_source import ModelSource, resolve_model
from ...utils.progress import progress
from ..train.trainer import _trackers
from .config import RESUMABLE_CHANGES, FinetuneConfig
from .pairs import (PAIRS_FILE, EpochShuffleSampler, PairDataset, collate_pairs, image_to_tensor, load_pairs,
                    make_pairs, save_pairs)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
STATE_FILE = "training.json"
LOSSES_FILE = "losses.json"
LOSS_CURVE_FILE = "loss_curve.png"
SAMPLES_FILE = "samples.png"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "checkpoint-"
EMA_DIR = "unet_ema"  # EMAModel.save_pretrained / from_pretrained, as diffusers' training examples
LOGS_DIR = "logs"
PIPELINE_ENTRIES = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
STAGE = "finetune"
# -- model surgery and losses ---------------------------------------------------------------------------
def expand_conv_in(unet, in_channels: int = 8):
    """Widen ``unet.conv_in`` to ``in_channels`` inputs; the new input weights are zero (InstructPix2Pix).

    The first ``unet.conv_in.in_channels`` input channels keep their pretrained weights, so the widened
    U-Net's output equals the original's for any extra input. A U-Net that already has
    ``in_channels`` inputs is returned unchanged.
    """
    old = unet.conv_in
    if old.in_channels == in_channels:
        return unet
    if old.in_channels > in_channels:
        raise ModelLoadError(f"the U-Net already has {old.in_channels} input channels; expected at most {in_channels}")
    new = torch.nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                          device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels].copy_(old.weight)
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def conditioning_dropout_masks(random_p: torch.Tensor, prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """InstructPix2Pix's conditioning dropout from one uniform draw per sample.

    ``p < prob``: text dropped; ``prob <= p < 2 prob``: text and image dropped; ``2 prob <= p < 3 prob``:
    image dropped. Returns boolean ``(drop_text, drop_image)`` masks.
    """
    drop_text = random_p < 2 * prob
    drop_image = (random_p >= prob) & (random_p < 3 * prob)
    return drop_text, drop_image


def batch_seed(seed: int, epoch: int, batch_index: int, process_index: int) -> int:
    """The seed of one batch: noise, timesteps, dropout and MVC mixing are drawn from it alone."""
    return int(stable_hash(["mvc-finetune", int(seed), int(epoch), int(batch_index), int(process_index)]), 16) % (2**63)


class CaptionBank:
    """Per class, the embeddings of its captions (with the class prefix) that MVC mixes.

    Embeddings live on the CPU in the text encoder's dtype; :meth:`sample` mixes one new embedding.
    """

    def __init__(self, embeddings: dict[int, torch.Tensor], mvc: MVCConfig, texts: dict[int, list[str]] | None = None):
        self.embeddings = embeddings
        self.mvc = mvc
        self.texts = texts or {}

    @classmethod
    def build(cls, captions, class_names: Sequence[str], mvc: MVCConfig, tokenizer, text_encoder, device, *,
              labels_needed: Sequence[int] = (), where: str = "captions") -> "CaptionBank":
        by_class: dict[int, list[str]] = {}
        for caption, label in zip(captions[schema.CAPTION], captions[schema.LABEL]):
            caption = str(caption or "").strip()
            if label is None or not caption or caption in by_class.get(int(label), ()):
                continue  # a caption repeated within a class is embedded once, as `promptmix generate` does
            by_class.setdefault(int(label), []).append(caption)
        mixing = mvc.coarse > 0 or mvc.fine > 0
        for y in sorted(set(int(v) for v in labels_needed)):
            n = len(by_class.get(y, []))
            name = class_names[y] if 0 <= y < len(class_names) else str(y)
            if n == 0:
                raise InputError(f"class {name!r} (label {y}) has training images but no captions in {where}; "
                                 "caption every class (`promptmix caption`) before fine-tuning")
            if mixing and n < 2:
                raise InputError(f"class {name!r} (label {y}) has 1 distinct caption in {where}; MVC mixing needs at "
                                 "least 2 per class: caption more images of the class, or set coarse: 0 and fine: 0")
        embeddings, texts = {}, {}
        for y, caps in progress(sorted(by_class.items()), desc="embedding captions", unit="class"):
            if y >= len(class_names):
                raise InputError(f"{where}: label {y} is out of range for the {len(class_names)} classes "
                                 f"{list(class_names)}")
            texts[y] = mvc.class_texts(caps, class_names[y])
            embeddings[y] = encode_texts(tokenizer, text_encoder, texts[y], device).cpu()
        return cls(embeddings, mvc, texts)

    def sample(self, label: int, *, seed: int) -> tuple[torch.Tensor, dict]:
        return self.mvc.mix(self.embeddings[int(label)], seed=seed)


def mvc_training_loss(batch: dict, *, unet, vae, noise_scheduler, bank: CaptionBank, null_embedding: torch.Tensor,
                      dropout_prob: float, seed: int, weight_dtype: torch.dtype) -> torch.Tensor:
    """The MSE noise-prediction loss of one batch of pairs (MVC Eq. 4 with InstructPix2Pix conditioning)."""
    device = null_embedding.device
    target_pixels = batch["target_pixel_values"].to(device, weight_dtype)
    cond_pixels = batch["conditioning_pixel_values"].to(device, weight_dtype)
    labels = batch[schema.LABEL].tolist()
    bsz = target_pixels.shape[0]
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        latents = vae.encode(target_pixels).latent_dist.sample(generator=generator) * vae.config.scaling_factor
        cond_latents = vae.encode(cond_pixels).latent_dist.mode()
        text = torch.stack([bank.sample(y, seed=seed + j)[0] for j, y in enumerate(labels)]).to(device, weight_dtype)
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,), generator=generator,
                              device=device).long()
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if dropout_prob > 0:
        drop_text, drop_image = conditioning_dropout_masks(torch.rand(bsz, generator=generator, device=device),
                                                           dropout_prob)
        text = torch.where(drop_text.reshape(bsz, 1, 1), null_embedding.to(text.dtype).unsqueeze(0), text)
        cond_latents = cond_latents * (~drop_image).to(cond_latents.dtype).reshape(bsz, 1, 1, 1)
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ModelLoadError("scheduler prediction_type: expected 'epsilon' or 'v_prediction'; "
                             f"got {prediction_type!r}")
    model_input = torch.cat([noisy, cond_latents.to(noisy.dtype)], dim=1)
    pred = unet(model_input, timesteps, text).sample
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


# -- inputs ----------------------------------------------------------------------------------------------
def _captions_dir(path: str | Path) -> Path:
    path = Path(path)
    for candidate in (path, RunFolder(path).captions):
        if (candidate / "captions.parquet").is_file():
            return candidate
    raise InputError(f"{path}: expected a run folder with captions/captions.parquet or a captions folder; found "
                     "neither. Caption the real dataset first: `promptmix caption --real DIR --model ID --out RUN`")


def load_captions(path: str | Path) -> tuple[Any, dict, Path]:
    """``(captions dataset, info.json, captions folder)`` of a run folder or captions folder."""
    from datasets import Dataset

    folder = _captions_dir(path)
    captions = Dataset.from_parquet(str(folder / "captions.parquet"))
    missing = [c for c in (schema.CAPTION, schema.LABEL) if c not in captions.column_names]
    if missing:
        raise InputError(f"{folder / 'captions.parquet'}: missing column(s) {missing}; "
                         f"expected {list(schema.CAPTIONS)}")
    info = {}
    if (folder / "info.json").is_file():
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    return captions, info, folder


def _load_train_split(config: FinetuneConfig, info: dict):
    """The split to pair, its class names and the dataset reference (default: the one the captions came from)."""
    from ...generation.caption.captioner import load_real_split  # the loader the captions stage used

    recorded = info.get("real") or {}
    if isinstance(recorded, str):
        recorded = {"ref": recorded}
    ref = config.real or recorded.get("ref")
    if not ref:
        raise ConfigError(f"{config._section}.real: no real dataset given and none recorded in the captions' "
                          "info.json; set `real` to the dataset folder or Hub id")
    revision = config.real_revision if config.real else (config.real_revision or recorded.get("revision"))
    real = load_real_split(str(ref), revision, config.split)
    feature = real.features.get(schema.LABEL)
    if feature is None:
        raise InputError(f"real dataset {ref}: split {config.split!r} has no {schema.LABEL!r} column; MVC fine-tuning "
                         "pairs images of the same class (classification datasets only)")
    names = list(getattr(feature, "names", None) or info.get("class_names") or [])
    if not names:
        raise InputError(f"real dataset {ref}: the {schema.LABEL!r} column has no class names")
    return real, names, str(ref)


def load_base_models(base_model: str, revision: str | None = None) -> tuple[dict, ModelSource]:
    """Tokenizer, text encoder, VAE, U-Net (widened to 8 inputs) and DDPM noise scheduler of a SD pipeline."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from ...utils.verbosity import quiet_imported_libraries

    quiet_imported_libraries()  # diffusers' own bars and warnings, unless -v
    source = resolve_model(base_model, revision, what="base model")
    path = source.path
    missing = [d for d in PIPELINE_ENTRIES if source.local and not (Path(path) / d).is_dir()]
    if missing:
        raise ModelLoadError(f"base model {base_model!r}: expected a Stable Diffusion pipeline folder with "
                             f"{', '.join(PIPELINE_ENTRIES)}; missing {', '.join(missing)}")
    try:
        models = {
            "tokenizer": CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"),
            "text_encoder": CLIPTextModel.from_pretrained(path, subfolder="text_encoder", use_safetensors=True),
            "vae": AutoencoderKL.from_pretrained(path, subfolder="vae", use_safetensors=True),
            "unet": UNet2DConditionModel.from_pretrained(path, subfolder="unet", use_safetensors=True),
            "noise_scheduler": DDPMScheduler.from_pretrained(path, subfolder="scheduler"),
        }
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ModelLoadError(f"base model {base_model!r} could not be loaded from {path}: {exc}") from None
    if models["unet"].config.get("addition_embed_type") is not None:
        raise ModelLoadError(f"base model {base_model!r}: its U-Net needs extra conditioning "
                             f"({models['unet'].config.addition_embed_type!r}, e.g. SDXL); MVC fine-tuning takes a "
                             "Stable Diffusion 1.x/2.x pipeline (one CLIP text encoder)")
    expand_conv_in(models["unet"], 8)
    return models, source


def latent_factor(vae, unet) -> int:
    """Image sides must be multiples of this: the VAE's downsampling times the U-Net's."""
    return 2 ** (len(vae.config.block_out_channels) - 1) * 2 ** (len(unet.config.down_block_types) - 1)


# -- checkpoints -----------------------------------------------------------------------------------------
def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(output_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} could not be read ({exc}); delete the checkpoint to start from an older "
                              "one") from None


def _pick_checkpoint(config: FinetuneConfig) -> Path | None:
    if config.resume == "never":
        return None
    if config.resume == "latest":
        found = list_checkpoints(config.output_dir)
        return found[-1] if found else None
    path = Path(config.resume)
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"resume: {path} is not a checkpoint folder (no {STATE_FILE}); expected 'latest', "
                              f"'never' or a folder under {Path(config.output_dir) / CHECKPOINTS_DIR}")
    return path


# -- outputs ---------------------------------------------------------------------------------------------
def plot_loss_curve(losses: Sequence[dict], path: str | Path) -> Path:
    """A PNG of the loss per step (and its running mean when there are many steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps = [r["step"] for r in losses]
    values = [r["loss"] for r in losses]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    many = len(values) > 20
    ax.plot(steps, values, lw=0.8, alpha=0.6 if many else 1.0, label="loss", marker="" if many else "o")
    if many:
        k = max(5, len(values) // 50)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("optimisation step")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("MSE (noise prediction)")
    ax.set_title("MVC fine-tuning loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def _model_card(config: FinetuneConfig, state: dict, base: ModelSource) -> str:
    meta = {"library_name": "diffusers", "pipeline_tag": "image-to-image",
            "tags": ["promptmix", "mixing-visual-concepts", "instruct-pix2pix", "stable-diffusion"]}
    if not base.local:  # the Hub reads base_model as a model id
        meta["base_model"] = config.base_model
    ema = (f"\n- the U-Net weights are an exponential moving average (decay up to {config.ema_decay:g}) of the "
           "trained ones" if config.use_ema else "")
    classes = ", ".join(state["class_names"][:20]) + (" ..." if len(state["class_names"]) > 20 else "")
    body = f"""
# MVC fine-tuned generator

A Stable Diffusion U-Net fine-tuned with *Mixing Visual Concepts* (Al Rahat & Venkateswara): its input takes the
noisy latent and the VAE latent of a conditioning image of the same class (8 channels); its text conditioning is an
embedding mixed from the class's captions (prefix "{config.caption_prefix}").

- base model: `{config.base_model}`{f' (revision {config.base_revision})' if config.base_revision else ''}
- real dataset: `{state['real']}`, split `{config.split}`, {state['num_pairs']} same-class pairs,
  {len(state['class_names'])} classes ({classes})
- {state['global_step']} steps, batch {config.batch_size} x {config.gradient_accumulation_steps} accumulation
  x {state['num_processes']} processes, resolution {config.resolution}
- Adam lr {config.learning_rate:g} (betas {config.adam_beta1:g}, {config.adam_beta2:g}),
  conditioning dropout {config.conditioning_dropout_prob:g}{ema}
- MVC: {config.coarse} coarse and {config.fine} fine mixes per embedding (fine span at most {config.fine_max_span})

All settings: `config.yaml`; loss: `loss_curve.png`; samples: `samples.png`.

```python
from diffusers import StableDiffusionInstructPix2PixPipeline
pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained("{config.output_dir}")
image = pipe("This is an image of <class>. <caption>", image=conditioning_image,
             guidance_scale=7.5, image_guidance_scale=1.5).images[0]
```
or `promptmix generate` with `model:` set to this folder and `mvc: {{enabled: true}}`.
"""
    return render_readme(meta, body)


def save_pipeline(unet, base: ModelSource, output_dir: str | Path) -> Path:
    """Write a ``StableDiffusionInstructPix2PixPipeline`` (trained U-Net + the base's other parts) into ``output_dir``.

    Components are written to a temporary folder, moved in, and ``model_index.json`` goes last, so a
    reader never loads a half-written pipeline.
    """
    from diffusers import StableDiffusionInstructPix2PixPipeline

    output_dir = Path(output_dir)
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        base.path, unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        dtype=torch.float32)
    (output_dir / "model_index.json").unlink(missing_ok=True)
    with atomic_path(output_dir / ".pipeline") as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        for entry in sorted(tmp.iterdir(), key=lambda p: p.name == "model_index.json"):
            target = output_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    return output_dir


def _sample_grid(output_dir: Path, real, pairs, bank: CaptionBank, config: FinetuneConfig, device) -> Path | None:
    """``samples.png``: conditioning images (left) and images the fine-tuned pipeline made from them (right)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    n = min(config.sample_images, len(pairs))
    if n == 0:
        return None
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(str(output_dir), dtype=pick_dtype(None, device))
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    rng = random.Random(config.seed)
    picks = sorted(rng.sample(range(len(pairs)), n))
    size = config.resolution
    grid = Image.new("RGB", (2 * size, n * size), "white")
    for row, i in enumerate(picks):
        label = int(pairs[i][schema.LABEL])
        cond = real[int(pairs[i][schema.CONDITIONING_INDEX])][schema.IMAGE]
        cond_t = image_to_tensor(cond, size, center_crop=True)
        cond_img = Image.fromarray(((cond_t.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8))
        embedding, _ = bank.sample(label, seed=config.seed + row)
        out = pipe(prompt_embeds=embedding.unsqueeze(0).to(device, pipe.unet.dtype), image=cond_img,
                   num_inference_steps=config.sample_steps, guidance_scale=7.5, image_guidance_scale=1.5,
                   generator=torch.Generator(device="cpu").manual_seed(config.seed + row)).images[0]
        grid.paste(cond_img, (0, row * size))
        grid.paste(out.resize((size, size)), (size, row * size))
    with atomic_path(output_dir / SAMPLES_FILE) as tmp:
        grid.save(tmp, format="PNG")
    return output_dir / SAMPLES_FILE


def is_finished(config: FinetuneConfig) -> bool:
    """True when ``output_dir`` holds a finished pipeline trained with exactly these settings."""
    out = Path(config.output_dir)
    if not (out / "model_index.json").is_file() or not (out / STATE_FILE).is_file():
        return False
    try:
        state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return state.get("status") == "finished" and state.get("config_hash") == config.config_hash()


# -- training --------------------------------------------------------------------------------------------
def _mixed_precision(config: FinetuneConfig) -> str | None:
    if config.mixed_precision != "auto":
        return config.mixed_precision
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None  # as given to `accelerate launch`
    return "fp16" if pick_dtype(None, pick_device()) == torch.float16 else "no"


def finetune_mvc(config: FinetuneConfig) -> Path:
    """Fine-tune the MVC generator and return ``config.output_dir`` (a diffusers pipeline folder).

    Works the same in one process and under ``accelerate launch``. Resumes from the newest checkpoint
    (``resume: latest``); returns at once when the folder already holds a finished run with the same
    settings. See the module docstring for what is written.
    """
    if is_finished(config):
        logger.info("%s already holds a finished MVC fine-tuning with these settings", config.output_dir)
        return Path(config.output_dir)
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    out = Path(config.output_dir)
    # cpu=True on machines without an accelerator makes a torchrun / accelerate launch of several
    # processes a gloo process group instead of independent single-process runs
    accelerator = Accelerator(cpu=pick_device().type == "cpu", mixed_precision=_mixed_precision(config),
                              gradient_accumulation_steps=config.gradient_accumulation_steps,
                              log_with=_trackers(config.report_to),
                              project_config=ProjectConfiguration(project_dir=str(out),
                                                                  logging_dir=str(out / LOGS_DIR)))
    try:
        return _Trainer(config, accelerator).run()
    finally:
        accelerator.end_training()
        # free the process-wide accelerate state so later stages of the same process may pick other settings
        AcceleratorState._reset_state()
        GradientState._reset_state()


class _Trainer:
    """One fine-tuning run: :meth:`run` loads the inputs, prepares the models, trains, and writes the outputs."""

    def __init__(self, config: FinetuneConfig, accelerator):
        self.config = config
        self.acc = accelerator
        self.out = Path(config.output_dir)
        self.losses: list[dict] = []
        self.global_step = 0
        self.ema = None

    def run(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_inputs()
        self._prepare()
        self._train()
        self._finish()
        return self.out

    # setup ------------------------------------------------------------------------------------------------
    def _load_inputs(self) -> None:
        """Captions, the real split, the base models, the checkpoint to resume from and the pair list."""
        cfg, acc = self.config, self.acc
        self.captions, info, self.captions_folder = load_captions(cfg.captions)
        self.real, self.class_names, real_ref = _load_train_split(cfg, info)
        self.models, self.base = load_base_models(cfg.base_model, cfg.base_revision)
        factor = latent_factor(self.models["vae"], self.models["unet"])
        if cfg.resolution % factor:
            raise ConfigError(f"{cfg._section}.resolution: expected a multiple of {factor} for {cfg.base_model} "
                              f"(its VAE and U-Net downsample by {factor}); got {cfg.resolution}")
        self.resume_from = _pick_checkpoint(cfg)
        if self.resume_from is not None:
            saved = _read_json(self.resume_from / STATE_FILE)
            if saved.get("resume_hash") != cfg.resume_hash():
                raise CheckpointError(
                    f"checkpoint {self.resume_from} was made with other settings (only {', '.join(RESUMABLE_CHANGES)} "
                    f"may change when resuming); compare {self.out / CONFIG_FILE} with your config, or set resume: "
                    "never (or another output_dir) to start over")
        elif cfg.resume == "never" and acc.is_main_process and (self.out / CHECKPOINTS_DIR).is_dir():
            shutil.rmtree(self.out / CHECKPOINTS_DIR)
        if acc.is_main_process and (self.resume_from is None or not (self.out / PAIRS_FILE).is_file()):
            save_pairs(make_pairs(self.real[schema.LABEL], pairs_per_class=cfg.pairs_per_class, seed=cfg.seed),
                       self.out)
        acc.wait_for_everyone()
        self.pairs = load_pairs(self.out / PAIRS_FILE, num_rows=len(self.real))
        self.state = {"real": real_ref, "class_names": self.class_names, "num_pairs": len(self.pairs),
                      "num_processes": acc.num_processes, "captions": str(self.captions_folder)}

    def _prepare(self) -> None:
        """Caption embeddings, frozen VAE, trainable U-Net, data loader, Adam, schedule; restore a checkpoint."""
        cfg, acc, models = self.config, self.acc, self.models
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
        text_encoder = models.pop("text_encoder").to(acc.device, dtype=self.weight_dtype).requires_grad_(False)
        self.bank = CaptionBank.build(self.captions, self.class_names, cfg.mvc_config(), models["tokenizer"],
                                      text_encoder, acc.device, labels_needed=sorted(set(self.pairs[schema.LABEL])),
                                      where=str(self.captions_folder / "captions.parquet"))
        self.null_embedding = encode_texts(models["tokenizer"], text_encoder, [""], acc.device)[0]
        del text_encoder  # the text encoder is frozen: every embedding it is needed for is computed
        self.vae = models["vae"].to(acc.device, dtype=self.weight_dtype).requires_grad_(False)
        self.noise_scheduler = models["noise_scheduler"]
        unet = models["unet"]
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()

        self.dataset = PairDataset(self.real, self.pairs, resolution=cfg.resolution, center_crop=cfg.center_crop,
                                   random_flip=cfg.random_flip, seed=cfg.seed)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=cfg.batch_size,
                                             sampler=EpochShuffleSampler(len(self.dataset), seed=cfg.seed),
                                             collate_fn=collate_pairs, num_workers=cfg.num_workers)
        optimizer = torch.optim.Adam(unet.parameters(), lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                     eps=cfg.adam_epsilon, weight_decay=cfg.adam_weight_decay)
        from diffusers.optimization import get_scheduler

        self.unet, self.optimizer, self.loader = acc.prepare(unet, optimizer, loader)
        self.updates_per_epoch = math.ceil(len(self.loader) / cfg.gradient_accumulation_steps)
        self.max_steps = cfg.max_train_steps or cfg.epochs * self.updates_per_epoch
        self.lr_scheduler = acc.prepare(get_scheduler(
            cfg.lr_scheduler, self.optimizer, num_warmup_steps=cfg.lr_warmup_steps * acc.num_processes,
            num_training_steps=self.max_steps * acc.num_processes))
        if cfg.use_ema:
            from diffusers.training_utils import EMAModel

            base = acc.unwrap_model(self.unet)
            self.ema = EMAModel(base.parameters(), decay=cfg.ema_decay, model_cls=type(base), model_config=base.config)
            acc.register_save_state_pre_hook(self._save_ema)
        if self.resume_from is not None:
            logger.info("resuming MVC fine-tuning from %s", self.resume_from)
            acc.load_state(str(self.resume_from))
            saved = _read_json(self.resume_from / STATE_FILE)
            self.global_step = int(saved["global_step"])
            self.losses = [r for r in saved.get("losses", []) if r["step"] <= self.global_step]
            if self.ema is not None:
                self._load_ema(self.resume_from / EMA_DIR)
        if acc.is_main_process:
            cfg.save(self.out / CONFIG_FILE)
            self._write_state("running")
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in cfg.hashed_dict().items()}
        acc.init_trackers("promptmix-mvc-finetune", config={**hparams, "config_hash": cfg.config_hash()})

    def _save_ema(self, models, weights, output_dir) -> None:
        """``save_state`` hook: the EMA model (weights and its step counter) with diffusers' own format."""
        if self.acc.is_main_process:
            self.ema.save_pretrained(str(Path(output_dir) / EMA_DIR))

    def _load_ema(self, folder: Path) -> None:
        from diffusers.training_utils import EMAModel

        if not folder.is_dir():
            raise CheckpointError(f"checkpoint {folder.parent} has no {EMA_DIR}/ (use_ema is on); set resume: never to "
                                  "start over")
        try:
            loaded = EMAModel.from_pretrained(str(folder), model_cls=type(self.acc.unwrap_model(self.unet)))
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"cannot read the EMA weights {folder}: {exc!r}") from None
        self.ema.load_state_dict(loaded.state_dict())
        self.ema.to(device=self.acc.device)

    # the loop ---------------------------------------------------------------------------------------------
    def _train(self) -> None:
        cfg, acc, unet = self.config, self.acc, self.unet
        logger.info("MVC fine-tuning: %d pairs, %d classes, %d steps (%d per epoch), from step %d", len(self.pairs),
                    len(self.class_names), self.max_steps, self.updates_per_epoch, self.global_step)
        bar = progress(total=self.max_steps, initial=self.global_step, desc="MVC fine-tuning", unit="step")
        epoch = self.global_step // self.updates_per_epoch
        # each step uses exactly gradient_accumulation_steps batches (the last one of an epoch may use fewer)
        skip_batches = (self.global_step % self.updates_per_epoch) * cfg.gradient_accumulation_steps
        running = 0.0
        while self.global_step < self.max_steps:
            epoch_loader = acc.skip_first_batches(self.loader, skip_batches) if skip_batches else self.loader
            epoch_loader.set_epoch(epoch)  # reaches the sampler (data order) and the dataset (crops, flips)
            for offset, batch in enumerate(epoch_loader):
                with acc.accumulate(unet):
                    loss = mvc_training_loss(
                        batch, unet=unet, vae=self.vae, noise_scheduler=self.noise_scheduler, bank=self.bank,
                        null_embedding=self.null_embedding, dropout_prob=cfg.conditioning_dropout_prob,
                        seed=batch_seed(cfg.seed, epoch, skip_batches + offset, acc.process_index),
                        weight_dtype=self.weight_dtype)
                    running += acc.gather(loss.detach().reshape(1)).mean().item() / cfg.gradient_accumulation_steps
                    acc.backward(loss)
                    if acc.sync_gradients:
                        acc.clip_grad_norm_(unet.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                if not acc.sync_gradients:
                    continue
                self.global_step += 1
                if not math.isfinite(running):
                    raise InputError(f"MVC fine-tuning: the loss became {running} at step {self.global_step}; lower "
                                     "learning_rate, or use mixed_precision: no or bf16")
                if self.ema is not None:
                    self.ema.step(acc.unwrap_model(unet).parameters())
                record = {"loss": running, "lr": float(self.lr_scheduler.get_last_lr()[0])}
                self.losses.append({"step": self.global_step, **record})
                acc.log(record, step=self.global_step)
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}")
                running = 0.0
                if self.global_step % cfg.checkpointing_steps == 0 or self.global_step == self.max_steps:
                    self._checkpoint()
                if self.global_step >= self.max_steps:
                    break
            epoch += 1
            skip_batches = 0
        bar.close()

    # outputs ----------------------------------------------------------------------------------------------
    def _finish(self) -> None:
        """The pipeline, losses, curve, samples, model card, final state and the manifest record."""
        cfg, acc = self.config, self.acc
        acc.wait_for_everyone()
        if acc.is_main_process:
            unet = acc.unwrap_model(self.unet)
            if self.ema is not None:  # training is over: the result is the averaged weights
                self.ema.copy_to(unet.parameters())
            save_pipeline(unet, self.base, self.out)
            write_json_atomic(self.out / LOSSES_FILE, self.losses)
            if self.losses:
                plot_loss_curve(self.losses, self.out / LOSS_CURVE_FILE)
            _sample_grid(self.out, self.real, self.pairs, self.bank, cfg, acc.device)
            card = _model_card(cfg, {**self.state, "global_step": self.global_step}, self.base)
            write_text_atomic(self.out / "README.md", card)
            self._write_state("finished")
            RunFolder(self.captions_folder.parent).record_stage(STAGE, {
                "config": cfg.to_dict(), "config_hash": cfg.config_hash(), "out": str(self.out),
                "models": {"base": self.base.record()}, "steps": self.global_step, "pairs": len(self.pairs),
                "final_loss": self.losses[-1]["loss"] if self.losses else None})
            logger.info("MVC fine-tuned pipeline written to %s", self.out)
        acc.wait_for_everyone()

    def _write_state(self, status: str) -> None:
        write_json_atomic(self.out / STATE_FILE, {
            "status": status, "global_step": self.global_step, "max_train_steps": self.max_steps,
            "config_hash": self.config.config_hash(), "resume_hash": self.config.resume_hash(),
            "base_model": self.base.record(), **self.state})

    def _checkpoint(self) -> None:
        """``checkpoints/checkpoint-STEP``: accelerate state + losses; written under a temporary name, then renamed."""
        acc, cfg = self.acc, self.config
        final = self.out / CHECKPOINTS_DIR / f"{CHECKPOINT_PREFIX}{self.global_step}"
        save_checkpoint(acc, final, STATE_FILE, {
            "global_step": self.global_step, "losses": self.losses, "resume_hash": cfg.resume_hash(),
            "config_hash": cfg.config_hash()})
        if acc.is_main_process:
            write_json_atomic(self.out / LOSSES_FILE, self.losses)
            self._write_state("running")
            if cfg.checkpoints_total_limit is not None:
                for old in list_checkpoints(self.out)[:-cfg.checkpoints_total_limit]:
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
