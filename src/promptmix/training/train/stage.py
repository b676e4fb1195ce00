"""Stage ``train``: a lightweight network on real + fake data (``training/train_*.py``, section ``train: {NAME: ...}``).

The entry scripts in the top-level ``training/`` folder call :func:`main` with their task.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ...stage import Stage
from .config import TrainConfig

SCRIPTS = {"counting": "train_counter.py", "depth": "train_depth.py", "classification": "train_classifier.py"}
_EXAMPLES = {
    "counting": """\
  # the paper's recipe on ShanghaiTech B: ResCSRNet, 500 fake rows per epoch, lr from the grid
  accelerate launch training/train_counter.py --real shtb --fake me/promptmix-shtb-fake --fake-revision v1.0.0 \\
      --mixing promptmix --r-mix 500 --model rescsrnet --pretrained imagenet --batch-size 32 --crop-size 256 \\
      --output-dir runs/shtb-promptmix
  # the real-only baseline, from a YAML file of these settings (train.yaml) with one flag overridden
  accelerate launch training/train_counter.py --config train.yaml --mixing none --output-dir runs/shtb-base""",
    "depth": """\
  accelerate launch training/train_depth.py --real nyu --fake run/fake --mixing promptmix --r-mix 1000 \\
      --model guidedepth --pretrained checkpoints/ddrnet23s_imagenet.safetensors --batch-size 32 \\
      --output-dir runs/nyu-promptmix""",
    "classification": """\
  # MVC's strategies on a CIFAR-10 subset: two-phase and random selection with probability
  accelerate launch training/train_classifier.py --real cifar10-small --fake run/fake --mixing two-phase \\
      --model wrn-28-2 --epochs 200 --two-phase-epochs 20 --lr 1e-3 --batch-size 128 --output-dir runs/c10-2p
  accelerate launch training/train_classifier.py --real cifar10-small --fake run/fake --mixing rsp \\
      --rsp-probability 0.8 --model resnet18 --lr 1e-3 --batch-size 128 --output-dir runs/c10-rsp""",
}
_EPILOG = """\
examples:
{examples}
  # evaluate saved weights on the validation and test splits (2 processes give the same numbers)
  accelerate launch --num_processes 2 training/{script} --real REAL --epochs 0 \\
      --weights runs/x/lr-0.0001/best/model.safetensors --output-dir runs/x-eval

Without --lr every learning rate of --lr-grid is trained (the paper: 1e-3 1e-4 1e-5 1e-6) and the best
on the validation split is kept; its best-validation checkpoint is evaluated on the test split.
OUTPUT/metrics.json holds validation/* and test/* values; compare runs with `promptmix report`.
Mixing strategies: none, promptmix (--r-mix), interleave (--interleave-probability), two-phase
(--two-phase-epochs, --two-phase-lr-factor), rsp (--rsp-probability), fake-only, swap (--swap-fraction,
--no-swap-redraw). Recipes (--recipe): promptmix (default), autoaugment-cifar, randaugment-cifar,
fast-autoaugment-cifar, caltech101-adam, brain-tumour-adam, brain-tumour-efficientnet (docs/CONFIGS.md).
Rerun with --resume after an interruption. Runs as `python training/{script}` too.
"""


class TrainStage(Stage):
    name = "train"
    config_class = TrainConfig
    inputs = ("real", "filter")
    wired = ("task", "real", "fake", "output_dir")
    summary = "train a lightweight network on real + fake data"
    run_folder_arg = None
    marker_files = ("config.yaml",)

    def input_stages(self, config: TrainConfig, present) -> tuple[str, ...]:
        reads = ("real", "filter") if config.mixing != "none" else ("real",)  # a real-only run reads no fake data
        return tuple(n for n in reads if n in present)

    def outputs(self, config: TrainConfig, run):
        return (Path(config.output_dir),)

    def output_record(self, config: TrainConfig, run):
        from ...run_folder import RunFolder

        return RunFolder(config.output_dir).stage_record("train") or None  # a training run records in its folder

    def run(self, config: TrainConfig, run) -> dict[str, Any]:
        from .trainer import train

        # `promptmix run` replaces the output folder whenever the key changes (unless can_continue agrees), so
        # whatever is there belongs to an interrupted run with these settings or to a shorter one: continue it
        metrics = train(dataclasses.replace(config, resume=True) if run is not None else config)
        keep = {k: v for k, v in metrics.items() if k.startswith(("test/", "validation/"))}
        return {"output_dir": config.output_dir, "chosen_lr": metrics.get("chosen_lr"),
                "best_epoch": metrics.get("best_epoch"), **keep}

    def continue_settings(self, config: TrainConfig) -> str:
        """:meth:`TrainConfig.resume_hash` (every setting but ``epochs`` and ``two_phase_epochs``) without the wired
        paths, which stage keys leave out (the run on disk is checked with its paths: :meth:`can_continue`)."""
        return dataclasses.replace(config, real="RUN/real", fake="RUN/fake" if config.fake else None,
                                   output_dir="RUN/train").resume_hash()

    def can_continue(self, config: TrainConfig, run) -> bool:
        """Can the training run in ``config.output_dir`` be continued to ``config``'s epochs?

        Yes when the config it was made with (its ``config.yaml``) has the same :meth:`TrainConfig.resume_hash`
        (every setting but the epoch counts, paths included), and every learning rate's newest checkpoint is one a
        straight run of ``config`` passes through: at most at the new number of epochs, on an epoch the new run
        also evaluates (a multiple of ``eval_every``, or its last), and for two-phase mixing with another
        ``epochs``, before the real-only phase of both runs. Otherwise (fewer epochs than trained, other
        settings, no checkpoint) it starts over.
        """
        import yaml

        from ...errors import PromptmixError
        from .trainer import STATE_FILE, latest_checkpoint, run_dir_name

        out = Path(config.output_dir)
        total = config.mixing_spec().total_epochs
        try:
            before = TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {})
            if total == 0 or before.resume_hash() != config.resume_hash():
                return False
            for lr in config.learning_rates():
                ckpt = latest_checkpoint(out / run_dir_name(lr))
                if ckpt is None:
                    return False
                done = int(json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))["epoch"])
                if done > total or (done % config.eval_every and done != total):
                    return False
                if config.mixing == "two-phase" and before.epochs != config.epochs \
                        and done > min(before.epochs, config.epochs):
                    return False
        except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError, PromptmixError):
            return False
        return True


def build_parser(task: str):
    """The argument parser of the training script for ``task``: one flag per :class:`TrainConfig` field but task."""
    import argparse

    from ...cli_args import add_config_arguments

    script = SCRIPTS[task]
    parser = argparse.ArgumentParser(prog=script, description=f"Train a {task} network on real + fake data "
                                                              "(PromptMix).",
                                     epilog=_EPILOG.format(examples=_EXAMPLES[task], script=script),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="YAML", help="YAML file of settings (field names as keys); flags "
                                                         "override it")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v for INFO logs, -vv for DEBUG")
    add_config_arguments(parser, TrainConfig, skip=("task",))
    return parser


def config_from_args(args, *, task: str) -> TrainConfig:
    """The YAML of ``--config`` overridden by the flags given; ``task`` comes from the entry script."""
    from ...cli_args import config_from_args as from_args
    from ...config import read_yaml_mapping
    from ...errors import ConfigError

    if getattr(args, "config", None):
        given = read_yaml_mapping(args.config).get("task", task)
        if given != task:
            raise ConfigError(f"task: this script trains a {task} model but the config file says {given!r}")
    return from_args(TrainConfig, args, overrides={"task": task})


def main(task: str, argv: list[str] | None = None) -> int:
    """The training scripts' entry: parse the flags (and ``--config`` YAML), train, print the result."""
    from ...errors import PromptmixError
    from ...utils.progress import is_main_process
    from ...utils.verbosity import configure_output

    script = SCRIPTS[task]
    args = build_parser(task).parse_args(argv)
    configure_output(args.verbose)
    try:
        config = config_from_args(args, task=task)
        record = TrainStage().run(config, None)
    except PromptmixError as exc:
        print(f"{script}: error: {exc}", file=sys.stderr)
        return 1
    if is_main_process():
        keys = [k for k in record if k.startswith(("validation/", "test/"))
                and not k.endswith(("num_images", "num_samples"))]
        print(f"chosen lr {record['chosen_lr']}, best epoch {record['best_epoch']}: "
              + ", ".join(f"{k} {record[k]:.4f}" for k in keys))
        print(f"wrote {Path(config.output_dir) / 'metrics.json'}")
    return 0
