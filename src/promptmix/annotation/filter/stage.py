"""Stage ``filter``: quality scores, the kept share, the fake dataset (``promptmix filter``, section ``filter:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ...stage import Stage
from .config import FilterConfig


class FilterStage(Stage):
    name = "filter"
    config_class = FilterConfig
    inputs = ("annotate",)
    wired = ("annotators",)
    summary = "score annotator agreement, keep the best rows, write the fake dataset"
    description = ("Compute quality scores from stored annotations, keep the lowest PERCENT %, and write the fake "
                   "dataset (Hub layout) to RUN/fake.")
    examples = """\
The quality score of a row is max_{j != j'} d(A_j, A_j') / max_j d(A_j, 0) over its annotators
(count difference for counting, mean absolute difference for depth, L1 between probability-scaled
one-hot predictions for classification). Rows whose annotations hold NaN/inf are flagged and never
kept. The output folder has configs 'kept' (default) and 'all' (every row, scores and flags).

examples:
  promptmix filter run --keep 60
  promptmix filter run --keep 40 --target mean --out run/fake-40
  promptmix filter run --keep 100 --target sasnet
Refiltering reads the stored annotations only: no model is loaded.
"""
    run_folder_help = "run folder with images/ and annotations/"
    marker_files = ("README.md",)

    def outputs(self, config: FilterConfig, run):
        return (Path(config.out) if config.out is not None else run.fake,)

    def run(self, config: FilterConfig, run) -> dict[str, Any]:
        from .filtering import filter_run

        with run.lock(self.name):
            report = filter_run(run, config)
        return {"out": str(report.out), "rows": report.rows, "kept": report.kept, "flagged": report.flagged,
                "target": report.target, "threshold": report.threshold, "summary": report.summary()}

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        return [record["summary"]]
