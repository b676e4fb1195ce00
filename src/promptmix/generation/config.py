"""``GenerateConfig``: every setting of ``promptmix generate``.

Settings marked ``runtime`` (batch size, device, dtype, trust_remote_code) are left out of the
config hash, so a run may be resumed with another batch size. Note that the batch composition
can change the last bits of an image, so byte-identical resumes need the same batch size.
"""

from __future__ import annotations

import dataclasses

from ..config import StageConfig, field
from .mvc import MVCConfig
from .sizes import parse_size


@dataclasses.dataclass
class GenerateConfig(StageConfig):
    """Images from a prompt bag (or a text file of prompts) with a diffusers text-to-image pipeline."""

    _section = "generate"

    prompts: str = field("", help="prompt bag folder (RUN/prompts) or a .txt file with one prompt per line")
    model: str = field("", help="diffusers pipeline: Hub id (with --revision) or local folder; any "
                                "AutoPipelineForText2Image model (SD 1.x/2.x/XL, turbo, LCM) or an "
                                "InstructPix2Pix pipeline (image-conditioned, MVC fine-tuned)")
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) of --model")
    images_per_prompt: int = field(1, help="k: images generated per prompt")
    size: str | None = field(None, help="WIDTHxHEIGHT of images for prompts without a source image "
                                        "(default: the model's native size)")
    max_side: int = field(768, help="longest side an image is generated at; larger sources are generated "
                                    "smaller with the same aspect ratio, then resized to their exact size")
    min_side: int = field(0, help="shortest side an image is generated at (0: none); small sources are "
                                  "generated larger, then resized down (max_side wins)")
    size_multiple: int = field(8, help="generation sizes are rounded to a multiple of this (8 for Stable Diffusion)")
    steps: int = field(30, help="denoising steps")
    guidance_scale: float = field(7.5, help="classifier-free (text) guidance scale; 0 or 1 turns it off "
                                            "(turbo/LCM models)")
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
    real: str | None = field(None, help="real dataset (folder or Hub id) whose train split holds the "
                                        "conditioning images of an image-conditioned model; default: the one "
                                        "recorded in the prompt bag")
    batch_size: int = field(8, runtime=True, help="images per pipeline call")
    device: str = field("auto", runtime=True, help="auto, cpu, cuda, cuda:N or mps (auto: the process's "
                                                   "accelerator under accelerate/torchrun)")
    dtype: str = field("auto", runtime=True, help="auto (float16 on CUDA, float32 elsewhere), float32, "
                                                  "float16 or bfloat16")
    trust_remote_code: bool = field(False, runtime=True, help="allow custom pipeline code from the model repo")

    def validate(self) -> None:
        if not str(self.prompts).strip():
            self.fail("prompts", "a prompt bag folder or a .txt file")
        if not str(self.model).strip():
            self.fail("model", "a diffusers model id or folder")
        if int(self.images_per_prompt) < 1:
            self.fail("images_per_prompt", "an integer >= 1")
        if self.size is not None:
            parse_size(self.size, key=self._key("size"))
        if self.size_multiple < 1:
            self.fail("size_multiple", "an integer >= 1")
        if self.max_side < self.size_multiple:
            self.fail("max_side", f"an integer >= size_multiple ({self.size_multiple})")
        if self.min_side < 0:
            self.fail("min_side", "an integer >= 0")
        if self.steps < 1:
            self.fail("steps", "an integer >= 1")
        if self.guidance_scale < 0:
            self.fail("guidance_scale", "a number >= 0")
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
        if self.batch_size < 1:
            self.fail("batch_size", "an integer >= 1")

    @property
    def mvc_enabled(self) -> bool:
        return self.mvc is not None and bool(self.mvc.enabled)
