"""Stage ``caption``: captions of the real training images (``promptmix caption``, pipeline section ``caption:``)."""

from __future__ import annotations

import json
from typing import Any, Mapping

from ...stage import Stage
from .config import CaptionConfig


class CaptionStage(Stage):
    name = "caption"
    config_class = CaptionConfig
    inputs = ("real",)
    wired = ("real",)
    summary = "caption the real training images (step 1 of generation)"
    description = "Caption every training image of a real dataset with a captioning model."
    examples = """\
Captions every image of the real dataset's train split with a transformers captioning model
(BLIP, BLIP-2, GIT, vision-encoder-decoder, ...) and writes RUN/captions/{captions,sources}.parquet
and info.json. Work is saved in chunks: rerun the same command to resume after an interruption.

examples:
  promptmix caption --real shtb --model Salesforce/blip-image-captioning-base --out run
  promptmix caption --real shtb --model Salesforce/blip2-opt-2.7b --revision main --out run --batch-size 32
  promptmix caption --real cifar10-small --model ./my-blip --out run --prompt "a photography of"
"""
    run_folder_arg = "--out"
    run_folder_help = "run folder; captions go to OUT/captions"
    marker_files = ("info.json", ".work-*")

    def outputs(self, config, run):
        return (run.captions,)

    def preflight(self, config: CaptionConfig, run):
        from ...preflight import check_model_id

        return check_model_id(config.model, config.revision, what="captioning model", subject="caption.model")

    def run(self, config: CaptionConfig, run) -> dict[str, Any]:
        from .captioner import INFO_FILE, caption_dataset

        with run.lock(self.name):
            out = caption_dataset(config, run)
        info = json.loads((out / INFO_FILE).read_text(encoding="utf-8"))
        return {"out": str(out), "num_captions": info["num_captions"], "empty_captions": info.get("empty_captions", 0),
                "task": info["task"], "real": config.real, "split": config.split, "model": config.model}

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        empty = record.get("empty_captions", 0)
        return [f"captioned {record['num_captions']} images of {record['real']} (split {record['split']}, task "
                f"{record['task']}) with {record['model']} -> {record['out']}"
                + (f"; {empty} empty captions" if empty else "")]
