"""The papers' configs at toy scale: the same experiment, tiny data and tiny models, for tests.

:func:`toy_train_config` keeps everything that makes a training run *that* table row -- network, recipe
(optimiser, schedule, augmentation, Cutout), mixing strategy and its settings (r_mix, swap share, two-phase,
RSP), density kernel, target annotator -- and shrinks the rest: a network a sixteenth as wide without
ImageNet weights, one epoch (and at most one real-only epoch), one optimiser step, one learning rate of the
grid, small images, no worker processes, CPU.

:func:`toy_overrides` turns a whole pipeline config into ``--set`` overrides (``promptmix run CONFIG --set
KEY=VALUE``) that point its data and models at tiny local ones made by :mod:`promptmix.testing`:
the raw dataset at a fixture in the builder's own format, every model at a tiny random one, few and small
images, and every training run through :func:`toy_train_config`'s settings.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

from ..training.train.config import TrainConfig

TOY_WIDTH_DIV = 32
TOY_IMAGE_SIZE = 32
TOY_POLICY = [[["Rotate", 0.8, 0.4], ["Color", 0.5, 0.9]], [["TranslateYAbs", 0.9, 0.5], ["Equalize", 0.3, 0.0]]]


def write_toy_policy(path: str | Path) -> Path:
    """A two-sub-policy searched policy in Fast AutoAugment's JSON format (for ``augment: policy-file``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(TOY_POLICY), encoding="utf-8")
    return path


def toy_train_settings(run: TrainConfig, *, n_fake: int, policy: str | Path | None = None,
                       annotator_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings :func:`toy_train_config` changes (as ``{field: value}``), for ``n_fake`` fake rows."""
    out: dict[str, Any] = {
        "width_div": TOY_WIDTH_DIV, "pretrained": None, "epochs": 1, "max_steps": 1, "batch_size": 2,
        "eval_batch_size": 2, "num_workers": 0, "report_to": "none", "cpu": True, "lr": run.lr or run.lr_grid[0],
        "two_phase_epochs": min(run.two_phase_epochs, 1),
    }
    if run.r_mix is not None:
        out["r_mix"] = min(run.r_mix, n_fake)
    if run.task == "classification":
        out["image_size"] = TOY_IMAGE_SIZE
        out["crop_size"] = None
    else:
        out["crop_size"] = 32 if run.task == "counting" else None
    if run.augment_policy is not None:
        out["augment_policy"] = str(policy) if policy is not None else run.augment_policy
    if run.target_annotator is not None and annotator_names:
        out["target_annotator"] = annotator_names.get(run.target_annotator, run.target_annotator)
    return out


def toy_train_config(run: TrainConfig, *, real: str | Path, fake: str | Path | None, output_dir: str | Path,
                     n_fake: int = 8, policy: str | Path | None = None,
                     annotator_names: Mapping[str, str] | None = None) -> TrainConfig:
    """``run`` (a paper config's training run) at toy scale on the ``real`` / ``fake`` datasets given."""
    changes = toy_train_settings(run, n_fake=n_fake, policy=policy, annotator_names=annotator_names)
    changes.update(real=str(real), fake=str(fake) if fake is not None and run.mixing != "none" else None,
                   output_dir=str(output_dir), resume=False, overwrite=True)
    return dataclasses.replace(run, **changes)


def toy_key(cfg: TrainConfig) -> tuple:
    """What makes two toy runs the same experiment at toy scale: the task, the network, the augmentation, the
    mixing strategy and the density kernel (learning rates, decays and sizes make no difference to whether the
    row's code path runs; the recipes' optimisers and schedules are each trained in tests/test_training_recipes)."""
    return (cfg.task, cfg.model, cfg.augment, cfg.cutout > 0, cfg.mixing, cfg.density_kernel,
            cfg.target_annotator is not None)


def _set(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def toy_overrides(data: Mapping[str, Any], *, raw: str | Path, models: Mapping[str, Path], run_dir: str | Path,
                  policy: str | Path | None = None, real_options: Mapping[str, Any] | None = None) -> list[str]:
    """``--set`` overrides that run the pipeline config ``data`` (its YAML mapping) at toy scale.

    ``raw``: the fixture the real section reads (a root folder, a ``.mat`` file or a dataset folder, after
    the builder); ``models``: :func:`promptmix.testing.save_tiny_models`'s folders (``sd``, ``captioner``,
    ``counter_a``, ``depth``, ``classifier``, ``pix2pix``); ``real_options`` replace ``real.options``.
    """
    task = data.get("task")
    sets = [_set("run_dir", str(run_dir))]
    real = data["real"]
    key = {"nyu-depth-v2": "mat", "hub": "dataset", "folder": "path"}.get(real["builder"], "root")
    sets.append(_set(f"real.{key}", str(raw)))
    if real_options is not None:
        sets.append(_set("real.options", dict(real_options)))
    if real.get("reduced") is not None:
        sets.append(_set("real.reduced", None))
    if data.get("caption") is not None:
        sets += [_set("caption.model", str(models["captioner"])), _set("caption.max_new_tokens", 8),
                 _set("caption.batch_size", 8)]
    gen = dict(data["generate"])
    if data.get("finetune") is not None:
        sets += [_set("finetune.base_model", str(models["sd"])), _set("finetune.resolution", 32),
                 _set("finetune.batch_size", 2), _set("finetune.gradient_accumulation_steps", 1),
                 _set("finetune.max_train_steps", 1), _set("finetune.epochs", 1)]
        sets.append(_set("generate.mvc.images_per_class", 2))
    else:
        sets.append(_set("generate.model", str(models["sd"])))
        sets.append(_set("generate.images_per_prompt", 1))
    if gen.get("size"):
        sets.append(_set("generate.size", "64x48"))
    sets += [_set("generate.max_side", 64), _set("generate.min_side", 0), _set("generate.steps", 2),
             _set("generate.device", "cpu"), _set("generate.batch_size", 4), _set("generate.chunk_size", 8),
             _set("generate.dtype", "float32")]
    if gen.get("scheduler"):
        sets.append(_set("generate.scheduler", None))  # the tiny pipeline's own scheduler (PNDM needs more steps)
    if data.get("prompts", {}).get("manual") and data.get("prompts", {}).get("locations"):
        sets.append(_set("prompts.locations", list(data["prompts"]["locations"])[:2]))
    annotator_names: dict[str, str] = {}
    if data.get("annotate") is not None:
        tiny = {"counting": models.get("counter_a"), "depth": models.get("depth"),
                "classification": models.get("classifier")}[task]
        specs = []
        for i, spec in enumerate(data["annotate"]["annotators"]):
            name = spec.split(":", 1)[0] if ":" in spec.split("=", 1)[0] else f"annotator-{i}"
            specs.append(f"{name}:{tiny}")
            annotator_names[name] = name
        sets += [_set("annotate.annotators", specs), _set("annotate.device", "cpu"), _set("annotate.batch_size", 4)]
    if data.get("publish") is not None:
        sets.append(_set("publish.push", False))
    for name, raw_run in (data.get("train") or {}).items():
        run = TrainConfig.from_dict({**raw_run, "task": task, "real": "x", "output_dir": "x",
                                     "fake": "x" if raw_run.get("mixing", "none") != "none" else None})
        for k, v in toy_train_settings(run, n_fake=1, policy=policy).items():
            sets.append(_set(f"train.{name}.{k}", v))
    return sets
