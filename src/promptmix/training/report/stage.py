"""Stage ``report``: the training runs against their real-only baseline (``promptmix report``, section ``report:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ...errors import InputError
from ...stage import Stage
from .config import ReportConfig


class ReportStage(Stage):
    name = "report"
    config_class = ReportConfig
    inputs = ("train",)
    wired = ("runs", "names")
    summary = "compare training runs with their real-only baseline (tables, report.md, PNGs)"
    description = ("Compare training runs with their real-only baseline, as PromptMix Tables I-II and MVC Table 5 "
                   "do.")
    examples = """\
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
"""
    run_folder_arg = None
    marker_files = ("report.md",)

    def input_stages(self, config: ReportConfig, present) -> tuple[str, ...]:
        return tuple(f"train.{n}" for n in (config.names or []))

    def out(self, config: ReportConfig, run) -> Path | None:
        if config.out:
            return None if config.out.strip().lower() == "none" else Path(config.out)
        return run.report if run is not None else Path("report")

    def outputs(self, config: ReportConfig, run):
        out = self.out(config, run)
        return (out,) if out is not None else ()

    def settings(self, config: ReportConfig) -> dict[str, Any]:
        return {"baseline": config.baseline, "runs": list(config.names or [])}

    def run(self, config: ReportConfig, run) -> dict[str, Any]:
        from .report import REPORT_FILE, compare_runs, write_report

        out = self.out(config, run)
        if out is None:
            comparison = compare_runs(config.runs, baseline=config.baseline, names=config.names)
            return {"out": None, "table": comparison.table()}
        if out.suffix.lower() == ".png":
            raise InputError(f"--out: expected a folder ({REPORT_FILE} and two PNGs go there); got {out}")
        files = write_report(config.runs, out, baseline=config.baseline, names=config.names)
        comparison = files.comparison
        return {"out": str(files.report), "baselines": comparison.baselines, "table": comparison.table(),
                "figures": [files.bars.name, files.curves.name],
                "changes": {f"{c.run} {c.metric}": c.change for c in comparison.changes if c.change is not None}}

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        lines = [record["table"]]
        if record["out"] is not None:
            lines.append(f"wrote {record['out']} ({', '.join(record['figures'])} beside it)")
        return lines
