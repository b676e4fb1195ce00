"""The speed and memory options of ``promptmix generate``, applied to a loaded pipeline.

Every option is a ``generate`` setting (``dtype`` and ``batch_size`` at the top level, the rest in
``generate.speed``: :class:`SpeedConfig`; all runtime: not part of the config hash) and each is
checked on CPU against the plain path (``tests/test_generate_speed.py``) with the tolerance given
here; what they gain is a GPU matter, measured by ``scripts/bench_gpu.py``:

==================  ==========  ======================================================================
option              default     CPU check against the plain float32 path (tiny models, pixels 0..1)
==================  ==========  ======================================================================
dtype float16       auto: on    max abs diff <= 0.05, mean <= 0.002 (measured 0.026 / 0.0006 over SD,
                    on CUDA     SDXL, Flux, Sana); SDXL's VAE decodes in float32 (``force_upcast``)
dtype bfloat16      auto: SD3,  max abs diff <= 0.2, mean <= 0.01 (measured 0.125 / 0.005): 8-bit
                    Flux, Sana  mantissas, rounding compounds over the steps
attention sdpa      on          eager (softmax(QK^T)V, or the math kernel where attention dispatches)
                                vs sdpa: max abs diff <= 1e-4 (measured <= 5e-6)
channels_last       off         max abs diff <= 1e-4 (measured <= 5e-6)
fuse_qkv            off         max abs diff <= 1e-4 (measured 0: the same dot products)
compile             off         max abs diff <= 1e-4 (inductor on CPU)
vae_tiling          off         PSNR >= 20 dB on the random tiny VAE (measured 23.5): tiles blend at
                                their seams; a memory setting for large images, not a speed one
batch_size auto     off (8)     images within 1e-4 of fixed batches (batch rounding only)
cpu_offload         none        CUDA only: not checked on CPU
==================  ==========  ======================================================================

The GPU-only options stay off by default: no GPU measurement has been made for this code yet
(``bench_gpu.py`` is ready for one). Decoding and JPEG encoding overlap the next batch already
(``encode.BackgroundWorker``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from ...config import StageConfig, field
from ...errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - the config stays light; torch is imported where it is used
    import torch

logger = logging.getLogger(__name__)

#: diffusers attention backends that would download kernels from the Hub at run time: refused.
_DOWNLOADING = ("_hub",)
COMPILE_MODES = ("off", "default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")


@dataclasses.dataclass
class SpeedConfig(StageConfig):
    """``generate.speed``: how the pipeline runs, not what it makes (within the tolerances above)."""

    _section = "generate.speed"

    attention: str = field("sdpa", flags=("--attention",),
                           help="attention kernel: sdpa (torch scaled_dot_product_attention, diffusers' "
                                        "default), eager (the plain softmax(QK^T)V math), or a diffusers attention "
                                        "backend for models that dispatch (Flux, ...): flash, _native_cudnn, "
                                        "_native_flash, _native_efficient, sage, xformers")
    compile: str = field("off", flags=("--compile",), choices=COMPILE_MODES,
                         help="torch.compile the denoiser with this mode (off, default, max-autotune, "
                              "max-autotune-no-cudagraphs, reduce-overhead); pays off on GPUs when sizes repeat")
    channels_last: bool = field(False, flags=("--channels-last",),
                                help="U-Net and VAE in channels-last memory format")
    fuse_qkv: bool = field(False, flags=("--fuse-qkv",),
                           help="fuse the query/key/value projections of the denoiser's attention into one "
                                       "matmul")
    vae_tiling: bool = field(False, flags=("--vae-tiling",),
                             help="decode large images in overlapping tiles (less memory; pixels near tile "
                                         "seams change slightly)")
    cpu_offload: str = field("none", flags=("--cpu-offload",), choices=("none", "model", "sequential"),
                             help="keep idle sub-models in CPU memory (CUDA only): model (small slow-down) or "
                                  "sequential (least memory, much slower)")

    def validate(self) -> None:
        if not str(self.attention).strip():
            self.fail("attention", "sdpa, eager or a diffusers attention backend name")

    @property
    def plain(self) -> bool:
        """No option that acts on the denoiser (attention, compile, channels-last, fused QKV) is set."""
        return (self.attention == "sdpa" and self.compile == "off" and not self.channels_last
                and not self.fuse_qkv)


def _attention_modules(model) -> list:
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    return [m for m in model.modules()
            if isinstance(m, (Attention, AttentionModuleMixin)) and getattr(m, "processor", None) is not None]


def set_attention(model, name: str) -> str:
    """Switch ``model``'s attention to ``name`` (sdpa, eager or a diffusers backend); returns what was done."""
    from diffusers.models.attention_dispatch import AttentionBackendName
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    name = str(name).strip()
    mods = _attention_modules(model)
    model_name = type(model).__name__
    if name == "sdpa":  # diffusers' default processors call torch SDPA (dispatching ones: backend "native")
        return "sdpa"
    if name == "eager":
        replaced = dispatching = 0
        for m in mods:
            if type(m.processor) is AttnProcessor2_0:
                m.set_processor(AttnProcessor())
                replaced += 1
            elif hasattr(m.processor, "_attention_backend"):
                m.processor._attention_backend = AttentionBackendName._NATIVE_MATH
                dispatching += 1
        if not replaced + dispatching:
            kinds = sorted({type(m.processor).__name__ for m in mods})
            raise ConfigError(f"generate.speed.attention: eager has no implementation for {model_name}'s attention "
                              f"processors ({', '.join(kinds)}, which call torch SDPA themselves); use sdpa")
        return f"eager ({replaced + dispatching} of {len(mods)} attention layers)"
    valid = {b.value for b in AttentionBackendName}
    if name not in valid or name.endswith(_DOWNLOADING):
        allowed = ", ".join(sorted(b for b in valid if not b.endswith(_DOWNLOADING)))
        raise ConfigError(f"generate.speed.attention: expected sdpa, eager or a diffusers attention backend ({allowed}); "
                          f"got {name!r}")
    if not any(hasattr(m.processor, "_attention_backend") for m in mods):
        kinds = sorted({type(m.processor).__name__ for m in mods})
        raise ConfigError(f"generate.speed.attention: {name!r} is a diffusers dispatch backend, but {model_name}'s attention "
                          f"processors ({', '.join(kinds)}) call torch SDPA directly; use sdpa (torch picks its "
                          "flash / memory-efficient / cuDNN kernel itself)")
    try:
        model.set_attention_backend(name)
    except (ValueError, RuntimeError, ImportError) as exc:
        raise ConfigError(f"generate.speed.attention: backend {name!r} is not usable here: {exc}") from None
    return name


def fuse_qkv(model) -> None:
    """One matmul for each attention layer's query, key and value projections (diffusers' own fusing)."""
    mods = _attention_modules(model)
    kinds = {type(m.processor).__name__ for m in mods}
    if any(k.startswith("Sana") for k in kinds):  # they read to_q/to_k/to_v, never a fused to_qkv
        raise ConfigError(f"generate.speed.fuse_qkv: {type(model).__name__}'s attention processors ({', '.join(sorted(kinds))}) "
                          "do not use fused projections; leave fuse_qkv off")
    if not hasattr(model, "fuse_qkv_projections"):
        raise ConfigError(f"generate.speed.fuse_qkv: {type(model).__name__} cannot fuse its QKV projections; leave it off")
    try:
        model.fuse_qkv_projections()
    except (ValueError, RuntimeError, AttributeError) as exc:
        raise ConfigError(f"generate.speed.fuse_qkv: {type(model).__name__} could not fuse its QKV projections: {exc}") from None


def apply(pipe, denoiser, config: SpeedConfig, *, device: torch.device) -> dict:
    """Apply ``config`` (``generate.speed``) to a loaded pipeline; returns the record of what was applied."""
    applied: dict = {"attention": "sdpa"}
    if denoiser is None:
        if not config.plain:
            raise ConfigError(f"generate.speed: {type(pipe).__name__} has no unet or transformer for attention, "
                              "compile, channels_last or fuse_qkv to act on; leave them at their defaults")
        return applied
    if config.fuse_qkv and config.attention == "eager":
        raise ConfigError("generate.speed.fuse_qkv: fused projections run through SDPA processors; use "
                          "attention: sdpa")
    vae = getattr(pipe, "vae", None)
    if config.channels_last:
        for module in (denoiser, vae):
            if module is not None:
                import torch

                module.to(memory_format=torch.channels_last)
        applied["channels_last"] = True
    if config.fuse_qkv:
        fuse_qkv(denoiser)
        applied["fuse_qkv"] = True
    applied["attention"] = set_attention(denoiser, config.attention)
    if config.compile != "off":
        denoiser.compile(mode=None if config.compile == "default" else config.compile, fullgraph=False)
        applied["compile"] = config.compile
    if config.vae_tiling:
        if vae is None or not hasattr(vae, "enable_tiling"):
            raise ConfigError(f"generate.speed.vae_tiling: {type(pipe).__name__}'s VAE cannot decode in tiles")
        vae.enable_tiling()
        applied["vae_tiling"] = True
    return applied
