"""``FilterConfig``: the settings of stage ``filter``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...config import StageConfig, field


@dataclasses.dataclass
class FilterConfig(StageConfig):
    """Settings of ``promptmix filter``."""

    _section = "filter"

    keep_percent: float = field(100.0, flags=("--keep",), metavar="PERCENT", help="keep this percentage of rows, those with the lowest quality scores "
                                            "(0 < value <= 100)")
    target: str = field("first", metavar="NAME|first|mean",
                        help="training target: 'first' annotator, an annotator's name, or 'mean' of all")
    annotators: list[str] | None = field(None, metavar="NAME",
                                         help="the annotators scored (default: every annotator in RUN/annotations, "
                                              "in the order they first ran); set by `promptmix run` to its "
                                              "annotate.annotators")
    out: Path | None = field(None, help="output folder (default RUN/fake)", runtime=True)
    force: bool = field(False, runtime=True, help="replace a non-empty --out folder that `promptmix filter` did "
                                                  "not write (never the run folder, nor a folder in or around it)")
    allow_empty: bool = field(False, runtime=True, help="write the dataset even when every row is filtered out "
                                                        "(then only its 'all' config, the default: datasets loads no "
                                                        "empty split); by default that is an error")

    def validate(self) -> None:
        if isinstance(self.keep_percent, bool) or not isinstance(self.keep_percent, (int, float)) \
                or not (0 < float(self.keep_percent) <= 100):
            self.fail("keep_percent", "a number in (0, 100]")
        self.keep_percent = float(self.keep_percent)
        if not isinstance(self.target, str) or not self.target.strip():
            self.fail("target", "'first', 'mean' or an annotator name")
        if self.out is not None and not isinstance(self.out, Path):
            self.out = Path(self.out)
