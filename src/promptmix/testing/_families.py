"""Tiny random-weight pipelines of every supported text-to-image family, saved with ``save_pretrained``.

Each is built from its family's real classes (pipeline, denoiser, VAE, text encoders, scheduler)
with small widths and one or two layers, as diffusers' own ``get_dummy_components`` do, but keeping
the facts promptmix's rules depend on exactly as in the published models:

- the VAE scale factor (8 from four VAE blocks; 32 from Sana's six DC-AE blocks) and the patch size
  (2 for SD3 and PixArt, Flux's 2x2 latent packing, 1 for Sana), so size multiples are the real ones;
- the text encoders and tokenizer kinds (CLIP BPE 77, T5 unigram, Gemma byte-fallback BPE), so
  token limits and truncation counts come from the real tokenizer classes;
- the scheduler class and settings that make a model few-step (Euler-ancestral with trailing
  timesteps as in SD-Turbo/SDXL-Turbo, ``LCMScheduler``, Flux-schnell's flow matching without
  guidance embedding), and v-prediction for SD 2.x.

Tokenizers are written locally (``_tokenizers``); nothing is downloaded. Every folder loads back with
``diffusers.AutoPipelineForText2Image.from_pretrained(path)``. A 32x32 image in 2 steps takes a few
tens of ms on one core for each family.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ._tokenizers import save_tiny_clip_tokenizer, save_tiny_gemma_tokenizer, save_tiny_t5_tokenizer

CLIP_DIM = 32
T5_DIM = 64  # SD3 pads the concatenated CLIP embeddings (2 x 32) to the T5 width

#: ``save_tiny_models`` keys written by this module, with the published model each stands in for.
FAMILY_MODELS = {
    "sd-v": "Stable Diffusion 2.x 768-v (v-prediction)",
    "sd-turbo": "SD-Turbo (Euler ancestral, trailing timesteps, no guidance)",
    "lcm": "LCM Dreamshaper v7 (LatentConsistencyModelPipeline, LCMScheduler)",
    "sdxl": "Stable Diffusion XL base 1.0",
    "sdxl-turbo": "SDXL-Turbo",
    "sd3": "Stable Diffusion 3 / 3.5",
    "flux": "FLUX.1-dev (guidance-distilled)",
    "flux-schnell": "FLUX.1-schnell (timestep-distilled, no guidance)",
    "pixart": "PixArt-Sigma",
    "sana": "Sana 1600M 1024px",
}


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _clip_tokenizer(tmp: Path, name: str, pad_token: str | None = None):
    tok = save_tiny_clip_tokenizer(tmp / name)
    if pad_token is not None:
        tok.pad_token = pad_token  # SDXL's and SD3's second tokenizer pads with "!"
    return tok


def _clip_text(tok, *, seed: int, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    _seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tok), hidden_size=CLIP_DIM, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, layer_norm_eps=1e-5, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.convert_tokens_to_ids(tok.pad_token), projection_dim=CLIP_DIM, hidden_act="gelu")
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5_text(tok, *, seed: int, d_model: int = T5_DIM):
    from transformers import T5Config, T5EncoderModel

    _seed(seed)
    return T5EncoderModel(T5Config(
        vocab_size=len(tok), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=32, feed_forward_proj="gated-gelu",
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=0))


def _vae_kl(*, seed: int, latent_channels: int, blocks: int = 4, sample_size: int = 64, **kw):
    from diffusers import AutoencoderKL

    _seed(seed)
    return AutoencoderKL(
        block_out_channels=(4,) * blocks, in_channels=3, out_channels=3, latent_channels=latent_channels,
        norm_num_groups=2, down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks, layers_per_block=1, sample_size=sample_size, **kw)


def _save(pipe, path: Path, tmp: Path) -> Path:
    pipe.save_pretrained(str(path), safe_serialization=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return path


def _prepare(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "_tokenizers_tmp"
    return path, tmp


# -- Stable Diffusion 1.x / 2.x and their few-step variants -------------------------------------------
def _sd_unet(*, seed: int, cross_dim: int, time_cond_proj_dim: int | None = None, **kw):
    from diffusers import UNet2DConditionModel

    _seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=2, norm_num_groups=4, time_cond_proj_dim=time_cond_proj_dim,
        **kw)


def save_tiny_sd_variant(path: str | Path, variant: str, seed: int = 0) -> Path:
    """``variant``: ``sd-v`` (SD 2.x v-prediction), ``sd-turbo`` (Euler ancestral, trailing) or ``lcm``."""
    from diffusers import (DDIMScheduler, EulerAncestralDiscreteScheduler, LatentConsistencyModelPipeline,
                           LCMScheduler, StableDiffusionPipeline)

    path, tmp = _prepare(path)
    tok = _clip_tokenizer(tmp, "tokenizer")
    text = _clip_text(tok, seed=seed + 2, projection=False)
    vae = _vae_kl(seed=seed + 1, latent_channels=4)
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    if variant == "sd-v":
        unet = _sd_unet(seed=seed, cross_dim=CLIP_DIM, use_linear_projection=True, upcast_attention=True)
        scheduler = DDIMScheduler(**betas, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                  prediction_type="v_prediction")
        pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    elif variant == "sd-turbo":
        unet = _sd_unet(seed=seed, cross_dim=CLIP_DIM, use_linear_projection=True)
        scheduler = EulerAncestralDiscreteScheduler(**betas, timestep_spacing="trailing", steps_offset=1)
        pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    elif variant == "lcm":
        unet = _sd_unet(seed=seed, cross_dim=CLIP_DIM, time_cond_proj_dim=8)  # the guidance (w) embedding
        scheduler = LCMScheduler(**betas, clip_sample=False, set_alpha_to_one=True)
        pipe = LatentConsistencyModelPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tok,
                                              scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                              requires_safety_checker=False)
    else:
        raise ValueError(f"variant: expected sd-v, sd-turbo or lcm; got {variant!r}")
    return _save(pipe, path, tmp)


# -- SDXL ---------------------------------------------------------------------------------------------
def save_tiny_sdxl(path: str | Path, *, turbo: bool = False, seed: int = 0) -> Path:
    """SDXL: two CLIP encoders (the second with projection, giving the pooled embedding), micro-conditioning."""
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline

    path, tmp = _prepare(path)
    tok = _clip_tokenizer(tmp, "tokenizer")
    tok2 = _clip_tokenizer(tmp, "tokenizer_2", pad_token="!")
    text = _clip_text(tok, seed=seed + 2, projection=False)
    text2 = _clip_text(tok2, seed=seed + 3, projection=True)
    time_dim = 8
    unet = _sd_unet(seed=seed, cross_dim=2 * CLIP_DIM, use_linear_projection=True, addition_embed_type="text_time",
                    addition_time_embed_dim=time_dim, transformer_layers_per_block=(1, 1),
                    projection_class_embeddings_input_dim=6 * time_dim + CLIP_DIM)
    vae = _vae_kl(seed=seed + 1, latent_channels=4, force_upcast=True, scaling_factor=0.13025)
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    if turbo:
        scheduler = EulerAncestralDiscreteScheduler(**betas, timestep_spacing="trailing")
    else:
        scheduler = EulerDiscreteScheduler(**betas, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text2, tokenizer=tok,
                                     tokenizer_2=tok2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=not turbo)
    return _save(pipe, path, tmp)


# -- SD3 ----------------------------------------------------------------------------------------------
def save_tiny_sd3(path: str | Path, seed: int = 0) -> Path:
    """SD3: MMDiT (patch 2), CLIP-L + CLIP-G (pooled, 77 tokens) and T5 (256 tokens by default), flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    path, tmp = _prepare(path)
    tok = _clip_tokenizer(tmp, "tokenizer")
    tok2 = _clip_tokenizer(tmp, "tokenizer_2", pad_token="!")
    tok3 = save_tiny_t5_tokenizer(tmp / "tokenizer_3", model_max_length=512)
    text = _clip_text(tok, seed=seed + 2, projection=True)
    text2 = _clip_text(tok2, seed=seed + 3, projection=True)
    text3 = _t5_text(tok3, seed=seed + 4)
    _seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, num_layers=1, attention_head_dim=8, num_attention_heads=4,
        joint_attention_dim=T5_DIM, caption_projection_dim=32, pooled_projection_dim=2 * CLIP_DIM, out_channels=16,
        pos_embed_max_size=32)
    vae = _vae_kl(seed=seed + 1, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.0609, scaling_factor=1.5305)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text,
                                    tokenizer=tok, text_encoder_2=text2, tokenizer_2=tok2, text_encoder_3=text3,
                                    tokenizer_3=tok3)
    return _save(pipe, path, tmp)


# -- Flux ---------------------------------------------------------------------------------------------
def save_tiny_flux(path: str | Path, *, schnell: bool = False, seed: int = 0) -> Path:
    """Flux.1: CLIP-L (pooled only) + T5, 2x2 packed latents; dev embeds the guidance, schnell has none."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    path, tmp = _prepare(path)
    tok = _clip_tokenizer(tmp, "tokenizer")
    tok2 = save_tiny_t5_tokenizer(tmp / "tokenizer_2", model_max_length=512)
    text = _clip_text(tok, seed=seed + 2, projection=False)
    text2 = _t5_text(tok2, seed=seed + 4)
    _seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=T5_DIM, pooled_projection_dim=CLIP_DIM, guidance_embeds=not schnell,
        axes_dims_rope=(4, 4, 8))
    vae = _vae_kl(seed=seed + 1, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.1159, scaling_factor=0.3611)
    if schnell:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                    max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text, tokenizer=tok, text_encoder_2=text2,
                        tokenizer_2=tok2, transformer=transformer)
    return _save(pipe, path, tmp)


# -- PixArt-Sigma -------------------------------------------------------------------------------------
def save_tiny_pixart(path: str | Path, seed: int = 0) -> Path:
    """PixArt-Sigma: DiT (patch 2, learned sigma), T5 (300 tokens), DPM-Solver++."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    path, tmp = _prepare(path)
    tok = save_tiny_t5_tokenizer(tmp / "tokenizer", model_max_length=512)
    text = _t5_text(tok, seed=seed + 4)
    _seed(seed)
    transformer = PixArtTransformer2DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=T5_DIM,
        in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    vae = _vae_kl(seed=seed + 1, latent_channels=4)
    scheduler = DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                                            algorithm_type="dpmsolver++", solver_order=2)
    pipe = PixArtSigmaPipeline(tokenizer=tok, text_encoder=text, vae=vae, transformer=transformer, scheduler=scheduler)
    return _save(pipe, path, tmp)


# -- Sana ---------------------------------------------------------------------------------------------
def save_tiny_sana(path: str | Path, seed: int = 0) -> Path:
    """Sana: linear DiT (patch 1) over a 32x deep-compression autoencoder, Gemma-2 text encoder (300 tokens)."""
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    path, tmp = _prepare(path)
    tok = save_tiny_gemma_tokenizer(tmp / "tokenizer")
    _seed(seed + 4)
    text = Gemma2Model(Gemma2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=8192, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    _seed(seed)
    transformer = SanaTransformer2DModel(
        patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_attention_heads=2, attention_head_dim=4,
        num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=16,
        sample_size=2)
    _seed(seed + 1)
    blocks = 6  # 2**(6-1) = 32: Sana's DC-AE scale factor
    vae = AutoencoderDC(
        in_channels=3, latent_channels=4, attention_head_dim=2,
        encoder_block_types=("ResBlock",) * (blocks - 1) + ("EfficientViTBlock",),
        decoder_block_types=("ResBlock",) * (blocks - 1) + ("EfficientViTBlock",),
        encoder_block_out_channels=(4,) * blocks, decoder_block_out_channels=(4,) * blocks,
        encoder_layers_per_block=(1,) * blocks, decoder_layers_per_block=(1,) * blocks,
        encoder_qkv_multiscales=((),) * (blocks - 1) + ((5,),), decoder_qkv_multiscales=((),) * (blocks - 1) + ((5,),),
        downsample_block_type="conv", upsample_block_type="interpolate", decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=0.41407)
    scheduler = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                            algorithm_type="dpmsolver++", solver_order=2)
    pipe = SanaPipeline(tokenizer=tok, text_encoder=text, vae=vae, transformer=transformer, scheduler=scheduler)
    return _save(pipe, path, tmp)


#: key -> writer(path, seed)
WRITERS = {
    "sd-v": lambda p, seed: save_tiny_sd_variant(p, "sd-v", seed=seed),
    "sd-turbo": lambda p, seed: save_tiny_sd_variant(p, "sd-turbo", seed=seed),
    "lcm": lambda p, seed: save_tiny_sd_variant(p, "lcm", seed=seed),
    "sdxl": lambda p, seed: save_tiny_sdxl(p, seed=seed),
    "sdxl-turbo": lambda p, seed: save_tiny_sdxl(p, turbo=True, seed=seed),
    "sd3": lambda p, seed: save_tiny_sd3(p, seed=seed),
    "flux": lambda p, seed: save_tiny_flux(p, seed=seed),
    "flux-schnell": lambda p, seed: save_tiny_flux(p, schnell=True, seed=seed),
    "pixart": lambda p, seed: save_tiny_pixart(p, seed=seed),
    "sana": lambda p, seed: save_tiny_sana(p, seed=seed),
}
