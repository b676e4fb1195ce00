"""`promptmix demo` in the learned toy world (issue 14): PromptMix must beat real-only, as the paper says.

This is the outcome test the random-model demo could never be: the toy world's trained captioner, generator and
counters (shipped in promptmix/toy/models), the demo's own configuration and seed, the real pipeline. A bug
that destroys the method's effect (a wrong density scale, labels joined to the wrong images, fake rows that
never reach the trainer, a broken annotator) makes it fail. The demo is deterministic on CPU.
"""

from __future__ import annotations

import json
import re

import pytest

from promptmix.pipeline.demo import DemoSettings, run_demo

pytestmark = pytest.mark.slow


def test_the_toy_demo_shows_promptmix_beating_real_only(tmp_path):
    lines: list[str] = []
    assert run_demo(tmp_path / "demo", settings=DemoSettings(), echo=lines.append) == 0
    text = "\n".join(lines)
    assert "in the toy world" in text and "TINY RANDOM" not in text
    run = tmp_path / "demo" / "run"
    mae = {name: json.loads((run / "train" / name / "metrics.json").read_text())["test/mae"]
           for name in ("real-only", "promptmix")}
    assert json.loads((run / "train" / "promptmix" / "metrics.json").read_text())["test/num_images"] == 40
    assert mae["promptmix"] < mae["real-only"], mae
    m = re.search(r"effect: PromptMix test MAE ([\d.]+) vs real-only ([\d.]+): ratio ([\d.]+) \(better\)", text)
    assert m and float(m.group(1)) == pytest.approx(mae["promptmix"], abs=0.01), text
    assert float(m.group(3)) == pytest.approx(mae["promptmix"] / mae["real-only"], abs=1e-3)

    # every annotator measured on the real test split, in the output and in the card
    evals = json.loads((run / "annotations" / "real_eval.json").read_text())
    assert evals["split"] == "test" and set(evals["annotators"]) == {"counter-a", "counter-b"}
    for name, r in evals["annotators"].items():
        assert r["n"] == 40 and r["mae"] < mae["real-only"], (name, r)  # the teachers are better than the student
        assert f"annotator {name} on the real test split (40 images" in text
    card = (run / "publish" / "README.md").read_text()
    assert "## Annotators on real data" in card
    assert re.search(r"\| `counter-a` \| 40 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", card), card
    assert "toy world" in card  # the notice says what the data are
    assert (run / "publish" / "assets" / "samples.png").read_bytes()[:4] == b"\x89PNG"
