"""``AnnotateConfig``: the settings of stage ``annotate``."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...config import StageConfig, field
from ...errors import ConfigError, InputError
from ...utils.device import DTYPE_NAMES


@dataclasses.dataclass
class AnnotateConfig(StageConfig):
    """The ``annotate`` section: the annotators of ``promptmix annotate`` (one SPEC each)."""

    _section = "annotate"

    annotators: list[str] = field(default_factory=list, flags=("--annotator", "-a"), metavar="SPEC",
                                  help="annotator SPECs as `promptmix annotate --annotator` takes them: "
                                       "[NAME:]FOLDER_OR_HUB_ID or [NAME:]KIND=ARGUMENT, e.g. "
                                       "shtb:sasnet=SHHB.pth; the first one is the default training target")
    revision: str | None = field(None, help="Hub revision of annotators given by Hub id")
    batch_size: int = field(8, runtime=True, help="images per annotator call")
    device: str | None = field(None, runtime=True, help="auto, cpu, cuda, cuda:N or mps")
    dtype: str | None = field(None, help="auto (fp16 on CUDA), float32, float16, bfloat16; part of the cache key as "
                                         "the dtype it resolves to")
    evaluate_split: str | None = field(None, metavar="SPLIT",
                                       help="also run every annotator over this split of the real dataset (e.g. "
                                            "test) and record its error there (RUN/annotations/real_eval.json, "
                                            "shown in the dataset card): counting MAE/RMSE, classification top-1")

    def validate(self) -> None:
        if not isinstance(self.annotators, list) or not self.annotators \
                or not all(isinstance(a, str) and a.strip() for a in self.annotators):
            self.fail("annotators", "a non-empty list of annotator SPECs (strings)")
        if self.batch_size < 1:
            self.fail("batch_size", "an integer >= 1")
        if self.evaluate_split is not None and not (isinstance(self.evaluate_split, str) and self.evaluate_split):
            self.fail("evaluate_split", "a split name of the real dataset, such as test or validation")
        if self.dtype is not None and self.dtype not in DTYPE_NAMES:
            self.fail("dtype", f"one of {', '.join(DTYPE_NAMES)}")

    def hashed_dict(self) -> dict[str, Any]:
        """The labels depend on the dtype the annotators run in: ``auto`` is hashed as what it resolves to."""
        from ...utils.device import effective_dtype

        return {**super().hashed_dict(), "dtype": effective_dtype(self.dtype, self.device)}

    def names(self) -> list[str]:
        """The annotators' names (output folders), in order; raises ConfigError for a bad SPEC."""
        from ..annotators.registry import default_name, parse_spec

        names = []
        for i, spec in enumerate(self.annotators):
            try:
                names.append(default_name(parse_spec(spec)))
            except InputError as exc:
                raise ConfigError(f"annotate.annotators[{i}]: {exc}") from None
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"annotate.annotators: names must be unique; {dupes[0]!r} occurs twice (name them "
                              f"NAME:SPEC)")
        return names
