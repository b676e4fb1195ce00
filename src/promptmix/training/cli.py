"""``promptmix model-info``, ``promptmix report``, ``promptmix filter-prompts``, and the entry point of
the training scripts (``training/train_counter.py`` and the others call :func:`train_main`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import PromptmixError

SCRIPTS = {"counting": "train_counter.py", "depth": "train_depth.py", "classification": "train_classifier.py"}
_EXAMPLES = {
    "counting": """\
  # the paper's recipe on ShanghaiTech B: ResCSRNet, 500 fake rows per epoch, lr from the grid
  accelerate launch training/train_counter.py --real shtb --fake me/promptmix-shtb-fake --fake-revision v1.0.0 \\
      --mixing promptmix --r-mix 500 --model rescsrnet --pretrained imagenet --batch-size 32 --crop-size 256 \\
      --output-dir runs/shtb-promptmix
  # the real-only baseline, from a YAML file with one flag overridden
  accelerate launch training/train_counter.py --config configs/shtb.yaml --mixing none --output-dir runs/shtb-base""",
    "depth": """\
  accelerate launch training/train_depth.py --real nyu --fake run/fake --mixing promptmix --r-mix 1000 \\
      --model guidedepth --pretrained imagenet --batch-size 32 --output-dir runs/nyu-promptmix""",
    "classification": """\
  # MVC's strategies on a CIFAR-10 subset: two-phase and random selection with probability
  accelerate launch training/train_classifier.py --real cifar10-small --fake run/fake --mixing two-phase \\
      --model wrn-28-2 --epochs 200 --two-phase-epochs 20 --lr 1e-3 --batch-size 128 --output-dir runs/c10-2p
  accelerate launch training/train_classifier.py --real cifar10-small --fake run/fake --mixing rsp \\
      --rsp-probability 0.8 --model resnet18 --lr 1e-3 --batch-size 128 --output-dir runs/c10-rsp""",
}
_TRAIN_EPILOG = """\
examples:
{examples}
  # evaluate saved weights on the validation and test splits (2 processes give the same numbers)
  accelerate launch --num_processes 2 training/{script} --real REAL --epochs 0 \\
      --weights runs/x/lr-0.0001/best/model.safetensors --output-dir runs/x-eval

Without --lr every learning rate of --lr-grid is trained (the paper: 1e-3 1e-4 1e-5 1e-6) and the best
on the validation split is kept; its best-validation checkpoint is evaluated on the test split.
OUTPUT/metrics.json holds validation/* and test/* values; compare runs with `promptmix report`.
Mixing strategies: none, promptmix (--r-mix), interleave (--interleave-probability), two-phase
(--two-phase-epochs, --two-phase-lr-factor), rsp (--rsp-probability), fake-only.
Rerun with --resume after an interruption. Runs as `python training/{script}` too.
"""


def train_main(task: str, argv: list[str] | None = None) -> int:
    """Parse the training flags (and ``--config`` YAML), train, print the result. Returns an exit code."""
    from ..utils.progress import is_main_process
    from ..utils.verbosity import configure_output
    from .config import build_parser, config_from_args

    script = SCRIPTS[task]
    parser = build_parser(task, prog=script, description=f"Train a {task} network on real + fake data (PromptMix).",
                          epilog=_TRAIN_EPILOG.format(examples=_EXAMPLES[task], script=script))
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v for INFO logs, -vv for DEBUG")
    args = parser.parse_args(argv)
    configure_output(args.verbose)
    try:
        from .trainer import train

        config = config_from_args(args, task=task)
        metrics = train(config)
    except PromptmixError as exc:
        print(f"{script}: error: {exc}", file=sys.stderr)
        return 1
    if is_main_process():
        keys = [k for k in metrics if k.startswith(("validation/", "test/")) and not k.endswith(("num_images",
                                                                                                  "num_samples"))]
        print(f"chosen lr {metrics['chosen_lr']}, best epoch {metrics['best_epoch']}: "
              + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys))
        print(f"wrote {Path(config.output_dir) / 'metrics.json'}")
    return 0


# -- promptmix model-info ------------------------------------------------------------------------------------
def _model_info(args) -> int:
    from .model_info import model_info, parse_size

    h, w = parse_size(args.size)
    kwargs = {"width_div": args.width_div}
    rows = []
    for name in args.model:
        extra = dict(kwargs)
        from .models import model_task

        if model_task(name) == "classification":
            extra["num_classes"] = args.num_classes
        info = model_info(name, h, w, **extra)
        rows.append((name, f"{h}x{w}", f"{info.mparams:.2f}", f"{info.params:,}", f"{info.gmacs:.2f}"))
    header = ("model", "input HxW", "params (M)", "params", "GMACs")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip())
    print("GMACs: multiply-accumulates of convolutions and linear layers for one image.")
    return 0


# -- promptmix report ----------------------------------------------------------------------------------------
def _report(args) -> int:
    from ..errors import InputError
    from .report import REPORT_FILE, compare_runs, write_report

    if args.out.lower() == "none":
        print(compare_runs(args.runs, baseline=args.baseline).table())
        return 0
    if Path(args.out).suffix.lower() == ".png":
        raise InputError(f"--out: expected a folder ({REPORT_FILE} and two PNGs go there); got {args.out}")
    files = write_report(args.runs, args.out, baseline=args.baseline)
    print(files.comparison.table())
    print(f"wrote {files.report} ({files.bars.name}, {files.curves.name} beside it)")
    return 0


# -- promptmix filter-prompts --------------------------------------------------------------------------------
def _filter_prompts(args) -> int:
    from .config import config_from_args
    from .prompt_filter import PromptFilterConfig, filter_prompts

    args.output_dir = str(Path(args.filter_out) / "baseline")  # placeholder; each run sets its own folder
    training = config_from_args(args, task=args.task)
    config = PromptFilterConfig(training=training, output_dir=str(args.filter_out),
                                epochs_per_prompt=args.epochs_per_prompt, tolerance=args.tolerance,
                                max_prompts=args.max_prompts)
    result = filter_prompts(config)
    key = result["metric"]
    print(f"baseline {key} {result['baseline']:.4f} (lr {result['lr']})")
    for r in result["prompts"]:
        value = r[key.split("/", 1)[1]]
        state = "kept   " if r["kept"] else "DROPPED"
        shown = "untested" if value is None else f"{value:.4f}"
        print(f"{state} {shown:>10}  {r['rows']:>5} rows  {r['prompt']}")
    print(f"kept {result['kept']}, dropped {result['dropped']}; wrote {args.filter_out}/fake, "
          f"{args.filter_out}/kept_prompts.txt, {args.filter_out}/prompt_filter.json")
    return 0


def add_parsers(subparsers) -> None:
    """Register ``model-info``, ``report`` and ``filter-prompts`` on the top-level ``promptmix`` parser."""
    from .models import MODEL_NAMES

    p = subparsers.add_parser(
        "model-info", help="parameters and GMACs of the training networks at an input size",
        description="Parameters and multiply-accumulates (GMACs) of one forward pass, as in PromptMix Table III. "
                    "Counted on the meta device: nothing is allocated or downloaded.",
        epilog="examples:\n  promptmix model-info --model rescsrnet csrnet --size 768x1024\n"
               "  promptmix model-info --model wrn-28-10 --size 32 --num-classes 10\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", required=True, choices=MODEL_NAMES, metavar="NAME",
                   help=f"one or more of {', '.join(MODEL_NAMES)}")
    p.add_argument("--size", default="768x1024", help="input HxW (or one number for a square); default 768x1024")
    p.add_argument("--num-classes", type=int, default=1000, help="classifiers' class count (default 1000)")
    p.add_argument("--width-div", type=int, default=1, help="channel divisor of the tiny variants (default 1)")
    p.set_defaults(func=_model_info)

    r = subparsers.add_parser(
        "report", help="compare training runs with their real-only baseline (tables, report.md, PNGs)",
        description="Compare training runs with their real-only baseline, as PromptMix Tables I-II and MVC "
                    "Table 5 do.",
        epilog="""\
For every test/* and validation/* metric of every run: its value, its change against the baseline
(run - baseline, and in % of the baseline) and whether that is better or worse (lower is better for
mae, rmse, abs_rel: marked ↓; higher for top1, top5, delta1-3: marked ↑). Prints the tables and writes
OUT/report.md, OUT/test_metric.png (a bar per run), OUT/training_curves.png and OUT/comparison.json.

The baseline of a run is --baseline when given; otherwise the real-only run (mixing: none) of the same
model, or the only real-only run. `promptmix run` writes the same report to RUN/report/ when a config has
two or more training runs.

examples:
  promptmix report runs/shtb/train/* --out shtb-report
  promptmix report runs/mvc-toy/train/* --baseline baseline          # MVC Table 5: strategies vs baseline
  promptmix report runs/a/train/promptmix --baseline runs/a/train/baseline --out none   # print only
""",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("runs", nargs="+", metavar="RUN_DIR", help="--output-dir folders of training runs (metrics.json)")
    r.add_argument("--baseline", metavar="NAME_OR_DIR",
                   help="compare every run with this one: a run's name (its folder name) or a run folder "
                        "(added to the runs when not among them); default: the real-only run of each model")
    r.add_argument("--out", default="report", metavar="DIR",
                   help="folder for report.md, test_metric.png, training_curves.png, comparison.json "
                        "(default ./report; 'none': print only)")
    r.set_defaults(func=_report)

    from .config import add_config_arguments

    f = subparsers.add_parser(
        "filter-prompts", help="drop prompts whose fake images make the validation error worse",
        description="PromptMix prompt filtering: train with each prompt's fake rows alone (plus the real rows), "
                    "compare the validation error with a real-only baseline, drop the prompts that make it worse, "
                    "and write the kept prompts and the filtered fake dataset.",
        epilog="""\
examples:
  promptmix filter-prompts --task counting --real shtb --fake run/fake --model rescsrnet --lr 1e-4 \\
      --r-mix 500 --epochs-per-prompt 20 --out run/prompt-filter
  promptmix filter-prompts --config configs/shtb.yaml --task counting --max-prompts 10 --out pf

Writes OUT/prompt_filter.json, OUT/kept_prompts.txt and OUT/fake/ (configs kept and all). Every run gets
--epochs-per-prompt epochs; without --lr the baseline searches --lr-grid and the prompt runs reuse its choice.
Rerun the same command to resume: finished runs are reused. The test split is never used.
""", formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--task", required=True, choices=tuple(SCRIPTS), help="counting, depth or classification")
    f.add_argument("--out", dest="filter_out", required=True, help="output folder")
    f.add_argument("--epochs-per-prompt", type=int, default=20, help="epochs of every run (default 20)")
    f.add_argument("--tolerance", type=float, default=0.0,
                   help="drop a prompt only if its error is worse by more than this share (default 0)")
    f.add_argument("--max-prompts", type=int, default=None, help="test only the first N prompts")
    add_config_arguments(f, skip=("task", "output_dir", "epochs", "mixing", "resume", "overwrite"))
    f.set_defaults(func=_filter_prompts)
