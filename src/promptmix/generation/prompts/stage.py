"""Stage ``prompts``: the prompt bag (``promptmix prompts``, pipeline section ``prompts:``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ...errors import ConfigError
from ...stage import Stage
from .config import PromptsConfig


class PromptsStage(Stage):
    name = "prompts"
    config_class = PromptsConfig
    inputs = ("caption", "real")
    wired = ("real", "real_revision", "out")
    summary = "build the prompt bag from captions and manual prompts (step 2)"
    description = ("Build the prompt bag: captions and manual prompts, with prefix, grayscale suffix and class "
                   "templates; deduplicated, each with a stable prompt_id.")
    examples = """\
Builds RUN/prompts (prompts.parquet, sources.parquet, info.json, config.yaml) from the captions in
RUN/captions and/or manual prompts. A final prompt is "<prefix>, <text>, <suffix>" (empty parts left
out; --separator changes ", "). Prompts with the same text and label are merged.

A bag that needs no captions (--no-captions; manual prompts, "{label}" templates) can be built from
the real dataset instead of a run folder (--real DIR --out RUN/prompts): the task, class names and
source images are read from the dataset, so nothing has to be captioned.

examples:
  promptmix prompts --run run --prefix "large crowd" --suffix grayscale
  promptmix prompts --run run --no-captions --manual "large crowd in [location]" \\
      --location "a train station" --location "a stadium"
  promptmix prompts --run run --class-template "a photo of a {label}" --class-template "{label}, {caption}"
  promptmix prompts --real cifar10 --out run/prompts --no-captions --class-template "a photo of a {label}"
  promptmix prompts --real nyu --out run/prompts --no-captions --manual "bedroom interior"
  promptmix prompts --run run --config prompts.yaml --tokenizer stabilityai/stable-diffusion-2-1-base
A --config YAML holds the keys below (or a pipeline config with a `prompts:` section); flags override it
and repeatable flags add to its lists.
"""
    run_folder_arg = "--run"
    run_folder_required = False
    run_folder_help = "run folder (with captions/) or a captions folder; optional with --real and --out"
    marker_files = ("info.json",)

    def input_stages(self, config: PromptsConfig, present) -> tuple[str, ...]:
        return ("caption",) if "caption" in present else ("real",)  # without captions it reads the real dataset

    def outputs(self, config: PromptsConfig, run):
        return (Path(config.out) if config.out is not None else run.prompts,)

    def run(self, config: PromptsConfig, run) -> dict[str, Any]:
        from ...run_folder import RunFolder
        from .bag import INFO_FILE, build_prompt_bag, load_tokenizer

        if run is None:
            if config.real is None:
                raise ConfigError("give the run folder (--run RUN, with captions/) or a real dataset (--real DIR)")
            if config.out is None:
                raise ConfigError("--out: required with --real (the prompt bag folder, e.g. run/prompts)")
            run = RunFolder(Path(config.out).parent)
        tokenizer = load_tokenizer(config.tokenizer, config.tokenizer_revision) if config.tokenizer else None
        with run.lock(self.name):
            out = build_prompt_bag(config, run.root, config.out, tokenizer=tokenizer, real=config.real,
                                   real_revision=config.real_revision, real_split=config.split)
        counts = json.loads((out / INFO_FILE).read_text(encoding="utf-8"))["counts"]
        return {"out": str(out), "prompts": counts["total"], "counts": counts}

    def summary_lines(self, record: Mapping[str, Any]) -> list[str]:
        c = record["counts"]
        parts = [f"{c['caption']} from captions", f"{c['class']} from class templates", f"{c['manual']} manual",
                 f"{c['template']} from [placeholder] templates"]
        extra = f"; {c['duplicates_merged']} duplicates merged"
        if c.get("empty_captions"):
            extra += f"; {c['empty_captions']} empty captions skipped"
        if c.get("dropped_by_max_prompts"):
            extra += f"; {c['dropped_by_max_prompts']} dropped by --max-prompts"
        if "truncated" in c:
            trunc = f"{c['truncated']} longer than {c['max_tokens']} tokens (will be truncated)"
        else:
            trunc = "truncation not checked (pass --tokenizer)"
        total = c["total"]
        return [f"wrote {total} prompt{'' if total == 1 else 's'} to {record['out']} ({', '.join(parts)}{extra}); "
                f"{trunc}"]
