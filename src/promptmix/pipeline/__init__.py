"""The whole pipeline from one YAML config (``promptmix run``) and the offline demo (``promptmix demo``).

::

    from promptmix.pipeline import load_config, run_pipeline

    config = load_config("configs/promptmix_shtb.yaml", overrides=["generate.images_per_prompt=2"])
    run = run_pipeline(config, until_stage="filter", echo=print)
    run.records["filter"]          # {"kept": ..., "rows": ..., "out": "runs/shtb/fake", ...}

Modules: :mod:`.config` (``PipelineConfig``: one section per stage, each the stage's own config class, and the
paths that connect them), :mod:`.engine` (the stages of a config as steps, cache keys, state file, resume,
``--from``/``--until``), :mod:`.demo` (``promptmix demo``), :mod:`.commands` (``promptmix run``, ``demo``).
"""

from ..utils.lazy import lazy_exports


__all__ = ["PipelineConfig", "PipelineRun", "Step", "StageResult", "load_config", "pipeline_steps", "run_demo",
           "run_pipeline", "run_stages"]

_WHERE = {"PipelineConfig": "config", "load_config": "config", "PipelineRun": "engine", "Step": "engine",
          "StageResult": "engine", "run_pipeline": "engine", "run_stages": "engine", "pipeline_steps": "engine",
          "run_demo": "demo"}

__getattr__ = lazy_exports(__name__, _WHERE)
