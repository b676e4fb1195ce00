"""Fake Hub downloads for tests: a local model folder installed in the Hugging Face cache under a repo id.

With ``HF_HUB_OFFLINE=1``, ``huggingface_hub.snapshot_download(repo_id)`` serves a repo from the cache
(``HF_HUB_CACHE/models--ORG--NAME/snapshots/<commit>/`` with ``refs/main`` naming the commit), so a test
can use ``stabilityai/stable-diffusion-2-1-base`` exactly as a user does (a Hub id resolved to a commit
hash recorded in the provenance) while the files are a tiny model made by :mod:`promptmix.testing`.
This is what lerobot's tests do for their Hub fixtures: write the files, do not download them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def fake_commit(repo_id: str) -> str:
    """A 40-hex commit hash, stable for a repo id (what a cached snapshot of it is called)."""
    return hashlib.sha1(f"placeholder:{repo_id}".encode()).hexdigest()


def install_in_hub_cache(folder: str | os.PathLike, repo_id: str, *, commit: str | None = None,
                         repo_type: str = "model", allow_real_cache: bool = False) -> str:
    """Copy ``folder`` into the active Hugging Face cache as ``repo_id`` at ``commit`` (default
    :func:`fake_commit`); returns the commit.

    Refuses a cache outside the temporary directory (a user's real cache would then serve these files for
    ``repo_id``) unless ``allow_real_cache``: tests point ``HF_HOME`` at a temporary folder (tests/conftest.py).
    """
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    temp = Path(tempfile.gettempdir()).resolve()
    if not allow_real_cache and temp not in cache.resolve().parents:
        raise RuntimeError(f"install_in_hub_cache: the Hugging Face cache {cache} is not a temporary folder; set "
                           "HF_HOME to one (tests do) or pass allow_real_cache=True")
    commit = commit or fake_commit(repo_id)
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    done = repo / f".{commit}.installed"
    if not done.exists():
        if snapshot.exists():
            shutil.rmtree(snapshot)
        shutil.copytree(folder, snapshot, ignore=shutil.ignore_patterns(".complete"))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        done.write_text("ok\n")
    return commit
