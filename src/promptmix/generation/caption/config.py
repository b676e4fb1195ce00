"""``CaptionConfig``: the settings of stage ``caption``."""

from __future__ import annotations

import dataclasses

from ...config import StageConfig, field


@dataclasses.dataclass
class CaptionConfig(StageConfig):
    """Settings of ``promptmix caption`` (and the ``caption:`` section of a pipeline config)."""

    _section = "caption"

    real: str = field(help="real dataset: a folder written by `promptmix real ...` or a Hub dataset id")
    model: str = field(help="captioning model: Hub id (e.g. Salesforce/blip-image-captioning-base) or local folder")
    revision: str | None = field(None, help="model revision (branch, tag or commit) when `model` is a Hub id")
    real_revision: str | None = field(None, help="dataset revision when `real` is a Hub id")
    split: str = field("train", help="split of the real dataset to caption")
    max_new_tokens: int = field(30, help="longest caption, in tokens")
    num_beams: int = field(1, help="beam search width (1 = greedy)")
    prompt: str | None = field(None, help="conditional text the caption starts from (e.g. BLIP 'a photography of')")
    keep_prompt: bool = field(False, help="keep the conditional text at the start of each caption")
    batch_size: int = field(16, runtime=True, help="images per generate() call")
    chunk_size: int = field(512, runtime=True, help="images per resumable chunk file")
    device: str | None = field(None, runtime=True, help="auto, cpu, cuda, cuda:N or mps")
    dtype: str | None = field(None, runtime=True,
                              help="auto (fp16 on CUDA, fp32 elsewhere), float32, float16, bfloat16")
    trust_remote_code: bool = field(False, runtime=True, help="allow custom model code from the model repo")

    def validate(self) -> None:
        if not str(self.real).strip():
            self.fail("real", "a dataset folder or Hub id")
        if not str(self.model).strip():
            self.fail("model", "a model Hub id or folder")
        for name in ("max_new_tokens", "num_beams", "batch_size", "chunk_size"):
            if int(getattr(self, name)) < 1:
                self.fail(name, "an integer >= 1")
