"""Stage ``finetune``: MVC fine-tuning of the generator (``training/finetune_mvc.py``, section ``finetune:``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ...stage import Stage
from .config import FinetuneConfig


class FinetuneStage(Stage):
    name = "finetune"
    config_class = FinetuneConfig
    inputs = ("real", "caption")
    wired = ("captions", "output_dir", "real")
    summary = "fine-tune an InstructPix2Pix-style generator on same-class image pairs (MVC)"
    description = "Fine-tune a Stable Diffusion U-Net for Mixing Visual Concepts (image + MVC text conditioning)."
    examples = """\
examples:
  # one GPU or CPU: the `finetune:` section of a pipeline config, plus the keys the pipeline wires
  accelerate launch training/finetune_mvc.py --config configs/mvc_toy_classification.yaml \\
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
    run_folder_arg = None
    marker_files = ("training.json", "checkpoints")

    def outputs(self, config: FinetuneConfig, run):
        return (Path(config.output_dir),)

    def run(self, config: FinetuneConfig, run) -> dict[str, Any]:
        from .finetune import finetune_mvc

        return {"out": str(finetune_mvc(config))}

    def continue_settings(self, config: FinetuneConfig) -> str:
        """:meth:`FinetuneConfig.resume_hash` (every setting but the step count) without the wired paths, which
        stage keys leave out (the checkpoint itself is checked with its paths: :meth:`can_continue`)."""
        return dataclasses.replace(config, captions="RUN", real=None, output_dir="RUN/finetune").resume_hash()

    def can_continue(self, config: FinetuneConfig, run) -> bool:
        """Can the fine-tuning in ``config.output_dir`` be continued to ``config``'s step count?

        Yes when its newest checkpoint was made with the same :meth:`~FinetuneConfig.resume_hash` (what
        ``finetune_mvc`` checks before resuming: every setting but the step count, paths included) and is at most
        at the new number of steps: ``max_train_steps``, or ``epochs`` times the optimisation steps per epoch of the
        run that made the checkpoint (known when that run counted in epochs too). Otherwise (other settings or
        paths, fewer steps than already trained, the steps per epoch unknown) it starts over.
        """
        import yaml

        from .finetune import CONFIG_FILE, STATE_FILE, list_checkpoints

        if config.resume == "never":
            return False
        out = Path(config.output_dir)
        found = list_checkpoints(out)
        try:
            if not found:
                return False
            saved = json.loads((found[-1] / STATE_FILE).read_text(encoding="utf-8"))
            if saved.get("resume_hash") != config.resume_hash():
                return False
            done = int(saved["global_step"])
            if config.max_train_steps is not None:
                return done <= config.max_train_steps
            before = yaml.safe_load((out / CONFIG_FILE).read_text(encoding="utf-8")) or {}
            state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
            if before.get("max_train_steps") is not None or not before.get("epochs"):
                return False
            steps_per_epoch = int(state["max_train_steps"]) // int(before["epochs"])
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            return False
        return done <= config.epochs * steps_per_epoch


def build_parser():
    """The parser of ``training/finetune_mvc.py``: ``--config`` plus one flag per :class:`FinetuneConfig` field."""
    import argparse

    from ...cli_args import add_config_arguments

    stage = FinetuneStage()
    parser = argparse.ArgumentParser(prog="finetune_mvc.py", description=stage.description, epilog=stage.examples,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="YAML",
                        help="YAML settings file (FinetuneConfig keys, at the top level or under a `finetune:` section "
                             "of a pipeline config); flags override it")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v for INFO logs, -vv for DEBUG")
    add_config_arguments(parser, FinetuneConfig)
    return parser


def config_from_args(args) -> FinetuneConfig:
    """The ``--config`` file's settings (top level or its ``finetune:`` section) overridden by the flags given."""
    from ...cli_args import config_from_args as from_args

    return from_args(FinetuneConfig, args, section="finetune")


def main(argv: list[str] | None = None) -> int:
    """The entry of ``training/finetune_mvc.py``: parse, fine-tune, print the output folder."""
    import sys

    from ...errors import PromptmixError
    from ...utils.verbosity import configure_output

    args = build_parser().parse_args(argv)
    configure_output(args.verbose)
    try:
        record = FinetuneStage().run(config_from_args(args), None)
    except PromptmixError as exc:
        print(f"finetune_mvc.py: error: {exc}", file=sys.stderr)
        return 1
    print(record["out"])
    return 0
