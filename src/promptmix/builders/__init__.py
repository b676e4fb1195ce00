"""Real datasets: builders from the raw downloads (``promptmix real ...``) and the one loader of built ones.

- :mod:`.counting` ShanghaiTech Part A/B, UCF-QNRF; :mod:`.panda` PANDA-Crowd (a box per person);
  :mod:`.depth` NYU Depth V2 (labeled);
  :mod:`.classification` image folders and any ``datasets`` source (CIFAR, Caltech101, ...)
- :mod:`.common` image checks, seeded splits, the report, writing the Hub-layout folder
- :mod:`.loading` :func:`load_real` (folder or Hub id -> DatasetDict) and :func:`task_of`

Every builder writes ``out/README.md`` (YAML ``configs``) + ``out/data/<split>-<fp>-*.parquet``
with splits train/validation/test (``schema.COUNTING_REAL``, ``DEPTH_REAL``,
``classification_real(names)``), atomically, and returns a :class:`BuildReport`.

Names below are imported lazily (``import promptmix.builders`` stays light).
"""

from __future__ import annotations

from ..utils.lazy import lazy_exports


_EXPORTS = {
    "build_shanghaitech": ".counting", "build_ucf_qnrf": ".counting",
    "read_shanghaitech_points": ".counting", "read_ucf_qnrf_points": ".counting",
    "build_nyu_depth_v2": ".depth", "build_panda_crowd": ".panda",
    "build_imagefolder": ".classification", "build_from_hub": ".classification",
    "BuildReport": ".common", "Skipped": ".common", "image_meta": ".common", "is_grayscale": ".common",
    "load_real": ".loading", "load_source": ".loading", "local_cache_dir": ".loading", "task_of": ".loading",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
