"""Generating from a `.txt` prompt file, then annotating it; a start that fails leaves nothing in the way."""

from __future__ import annotations

import json

from promptmix.cli import main
from promptmix.run_folder import RunFolder


def _generate(prompts, model, out, *extra):
    return main(["generate", "--prompts", str(prompts), "--model", str(model), "--out", str(out), "-k", "2",
                 "--steps", "1", "--size", "24x24", "--chunk-size", "2", "--batch-size", "2", "--device", "cpu",
                 *extra])


def test_a_txt_run_takes_its_task_from_annotators_that_agree_or_from_generate_task(tmp_path, tiny_models, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a large crowd in a square\na large crowd on a beach\n")
    run = tmp_path / "run"
    assert _generate(prompts, tiny_models["sd"], run) == 0  # the README's .txt flow, no --task
    capsys.readouterr()
    counter_a, counter_b = f"a:{tiny_models['counter_a']}", f"b:{tiny_models['counter_b']}"
    assert main(["annotate", str(run), "--annotator", counter_a, "--annotator", counter_b, "--device", "cpu"]) == 0
    assert "(counting)" in capsys.readouterr().out
    assert RunFolder(run).stage_record("annotate")["task"] == "counting"
    assert main(["filter", str(run), "--keep", "50"]) == 0  # reads the task annotate took
    assert "kept" in capsys.readouterr().out.lower()

    # annotators of two tasks: no guess, and the message says how to declare it
    mixed = tmp_path / "mixed"
    assert _generate(prompts, tiny_models["sd"], mixed) == 0
    capsys.readouterr()
    assert main(["annotate", str(mixed), "--annotator", counter_a, "--annotator",
                 f"d:{tiny_models['depth']}"]) == 1
    err = capsys.readouterr().err
    assert "disagree (counting, depth)" in err and "--task counting|depth" in err and "nothing is regenerated" in err

    # declared afterwards: the same command with --task regenerates nothing and records the task
    assert _generate(prompts, tiny_models["sd"], mixed, "--task", "depth") == 0
    assert "0 generated, 4 already done" in capsys.readouterr().out
    assert json.loads((mixed / "images" / "plan.json").read_text())["task"] == "depth"
    assert main(["annotate", str(mixed), "--annotator", counter_a]) == 1
    assert "is a counting model but the run's task is depth" in capsys.readouterr().err


def test_a_failed_start_does_not_block_the_corrected_command(tmp_path, tiny_models, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    run = tmp_path / "run"
    # a folder that is not a diffusers pipeline (a counting model): loading fails after the plan is written
    assert _generate(prompts, tiny_models["counter_a"], run, "--task", "counting") == 1
    assert "could not be loaded" in capsys.readouterr().err
    assert RunFolder(run).image_chunks().list() == []
    assert _generate(prompts, tiny_models["sd"], run, "--task", "counting", "--steps", "2") == 0
    assert "2 generated" in capsys.readouterr().out
    assert len(RunFolder(run).image_chunks().list()) == 1
    # once images exist, other settings are refused as before (they would mix two runs)
    assert _generate(prompts, tiny_models["sd"], run, "--task", "counting", "--steps", "3") == 1
    assert "generated with different settings" in capsys.readouterr().err
