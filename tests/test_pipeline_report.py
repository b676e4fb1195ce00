"""The comparison with the real-only baseline (`promptmix report`, the pipeline's report stage), on hand-made
metrics.json files whose changes are known: values, signs, percentages, better / worse per metric, baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptmix.errors import InputError
from promptmix.training.report.report import compare_runs, greater_is_better, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def row_of(text: str, metric: str, run: str) -> list[str]:
    """The cells after the run name in the comparison table's row of ``metric`` (with its arrow) and ``run``."""
    return next(line.split()[3:] for line in text.splitlines() if line.split()[:3] == [*metric.split(), run])


def write_run(folder: Path, *, mixing: str, model: str = "rescsrnet", primary: str = "mae", up: bool = False,
              **metrics) -> Path:
    folder.mkdir(parents=True)
    data = {"task": "counting", "model": model, "mixing": mixing, "r_mix": None if mixing == "none" else 500,
            "chosen_lr": 1e-3, "best_epoch": 2, "primary_metric": primary, "greater_is_better": up,
            "history": [{"epoch": 1, "train_loss": 2.0, f"validation/{primary}": 3.0},
                        {"epoch": 2, "train_loss": 1.0, f"validation/{primary}": 2.5}],
            **{k.replace("__", "/"): v for k, v in metrics.items()}}
    (folder / "metrics.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def counting(tmp_path):
    """PromptMix Table I, SHTB: ResCSRNet 11.63 -> 8.57 and CSRNet 10.60 -> 8.68 (MAE); RMSE made worse."""
    runs = tmp_path / "train"
    return {
        "rescsrnet-baseline": write_run(runs / "rescsrnet-baseline", mixing="none", test__mae=11.63, test__rmse=20.0,
                                        validation__mae=9.0, test__num_images=316),
        "rescsrnet-promptmix": write_run(runs / "rescsrnet-promptmix", mixing="promptmix", test__mae=8.57,
                                         test__rmse=21.0, validation__mae=9.0, test__num_images=316),
        "csrnet-baseline": write_run(runs / "csrnet-baseline", mixing="none", model="csrnet", test__mae=10.60,
                                     test__rmse=18.0, validation__mae=8.0),
        "csrnet-promptmix": write_run(runs / "csrnet-promptmix", mixing="promptmix", model="csrnet", test__mae=8.68,
                                      test__rmse=17.0, validation__mae=7.5),
    }


def test_changes_signs_and_verdicts_against_the_baseline_of_the_same_model(counting):
    comp = compare_runs(list(counting.values()))
    assert comp.baselines == {"rescsrnet-baseline": None, "rescsrnet-promptmix": "rescsrnet-baseline",
                              "csrnet-baseline": None, "csrnet-promptmix": "csrnet-baseline"}
    assert comp.metrics == ["test/mae", "test/rmse", "validation/mae"]  # counts left out, test first
    c = comp.change("rescsrnet-promptmix", "test/mae")
    assert (c.value, c.baseline_value) == (8.57, 11.63)
    assert c.change == pytest.approx(-3.06) and c.relative == pytest.approx(-26.311, abs=1e-3)  # "up to 26%"
    assert c.verdict == "better"  # lower MAE is better
    rmse = comp.change("rescsrnet-promptmix", "test/rmse")
    assert rmse.change == pytest.approx(1.0) and rmse.relative == pytest.approx(5.0) and rmse.verdict == "worse"
    assert comp.change("rescsrnet-promptmix", "validation/mae").verdict == "same"
    cs = comp.change("csrnet-promptmix", "test/mae")
    assert cs.baseline == "csrnet-baseline" and cs.change == pytest.approx(-1.92)  # not against ResCSRNet's
    assert comp.change("csrnet-baseline", "test/mae").change is None

    lines = comp.table().splitlines()
    row = row_of(comp.table(), "test/mae ↓", "rescsrnet-promptmix")
    assert row == ["8.5700", "-3.0600", "-26.31%", "better"]
    row = row_of(comp.table(), "test/rmse ↓", "rescsrnet-promptmix")
    assert row == ["21.0000", "+1.0000", "+5.00%", "worse"]
    row = row_of(comp.table(), "test/mae ↓", "csrnet-baseline")
    assert row == ["10.6000", "baseline"]
    info = next(line.split() for line in lines if line.startswith("csrnet-promptmix "))
    assert info[-1] == "csrnet-baseline"


def test_higher_is_better_for_accuracy_and_delta(tmp_path):
    """MVC Table 5 (ResNet50): 96.1 combined -> 95.4 with AA (-0.7, worse), 97.2 two-phase (+1.1, better);
    PromptMix Table II: delta1 0.754 -> 0.780 (better), RMSE 0.639 -> 0.601 (better)."""
    base = write_run(tmp_path / "combined", mixing="none", primary="top1", up=True, test__top1=0.961)
    aa = write_run(tmp_path / "aa", mixing="rsp", primary="top1", up=True, test__top1=0.954)
    two = write_run(tmp_path / "two-phase", mixing="two-phase", primary="top1", up=True, test__top1=0.972)
    comp = compare_runs([aa, two, base], baseline="combined")  # by name; the baseline need not come first
    assert comp.change("aa", "test/top1").change == pytest.approx(-0.007)
    assert comp.change("aa", "test/top1").verdict == "worse"
    assert comp.change("two-phase", "test/top1").verdict == "better"
    assert comp.change("two-phase", "test/top1").relative == pytest.approx(1.1 / 96.1 * 100)
    assert "test/top1 ↑" in comp.table()

    d0 = write_run(tmp_path / "d" / "guidedepth-baseline", mixing="none", primary="rmse", test__delta1=0.754,
                   test__rmse=0.639, test__abs_rel=0.2)
    d1 = write_run(tmp_path / "d" / "guidedepth-promptmix", mixing="promptmix", primary="rmse", test__delta1=0.780,
                   test__rmse=0.601, test__abs_rel=0.21)
    comp = compare_runs([d0, d1])
    verdicts = {m: comp.change("guidedepth-promptmix", m).verdict for m in comp.metrics}
    assert verdicts == {"test/delta1": "better", "test/rmse": "better", "test/abs_rel": "worse"}
    assert [greater_is_better(m) for m in ("test/mae", "validation/rmse", "abs_rel", "top5", "delta3")] == \
        [False, False, False, True, True]
    assert greater_is_better("test/f1") is None and greater_is_better("f1", {"primary_metric": "f1",
                                                                           "greater_is_better": True}) is True


def test_baseline_by_folder_outside_the_runs_and_errors(counting, tmp_path):
    comp = compare_runs([counting["csrnet-promptmix"]], baseline=counting["rescsrnet-baseline"])
    assert [r.name for r in comp.runs] == ["rescsrnet-baseline", "csrnet-promptmix"]  # the baseline is added
    assert comp.change("csrnet-promptmix", "test/mae").change == pytest.approx(8.68 - 11.63)
    with pytest.raises(InputError, match=r"--baseline: 'nope' is not one of the runs \(rescsrnet-baseline"):
        compare_runs(list(counting.values()), baseline="nope")
    with pytest.raises(InputError, match="no metrics.json; expected the --output-dir of a finished training run"):
        compare_runs([tmp_path])
    # no real-only run of the model and more than one real-only run: no baseline, and the table says why
    other = write_run(tmp_path / "x" / "vgg-promptmix", mixing="promptmix", model="vgg", test__mae=1.0)
    comp = compare_runs([counting["rescsrnet-baseline"], counting["csrnet-baseline"], other])
    assert comp.baselines["vgg-promptmix"] is None and comp.change("vgg-promptmix", "test/mae").change is None
    assert "no baseline for vgg-promptmix" in comp.table() and "--baseline NAME" in comp.table()


def test_write_report_and_the_cli(counting, tmp_path, capsys, monkeypatch):
    from promptmix.cli import main

    files = write_report(list(counting.values()), tmp_path / "out")
    md = files.report.read_text()
    assert "| test/mae ↓ | rescsrnet-promptmix | 8.5700 | -3.0600 | -26.31% | better |" in md
    assert "![Test metric per run](test_metric.png)" in md and "![Training curves](training_curves.png)" in md
    assert files.bars.read_bytes()[:8] == PNG and files.curves.read_bytes()[:8] == PNG
    saved = json.loads(files.json.read_text())
    assert {(c["run"], c["metric"], c["verdict"]) for c in saved["changes"]} >= {
        ("csrnet-promptmix", "test/rmse", "better"), ("rescsrnet-promptmix", "test/rmse", "worse")}

    dirs = [str(p) for p in counting.values()]
    assert main(["report", *dirs, "--baseline", "csrnet-baseline", "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    row = row_of(out, "test/mae ↓", "rescsrnet-promptmix")
    assert row == ["8.5700", "-2.0300", "-19.15%", "better"]  # against CSRNet's 10.60 now
    assert f"wrote {tmp_path / 'cli' / 'report.md'}" in out and (tmp_path / "cli" / "test_metric.png").exists()
    monkeypatch.chdir(tmp_path)  # `--out none` prints only: no ./none, and no ./report (the default folder)
    assert main(["report", *dirs, "--out", "none"]) == 0
    assert "-26.31%" in capsys.readouterr().out and not Path("none").exists() and not Path("report").exists()
    assert main(["report", *dirs, "--out", str(tmp_path / "x.png")]) == 1
    assert "--out: expected a folder" in capsys.readouterr().err
