"""``GenerateConfig``: every setting of ``promptmix generate``.

Settings marked ``runtime`` (batch size, device, trust_remote_code and ``speed``: attention kernel,
torch.compile, channels-last, fused QKV, VAE tiling, CPU offload) are left out of the config hash, so a
run may be resumed with another batch size or on another GPU. Settings left ``None`` (sizes, steps,
guidance, token limit) take the model family's value (:func:`families.resolve_config`), which the run
folder then stores. ``dtype`` changes the pixels (the paper's fp16-vs-fp32 ablation, Table VI), so it is
hashed as the dtype the run computes in: ``auto`` is float16 on CUDA and float32 elsewhere, and a GPU run
and a CPU run do not share a cache. Note that the batch composition can change the last bits of an
image, so byte-identical resumes need the same batch size.
"""

from __future__ import annotations

import dataclasses

from ...config import StageConfig, field
from ...utils.device import DTYPE_NAMES
from ..mvc import MVCConfig
from .sizes import parse_size
from .speed import SpeedConfig


@dataclasses.dataclass
class GenerateConfig(StageConfig):
    """Images from a prompt bag (or a text file of prompts) with a diffusers text-to-image pipeline."""

    _section = "generate"

    prompts: str = field("", help="prompt bag folder (RUN/prompts) or a .txt file with one prompt per line")
    model: str = field("", help="diffusers pipeline: Hub id (with --revision) or local folder; any "
                                "AutoPipelineForText2Image model (SD 1.x/2.x/XL, turbo, LCM) or an "
                                "InstructPix2Pix pipeline (image-conditioned, MVC fine-tuned)")
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) of --model")
    images_per_prompt: int = field(1, help="k: images generated per prompt", flags=("-k",), metavar="K")
    size: str | None = field(None, help="WIDTHxHEIGHT of images for prompts without a source image "
                                        "(default: the model's native size)")
    max_side: int | None = field(None, help="longest side an image is generated at; larger sources are generated "
                                            "smaller with the same aspect ratio, then resized to their exact size "
                                            "(default: the larger of 768 and the model's native side: 768 for "
                                            "SD 1.x/2.x, 1024 for SDXL, SD3, Flux, PixArt and Sana at 1024)")
    min_side: int = field(0, help="shortest side an image is generated at (0: none); small sources are "
                                  "generated larger, then resized down (max_side wins)")
    size_multiple: int | None = field(None, help="generation sizes are rounded to a multiple of this (default: the "
                                                 "model's, VAE factor x patch: 8 for SD/SDXL, 16 for SD3, Flux and "
                                                 "PixArt, 32 for Sana; a larger value must be a multiple of it)")
    steps: int | None = field(None, help="denoising steps (default: the family's: 30 SD/SDXL, 28 SD3/Flux-dev, "
                                         "20 PixArt/Sana, 4 LCM/Flux-schnell, 1 SD-/SDXL-Turbo)")
    guidance_scale: float | None = field(
        None, help="text guidance scale (default: the family's: 7.5 SD, 5 SDXL, 7 SD3, 4.5 PixArt/Sana; Flux-dev's "
                   "distilled guidance 3.5; 0 for SD-/SDXL-Turbo and Flux-schnell, which have none). For "
                   "classifier-free guidance, 0 or 1 turns it off")
    max_sequence_length: int | None = field(
        None, help="T5/Gemma token limit of SD3, Flux, PixArt and Sana (default: the family's: SD3 256, "
                   "Flux-dev 512, Flux-schnell 256, PixArt-Sigma and Sana 300); CLIP-only models stop at 77")
    negative_prompt: str | None = field(None, help="negative prompt used for every image")
    scheduler: str | None = field(None, help="diffusers scheduler class name (e.g. EulerDiscreteScheduler, "
                                             "DPMSolverMultistepScheduler); default: the model's own")
    seed: int = field(0, help="run seed; each row's seed derives from (seed, prompt_id, image index)")
    jpeg_quality: str | int = field("source", help="'source': each image gets its source image's JPEG quality; "
                                                   "or one quality 1-100 for every image")
    default_jpeg_quality: int = field(95, help="JPEG quality for images whose source is not a JPEG or that have "
                                               "no source image, when jpeg_quality is 'source'")
    match_grayscale: bool = field(True, help="store images of grayscale sources in grayscale")
    chunk_size: int = field(64, help="rows per Parquet chunk file: the unit of resume and of work split "
                                     "between processes")
    mvc: MVCConfig | None = field(None, help="Mixing Visual Concepts: mix each class's caption embeddings "
                                             "(classification prompt bags); when enabled, mvc.images_per_class "
                                             "rows per class replace images_per_prompt rows per prompt")
    image_guidance_scale: float = field(1.5, help="image guidance scale of image-conditioned (InstructPix2Pix) "
                                                  "models")
    task: str | None = field(None, choices=(None, "counting", "depth"),
                             help="what the images are for when --prompts is a .txt file (a prompt bag says it "
                                  "itself): counting or depth; `promptmix annotate` checks its annotators against it. "
                                  "Given later for a folder generated without it, nothing is regenerated",
                             metavar="TASK")
    real: str | None = field(None, help="real dataset (folder or Hub id) whose train split holds the "
                                        "conditioning images of an image-conditioned model; default: the one "
                                        "recorded in the prompt bag")
    batch_size: int | str = field(8, runtime=True, help="images per pipeline call, or 'auto': as many rows of one "
                                                        "size as fit in GPU memory (found by halving on "
                                                        "out-of-memory; 8 on CPU)")
    device: str = field("auto", runtime=True, help="auto, cpu, cuda, cuda:N or mps (auto: the process's "
                                                   "accelerator under accelerate/torchrun)")
    dtype: str = field("auto", help="auto (float16 on CUDA, float32 elsewhere), float32, float16 or bfloat16; "
                                    "part of the cache key as the dtype it resolves to")
    trust_remote_code: bool = field(False, runtime=True, help="allow custom pipeline code from the model repo")
    speed: SpeedConfig = field(default_factory=SpeedConfig, runtime=True,
                               help="GPU speed and memory options: attention, compile, channels_last, fuse_qkv, "
                                    "vae_tiling, cpu_offload (see docs/families.md for each one's checked tolerance)")

    def validate(self) -> None:
        if not str(self.prompts).strip():
            self.fail("prompts", "a prompt bag folder or a .txt file")
        if not str(self.model).strip():
            self.fail("model", "a diffusers model id or folder")
        if int(self.images_per_prompt) < 1:
            self.fail("images_per_prompt", "an integer >= 1")
        if self.size is not None:
            parse_size(self.size, key=self._key("size"))
        if self.size_multiple is not None and self.size_multiple < 1:
            self.fail("size_multiple", "an integer >= 1")
        if self.max_side is not None and self.max_side < (self.size_multiple or 1):
            self.fail("max_side", f"an integer >= size_multiple ({self.size_multiple or 1})")
        if self.min_side < 0:
            self.fail("min_side", "an integer >= 0")
        if self.steps is not None and self.steps < 1:
            self.fail("steps", "an integer >= 1")
        if self.guidance_scale is not None and self.guidance_scale < 0:
            self.fail("guidance_scale", "a number >= 0")
        if self.max_sequence_length is not None and self.max_sequence_length < 1:
            self.fail("max_sequence_length", "an integer >= 1")
        if self.image_guidance_scale < 0:
            self.fail("image_guidance_scale", "a number >= 0")
        if not (self.jpeg_quality == "source" or (isinstance(self.jpeg_quality, int)
                                                  and not isinstance(self.jpeg_quality, bool)
                                                  and 1 <= self.jpeg_quality <= 100)):
            if isinstance(self.jpeg_quality, str) and self.jpeg_quality.isdigit():
                self.jpeg_quality = int(self.jpeg_quality)
                if 1 <= self.jpeg_quality <= 100:
                    return self.validate()
            self.fail("jpeg_quality", "'source' or an integer 1-100")
        if not 1 <= self.default_jpeg_quality <= 100:
            self.fail("default_jpeg_quality", "an integer 1-100")
        if self.chunk_size < 1:
            self.fail("chunk_size", "an integer >= 1")
        if isinstance(self.batch_size, str) and self.batch_size.strip().isdigit():
            self.batch_size = int(self.batch_size)
        if self.batch_size != "auto" and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                          or self.batch_size < 1):
            self.fail("batch_size", "an integer >= 1 or 'auto'")
        if self.dtype not in DTYPE_NAMES:
            self.fail("dtype", f"one of {', '.join(DTYPE_NAMES)}")

    def effective_dtype(self) -> str:
        """``dtype`` resolved for ``device`` (``auto``: float16 on CUDA, float32 elsewhere)."""
        from ...utils.device import effective_dtype

        return effective_dtype(self.dtype, self.device)

    def hashed_dict(self) -> dict:
        d = super().hashed_dict()
        d["dtype"] = self.effective_dtype()
        return d

    @property
    def mvc_enabled(self) -> bool:
        return self.mvc is not None and bool(self.mvc.enabled)
