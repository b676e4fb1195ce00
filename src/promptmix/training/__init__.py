"""Training lightweight networks on real + fake data (PromptMix Sections III-IV, MVC Table 5).

Stages, each a folder with config.py, stage.py and its code: :mod:`.train` (``train``: recipes, mixing,
data, the Accelerate loop; entry scripts ``training/train_*.py``), :mod:`.finetune` (``finetune``: MVC
fine-tuning of the generator; ``training/finetune_mvc.py``), :mod:`.report` (``report``). Also
:mod:`.prompt_filter` (``promptmix filter-prompts``) and :mod:`.metrics` (the ``evaluate`` modules).

Names are imported lazily, so ``import promptmix.training`` stays cheap.
"""

from __future__ import annotations

from ..utils.lazy import lazy_exports


_EXPORTS = {
    "TrainConfig": "train.config",
    "TrainingData": "train.data",
    "load_training_data": "train.data",
    "MixingSpec": "train.mixing",
    "epoch_batches": "train.mixing",
    "create_model": "..models",
    "model_info": "..models.info",
    "load_metric": "metrics",
    "filter_prompts": "prompt_filter.filtering",
    "PromptFilterConfig": "prompt_filter.config",
    "report_table": "report.report",
    "plot_curves": "report.report",
    "compare_runs": "report.report",
    "write_report": "report.report",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
