"""Prompt filtering, PromptMix's optional last stage (Section III).

For every prompt ``p_i``, train the lightweight network on the real rows plus only the fake rows
generated from ``p_i`` (PromptMix mixing, ``r_mix`` fresh rows per epoch, at most all of them) and
compare its validation error ``E_val^{p_i}`` with the real-only baseline's ``E_val^{base}``; a
prompt whose error is worse (``E_val^{p_i} > E_val^{base} * (1 + tolerance)``, or lower accuracy
for classification) is dropped with all its images. Only the validation split is used; the test
split plays no part. Every run has the same budget of ``epochs_per_prompt`` epochs; the baseline
picks the learning rate (from the grid when ``--lr`` is unset) and the prompt runs reuse it.

Output folder::

    OUT/
      baseline/                  the real-only training run
      prompts/<prompt_id>/       one training run per prompt
      prompt_filter.json         per prompt: text, rows, validation metric, baseline, kept
      kept_prompts.txt           the kept prompts, one per line
      fake/                      the fake dataset without the dropped prompts (configs kept, all)

Finished runs are reused when the same command is run again (their config must match).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ... import schema
from ...errors import ConfigError, InputError
from ...tasks import get_task
from ...utils.io import write_hub_folder, write_json_atomic, write_text_atomic
from ..train.config import TrainConfig
from .config import PromptFilterConfig
from ..train.data import TrainingData, _load_fake, load_training_data

logger = logging.getLogger(__name__)

RESULT_FILE = "prompt_filter.json"


def _sub_config(config: PromptFilterConfig, out: Path, **changes: Any) -> TrainConfig:
    base = config.training.to_dict()
    base.update(epochs=config.epochs_per_prompt, two_phase_epochs=0, output_dir=str(out), overwrite=True,
                resume=False, **changes)
    return TrainConfig.from_dict(base)


def _finished(run_config: TrainConfig) -> dict | None:
    """metrics.json of a finished run with the same settings, else None."""
    out = run_config.output_path
    try:
        saved = TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")))
        import json

        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ConfigError, ValueError, TypeError):
        return None
    return metrics if saved.config_hash() == run_config.config_hash() else None


def _run(run_config: TrainConfig, data: TrainingData) -> dict:
    from ..train.trainer import train

    done = _finished(run_config)
    if done is not None:
        logger.info("reusing %s", run_config.output_dir)
        return done
    return train(run_config, data=data)


def prompt_groups(fake) -> dict[str, dict[str, Any]]:
    """``{prompt_id: {"prompt": text, "rows": [indices]}}`` in order of first appearance."""
    cols = fake.select_columns([schema.PROMPT_ID, schema.PROMPT])
    ids = cols[schema.PROMPT_ID]
    texts = cols[schema.PROMPT]
    groups: dict[str, dict[str, Any]] = {}
    for i, (pid, text) in enumerate(zip(ids, texts)):
        groups.setdefault(pid, {"prompt": text, "rows": []})["rows"].append(i)
    return groups


def filter_prompts(config: PromptFilterConfig) -> dict[str, Any]:
    """Run prompt filtering; returns the contents of ``prompt_filter.json``."""
    out = Path(config.output_dir)
    train_cfg = config.training
    spec = get_task(train_cfg.task)
    loading = dataclasses.replace(train_cfg, mixing="promptmix" if train_cfg.mixing == "none" else train_cfg.mixing,
                                  r_mix=train_cfg.r_mix or 1)
    data = load_training_data(loading)
    if data.fake is None or schema.PROMPT_ID not in data.fake.column_names:
        raise InputError(f"fake dataset {train_cfg.fake!r}: expected a {schema.PROMPT_ID!r} column to group rows "
                         f"by prompt")
    groups = prompt_groups(data.fake)
    tested = list(groups)[: config.max_prompts] if config.max_prompts else list(groups)

    baseline_cfg = _sub_config(config, out / "baseline", mixing="none", r_mix=None)
    baseline = _run(baseline_cfg, data.with_fake(None))
    base_value = baseline[f"validation/{spec.primary}"]
    lr = baseline["chosen_lr"]
    records = []
    for pid in groups:
        rows = groups[pid]["rows"]
        record = {"prompt_id": pid, "prompt": groups[pid]["prompt"], "rows": len(rows), "tested": pid in tested}
        if pid in tested:
            r_mix = min(train_cfg.r_mix or len(rows), len(rows))
            run_cfg = _sub_config(config, out / "prompts" / pid, mixing="promptmix", r_mix=r_mix, lr=lr)
            metrics = _run(run_cfg, data.with_fake(data.fake.select(rows)))
            value = metrics[f"validation/{spec.primary}"]
            if spec.greater_is_better:
                worse = value < base_value * (1 - config.tolerance)
            else:
                worse = value > base_value * (1 + config.tolerance)
            record.update({spec.primary: value, "kept": not worse})
        else:
            record.update({spec.primary: None, "kept": True})
        records.append(record)
        logger.info("prompt %s: %s", pid, record)

    dropped_ids = {r["prompt_id"] for r in records if not r["kept"]}
    result = {"metric": f"validation/{spec.primary}", "greater_is_better": spec.greater_is_better,
              "baseline": base_value, "lr": lr, "epochs_per_prompt": config.epochs_per_prompt,
              "tolerance": config.tolerance, "prompts": records,
              "kept": sum(r["kept"] for r in records), "dropped": sum(not r["kept"] for r in records)}
    _write_filtered_fake(train_cfg, dropped_ids, out / "fake", records)
    write_text_atomic(out / "kept_prompts.txt", "".join(f"{r['prompt']}\n" for r in records if r["kept"]))
    write_json_atomic(out / RESULT_FILE, result)
    write_text_atomic(out / "config.yaml", config.to_yaml())
    return result


def _write_filtered_fake(train_cfg: TrainConfig, dropped_ids: set[str], out: Path, records: list[dict]) -> Path:
    """Every config of the fake dataset without the rows of the dropped prompts."""
    configs = {}
    for name in ("kept", "all"):
        try:
            ds = _load_fake(train_cfg.fake, train_cfg.fake_revision, name)
        except InputError:
            if name == train_cfg.fake_config:
                raise
            continue
        keep = ~np.isin(np.asarray(ds[schema.PROMPT_ID], dtype=object), list(dropped_ids))
        configs[name] = {"train": ds.select(np.flatnonzero(keep))}
    dropped = [r for r in records if not r["kept"]]
    body = (f"# {Path(train_cfg.fake).name} (prompt-filtered)\n\n"
            f"The fake dataset `{train_cfg.fake}` without the {len(dropped)} prompt(s) whose images made the "
            f"validation error worse than the real-only baseline (PromptMix prompt filtering):\n\n"
            + "".join(f"- {r['prompt']}\n" for r in dropped))
    return write_hub_folder(out, configs, default="kept" if "kept" in configs else next(iter(configs)), body=body)
