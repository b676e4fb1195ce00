#!/usr/bin/env python
"""Fine-tune a Stable Diffusion U-Net for Mixing Visual Concepts (image + MVC text conditioning).

The loop, the loss and the saving live in :mod:`promptmix.training.mvc_finetune`; this script reads
the settings (a YAML file and/or flags) and calls :func:`finetune_mvc`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path

import yaml

from promptmix.config import read_yaml_mapping
from promptmix.errors import PromptmixError
from promptmix.training.mvc_finetune import MVCFinetuneConfig, finetune_mvc

EPILOG = """\
examples:
  # one GPU or CPU: the `finetune:` section of a pipeline config, plus the keys the pipeline wires
  accelerate launch training/finetune_mvc.py --config configs/mvc_toy_classification.yaml \
      --captions runs/mvc-toy --output-dir runs/mvc-toy/finetune

  # several GPUs, flags only (the captions come from `promptmix caption --real DATA --out RUN`)
  accelerate launch --multi_gpu --num_processes 4 training/finetune_mvc.py \\
      --captions RUN --output-dir out/mvc-caltech101 \\
      --base-model stable-diffusion-v1-5/stable-diffusion-v1-5 --max-train-steps 15000

  # a flag overrides the same key of the file
  accelerate launch training/finetune_mvc.py --config cfg.yaml --max-train-steps 20000

Load the result with StableDiffusionInstructPix2PixPipeline.from_pretrained(OUTPUT_DIR) or use it in
`promptmix generate` (model: OUTPUT_DIR, mvc: {enabled: true}). Rerunning the same command resumes
from the newest checkpoint.
"""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune_mvc.py", description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="YAML",
                        help="YAML settings file (MVCFinetuneConfig keys, at the top level or under a `finetune:` "
                             "section of a pipeline config); flags override it")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v for INFO logs, -vv for DEBUG")
    hints = typing.get_type_hints(MVCFinetuneConfig)
    for f in dataclasses.fields(MVCFinetuneConfig):
        meta = f.metadata
        extra = f" (one of {', '.join(map(str, meta['choices']))})" if meta.get("choices") else ""
        default = "" if f.default is dataclasses.MISSING else f"; default {f.default!r}"
        hint = hints[f.name]
        metavar = {bool: "true|false", int: "N", int | None: "N|null", float: "X"}.get(hint, "TEXT")
        parser.add_argument(_flag(f.name), dest=f.name, default=None, metavar=metavar,
                            help=f"{meta.get('help', '')}{extra}{default}")
    return parser


def config_from_args(args: argparse.Namespace) -> MVCFinetuneConfig:
    data = read_yaml_mapping(args.config, section=MVCFinetuneConfig._section) if args.config is not None else {}
    hints = typing.get_type_hints(MVCFinetuneConfig)
    for f in dataclasses.fields(MVCFinetuneConfig):
        value = getattr(args, f.name)
        if value is None:
            continue
        data[f.name] = value if hints[f.name] in (str, str | None) else yaml.safe_load(value)
    return MVCFinetuneConfig.from_dict(data, section=MVCFinetuneConfig._section)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = finetune_mvc(config_from_args(args))
    except PromptmixError as exc:
        print(f"finetune_mvc.py: error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
