"""The smaller traps a new user met (issue 16, point 12): --set errors name --set, typos get a suggestion, a
number given for a WIDTHxHEIGHT says what is expected, help texts cite configs that exist, figures read well,
SIGTERM leaves a log line, the PromptMix citation has its venue and year."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptmix.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_config(tmp_path):
    assert main(["demo", "--config-only", "--out", str(tmp_path / "d")]) == 0
    return tmp_path / "d" / "demo.yaml"


def test_set_errors_are_reported_against_set_with_suggestions(demo_config, capsys):
    capsys.readouterr()
    assert main(["run", str(demo_config), "--set", "generate.size=512", "--check"]) == 1
    err = capsys.readouterr().err
    assert "generate.size: expected WIDTHxHEIGHT such as 512x512; got '512'" in err  # not "expected a string"
    assert "(from --set generate.size=512, not from the file)" in err
    assert main(["run", str(demo_config), "--set", "filter.keep_precent=40", "--check"]) == 1
    err = capsys.readouterr().err
    assert "filter.keep_precent: unknown key; allowed keys are" in err and "(did you mean 'keep_percent'?)" in err
    assert "--set filter.keep" in err
    assert main(["run", str(demo_config), "--set", "generat.steps=2", "--check"]) == 1
    err = capsys.readouterr().err
    assert "generat: unknown key; allowed keys are" in err and "(did you mean 'generate'?)" in err
    assert main(["demoo"]) == 2
    assert "unknown command 'demoo' (did you mean 'demo'?)" in capsys.readouterr().err


def test_every_help_cites_configs_that_exist():
    for name in COMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command").choices[name]
        text = sub.format_help()
        for rel in re.findall(r"\bconfigs/[\w.-]+\.yaml", text):
            assert (ROOT / rel).is_file(), f"`promptmix {name} --help` cites {rel}, which does not exist"


def test_prompt_length_histogram_with_one_length_has_whole_word_ticks():
    from promptmix.dataset_cards.figures import prompt_length_histogram

    fig = prompt_length_histogram(["a large crowd in a square at noon"] * 3)
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks) and 8 in ticks
    assert ax.get_xlim()[1] - ax.get_xlim()[0] >= 6


def test_training_loss_log_axis_reads_as_plain_numbers(tmp_path):
    import json

    from promptmix.training.report.report import curves_figure

    for name, losses in (("a", [2.9, 2.2, 1.5]), ("b", [2.7, 2.0, 1.6])):
        (tmp_path / name).mkdir()
        hist = [{"epoch": i, "train_loss": v, "validation/mae": 10 - i} for i, v in enumerate(losses, 1)]
        (tmp_path / name / "metrics.json").write_text(json.dumps({"history": hist, "primary_metric": "mae"}))
    fig = curves_figure([tmp_path / "a", tmp_path / "b"])
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    assert labels and not any("times" in t or "^" in t for t in labels), labels
    assert "2" in labels


def test_sigterm_leaves_a_log_line_and_the_resume_hint(tmp_path):
    env = {**os.environ, "PROMPTMIX_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "promptmix", "demo", "--out", str(tmp_path / "d")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "promptmix demo" in proc.stdout.readline()
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out, err)
    assert "promptmix demo: received SIGTERM" in err and "rerun the same command to resume" in err


def test_the_promptmix_citation_has_its_venue_year_and_arxiv_id():
    from promptmix.dataset_cards.card import CITATIONS

    promptmix = next(c["bibtex"] for c in CITATIONS if c["key"] == "bakhtiarnia_promptmix")
    assert "year          = {2023}" in promptmix and "IJCNN" in promptmix and "2301.12914" in promptmix
    mvc = next(c["bibtex"] for c in CITATIONS if c["key"] == "rahat_mvc")
    assert "{2025}" in mvc and "WACV" in mvc and "2412.15358" in mvc


def test_a_sigterm_landing_in_a_finalizer_is_delivered_again_not_lost(monkeypatch):
    """An exception raised inside ``__del__`` is printed as "ignored" and lost: there the handler re-sends the
    signal instead of raising, and everywhere else it raises ``Terminated``."""
    import promptmix.cli as cli

    sent = []
    monkeypatch.setattr(cli.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setitem(cli._TERMINATED, "requested", False)
    handler = cli._on_sigterm("demo")

    class Finalized:
        def __del__(self):
            handler(signal.SIGTERM, sys._getframe())  # returns: the signal is sent again in a moment

    Finalized()
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGTERM)] and cli._TERMINATED["requested"]
    with pytest.raises(cli.Terminated):
        handler(signal.SIGTERM, sys._getframe())
