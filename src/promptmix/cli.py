"""The ``promptmix`` command.

Every stage is a command whose flags are generated from its config class (:mod:`promptmix.cli_args`):
``promptmix real``, ``caption``, ``prompts``, ``generate``, ``annotate``, ``filter``, ``publish``,
``report``. The other commands (``run``, ``demo``, ``jpeg-quality``, ``reproduce``, ``model-info``,
``filter-prompts``) are small :class:`Command` classes. :data:`COMMANDS` lists them all; only the
command being run has its parser built, and parsing imports none of torch, diffusers, transformers or
datasets (a test checks it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Any

from . import __version__
from .errors import PromptmixError
from .utils.verbosity import configure_output

#: command -> "stage:NAME" (a stage of promptmix.stage.STAGES) or "module:Class" (a Command)
COMMANDS: dict[str, str] = {
    "run": "promptmix.pipeline.commands:RunCommand",
    "demo": "promptmix.pipeline.commands:DemoCommand",
    "init": "promptmix.pipeline.commands:InitCommand",
    "real": "stage:real",
    "jpeg-quality": "promptmix.builders.commands:JpegQualityCommand",
    "caption": "stage:caption",
    "prompts": "stage:prompts",
    "generate": "stage:generate",
    "reproduce": "promptmix.generation.generate.commands:ReproduceCommand",
    "annotate": "stage:annotate",
    "filter": "stage:filter",
    "publish": "stage:publish",
    "report": "stage:report",
    "model-info": "promptmix.models.commands:ModelInfoCommand",
    "filter-prompts": "promptmix.training.commands:FilterPromptsCommand",
}

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
A paper's experiment with its real settings, and the files it needs:  promptmix init shtb
"""


class Command:
    """A command that is not a stage: its help and its arguments, and what it does."""

    name: str = ""
    summary: str = ""
    description: str = ""
    examples: str = ""

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments."""

    def __call__(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


class StageCommand(Command):
    """``promptmix STAGE``: the stage's config fields as flags, ``--config FILE.yaml``, and its run folder."""

    def __init__(self, stage):
        self.stage = stage
        self.name = stage.name
        self.summary = stage.summary
        self.description = stage.description or stage.summary
        self.examples = stage.examples

    def build_parser(self, parser: argparse.ArgumentParser) -> None:
        from pathlib import Path

        from .cli_args import add_config_arguments

        stage = self.stage
        if hasattr(stage, "build_parser"):  # a stage with its own layout (real: one subcommand per builder)
            stage.build_parser(parser)
            return
        arg = stage.run_folder_arg
        if arg == "RUN":
            parser.add_argument("run", type=Path, metavar="RUN", help=stage.run_folder_help)
        elif arg is not None:
            parser.add_argument(arg, dest="run", type=Path, default=None, required=stage.run_folder_required,
                                help=stage.run_folder_help)
        section = getattr(stage.config_class, "_section", stage.name)
        parser.add_argument("--config", metavar="YAML",
                            help=f"YAML file of the settings below (or a pipeline config with a `{section}:` "
                                 "section); flags override it")
        stage.add_cli_arguments(parser)
        add_config_arguments(parser, stage.config_class)

    def config(self, args: argparse.Namespace):
        from .cli_args import config_from_args

        stage = self.stage
        if hasattr(stage, "config_from_cli"):
            return stage.config_from_cli(args)
        section = getattr(stage.config_class, "_section", stage.name)
        return config_from_args(stage.config_class, args, section=section, defaults=stage.cli_defaults(),
                                overrides=stage.cli_overrides(args))

    def __call__(self, args: argparse.Namespace) -> int:
        from .run_folder import RunFolder

        config = self.config(args)
        if config is None:  # the command printed its help (e.g. `promptmix real` without a builder)
            return 2
        run = getattr(args, "run", None)
        run = RunFolder(run) if run is not None else None
        problems = self.stage.preflight(config, run)
        if problems:
            from .errors import InputError
            from .preflight import report

            raise InputError(report(problems))
        return self.stage.cli(config, run, args)


def load_command(name: str) -> Command:
    target = COMMANDS[name]
    kind, _, what = target.partition(":")
    if kind == "stage":
        from .stage import get_stage

        return StageCommand(get_stage(what))
    command = getattr(importlib.import_module(kind), what)()
    command.name = name
    return command


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser, with every command's arguments; given ``command``, only that command's (the others
    get their help line only: what ``promptmix`` does on each call)."""
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
    for name in COMMANDS:
        cmd = load_command(name)
        p = sub.add_parser(name, help=cmd.summary, description=cmd.description or cmd.summary,
                           epilog=cmd.examples, formatter_class=argparse.RawDescriptionHelpFormatter)
        if command is None or name == command:
            cmd.build_parser(p)
        p.set_defaults(func=cmd)
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


def _command_of(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster preempting the job, `kill`): unwinds like Ctrl-C, so locks are released and the
    finished chunks are kept; the same command resumes."""


_TERMINATED = {"requested": False}


def _in_finalizer(frame) -> bool:
    """Whether ``frame`` runs inside a ``__del__`` (garbage collection), where an exception is printed as
    "Exception ignored" and lost instead of unwinding the command."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _on_sigterm(command: str):
    import signal

    def handler(signum, frame):
        if not _TERMINATED["requested"]:
            _TERMINATED["requested"] = True
            print(f"promptmix {command}: received SIGTERM (the job was stopped or preempted); stopping: finished "
                  "work is kept, rerun the same command to resume", file=sys.stderr, flush=True)
        if _in_finalizer(frame):  # raising here would be swallowed: deliver the signal again in a moment
            import threading

            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
            return
        raise Terminated()
    return handler


def main(argv: list[str] | None = None) -> int:
    argv, verbose = _split_verbosity(list(sys.argv[1:] if argv is None else argv))
    configure_output(verbose)
    command = _command_of(argv) or ""  # no command: `promptmix --help`, an error, the version
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in COMMANDS:
        from .utils.suggest import did_you_mean

        print(f"promptmix: error: unknown command {first!r}{did_you_mean(first, COMMANDS)}; commands: "
              f"{', '.join(COMMANDS)} (`promptmix --help`)", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args = parser.parse_args(argv)
    args.verbose = verbose
    func: Any = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm(args.command))
    _TERMINATED["requested"] = False
    try:
        code = int(func(args) or 0)
        if _TERMINATED["requested"]:  # the signal's exception was lost somewhere (a callback that swallows it)
            raise Terminated()
        return code
    except PromptmixError as exc:
        print(f"promptmix {args.command}: error: {exc}", file=sys.stderr)
        if os.environ.get("PROMPTMIX_TRACEBACK"):
            raise
        return 1
    except Terminated:
        print(f"promptmix {args.command}: terminated by SIGTERM; rerun the same command to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
