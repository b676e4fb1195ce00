"""The whole pipeline from one YAML config (``promptmix run``) and the offline demo (``promptmix demo``).

::

    from promptmix.pipeline import load_config, run_pipeline

    config = load_config("configs/promptmix_shtb.yaml", overrides=["generate.images_per_prompt=2"])
    run = run_pipeline(config, until_stage="filter", echo=print)
    run.records["filter"]          # {"kept": ..., "rows": ..., "out": "runs/shtb/fake", ...}

Modules: :mod:`.config` (``PipelineConfig``: one section per stage, each the stage's own config class),
:mod:`.stages` (the stages, each calling its stage's API), :mod:`.runner` (cache keys, state file,
resume, ``--from``/``--until``), :mod:`.demo` (``promptmix demo``), :mod:`.cli`.
"""

__all__ = ["AnnotateConfig", "PipelineConfig", "PipelineRun", "PublishConfig", "RealConfig", "Stage", "StageResult",
           "build_stages", "load_config", "run_demo", "run_pipeline", "run_stages"]

_WHERE = {"AnnotateConfig": "config", "PipelineConfig": "config", "PublishConfig": "config", "RealConfig": "config",
          "load_config": "config", "PipelineRun": "runner", "Stage": "runner", "StageResult": "runner",
          "run_pipeline": "runner", "run_stages": "runner", "build_stages": "stages", "run_demo": "demo"}


def __getattr__(name: str):
    """Import lazily, so ``promptmix --help`` does not load torch through the stage configs."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
