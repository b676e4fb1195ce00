"""The ``promptmix`` command. Each stage's subpackage registers its own subcommands.

A module listed in ``_COMMAND_MODULES`` exposes ``add_parsers(subparsers)``; each parser sets
``func`` (called with the parsed args, returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from . import __version__
from .errors import PromptmixError
from .utils.verbosity import configure_output

_COMMAND_MODULES = (
    "promptmix.pipeline.cli",  # run, demo
    "promptmix.builders.cli",  # real ..., jpeg-quality
    "promptmix.generation.cli",  # caption, prompts, generate, reproduce
    "promptmix.annotation.cli",  # annotate, filter
    "promptmix.publishing.cli",  # publish
    "promptmix.training.cli",  # model-info, report, filter-prompts
)

EPILOG = """\
The pipeline, stage by stage:
  promptmix real shanghaitech --root ShanghaiTech --part B --out shtb
  promptmix caption --real shtb --model Salesforce/blip-image-captioning-base --out run
  promptmix prompts --run run --prefix "large crowd"
  promptmix generate --prompts run/prompts --model stabilityai/stable-diffusion-2-1-base --out run -k 5
  promptmix annotate run --annotator csrnet=CSRNet_B.pth --annotator dmcount=dmcount_B.pth
  promptmix filter run --keep 60
  promptmix publish run --repo-id me/promptmix-shtb-fake --version 1.0.0
or all at once:  promptmix run configs/promptmix_shtb.yaml
Try it offline with tiny random models:  promptmix demo
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptmix",
        description="Grow small image datasets with text-to-image diffusion models, label them with several "
                    "annotators, filter by their agreement, train on real + fake data, publish on the Hub.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"promptmix {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v for INFO logs and the libraries' own warnings and bars, -vv for DEBUG "
                             "(accepted anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return parser


def _split_verbosity(argv: list[str]) -> tuple[list[str], int]:
    """``-v``/``-vv``/``--verbose`` are accepted anywhere on the line, before or after the subcommand."""
    rest, verbose = [], 0
    for arg in argv:
        if arg == "--verbose" or re.fullmatch(r"-v+", arg):
            verbose += 1 if arg == "--verbose" else len(arg) - 1
        else:
            rest.append(arg)
    return rest, verbose


def main(argv: list[str] | None = None) -> int:
    argv, verbose = _split_verbosity(list(sys.argv[1:] if argv is None else argv))
    configure_output(verbose)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = verbose
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PromptmixError as exc:
        print(f"promptmix {args.command}: error: {exc}", file=sys.stderr)
        if os.environ.get("PROMPTMIX_TRACEBACK"):
            raise
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
