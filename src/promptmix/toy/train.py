"""Training the toy world's models on a CPU: counters, a captioner and a text-to-image pipeline.

Each ``train_*`` function draws its own seeded toy scenes (:mod:`.world`; nothing is downloaded), trains, saves
in the format a released model has, loaded through the same path as one (a counting folder for
``promptmix annotate``, ``save_pretrained`` folders for ``AutoModelForImageTextToText`` and
``AutoPipelineForText2Image``), and returns a :class:`Trained` record for the manifest. The seeds of the
scene streams (:data:`SCENE_SEEDS`) are disjoint from the demo's (``promptmix demo`` draws its real data with
seeds below 1000), so no model ever sees a demo image, and the annotators never see a generated one.

``scripts/train_toy_models.py`` calls them and writes ``promptmix/toy/models/manifest.json``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter

from .world import COLOURS, DENSITIES, PLACES, WorldSettings, scenes

#: scene-stream seeds per model (train, evaluation); all >= 1000, the demo's real data use seeds < 1000
SCENE_SEEDS = {"counter_a": (1001, 1901), "counter_b": (1002, 1902), "captioner": (1003, 1903),
               "sd": (1004, 1904)}
Log = Callable[[str], None]


@dataclasses.dataclass
class Trained:
    """What the manifest records of one trained model."""

    name: str
    kind: str
    folder: Path
    steps: int
    batch_size: int
    seconds: float
    final_loss: float
    settings: dict
    evaluation: dict

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["folder"] = self.folder.name
        return d


def _pixels(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])


def _log_every(step: int, steps: int, every: int) -> bool:
    return step == 1 or step == steps or step % every == 0


def _schedule(opt: torch.optim.Optimizer, steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` of the steps, then cosine decay to 5% of the peak."""
    n_warm = max(1, int(steps * warmup))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        t = (step - n_warm) / max(1, steps - n_warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _begin(out: str | Path, seed: int, name: str) -> tuple[float, Path, np.random.Generator, tuple[int, int]]:
    """Start a training: the clock, the output folder (created), the seeded torch and numpy streams, and the
    model's (train, evaluation) scene seeds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    return time.perf_counter(), out, np.random.default_rng(seed), SCENE_SEEDS[name]


def _step(loss: torch.Tensor, opt, sched, params, clip: float, avg: "_Average", step: int, steps: int, every: int,
          log: Log, label: str, t0: float, last: float) -> float:
    """One optimizer step (gradient clipping, schedule) and, every ``every`` steps, a log line of the mean loss since
    the last one; returns the last logged mean."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()
    avg.add(float(loss.detach()))
    if _log_every(step, steps, every):
        last = avg.pop()
        log(f"{label} step {step}/{steps} loss {last:.4f} ({time.perf_counter() - t0:.0f} s)")
    return last


class _Average:
    def __init__(self) -> None:
        self.total, self.n = 0.0, 0

    def add(self, v: float) -> None:
        self.total, self.n = self.total + v, self.n + 1

    def pop(self) -> float:
        v = self.total / max(1, self.n)
        self.total, self.n = 0.0, 0
        return v


# -- counters ------------------------------------------------------------------------------------------
def degrade(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The counters' augmentation: what a generated image may look like (grey, soft, re-compressed)."""
    if rng.uniform() < 0.25:
        im = im.convert("L")
    im = im.convert("RGB")
    if rng.uniform() < 0.4:
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    if rng.uniform() < 0.5:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(40, 96)))
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return im


def _density_targets(points: list[np.ndarray], size: tuple[int, int], stride: int, sigma: float) -> np.ndarray:
    from ..density import crop_density_target, grid_size

    w, h = size
    grid = (grid_size(h, stride), grid_size(w, stride))
    return np.stack([crop_density_target(p, (h, w), (0, 0, h, w), grid, stride, sigma=sigma) for p in points])


def counter_mae(model: torch.nn.Module, config, images: np.ndarray, counts: np.ndarray, batch: int = 32) -> float:
    """MAE of the predicted count (sum of the density) against ``counts`` on uint8 ``images`` (N, H, W, 3)."""
    from ..models.counting import predict_density

    mean = torch.tensor(config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std).view(1, 3, 1, 1)
    preds = []
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(images[s:s + batch]).permute(0, 3, 1, 2).float() / 255.0
            preds.append(predict_density(model, config, (x - mean) / std).sum(dim=(1, 2)))
    return float(np.abs(torch.cat(preds).numpy() - counts).mean())


def train_counter(out: str | Path, *, architecture: str, steps: int, seed: int, world: WorldSettings,
                  n_scenes: int = 3000, n_eval: int = 200, batch_size: int = 16, lr: float = 3e-4,
                  width_div: int = 4, sigma: float = 2.0, log: Log = print, name: str | None = None) -> Trained:
    """A CSRNet- or DM-Count-layout counter trained on ``n_scenes`` toy scenes (MSE on the stride-8 density
    plus an L1 term on the count), saved as a counting folder (``config.json`` + ``model.safetensors``)."""
    from ..models.counting import CounterConfig, build_counter, save_counter

    name = name or f"counter-{architecture}"
    train_seed, eval_seed = SCENE_SEEDS["counter_a" if architecture == "csrnet" else "counter_b"]
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = list(scenes(train_seed, n_scenes, world))
    evals = list(scenes(eval_seed, n_eval, world))
    config = CounterConfig.default(architecture, width_div=width_div)
    stride = config.output_stride
    model = build_counter(config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    m.bias.zero_()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = _schedule(opt, steps, 0.1)
    mean = torch.tensor(config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std).view(1, 3, 1, 1)
    eval_px = _pixels([s.image for s in evals])
    eval_counts = np.array([s.count for s in evals], dtype=np.float64)
    log(f"[{name}] {architecture} width_div {width_div}: {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{n_scenes} training scenes (seed {train_seed}), {n_eval} evaluation scenes (seed {eval_seed})")
    avg = _Average()
    loss_value = float("nan")
    for step in range(1, steps + 1):
        model.train()
        idx = rng.integers(0, n_scenes, size=batch_size)
        flips = rng.uniform(size=batch_size) < 0.5
        images, points = [], []
        for i, flip in zip(idx, flips):
            im, pts = train[i].image, train[i].points
            if flip:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                pts = np.stack([world.size[0] - pts[:, 0], pts[:, 1]], axis=1) if len(pts) else pts
            images.append(degrade(im, rng))
            points.append(pts)
        x = torch.from_numpy(_pixels(images)).permute(0, 3, 1, 2).float() / 255.0
        target = torch.from_numpy(_density_targets(points, world.size, stride, sigma))
        from ..models.counting import ARCHITECTURES

        pred = ARCHITECTURES[architecture].density(model((x - mean) / std))[:, 0] * config.density_scale
        count_err = (pred.sum(dim=(1, 2)) - target.sum(dim=(1, 2))).abs()
        loss = ((pred - target) ** 2).sum(dim=(1, 2)).mean() + 0.01 * count_err.mean()
        loss_value = _step(loss, opt, sched, model.parameters(), 5.0, avg, step, steps, max(1, steps // 10), log,
                       f"[{name}]", t0, loss_value)
    mae = counter_mae(model, config, eval_px, eval_counts)
    baseline = float(np.abs(eval_counts - np.mean([s.count for s in train])).mean())
    log(f"[{name}] held-out toy MAE {mae:.2f} (predicting the training mean: {baseline:.2f})")
    save_counter(model.eval(), config, out)
    return Trained(name, "counter", Path(out), steps, batch_size, time.perf_counter() - t0, loss_value,
                   {"architecture": architecture, "width_div": width_div, "lr": lr, "sigma": sigma,
                    "n_scenes": n_scenes, "augment": "hflip, grayscale 25%, blur 40%, JPEG q40-95 50%"},
                   {"toy_mae": round(mae, 3), "mean_predictor_mae": round(baseline, 3), "n_eval": n_eval})


# -- captioner -----------------------------------------------------------------------------------------
CAPTION_WORDS = sorted({w for p in PLACES for w in f"{PLACES[p]} {p}".split()}
                       | {w for d in DENSITIES for w in d.split()} | {w for c in COLOURS for w in c.split()}
                       | {"a", "photo", "of"})
BLIP_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")


def train_captioner(out: str | Path, *, steps: int, seed: int, world: WorldSettings, n_scenes: int = 3000,
                    n_eval: int = 200, batch_size: int = 32, lr: float = 1e-3, image_size: int = 64,
                    log: Log = print) -> Trained:
    """A small BLIP (``BlipForConditionalGeneration`` + ``BlipProcessor``) that captions toy scenes in their
    template words; loads like ``Salesforce/blip-image-captioning-base`` (``AutoModelForImageTextToText``)."""
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil,
                              BlipProcessor)

    t0, out, rng, (train_seed, eval_seed) = _begin(out, seed, "captioner")
    tokens = list(BLIP_SPECIAL) + CAPTION_WORDS
    vocab = {t: i for i, t in enumerate(tokens)}
    (out / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(out / "vocab.txt"), do_lower_case=True, bos_token="[DEC]",
                              model_max_length=32)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": image_size, "width": image_size}),
                              tokenizer=tokenizer)
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, encoder_hidden_size=64, max_position_embeddings=32,
                         bos_token_id=vocab["[DEC]"], pad_token_id=vocab["[PAD]"], sep_token_id=vocab["[SEP]"],
                         eos_token_id=vocab["[SEP]"], label_smoothing=0.0),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=8),
        projection_dim=64)
    model = BlipForConditionalGeneration(config)
    train = list(scenes(train_seed, n_scenes, world))
    evals = list(scenes(eval_seed, n_eval, world))
    pixel_cache = processor(images=[s.image.convert("RGB") for s in train], return_tensors="pt")["pixel_values"]

    def ids(text: str) -> list[int]:
        return [vocab["[DEC]"], *tokenizer(text, add_special_tokens=False)["input_ids"], vocab["[SEP]"]]

    caps = [ids(s.caption) for s in train]
    width = max(len(c) for c in caps)
    input_ids = torch.full((n_scenes, width), vocab["[PAD]"], dtype=torch.long)
    for i, c in enumerate(caps):
        input_ids[i, :len(c)] = torch.tensor(c)
    mask = (input_ids != vocab["[PAD]"]).long()
    labels = input_ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = _schedule(opt, steps, 0.1)
    log(f"[captioner] BLIP {sum(p.numel() for p in model.parameters()):,} parameters, {image_size} px, "
        f"vocabulary of {len(tokens)}; {n_scenes} training scenes (seed {train_seed})")
    avg = _Average()
    loss_value = float("nan")
    for step in range(1, steps + 1):
        model.train()
        idx = torch.from_numpy(rng.integers(0, n_scenes, size=batch_size))
        px = pixel_cache[idx]
        flip = torch.from_numpy(rng.uniform(size=batch_size) < 0.5)
        px = torch.where(flip.view(-1, 1, 1, 1), px.flip(-1), px)
        loss = model(pixel_values=px, input_ids=input_ids[idx], attention_mask=mask[idx], labels=labels[idx]).loss
        loss_value = _step(loss, opt, sched, model.parameters(), 1.0, avg, step, steps, max(1, steps // 10), log,
                       "[captioner]", t0, loss_value)
    model.eval()
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    evaluation = evaluate_captioner(out, evals)
    log(f"[captioner] held-out captions: {evaluation['exact']:.1%} exact; place {evaluation['place']:.1%}, "
        f"density {evaluation['density']:.1%}, colour {evaluation['colour']:.1%}")
    return Trained("captioner", "captioner", out, steps, batch_size, time.perf_counter() - t0, loss_value,
                   {"image_size": image_size, "lr": lr, "n_scenes": n_scenes, "vocabulary": len(tokens)}, evaluation)


def evaluate_captioner(folder: str | Path, evals: list) -> dict:
    """Share of held-out scenes whose caption (through the caption stage's own loader) is exactly the template,
    and of those that name the place, density and colour right."""
    from ..generation.caption.captioner import Captioner
    from ..utils.model_source import resolve_model

    captioner = Captioner(resolve_model(folder), device=torch.device("cpu"), dtype=torch.float32, max_new_tokens=16)
    got = captioner([s.image for s in evals])
    exact = np.mean([g == s.caption for g, s in zip(got, evals)])
    place = np.mean([g.endswith(f" {s.place}") for g, s in zip(got, evals)])
    density = np.mean([f" {s.density} " in f" {g} " and (s.density != "crowd" or " large crowd" not in g
                                                          and " sparse crowd" not in g) for g, s in zip(got, evals)])
    colour = np.mean([g.startswith(f"a {s.colour} ") for g, s in zip(got, evals)])
    return {"exact": round(float(exact), 4), "place": round(float(place), 4), "density": round(float(density), 4),
            "colour": round(float(colour), 4), "n_eval": len(evals), "examples": got[:3]}


# -- text-to-image pipeline ----------------------------------------------------------------------------
def word_clip_tokenizer(path: str | Path, words: list[str]):
    """A CLIP byte-level BPE tokenizer (the tiny one of :mod:`promptmix.testing._tokenizers`) whose merges
    spell each of ``words`` as one token, written to ``path`` and loaded back."""
    import json

    from transformers import CLIPTokenizer

    from ..testing._tokenizers import tiny_clip_vocab

    base, _ = tiny_clip_vocab()
    specials = [t for t in base if t.startswith("<|")]
    tokens = [t for t in base if t not in specials]
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        cur = pieces[0]
        for p in pieces[1:]:
            if (cur, p) not in merges:
                merges.append((cur, p))
            cur = cur + p
            if cur not in tokens:
                tokens.append(cur)
    vocab = {t: i for i, t in enumerate(tokens + specials)}  # the special tokens last, as in the tiny tokenizer
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n",
                                     encoding="utf-8")
    CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=32).save_pretrained(str(path))
    return CLIPTokenizer.from_pretrained(str(path))


def _fit_autoencoder(vae, pixels: np.ndarray, steps: int, batch: int, lr: float, factor: int, rng, t0: float,
                     log: Log, what: str, decoder_only: bool = False) -> float:
    """L1 + MSE (+ a small KL term) on random 64x48 crops; with ``decoder_only`` the encoder's latents are fixed
    (its means, no sampling) and only the decoder learns. Returns the last logged loss."""
    n, h, w = pixels.shape[:3]
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = _schedule(opt, steps, 0.05)
    avg = _Average()
    value = float("nan")
    ch, cw = 48, 64
    for step in range(1, steps + 1):
        idx = rng.integers(0, n, size=batch)
        ys = rng.integers(0, h - ch + 1, size=batch) // factor * factor
        xs = rng.integers(0, w - cw + 1, size=batch) // factor * factor
        crop = np.stack([pixels[i, y:y + ch, x:x + cw] for i, y, x in zip(idx, ys, xs)])
        x = torch.from_numpy(crop).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if decoder_only:
            with torch.no_grad():
                z = vae.encode(x).latent_dist.mean
            rec = vae.decode(z).sample
            loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean()
        else:
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample
            kl = post.kl().mean() / (ch * cw * 3)
            loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean() + 1e-4 * kl
        value = _step(loss, opt, sched, params, 1.0, avg, step, steps, max(1, steps // 10), log,
                       f"[sd] {what}", t0, value)
    return value


def _images_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(_pixels(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_generator(out: str | Path, *, vae_steps: int, unet_steps: int, seed: int, world: WorldSettings,
                    n_scenes: int = 4000, vae_batch: int = 16, unet_batch: int = 32, lr: float = 1e-3,
                    cfg_dropout: float = 0.1, vae_channels: tuple[int, ...] = (16, 32, 32),
                    decoder_steps: int = 0, vae_from: str | Path | None = None,
                    unet_from: str | Path | None = None, snr_gamma: float | None = None,
                    log: Log = print) -> Trained:
    """A small Stable Diffusion pipeline trained from scratch on toy scenes and their template captions.

    Two phases: an ``AutoencoderKL`` (scale factor ``2 ** (len(vae_channels) - 1)``, 4 latent channels) on random
    64x48 crops, then the
    ``UNet2DConditionModel`` and ``CLIPTextModel`` together on the frozen autoencoder's latents (epsilon
    prediction, 10% of captions dropped for classifier-free guidance, diffusers' ``EMAModel`` for the saved
    U-Net). Saved as a ``StableDiffusionPipeline`` with a DPM-Solver++ scheduler: ``AutoPipelineForText2Image
    .from_pretrained(out)`` loads it.

    ``unet_from`` (a pipeline folder this function wrote) continues training it: its autoencoder, tokenizer,
    U-Net and text encoder are loaded and only phase 2 runs, for ``unet_steps`` more steps (``vae_from`` and the
    autoencoder settings are then ignored). ``snr_gamma`` weights the loss per timestep by min(SNR, gamma) / SNR
    (Min-SNR, Hang et al. 2023: the high-SNR, low-noise steps stop dominating, which speeds training up);
    ``None`` is the plain epsilon MSE.
    """
    import shutil

    from diffusers import (AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from diffusers.training_utils import EMAModel
    from transformers import CLIPTextModel

    t0, out, rng, (train_seed, eval_seed) = _begin(out, seed, "sd")
    w, h = world.size
    train = list(scenes(train_seed, n_scenes, world))
    pixels = _pixels([s.image for s in train])  # (N, H, W, 3) uint8
    log(f"[sd] {n_scenes} training scenes (seed {train_seed}), {w}x{h}")

    # phase 1: the autoencoder (or a trained one), then its decoder alone (as Stability's sd-vae-ft-mse: sharper
    # images from the same latents)
    if unet_from is not None:
        vae_from, decoder_steps = Path(unet_from) / "vae", 0
    if vae_from is not None:
        vae = AutoencoderKL.from_pretrained(str(vae_from))
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        log(f"[sd] autoencoder from {vae_from} ({sum(p.numel() for p in vae.parameters()):,} parameters)")
        vae_loss = float("nan")
    else:
        factor = 2 ** (len(vae_channels) - 1)
        vae = AutoencoderKL(block_out_channels=tuple(vae_channels), in_channels=3, out_channels=3, latent_channels=4,
                            norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
                            up_block_types=("UpDecoderBlock2D",) * len(vae_channels), layers_per_block=1,
                            sample_size=max(w, h), mid_block_add_attention=False)
        log(f"[sd] autoencoder: {sum(p.numel() for p in vae.parameters()):,} parameters")
        vae_loss = _fit_autoencoder(vae, pixels, vae_steps, vae_batch, lr, factor, rng, t0, log, "autoencoder")
    decoder_loss = float("nan")
    if decoder_steps:
        vae.requires_grad_(False)
        vae.decoder.requires_grad_(True)
        vae.post_quant_conv.requires_grad_(True)
        decoder_loss = _fit_autoencoder(vae, pixels, decoder_steps, vae_batch, lr * 0.5, factor, rng, t0, log,
                                        "decoder", decoder_only=True)
    vae.eval().requires_grad_(False)
    with torch.inference_mode():
        latents = torch.cat([vae.encode(_images_tensor([s.image for s in train[i:i + 64]])).latent_dist.mean
                             for i in range(0, n_scenes, 64)])
        recon = vae.decode(latents[:64]).sample
        psnr = float(-10 * torch.log10(((recon - _images_tensor([s.image for s in train[:64]])) / 2).pow(2).mean()))
    scale = float(vae.config.scaling_factor) if unet_from is not None else float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    latents = latents * scale
    log(f"[sd] latents {tuple(latents.shape[1:])}, scaling_factor {scale:.4f}, reconstruction PSNR {psnr:.1f} dB")

    # phase 2: U-Net + text encoder on the latents
    tok_dir = out / "_tokenizer"
    if unet_from is not None:
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(str(Path(unet_from) / "tokenizer"))
        text_encoder = CLIPTextModel.from_pretrained(str(Path(unet_from) / "text_encoder"))
        unet = UNet2DConditionModel.from_pretrained(str(Path(unet_from) / "unet"))
        log(f"[sd] U-Net, text encoder and tokenizer from {unet_from}: training goes on")
    else:
        tokenizer = word_clip_tokenizer(tok_dir, CAPTION_WORDS)
        text_encoder, unet = _new_denoiser(tokenizer, max(h, w) // factor)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                beta_schedule="scaled_linear", clip_sample=False)
    alphas = noise_sched.alphas_cumprod
    snr = alphas / (1 - alphas)  # per timestep
    captions = [s.caption for s in train]
    enc = tokenizer(captions + [""], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt")["input_ids"]
    caption_ids, empty_ids = enc[:-1], enc[-1:]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = _schedule(opt, unet_steps, 0.05)
    ema = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=True, power=0.75)
    log(f"[sd] U-Net {sum(p.numel() for p in unet.parameters()):,} + text encoder "
        f"{sum(p.numel() for p in text_encoder.parameters()):,} parameters; tokens per caption "
        f"{int((caption_ids != tokenizer.pad_token_id).sum(1).float().mean())}")
    unet_loss = float("nan")
    avg = _Average()
    for step in range(1, unet_steps + 1):
        unet.train()
        text_encoder.train()
        idx = torch.from_numpy(rng.integers(0, n_scenes, size=unet_batch))
        lat = latents[idx]
        flip = torch.from_numpy(rng.uniform(size=unet_batch) < 0.5)
        lat = torch.where(flip.view(-1, 1, 1, 1), lat.flip(-1), lat)
        ids = caption_ids[idx]
        drop = torch.from_numpy(rng.uniform(size=unet_batch) < cfg_dropout)
        ids = torch.where(drop.view(-1, 1), empty_ids, ids)
        noise = torch.randn_like(lat)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (unet_batch,))
        noisy = noise_sched.add_noise(lat, noise, t)
        cond = text_encoder(ids)[0]
        err = (unet(noisy, t, cond).sample - noise).pow(2).mean(dim=(1, 2, 3))
        if snr_gamma:
            err = err * (snr[t].clamp(max=snr_gamma) / snr[t])
        loss = err.mean()
        unet_loss = _step(loss, opt, sched, params, 1.0, avg, step, unet_steps, max(1, unet_steps // 20), log,
                          "[sd] U-Net", t0, unet_loss)
        ema.step(unet.parameters())
    ema.copy_to(unet.parameters())
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                            beta_schedule="scaled_linear", algorithm_type="dpmsolver++",
                                            solver_order=2)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    shutil.rmtree(tok_dir, ignore_errors=True)
    evaluation = {"reconstruction_psnr_db": round(psnr, 2), "autoencoder_final_loss": round(vae_loss, 5),
                  "decoder_final_loss": round(decoder_loss, 5)}
    return Trained("sd", "text-to-image", out, unet_steps, unet_batch, time.perf_counter() - t0, unet_loss,
                   {"vae_steps": 0 if vae_from else vae_steps, "decoder_steps": decoder_steps,
                    "vae_from": str(vae_from) if vae_from else None,
                    "unet_from": str(unet_from) if unet_from else None, "snr_gamma": snr_gamma,
                    "vae_batch": vae_batch, "unet_steps": unet_steps, "lr": lr, "cfg_dropout": cfg_dropout, "n_scenes": n_scenes, "latent_scale_factor": factor, "vae_channels": list(vae_channels),
                    "scaling_factor": round(scale, 6), "ema_decay": 0.999}, evaluation)


def _new_denoiser(tokenizer, sample_size: int):
    """A fresh text encoder and U-Net for :func:`train_generator` (1.4 M + 0.1 M parameters)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length, layer_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=64))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64, 64), layers_per_block=1, sample_size=sample_size,
        in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), cross_attention_dim=64,
        attention_head_dim=8, norm_num_groups=16,
        addition_embed_type="text")  # the caption, attention-pooled, joins the time embedding: every block sees it
    return text_encoder, unet


def sample_grid(folder: str | Path, path: str | Path, *, size: tuple[int, int] = (128, 96), steps: int = 20,
                guidance: float = 3.0, seed: int = 0) -> Path:
    """One generated image per (place, density) in colour, and a black-and-white row: a PNG for the log."""
    from diffusers import AutoPipelineForText2Image

    from .world import caption

    width, height = size
    pipe = AutoPipelineForText2Image.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    prompts = [caption(p, d, "color") for d in DENSITIES for p in PLACES] + \
              [caption(p, "crowd", "black and white") for p in PLACES]
    g = torch.Generator().manual_seed(seed)
    ims = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=g, height=height,
               width=width).images
    cols = len(PLACES)
    grid = Image.new("RGB", (width * cols, height * math.ceil(len(ims) / cols)))
    for i, im in enumerate(ims):
        grid.paste(im, ((i % cols) * width, (i // cols) * height))
    grid.save(path)
    return Path(path)
