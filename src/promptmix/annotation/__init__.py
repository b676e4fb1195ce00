"""Annotation and filtering: annotator networks label generated images; their agreement filters them.

- :mod:`.base` the ``Annotator`` interface; :mod:`.registry` kinds and the ``--annotator SPEC`` grammar
- :mod:`.counting` CSRNet / DM-Count / SASNet (authors' key layouts), :mod:`.checkpoints` safe loading
- :mod:`.depth` transformers depth models; :mod:`.classification` image classifiers and CLIP zero-shot
- :mod:`.runner` ``promptmix annotate``; :mod:`.quality` the paper's quality score;
  :mod:`.filter` ``promptmix filter`` and the fake dataset

Names below are imported lazily (``import promptmix.annotation`` stays light).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Annotator": ".base",
    "register_annotator": ".registry", "load_annotator": ".registry", "parse_spec": ".registry",
    "registered_annotators": ".registry",
    "annotate_run": ".runner", "AnnotateReport": ".runner",
    "pairwise_quality": ".quality",
    "FilterConfig": ".filter", "FilterReport": ".filter", "filter_run": ".filter",
    "CounterConfig": ".counting", "build_counter": ".counting", "save_counter": ".counting",
    "load_counter_folder": ".counting", "load_counter_checkpoint": ".counting",
    "read_state_dict": ".checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
