"""Tiny random-weight Stable Diffusion pipelines, saved in the real ``save_pretrained`` layout.

Shapes follow diffusers' own test components
(``tests/pipelines/stable_diffusion/test_stable_diffusion.py::get_dummy_components``), except that
the VAE has four blocks so its scale factor is 8, as in every real SD model: sizes then have to be
multiples of 8 exactly as with a real checkpoint. A 64x64 image in 2 steps takes a few tens of ms
on one CPU core. Both folders load offline (``AutoPipelineForText2Image.from_pretrained(path)``
for the text-to-image one, ``StableDiffusionInstructPix2PixPipeline.from_pretrained(path)`` for
the image-conditioned one).
"""

from __future__ import annotations

from pathlib import Path

from ._tokenizers import save_tiny_clip_tokenizer

TEXT_DIM = 32
SAMPLE_SIZE = 8  # latent side; default image side = 8 * 8 = 64 px


def _components(path: Path, *, seed: int, unet_in_channels: int) -> dict:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = save_tiny_clip_tokenizer(path / "_tokenizer_tmp")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=SAMPLE_SIZE,
        in_channels=unet_in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=2, norm_num_groups=4,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(4, 4, 4, 4), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, sample_size=SAMPLE_SIZE * 8,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length, layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        projection_dim=TEXT_DIM,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler, "safety_checker": None, "feature_extractor": None}


def _save(pipe_cls, path: str | Path, *, seed: int, unet_in_channels: int) -> Path:
    import shutil

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    components = _components(path, seed=seed, unet_in_channels=unet_in_channels)
    pipe = pipe_cls(**components, requires_safety_checker=False)
    pipe.save_pretrained(str(path), safe_serialization=True)
    shutil.rmtree(path / "_tokenizer_tmp", ignore_errors=True)
    return path


def save_tiny_sd(path: str | Path, seed: int = 0) -> Path:
    """A tiny ``StableDiffusionPipeline`` folder (text-to-image, 64x64 default size)."""
    from diffusers import StableDiffusionPipeline

    return _save(StableDiffusionPipeline, path, seed=seed, unet_in_channels=4)


def save_tiny_pix2pix(path: str | Path, seed: int = 0) -> Path:
    """A tiny ``StableDiffusionInstructPix2PixPipeline`` folder (UNet with 8 input channels: noise + image latents)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    return _save(StableDiffusionInstructPix2PixPipeline, path, seed=seed, unet_in_channels=8)
