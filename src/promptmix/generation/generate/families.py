"""What promptmix must know about each text-to-image family to generate data with it correctly.

A model folder's family comes from ``model_index.json`` (``_class_name``); its variant (few-step
distillations, v-prediction) from its scheduler and denoiser configs. No weights are loaded.

=====================  ======================================================================
fact                   where it comes from
=====================  ======================================================================
size multiple          VAE scale factor (``2 ** (len(blocks) - 1)``) x patch size (SD3/PixArt
                       patch 2, Flux's 2x2 latent packing, Sana patch 1): 8, 16, 16, 16, 32
native size            denoiser ``sample_size`` x VAE factor; Flux has none: 128 x VAE factor
guidance convention    ``cfg``: true classifier-free guidance, on when ``guidance_scale > 1``;
                       ``distilled``: Flux-dev embeds the scale, one pass per step, no negative;
                       ``embedded``: the LCM pipeline's w-embedding, no negative;
                       ``none``: timestep-distilled models (SD-Turbo, SDXL-Turbo, Flux-schnell)
negative prompt        only where the pipeline runs an unconditional/negative branch
token limit            the tokenizer whose truncation loses words: CLIP's 77 for SD/SDXL; T5's
                       ``max_sequence_length`` (SD3 256, Flux-dev 512, Flux-schnell 256, PixArt-Sigma
                       300) where CLIP only sees the first 77 but T5 sees the rest; Gemma's 300 for Sana
dtype on CUDA          float16 (SD 1.x/2.x, SDXL with the VAE decoding in float32 as its config's
                       ``force_upcast`` asks, PixArt), bfloat16 (SD3, Flux, Sana: float16 overflows)
MVC                    one CLIP encoder (SD 1.x/2.x, LCM, InstructPix2Pix) or SDXL's two CLIP encoders
=====================  ======================================================================

Few-step variants are recognised from the folder's scheduler and transformer configs: Euler
(ancestral) with ``trailing`` timesteps (SD-Turbo, SDXL-Turbo: 1 step, no guidance), the LCM
pipeline (4 steps, its w-embedding), ``LCMScheduler`` in an SD/SDXL folder (an LCM-LoRA fused in:
4 steps, guidance 1) or a PixArt folder (PixArt-LCM: 4 steps, no guidance), and Flux without a
guidance embedding (schnell: 4 steps, 256 T5 tokens). SD3.5-Large-Turbo ships the same
configs as SD3.5 and is not recognised: pass ``steps: 4, guidance_scale: 0``.
:func:`resolve_config` fills every family-dependent setting left unset (``None``) and refuses
settings that have no meaning for the family.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from ...errors import ConfigError

logger = logging.getLogger(__name__)

#: the settings :func:`resolve_config` fills in when left ``None``
RESOLVED_KEYS = ("size_multiple", "max_side", "steps", "guidance_scale", "max_sequence_length")
#: promptmix's default longest generated side for models whose native side is smaller (SD 1.x: 512).
MIN_DEFAULT_MAX_SIDE = 768


@dataclasses.dataclass(frozen=True)
class Family:
    """Static facts of one family (the docs table is made from these)."""

    key: str
    name: str
    pipelines: tuple[str, ...]
    examples: str
    size_multiple: int  # the published models' (the folder's configs decide; see ModelFacts)
    native: str  # as the docs say it
    guidance: str  # cfg | distilled | embedded | none
    guidance_scale: float
    steps: int
    negative_prompt: bool
    text: str  # text encoders and their limits, as the docs say it
    cuda_dtype: str
    vae_upcast: bool  # the VAE overflows in float16 and decodes in float32
    mvc: bool
    tested: tuple[str, ...]  # tiny models (``promptmix.testing`` keys) the test suite runs
    max_sequence_length: int | None = None  # T5 / Gemma token limit the pipeline is given


FAMILIES: tuple[Family, ...] = (
    Family("sd", "Stable Diffusion 1.x / 2.x", ("StableDiffusionPipeline", "StableDiffusionInstructPix2PixPipeline"),
           "SD 1.4/1.5, SD 2.1 (-base, 768-v), InstructPix2Pix, MVC fine-tunes", 8,
           "unet sample_size x 8 (512; 768 for 2.x 768-v)", "cfg", 7.5, 30, True, "CLIP 77", "float16", False, True,
           ("sd", "sd-v", "pix2pix")),
    Family("sd-turbo", "SD-Turbo (few-step)", ("StableDiffusionPipeline",),
           "stabilityai/sd-turbo (Euler ancestral, trailing timesteps)", 8, "512", "none", 0.0, 1, False, "CLIP 77",
           "float16", False, True, ("sd-turbo",)),
    Family("lcm", "Latent Consistency Models (few-step)", ("LatentConsistencyModelPipeline",),
           "SimianLuo/LCM_Dreamshaper_v7", 8,
           "unet sample_size x 8 (768)", "embedded", 8.5, 4, False, "CLIP 77", "float16", False, True, ("lcm",)),
    Family("sdxl", "Stable Diffusion XL", ("StableDiffusionXLPipeline",),
           "SDXL base 1.0, Playground v2, Juggernaut, ...", 8, "1024", "cfg", 5.0, 30, True,
           "CLIP-L 77 + OpenCLIP-G 77 (pooled)", "float16", True, True, ("sdxl",)),
    Family("sdxl-turbo", "SDXL-Turbo (few-step)", ("StableDiffusionXLPipeline",),
           "stabilityai/sdxl-turbo (Euler ancestral, trailing timesteps)", 8, "512", "none", 0.0, 1, False,
           "CLIP-L 77 + OpenCLIP-G 77 (pooled)", "float16", True, True, ("sdxl-turbo",)),
    Family("sd3", "Stable Diffusion 3 / 3.5", ("StableDiffusion3Pipeline",),
           "SD3 medium, SD3.5 medium/large (Large-Turbo: pass steps 4, guidance 0)", 16, "1024", "cfg", 7.0, 28, True,
           "CLIP-L + CLIP-G 77 (pooled), T5 256", "bfloat16", False, False, ("sd3",), 256),
    Family("flux", "FLUX.1-dev", ("FluxPipeline",), "black-forest-labs/FLUX.1-dev (guidance-distilled)", 16,
           "1024", "distilled", 3.5, 28, False, "CLIP-L 77 (pooled only), T5 512", "bfloat16", False, False,
           ("flux",), 512),
    Family("flux-schnell", "FLUX.1-schnell (few-step)", ("FluxPipeline",),
           "black-forest-labs/FLUX.1-schnell (no guidance embedding)", 16, "1024", "none", 0.0, 4, False,
           "CLIP-L 77 (pooled only), T5 256", "bfloat16", False, False, ("flux-schnell",), 256),
    Family("pixart", "PixArt-Sigma / PixArt-alpha", ("PixArtSigmaPipeline", "PixArtAlphaPipeline"),
           "PixArt-Sigma-XL-2-1024-MS (512, 2K), PixArt-XL-2-1024-MS", 16, "transformer sample_size x 8 (1024)",
           "cfg", 4.5, 20, True, "T5 300 (alpha: 120)", "float16", False, False, ("pixart",), 300),
    Family("sana", "Sana", ("SanaPipeline",), "Sana 600M/1600M 512-4K", 32, "transformer sample_size x 32 (1024)",
           "cfg", 4.5, 20, True, "Gemma-2 300 (+ its complex human instruction)", "bfloat16", False, False,
           ("sana",), 300),
)
FAMILY_BY_KEY = {f.key: f for f in FAMILIES}
GENERIC = Family("generic", "other AutoPipelineForText2Image pipelines", (), "", 8, "from the configs", "cfg", 7.5,
                 30, True, "tokenizer(s) at model_max_length", "float16", False, False, ())


@dataclasses.dataclass(frozen=True)
class TokenLimit:
    """One tokenizer whose truncation loses words, as the pipeline calls it."""

    subfolder: str
    max_length: int
    lower: bool = False  # PixArt/Sana lower-case prompts before tokenizing
    prefix: str = ""  # Sana's complex human instruction, prepended to every prompt
    prefix_allowance: int = 0  # tokens of the prefix the pipeline adds to max_length


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """The facts of one model folder: its family plus what its configs say."""

    family: Family
    pipeline: str | None
    vae_factor: int
    size_multiple: int
    native_size: tuple[int, int] | None  # (width, height)
    prediction_type: str | None
    scheduler: str | None
    uses_t5_or_gemma: bool

    @property
    def key(self) -> str:
        return self.family.key

    @property
    def guidance(self) -> str:
        return self.family.guidance

    @property
    def negative_prompt(self) -> bool:
        return self.family.negative_prompt


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _vae_factor(path: Path) -> int:
    vae = _read_json(path / "vae" / "config.json")
    blocks = vae.get("block_out_channels") or vae.get("encoder_block_out_channels")
    return 2 ** (len(blocks) - 1) if blocks else 8


def _pipeline_defaults(class_name: str | None) -> dict[str, Any]:
    """``guidance_scale`` / ``num_inference_steps`` / ``negative_prompt`` of an unknown pipeline's ``__call__``."""
    import diffusers

    cls = getattr(diffusers, class_name, None) if class_name else None
    if cls is None:
        return {}
    try:
        params = inspect.signature(cls.__call__).parameters
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {"negative_prompt": "negative_prompt" in params}
    for name in ("guidance_scale", "num_inference_steps", "max_sequence_length"):
        p = params.get(name)
        if p is not None and p.default is not inspect.Parameter.empty and p.default is not None:
            out[name] = p.default
    return out


def describe(model_path: str | Path) -> ModelFacts:
    """The family and facts of a diffusers pipeline folder, from its configs alone."""
    path = Path(model_path)
    index = _read_json(path / "model_index.json")
    cls = index.get("_class_name")
    sched = _read_json(path / "scheduler" / "scheduler_config.json")
    sched_cls = sched.get("_class_name")
    trailing = sched.get("timestep_spacing") == "trailing" and sched_cls in (
        "EulerAncestralDiscreteScheduler", "EulerDiscreteScheduler")
    denoiser_sub = "unet" if (path / "unet").is_dir() else "transformer"
    denoiser = _read_json(path / denoiser_sub / "config.json")
    vae = _vae_factor(path)

    if cls in ("StableDiffusionPipeline", "StableDiffusionInstructPix2PixPipeline"):
        family = FAMILY_BY_KEY["sd-turbo" if trailing else "sd"]
        if sched_cls == "LCMScheduler":  # an LCM-LoRA fused into SD: real CFG, at low scales
            family = dataclasses.replace(family, key="sd-lcm", name="SD with LCMScheduler (few-step)",
                                         guidance_scale=1.0, steps=4)
    elif cls == "LatentConsistencyModelPipeline":
        family = FAMILY_BY_KEY["lcm"]
    elif cls == "StableDiffusionXLPipeline":
        family = FAMILY_BY_KEY["sdxl-turbo" if trailing else "sdxl"]
        if sched_cls == "LCMScheduler":
            family = dataclasses.replace(family, key="sdxl-lcm", name="SDXL with LCMScheduler (few-step)",
                                         guidance="cfg", guidance_scale=1.0, steps=4)
    elif cls == "StableDiffusion3Pipeline":
        family = FAMILY_BY_KEY["sd3"]
    elif cls == "FluxPipeline":
        family = FAMILY_BY_KEY["flux" if denoiser.get("guidance_embeds") else "flux-schnell"]
    elif cls in ("PixArtSigmaPipeline", "PixArtAlphaPipeline"):
        family = FAMILY_BY_KEY["pixart"]
        if cls == "PixArtAlphaPipeline":
            family = dataclasses.replace(family, max_sequence_length=120)
        if sched_cls == "LCMScheduler":  # PixArt-LCM
            family = dataclasses.replace(family, key="pixart-lcm", name="PixArt-LCM (few-step)", guidance="none",
                                         guidance_scale=0.0, steps=4, negative_prompt=False)
    elif cls == "SanaPipeline":
        family = FAMILY_BY_KEY["sana"]
    else:
        d = _pipeline_defaults(cls)
        family = dataclasses.replace(GENERIC, pipelines=(cls,) if cls else (),
                                     guidance_scale=float(d.get("guidance_scale", GENERIC.guidance_scale)),
                                     steps=int(d.get("num_inference_steps", GENERIC.steps)),
                                     negative_prompt=bool(d.get("negative_prompt", True)),
                                     max_sequence_length=d.get("max_sequence_length"))

    # size multiple: VAE factor x patch (Flux packs 2x2 latents; an unknown transformer is assumed patch 2)
    if family.key.startswith("flux"):
        patch = 2
    elif denoiser_sub == "transformer":
        patch = int(denoiser.get("patch_size") or 2)
    else:
        patch = 1
    multiple = vae * patch

    native = None
    side = denoiser.get("sample_size")
    if family.key.startswith("flux") and not side:
        side = 128  # FluxPipeline.default_sample_size
    if side:
        if isinstance(side, (list, tuple)):
            native = (int(side[1]) * vae, int(side[0]) * vae)
        else:
            native = (int(side) * vae, int(side) * vae)
    uses_llm = any((path / sub).is_dir() and _is_t5_or_gemma(path / sub)
                   for sub in ("text_encoder", "text_encoder_2", "text_encoder_3"))
    return ModelFacts(family=family, pipeline=cls, vae_factor=vae, size_multiple=multiple, native_size=native,
                      prediction_type=sched.get("prediction_type"), scheduler=sched_cls, uses_t5_or_gemma=uses_llm)


def _is_t5_or_gemma(folder: Path) -> bool:
    cfg = _read_json(folder / "config.json")
    return str(cfg.get("model_type", "")).startswith(("t5", "umt5", "gemma"))


# -- settings -------------------------------------------------------------------------------------------
def default_max_side(facts: ModelFacts) -> int:
    """The larger of 768 and the model's native long side (so SDXL/SD3/Flux/PixArt/Sana generate at 1024)."""
    native = max(facts.native_size) if facts.native_size else 0
    side = max(MIN_DEFAULT_MAX_SIDE, native)
    return max(facts.size_multiple, (side // facts.size_multiple) * facts.size_multiple)


def resolve_config(config, model_path: str | Path, facts: ModelFacts | None = None):
    """``config`` with every family-dependent setting left ``None`` filled in, after checking the others.

    Fills ``size_multiple``, ``max_side``, ``steps``, ``guidance_scale`` and ``max_sequence_length``
    from the model's family. A run folder stores the config as given (its hash is the user's
    settings); the plan is built from the resolved one, the manifest's model record lists the
    resolved values, and ``reproduce`` resolves the stored config again the same way. Raises :class:`ConfigError` for a setting the family cannot honour (a
    negative prompt for Flux or LCM, a size multiple the model's patches do not divide, a T5 limit
    above the pipeline's) and logs a warning for one it ignores (a guidance scale for Flux-schnell,
    a negative prompt while guidance is off).
    """
    facts = facts or describe(model_path)
    fam = facts.family
    name = f"{facts.pipeline or 'this pipeline'} ({fam.name})"
    updates: dict[str, Any] = {}

    multiple = config.size_multiple
    if multiple is None:
        multiple = facts.size_multiple
    elif multiple % facts.size_multiple:
        raise ConfigError(f"generate.size_multiple: {name} needs sizes divisible by {facts.size_multiple} "
                          f"(VAE factor {facts.vae_factor} x patch {facts.size_multiple // facts.vae_factor}); "
                          f"got {multiple}. Leave it unset to use {facts.size_multiple}")
    updates["size_multiple"] = multiple
    if config.max_side is None:
        side = default_max_side(facts)
        updates["max_side"] = max(multiple, (side // multiple) * multiple)
    if config.steps is None:
        updates["steps"] = fam.steps
    guidance = config.guidance_scale
    if guidance is None:
        guidance = fam.guidance_scale
        updates["guidance_scale"] = guidance
    elif fam.guidance == "none" and guidance not in (0.0, 1.0) and fam.key == "flux-schnell":
        logger.warning("generate.guidance_scale %g has no effect on %s: it has no guidance embedding and runs "
                       "no unconditional branch", guidance, name)

    limit = fam.max_sequence_length
    if config.max_sequence_length is None:
        if limit is not None and facts.uses_t5_or_gemma:
            updates["max_sequence_length"] = limit
    elif limit is None or not facts.uses_t5_or_gemma:
        raise ConfigError(f"generate.max_sequence_length: {name} has no T5 or Gemma text encoder, its CLIP "
                          f"tokenizers stop at 77 tokens; leave max_sequence_length unset")
    elif fam.key in ("sd3", "flux", "flux-schnell") and config.max_sequence_length > 512:
        raise ConfigError(f"generate.max_sequence_length: {name} takes at most 512 T5 tokens; "
                          f"got {config.max_sequence_length}")

    if config.negative_prompt:
        if not fam.negative_prompt and fam.guidance in ("distilled", "embedded"):
            hint = ("Flux-dev distils guidance into one pass and has no negative branch"
                    if fam.guidance == "distilled" else "the LCM pipeline embeds guidance and has no negative branch")
            raise ConfigError(f"generate.negative_prompt: {name} cannot use a negative prompt ({hint}); "
                              "remove negative_prompt")
        if not fam.negative_prompt and fam.key == "flux-schnell":
            raise ConfigError(f"generate.negative_prompt: {name} runs no unconditional branch, so a negative "
                              "prompt has no meaning; remove negative_prompt")
        if guidance <= 1:
            logger.warning("generate.negative_prompt is ignored: guidance_scale %g turns classifier-free guidance "
                           "off for %s (the negative prompt is its unconditional branch)", guidance, name)
    if getattr(config, "mvc_enabled", False) and not fam.mvc:
        raise ConfigError(mvc_refusal(name))
    return dataclasses.replace(config, **updates) if any(getattr(config, k) != v for k, v in updates.items()) \
        else config


def mvc_refusal(name: str) -> str:
    return (f"generate.mvc: {name} cannot use MVC. MVC mixes the token embeddings of CLIP text encoders; it "
            "works with SD 1.x/2.x (the paper's setup: Stable Diffusion with CLIP ViT-L/14, d = 768, fine-tuned "
            "InstructPix2Pix-style), SD-Turbo, LCM, InstructPix2Pix folders written by `promptmix finetune`, and "
            "SDXL / SDXL-Turbo (both CLIP encoders mixed with the same spans). SD3, Flux, PixArt and Sana encode "
            "prompts with T5 or Gemma, whose token rows do not line up with CLIP's")


def cuda_dtype(facts: ModelFacts, *, bf16_supported: bool) -> str:
    """The dtype a model runs in on CUDA when ``dtype: auto``."""
    if facts.family.cuda_dtype == "bfloat16" and not bf16_supported:
        return "float32"  # float16 overflows in these families (NaN/black images); no bf16 on this GPU
    return facts.family.cuda_dtype


# -- token limits ---------------------------------------------------------------------------------------
def token_limits(model_path: str | Path, max_sequence_length: int | None = None,
                 facts: ModelFacts | None = None) -> list[TokenLimit]:
    """The tokenizer(s) whose truncation loses words for this model, with the limits the pipeline uses.

    SD/SDXL: every CLIP tokenizer at its ``model_max_length`` (77). SD3 with its T5 encoder, Flux,
    PixArt: T5 at ``max_sequence_length`` (CLIP also cuts at 77, but T5 still sees those words).
    Sana: Gemma at ``max_sequence_length`` after its complex human instruction, as SanaPipeline counts.
    """
    path = Path(model_path)
    facts = facts or describe(path)
    key = facts.family.key
    limit = max_sequence_length or facts.family.max_sequence_length
    if key == "sd3" and (path / "tokenizer_3").is_dir() and (path / "text_encoder_3").is_dir():
        return [TokenLimit("tokenizer_3", int(limit))]
    if key.startswith("flux"):
        return [TokenLimit("tokenizer_2", int(limit))]
    if key.startswith("pixart"):
        return [TokenLimit("tokenizer", int(limit), lower=True)]
    if key == "sana":
        chi = sana_complex_human_instruction()
        return [TokenLimit("tokenizer", int(limit), lower=True, prefix=chi, prefix_allowance=-2 if chi else 0)]
    return [TokenLimit(sub, 0) for sub in ("tokenizer", "tokenizer_2") if (path / sub).is_dir()]


def sana_complex_human_instruction() -> str:
    """SanaPipeline's default complex human instruction (joined as the pipeline joins it)."""
    import diffusers

    p = inspect.signature(diffusers.SanaPipeline.__call__).parameters.get("complex_human_instruction")
    default = p.default if p is not None and p.default is not inspect.Parameter.empty else None
    return "\n".join(default) if default else ""


def truncated_indices(tokenizer, limit: TokenLimit, texts: Sequence[str]) -> tuple[list[int], int]:
    """Indices of ``texts`` the pipeline will cut, and the prompt token limit reported for them."""
    max_length = int(limit.max_length or tokenizer.model_max_length)
    texts = [t.lower().strip() if limit.lower else t for t in texts]
    if not texts:
        return [], max_length
    if limit.prefix:
        prefix_tokens = len(tokenizer.encode(limit.prefix))
        total = prefix_tokens + max_length + limit.prefix_allowance
        texts = [limit.prefix + t for t in texts]
    else:
        total = max_length
    ids = tokenizer(list(texts), truncation=False, padding=False, verbose=False)["input_ids"]
    return [i for i, seq in enumerate(ids) if len(seq) > total], max_length


# -- docs -------------------------------------------------------------------------------------------------
def family_table(tested_note: Callable[[Family], str] | None = None) -> str:
    """The Markdown table of :data:`FAMILIES` (docs/families.md holds it; a test keeps them equal)."""
    guidance = {"cfg": "classifier-free, {g:g} (off at <= 1)", "distilled": "distilled (embedded), {g:g}; no CFG",
                "embedded": "LCM w-embedding, {g:g}; no CFG", "none": "none (0)"}
    head = ("| family | pipeline class | sizes: multiple, native | guidance (default), steps | negative prompt | "
            "max tokens | dtype on CUDA | MVC | tested with |\n|---|---|---|---|---|---|---|---|---|")
    rows = []
    for f in FAMILIES:
        dtype = f.cuda_dtype + (" (VAE decodes in float32)" if f.vae_upcast else "")
        tested = tested_note(f) if tested_note else ", ".join(f"`{k}`" for k in f.tested)
        if f.negative_prompt:
            negative = "yes (with guidance > 1)"
        elif f.guidance in ("distilled", "embedded") or f.key == "flux-schnell":
            negative = "no: refused"
        else:
            negative = "only with guidance > 1 (warned at 0)"
        steps = f"{f.steps} step{'s' if f.steps != 1 else ''}"
        rows.append(f"| {f.name} | {' / '.join(f'`{p}`' for p in f.pipelines)} | {f.size_multiple}, {f.native} | "
                    f"{guidance[f.guidance].format(g=f.guidance_scale)}, {steps} | {negative} | "
                    f"{f.text} | {dtype} | {'yes' if f.mvc else 'refused'} | {tested} |")
    return "\n".join([head, *rows])
