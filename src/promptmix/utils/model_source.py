"""Resolve a model given by Hub id (with revision) or local path, recording what was used.

Nothing is downloaded here beyond what ``huggingface_hub`` would fetch for the model anyway;
offline (``HF_HUB_OFFLINE=1``) only local folders and the Hub cache are consulted.
The resolved commit hash goes into each stage's manifest so every row's provenance is complete.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from ..errors import ModelLoadError


def looks_like_path(ref: str | os.PathLike) -> bool:
    """``ref`` can only be a path, not a Hub id ``name`` or ``owner/name``: it starts with ``.``, ``/`` or ``~``,
    has a drive letter or a backslash, more than one ``/``, or ends with one."""
    text = str(ref)
    return (text.startswith((".", "/", "~")) or "\\" in text or bool(re.match(r"^[A-Za-z]:[\\/]", text))
            or text.count("/") > 1 or text.endswith("/"))


def is_local_ref(ref: str | os.PathLike) -> bool:
    """``ref`` names a local file or folder: it exists, or can only be a path (:func:`looks_like_path`).

    This is the one place promptmix decides "local path or Hub id?" (models, datasets, cards)."""
    return looks_like_path(ref) or Path(str(ref)).expanduser().exists()


def is_hub_id(ref: str | os.PathLike) -> bool:
    """``ref`` is not local and is a valid Hub repo id (``huggingface_hub``'s own rule)."""
    if is_local_ref(ref) or not str(ref).strip():
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(str(ref))
    except HFValidationError:
        return False
    return True


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
    if not is_hub_id(name):
        raise ModelLoadError(f"{what} {name!r} not found: tried " + "; ".join(tried))
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id=name, revision=revision, repo_type=repo_type)
    except Exception as exc:  # offline, unknown repo, gated, bad revision...
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        network = network_failure(exc)
        reason = ("offline mode (HF_HUB_OFFLINE=1) and not in the local Hub cache" if offline else
                  f"the Hugging Face Hub could not be reached: {network}; and it is not in the local Hub cache"
                  if network else type(exc).__name__)
        tried.append(f"Hub id {name!r} at revision {revision or 'main'} ({reason})")
        message = f"{what} {name!r} could not be loaded: tried " + "; ".join(tried)
        if offline or network:
            message += ". " + ways_out(name, revision, repo_type=repo_type, offline=offline)
        raise ModelLoadError(message) from None
    commit = Path(folder).name if len(Path(folder).name) == 40 else None
    return ModelSource(name=name, path=folder, revision=revision, commit_hash=commit, local=False)


def network_failure(exc: BaseException) -> str | None:
    """``"ConnectError: ..."`` when ``exc`` (or what caused it) is a failure to reach the Hub (no connection,
    DNS, timeout, proxy), else None. huggingface_hub reports these as ``LocalEntryNotFoundError`` when the file
    is not cached either, with the network error as its cause."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 6:
        kind = type(cur).__name__
        if kind == "OfflineModeIsEnabled" or "OfflineModeIsEnabled" in str(cur):
            return None  # offline by choice (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), not a network failure
        module = type(cur).__module__ or ""
        if kind in ("ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "ProxyError",
                    "NetworkError", "ConnectionError", "RemoteProtocolError", "SSLError") \
                and module.split(".")[0] in ("httpx", "httpcore", "requests", "urllib3", "builtins", "ssl"):
            return f"{kind}: {cur}"
        if isinstance(cur, (ConnectionError, TimeoutError)):
            return f"{kind}: {cur}"
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    if type(exc).__name__ == "LocalEntryNotFoundError" and os.environ.get("HF_HUB_OFFLINE", "") in ("", "0"):
        return "no connection (LocalEntryNotFoundError)"
    return None


def ways_out(name: str, revision: str | None = None, *, repo_type: str = "model", offline: bool = False) -> str:
    """The three ways to get ``name`` without reaching the Hub from here."""
    rev = f" --revision {revision}" if revision else ""
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    folder = name.split("/")[-1]
    first = ("unset HF_HUB_OFFLINE where the Hub is reachable so it is downloaded once; " if offline else
             "if it is already in the Hub cache, set HF_HUB_OFFLINE=1 so nothing tries the network; ")
    return (f"Ways out: (1) {first}(2) download it where the Hub is reachable, `hf download {name}{rev}{kind}`, "
            f"and copy the cache (HF_HOME) here, then run with HF_HUB_OFFLINE=1; (3) use a local folder instead "
            f"of the id: `hf download {name}{rev}{kind} --local-dir models/{folder}`, then give models/{folder}")


# an absolute POSIX path (not the '//' of a URL), or a Windows drive path, inside any text
_ABS_PATH = re.compile(r"(?<![\w/.~-])/(?!/)[^\s\"'`,;|()\[\]{}<>=]+|\b[A-Za-z]:\\[^\s\"'`,;|()\[\]{}<>=]+")


def redact_local_paths(value):
    """``value`` (JSON-like) with every absolute local path replaced by its last part: ``"/home/me/models/sd"``
    -> ``"sd"``, ``"a:/tmp/x/counter_a"`` -> ``"a:counter_a"``; URLs and Hub ids are kept. Published files
    (``provenance.json``, cards) name local models by this and their hashes, never by this machine's paths."""
    if isinstance(value, str):
        return _ABS_PATH.sub(lambda m: Path(m.group(0).replace("\\", "/").rstrip("/")).name or "/", value)
    if isinstance(value, dict):
        return {k: redact_local_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_local_paths(v) for v in value]
    return value
