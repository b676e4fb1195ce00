"""Annotation and filtering: annotator networks label generated images; their agreement filters them.

- :mod:`.annotators`: the ``Annotator`` interface, the kinds (counting, depth, classification, CLIP zero-shot)
  and the ``--annotator SPEC`` grammar (``registry``)
- :mod:`.annotate`: stage ``annotate`` (config, stage, runner)
- :mod:`.filter`: stage ``filter`` (config, stage, filtering, the paper's quality score)

Names below are imported lazily (``import promptmix.annotation`` stays light).
"""

from __future__ import annotations

from ..utils.lazy import lazy_exports


_EXPORTS = {
    "Annotator": ".annotators.base",
    "register_annotator": ".annotators.registry", "build_annotator": ".annotators.registry", "parse_spec": ".annotators.registry",
    "registered_annotators": ".annotators.registry",
    "annotate_run": ".annotate.runner", "AnnotateReport": ".annotate.runner",
    "pairwise_quality": "..tasks",
    "FilterConfig": ".filter.filtering", "FilterReport": ".filter.filtering", "filter_run": ".filter.filtering",
    "CounterConfig": "..models.counting", "build_counter": "..models.counting", "save_counter": "..models.counting",
    "load_counter_folder": "..models.counting", "load_counter_checkpoint": "..models.counting",
    "read_state_dict": "..models.checkpoints",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
