"""Resolve a model given by Hub id (with revision) or local path, recording what was used.

Nothing is downloaded here beyond what ``huggingface_hub`` would fetch for the model anyway;
offline (``HF_HUB_OFFLINE=1``) only local folders and the Hub cache are consulted.
The resolved commit hash goes into each stage's manifest so every row's provenance is complete.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import ModelLoadError


@dataclasses.dataclass(frozen=True)
class ModelSource:
    name: str  # what the user gave: a Hub id or a path
    path: str  # what to pass to from_pretrained (local folder or Hub id)
    revision: str | None = None  # what the user asked for
    commit_hash: str | None = None  # resolved commit, when known
    local: bool = False

    def record(self) -> dict:
        return {"name": self.name, "revision": self.revision, "commit_hash": self.commit_hash, "local": self.local}


def resolve_model(name_or_path: str | os.PathLike, revision: str | None = None, *, what: str = "model",
                  repo_type: str = "model") -> ModelSource:
    """Return a :class:`ModelSource` for a local folder/file or a Hub id.

    Raises :class:`ModelLoadError` naming every place tried when neither works.
    """
    name = str(name_or_path)
    p = Path(name).expanduser()
    if p.exists():
        return ModelSource(name=name, path=str(p.resolve()), revision=revision, commit_hash=None, local=True)
    tried = [f"local path {str(p)!r} (does not exist)"]
    looks_like_id = name.count("/") <= 1 and not name.startswith((".", "/", "~")) and name.strip() != ""
    if not looks_like_id:
        raise ModelLoadError(f"{what} {name!r} not found: tried " + "; ".join(tried))
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id=name, revision=revision, repo_type=repo_type)
    except Exception as exc:  # offline, unknown repo, gated, bad revision...
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        reason = "offline mode (HF_HUB_OFFLINE=1) and not in the local Hub cache" if offline else type(exc).__name__
        tried.append(f"Hub id {name!r} at revision {revision or 'main'} ({reason})")
        raise ModelLoadError(f"{what} {name!r} could not be loaded: tried " + "; ".join(tried)) from None
    commit = Path(folder).name if len(Path(folder).name) == 40 else None
    return ModelSource(name=name, path=folder, revision=revision, commit_hash=commit, local=False)
