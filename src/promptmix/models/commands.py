"""``promptmix model-info``: parameters and GMACs of the networks at an input size (PromptMix Table III)."""

from __future__ import annotations

import argparse

from ..cli import Command


class ModelInfoCommand(Command):
    summary = "parameters and GMACs of the training networks at an input size"
    description = ("Parameters and multiply-accumulates (GMACs) of one forward pass, as in PromptMix Table III. "
                   "Counted on the meta device: nothing is allocated or downloaded.")
    examples = ("examples:\n  promptmix model-info --model rescsrnet csrnet --size 768x1024\n"
                "  promptmix model-info --model wrn-28-10 --size 32 --num-classes 10\n")

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        from . import MODEL_NAMES

        parser.add_argument("--model", nargs="+", required=True, choices=MODEL_NAMES, metavar="NAME",
                            help=f"one or more of {', '.join(MODEL_NAMES)}")
        parser.add_argument("--size", default="768x1024", help="input HxW (or one number for a square); default "
                                                                "768x1024")
        parser.add_argument("--num-classes", type=int, default=1000, help="classifiers' class count (default 1000)")
        parser.add_argument("--width-div", type=int, default=1, help="channel divisor of the tiny variants (default 1)")

    def __call__(self, args: argparse.Namespace) -> int:
        from . import model_task
        from .info import model_info, parse_size

        h, w = parse_size(args.size)
        rows = []
        for name in args.model:
            extra = {"width_div": args.width_div}
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
