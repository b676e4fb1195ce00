"""``ReportConfig``: the settings of stage ``report``."""

from __future__ import annotations

import dataclasses

from ...config import StageConfig, field


@dataclasses.dataclass
class ReportConfig(StageConfig):
    """The ``report`` section: how the training runs are compared (``promptmix report``). The report stage runs
    whenever there are two or more training runs; this section is needed only to choose the baseline."""

    _section = "report"

    runs: list[str] = field(default_factory=list, positional=True, metavar="RUN_DIR",
                            help="--output-dir folders of training runs (metrics.json); set by `promptmix run` to "
                                 "its train runs")
    names: list[str] | None = field(None, metavar="NAME", help="the runs' names in the report (default: their folder "
                                                                "names); set by `promptmix run` to the train names")

    baseline: str | None = field(None, help="the training run (a train NAME) every other run is compared with; "
                                            "default: for each run, the real-only run (mixing: none) of the same "
                                            "model, or the only real-only run", metavar="NAME_OR_DIR")
    # a str, not ``Path | None``: the flag parser reads "none" as None for optional fields, and here "none"
    # means "print only", not "the default folder"
    out: str = field("", runtime=True, metavar="DIR",
                             help="folder for report.md, test_metric.png, training_curves.png, comparison.json "
                                  "(default RUN/report; `promptmix report` without a run folder: ./report; "
                                  "'none': print only)")

    def validate(self) -> None:
        if self.names is not None and len(self.names) != len(self.runs):
            self.fail("names", f"one name per run ({len(self.runs)})")
