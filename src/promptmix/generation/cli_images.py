"""``promptmix generate`` (images from a prompt bag) and ``promptmix reproduce`` (check one row)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import read_yaml_mapping
from ..errors import ConfigError

GENERATE_EPILOG = """\
Generates K images per prompt with any diffusers text-to-image pipeline (SD 1.x/2.x/XL, turbo, LCM)
or an InstructPix2Pix pipeline (image-conditioned: each row is conditioned on a real training
image of its class). Images are generated at the nearest size the model accepts and resized to
their source image's exact size, then JPEG-encoded at the source's quality. Rows are written in
Parquet chunks to OUT/images; rerun the same command to resume after an interruption (even kill -9).
Under `accelerate launch` or `torchrun --nproc_per_node N` the chunks are split between processes.

examples:
  promptmix generate --prompts run/prompts --model stabilityai/stable-diffusion-2-1-base --out run -k 5
  promptmix generate --prompts prompts.txt --model stabilityai/sdxl-turbo --out run -k 4 \\
      --size 512x512 --steps 1 --guidance-scale 0
  promptmix generate --prompts run --model ./mvc-pix2pix --out run --mvc --mvc-images-per-class 50
  torchrun --nproc_per_node 2 -m promptmix generate --prompts run --model ID --out run -k 5
  accelerate launch --multi_gpu --num_processes 2 -m promptmix generate --prompts run --model ID --out run -k 5
  promptmix generate --prompts run --model ID --out run -k 5 --dry-run
A --config YAML holds GenerateConfig keys (or a run config with a `generate:` section); flags override it.
"""

REPRODUCE_EPILOG = """\
Regenerates one stored row alone from its record (prompt, seed, size, quality, conditioning image,
MVC mixing record) with the run's model and settings, and compares decoded pixels with the stored
image: exit status 0 when they match (PSNR at or above --min-psnr, or identical bytes), 1 otherwise.

examples:
  promptmix reproduce run --row 0
  promptmix reproduce run --row-id 51e4674156077982-00003 --min-psnr 40
"""


def add_parsers(subparsers) -> None:
    from .config import GenerateConfig

    defaults = {f: GenerateConfig.__dataclass_fields__[f].default for f in GenerateConfig.__dataclass_fields__}
    p = subparsers.add_parser(
        "generate", help="generate images from a prompt bag (step 3)",
        description="Generate images for every prompt of a prompt bag or text file, resumably, on one or many "
                    "processes.", epilog=GENERATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", help="prompt bag folder (RUN/prompts or RUN) or a .txt file, one prompt per line")
    p.add_argument("--model", help="diffusers pipeline: Hub id or local folder")
    p.add_argument("--out", required=True, type=Path, help="run folder; images go to OUT/images")
    p.add_argument("--config", type=Path, help="YAML with GenerateConfig keys (or a run config with `generate:`)")
    p.add_argument("--revision", help="model revision (branch, tag or commit) when --model is a Hub id")
    p.add_argument("-k", "--images-per-prompt", type=int, help=f"images per prompt (default: {defaults['images_per_prompt']})")
    p.add_argument("--size", help="WIDTHxHEIGHT for prompts without a source image (default: the model's size)")
    p.add_argument("--max-side", type=int, help=f"longest generated side (default: {defaults['max_side']})")
    p.add_argument("--min-side", type=int, help="shortest generated side; small sources are generated larger "
                                                "then resized down (default: 0, none)")
    p.add_argument("--size-multiple", type=int, help="generation sizes are multiples of this (default: 8)")
    p.add_argument("--steps", type=int, help=f"denoising steps (default: {defaults['steps']})")
    p.add_argument("--guidance-scale", type=float, help=f"text guidance scale (default: {defaults['guidance_scale']})")
    p.add_argument("--negative-prompt", help="negative prompt for every image")
    p.add_argument("--scheduler", help="diffusers scheduler class, e.g. DPMSolverMultistepScheduler")
    p.add_argument("--seed", type=int, help="run seed (default: 0)")
    p.add_argument("--jpeg-quality", help="'source' (default: each source image's quality) or 1-100")
    p.add_argument("--default-jpeg-quality", type=int,
                   help=f"quality when the source is not a JPEG or absent (default: {defaults['default_jpeg_quality']})")
    p.add_argument("--no-match-grayscale", action="store_true", help="keep images of grayscale sources in colour")
    p.add_argument("--chunk-size", type=int, help=f"rows per chunk file (default: {defaults['chunk_size']})")
    p.add_argument("--batch-size", type=int, help=f"images per pipeline call (default: {defaults['batch_size']})")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", help="auto (default: float16 on CUDA, float32 elsewhere), float32, float16, bfloat16")
    p.add_argument("--image-guidance-scale", type=float,
                   help=f"image guidance of InstructPix2Pix models (default: {defaults['image_guidance_scale']})")
    p.add_argument("--real", help="real dataset (folder or Hub id) with the conditioning images of an "
                                  "image-conditioned model (default: the prompt bag's)")
    p.add_argument("--mvc", action="store_true", help="Mixing Visual Concepts: mix each class's caption embeddings")
    p.add_argument("--mvc-coarse", type=int, help="MVC coarse mixes per image (P)")
    p.add_argument("--mvc-fine", type=int, help="MVC fine mixes per image (Q)")
    p.add_argument("--mvc-images-per-class", type=int, help="MVC images per class (replaces -k)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom pipeline code (off by default)")
    p.add_argument("--dry-run", action="store_true",
                   help="generate one batch, print where rows would go and the projected time; write nothing")
    p.set_defaults(func=run_generate)

    r = subparsers.add_parser(
        "reproduce", help="regenerate one generated row and check it matches",
        description="Regenerate one row of RUN/images from its record and compare it with the stored image.",
        epilog=REPRODUCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("run", type=Path, help="run folder (with images/)")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--row", type=int, help="row number in the plan (0-based; the order of the chunk files)")
    which.add_argument("--row-id", help="row id, e.g. 51e4674156077982-00003")
    r.add_argument("--min-psnr", type=float, default=30.0, help="PSNR (dB) needed for a match (default: 30)")
    r.add_argument("--device", help="device to regenerate on (default: the run's)")
    r.add_argument("--dtype", help="dtype to regenerate with (default: the run's)")
    r.set_defaults(func=run_reproduce)


_FLAGS = {"prompts": "prompts", "model": "model", "revision": "revision", "images_per_prompt": "images_per_prompt",
          "size": "size", "max_side": "max_side", "min_side": "min_side", "size_multiple": "size_multiple",
          "steps": "steps", "guidance_scale": "guidance_scale", "negative_prompt": "negative_prompt",
          "scheduler": "scheduler", "seed": "seed", "default_jpeg_quality": "default_jpeg_quality",
          "chunk_size": "chunk_size", "batch_size": "batch_size", "device": "device", "dtype": "dtype",
          "image_guidance_scale": "image_guidance_scale", "real": "real"}


def config_from_args(args):
    """A :class:`GenerateConfig` from ``--config`` (optional) overridden by the flags given."""
    from .config import GenerateConfig

    data: dict = {}
    if args.config is not None:
        data = read_yaml_mapping(args.config, section="generate")
    for flag, key in _FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            data[key] = value
    if args.jpeg_quality is not None:
        q = args.jpeg_quality
        data["jpeg_quality"] = int(q) if q.isdigit() else q
    if args.no_match_grayscale:
        data["match_grayscale"] = False
    if args.trust_remote_code:
        data["trust_remote_code"] = True
    mvc_flags = {"coarse": args.mvc_coarse, "fine": args.mvc_fine, "images_per_class": args.mvc_images_per_class}
    if args.mvc or any(v is not None for v in mvc_flags.values()):
        mvc = dict(data.get("mvc") or {})
        mvc["enabled"] = True
        mvc.update({k: v for k, v in mvc_flags.items() if v is not None})
        data["mvc"] = mvc
    for key, flag in (("prompts", "--prompts"), ("model", "--model")):
        if not data.get(key):
            raise ConfigError(f"{flag} is required (or give `{key}:` in --config)")
    return GenerateConfig.from_dict(data, section="generate")


def run_generate(args) -> int:
    from .runner import generate

    config = config_from_args(args)
    report = generate(config, args.out, dry_run=args.dry_run)
    if report.world_size == 1 or _is_main():
        print("\n".join(report.summary_lines()))
    return 0


def _is_main() -> bool:
    from ..utils.progress import is_main_process

    return is_main_process()


def run_reproduce(args) -> int:
    from .reproduce import reproduce_row

    result = reproduce_row(args.run, args.row, row_id=args.row_id, min_psnr=args.min_psnr, device=args.device,
                           dtype=args.dtype)
    print("\n".join(result.summary_lines()))
    return 0 if result.match else 1
