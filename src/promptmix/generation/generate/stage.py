"""Stage ``generate``: images for every planned row (``promptmix generate``, pipeline section ``generate:``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from ...stage import Stage
from .config import GenerateConfig


class GenerateStage(Stage):
    name = "generate"
    config_class = GenerateConfig
    inputs = ("prompts", "finetune")
    wired = ("prompts",)  # and model, when the pipeline has a finetune section
    summary = "generate images from a prompt bag (step 3)"
    description = ("Generate images for every prompt of a prompt bag or text file, resumably, on one or many "
                   "processes.")
    examples = """\
Generates K images per prompt with any diffusers text-to-image pipeline (SD 1.x/2.x, SDXL, SD3, Flux,
PixArt, Sana, turbo/LCM/schnell few-step models: docs/families.md gives each family's sizes, steps,
guidance and token limits, used when not set) or an InstructPix2Pix pipeline (image-conditioned: each
row is conditioned on a real training image of its class). Images are generated at the nearest size
the model accepts and resized to
their source image's exact size, then JPEG-encoded at the source's quality. Rows are written in
Parquet chunks to OUT/images; rerun the same command to resume after an interruption (even kill -9).
Under `accelerate launch` or `torchrun --nproc_per_node N` the chunks are split between processes.

examples:
  promptmix generate --prompts run/prompts --model stabilityai/stable-diffusion-2-1-base --out run -k 5
  promptmix generate --prompts prompts.txt --model stabilityai/sdxl-turbo --out run -k 4 --size 512x512 \
      --task counting     # a .txt file says no task: declare it for `promptmix annotate`
  promptmix generate --prompts run --model black-forest-labs/FLUX.1-schnell --out run -k 4 --batch-size auto
  promptmix generate --prompts run --model ID --out run --compile max-autotune-no-cudagraphs --fuse-qkv
  promptmix generate --prompts run --model ./mvc-pix2pix --out run --mvc --mvc-images-per-class 50
  torchrun --nproc_per_node 2 -m promptmix generate --prompts run --model ID --out run -k 5
  accelerate launch --multi_gpu --num_processes 2 -m promptmix generate --prompts run --model ID --out run -k 5
  promptmix generate --prompts run --model ID --out run -k 5 --dry-run
A --config YAML holds the keys below (or a pipeline config with a `generate:` section); flags override it.
"""
    run_folder_arg = "--out"
    run_folder_help = "run folder; images go to OUT/images"
    marker_files = ("plan.json",)

    def outputs(self, config, run):
        return (run.images,)

    def verify_outputs(self, config, run) -> list[str]:
        """Every planned chunk is there and passes :func:`~promptmix.generation.generate.plan.generated_row_ids`."""
        from ...errors import InputError
        from .plan import generated_row_ids, read_plan

        try:
            planned = int(read_plan(run).get("num_chunks") or 0)
            ids = generated_row_ids(run)
        except InputError as exc:
            return [str(exc)]
        store = run.image_chunks()
        return [f"{store.path(c)} is missing" for c in range(planned) if c not in ids]

    def preflight(self, config: GenerateConfig, run):
        from ...preflight import check_model_id

        return check_model_id(config.model, config.revision, what="diffusion model", subject="generate.model")

    def settings(self, config: GenerateConfig) -> dict[str, Any]:
        out = super().settings(config)
        out.pop("task", None)  # the declared task of a .txt prompt file changes no image
        return out

    def run(self, config: GenerateConfig, run, *, dry_run: bool = False) -> dict[str, Any]:
        from .runner import generate

        report = generate(config, run, dry_run=dry_run)
        record: dict[str, Any] = {}
        for f in dataclasses.fields(report):
            value = getattr(report, f.name)
            if isinstance(value, (int, float, str, bool)) or value is None:
                record[f.name] = value
            elif isinstance(value, Path):
                record[f.name] = str(value)
        record["summary"] = report.summary_lines()
        return record

    def add_cli_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="generate one batch, print where rows would go and the projected time; write nothing")

    def cli(self, config, run, args) -> int:
        from ...utils.progress import is_main_process

        record = self.run(config, run, dry_run=args.dry_run)
        if record["world_size"] == 1 or is_main_process():
            print("\n".join(record["summary"]))
        return 0

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        return list(record.get("summary", []))
