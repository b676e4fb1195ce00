"""The top-level command: every subcommand registered with help and an example, -v anywhere, quiet libraries."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from promptmix.cli import _split_verbosity, build_parser

EXPECTED = {"run", "demo", "real", "jpeg-quality", "caption", "prompts", "generate", "reproduce", "annotate",
            "filter", "publish", "model-info", "report", "filter-prompts"}


def _subparsers(parser):
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_subcommand_is_registered_with_an_example():
    subs = _subparsers(build_parser())
    assert EXPECTED <= set(subs), sorted(EXPECTED - set(subs))
    for name, sub in subs.items():
        text = sub.format_help()
        assert "promptmix" in (sub.epilog or "") or name == "real", f"{name}: no example in --help"
        assert len(text) > 200, f"{name}: --help is too thin"


def test_verbosity_flags_are_taken_anywhere_on_the_line():
    assert _split_verbosity(["filter", "run", "--keep", "40", "-v"]) == (["filter", "run", "--keep", "40"], 1)
    assert _split_verbosity(["-vv", "generate", "--verbose"]) == (["generate"], 3)
    assert _split_verbosity(["prompts", "--prefix", "vivid"]) == (["prompts", "--prefix", "vivid"], 0)


@pytest.mark.parametrize("verbose, quiet", [([], True), (["-v"], False)])
def test_libraries_are_quiet_unless_verbose(verbose, quiet, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS",
                        "HF_DATASETS_DISABLE_PROGRESS_BARS")}
    code = ("import os, sys; from promptmix.cli import main; main(sys.argv[1:]); "
            "print(os.environ.get('TRANSFORMERS_VERBOSITY'), os.environ.get('HF_HUB_DISABLE_PROGRESS_BARS'))")
    out = subprocess.run([sys.executable, "-c", code, "jpeg-quality", str(tmp_path / "none.jpg"), *verbose],
                         capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == ("error 1" if quiet else "None None")
