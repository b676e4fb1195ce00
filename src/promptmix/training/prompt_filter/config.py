"""``PromptFilterConfig``: the settings of PromptMix's prompt filtering (``promptmix filter-prompts``)."""

from __future__ import annotations

import dataclasses

from ...config import StageConfig, field
from ...errors import ConfigError
from ..train.config import TrainConfig


@dataclasses.dataclass
class PromptFilterConfig(StageConfig):
    training: TrainConfig = field(help="the training settings (real, fake, model, recipe); mixing is set per run")
    output_dir: str = field("", help="folder for the runs, prompt_filter.json, kept_prompts.txt and fake/")
    epochs_per_prompt: int = field(20, help="epochs of every run (baseline and each prompt): the budget")
    tolerance: float = field(0.0, help="relative margin: drop a prompt only if its error exceeds the baseline's "
                                       "by more than this share (0: the paper's rule)")
    max_prompts: int | None = field(None, help="test only the first N prompts (by row order); the rest are kept")

    def validate(self) -> None:
        if not self.output_dir:
            self.fail("output_dir", "a folder for the prompt-filtering runs (--output-dir)")
        if self.epochs_per_prompt < 1:
            self.fail("epochs_per_prompt", "an integer >= 1")
        if self.tolerance < 0:
            self.fail("tolerance", "a non-negative share")
        if self.max_prompts is not None and self.max_prompts < 1:
            self.fail("max_prompts", "an integer >= 1 (or unset)")
        if not self.training.fake:
            raise ConfigError("training.fake: prompt filtering needs a fake dataset (--fake); got None")
