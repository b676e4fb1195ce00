"""The toy world's trained models, shipped in the package: where they are and whether they are intact.

``promptmix/toy/models/`` holds what ``scripts/train_toy_models.py`` wrote: ``sd/`` (a Stable Diffusion
pipeline folder), ``captioner/`` (BLIP), ``counter_a/`` (CSRNet layout) and ``counter_b/`` (DM-Count layout),
``manifest.json`` (how each was trained, and the sha256 of every file), ``train_log.txt`` and ``samples.png``.
:func:`toy_models` returns the folders after checking every file against the manifest, so a truncated or
edited file is named instead of loading as something else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import InputError

MODELS_DIR = Path(__file__).resolve().parent / "models"
NAMES = ("counter_a", "counter_b", "captioner", "sd")
COUNTER_ARCH = {"counter_a": "csrnet", "counter_b": "dmcount"}
MANIFEST_NAME = "manifest.json"
LOG_NAME = "train_log.txt"
SAMPLES_NAME = "samples.png"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(folder: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def read_manifest(folder: str | Path = MODELS_DIR) -> dict | None:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); run scripts/train_toy_models.py again") from None


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    from ..utils.io import write_text_atomic

    path = Path(folder) / MANIFEST_NAME
    write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def check_manifest(folder: str | Path = MODELS_DIR, names=NAMES) -> list[str]:
    """Problems with the models under ``folder`` (missing, or not the bytes the manifest records); [] if none."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder / MANIFEST_NAME} does not exist (the toy models are written by "
                "scripts/train_toy_models.py)"]
    problems = []
    for name in names:
        entry = manifest.get("models", {}).get(name)
        if entry is None:
            problems.append(f"{folder / MANIFEST_NAME} has no entry for {name!r}")
            continue
        for rel, digest in entry["files"].items():
            path = folder / name / rel
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif _sha256(path) != digest:
                problems.append(f"{path} is not the file the manifest records (sha256 differs; a Git LFS "
                                "pointer, a partial download or an edit?)")
    return problems


def toy_models(folder: str | Path = MODELS_DIR) -> dict[str, Path]:
    """``{name: folder}`` of the shipped toy models, checked against their manifest."""
    problems = check_manifest(folder)
    if problems:
        raise InputError("the toy world's trained models are not usable: " + "; ".join(problems[:5])
                         + ("; ..." if len(problems) > 5 else "")
                         + ". `promptmix demo --random-models` runs without them.")
    return {name: Path(folder) / name for name in NAMES}
