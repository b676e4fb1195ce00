"""Training lightweight networks on real + fake data (PromptMix Sections III-IV, MVC Table 5).

Entry scripts (top-level ``training/``): ``train_counter.py``, ``train_depth.py``,
``train_classifier.py``, each run by ``accelerate launch`` or plain ``python``; they parse flags
(and an optional YAML ``--config``) into :class:`~promptmix.training.config.TrainConfig` and call
:func:`~promptmix.training.trainer.train`.

Modules:

==================  ===============================================================================
``config``          ``TrainConfig`` (every flag), YAML + flag parsing
``mixing``          how fake rows join each epoch: none, promptmix, interleave, two-phase, rsp, fake-only
``data``            loading real/fake datasets, per-row targets (density maps, depth, labels), batching
``models``          ``create_model``: csrnet, rescsrnet, guidedepth, resnet18, wrn-28-2, wrn-28-10
``model_info``      parameters and GMACs (``promptmix model-info``)
``tasks``           losses, predictions and metric per task
``metrics/``        the ``evaluate`` modules: counting_error, depth_metrics, classification_accuracy
``trainer``         the Accelerate loop, learning-rate grid, checkpoints, resume, ``metrics.json``
``report``          ``promptmix report``: runs side by side, training-curve PNG
``prompt_filter``   PromptMix prompt filtering (``promptmix filter-prompts``)
``synthetic``       small synthetic real/fake datasets for tests, benchmarks and smoke runs
``mvc_finetune``    MVC image-conditioned fine-tuning of the diffusion model (separate script)
==================  ===============================================================================

Names are imported lazily, so ``import promptmix.training`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "train": "trainer",
    "TrainingData": "data",
    "load_training_data": "data",
    "MixingSpec": "mixing",
    "epoch_batches": "mixing",
    "create_model": "models",
    "model_info": "model_info",
    "load_metric": "metrics",
    "filter_prompts": "prompt_filter",
    "PromptFilterConfig": "prompt_filter",
    "report_table": "report",
    "plot_curves": "report",
    "compare_runs": "report",
    "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
