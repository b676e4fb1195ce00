"""The run manifest (``RUN/manifest.json``): every stage's config, models and library versions.

Each stage calls :func:`record_stage` when it finishes (and may call it when it starts); the
publisher reads the whole manifest as the dataset's provenance file.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

from filelock import FileLock

from .io import write_json_atomic

MANIFEST = "manifest.json"
_LIBS = ("promptmix", "torch", "diffusers", "transformers", "datasets", "huggingface_hub", "accelerate",
         "evaluate", "numpy", "pillow", "scipy")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            pass
    return out


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return {"stages": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def record_stage(run_dir: str | Path, stage: str, record: dict[str, Any]) -> dict[str, Any]:
    """Merge ``record`` (config, models, counts...) under ``stages[stage]``; atomic and process-safe."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(run_dir / ".manifest.lock")):
        manifest = read_manifest(run_dir)
        entry = dict(record)
        entry.setdefault("finished_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        entry.setdefault("versions", library_versions())
        manifest.setdefault("stages", {})[stage] = entry
        write_json_atomic(run_dir / MANIFEST, manifest)
    return manifest
