"""Hashes: of JSON-able settings (cache keys), of files (provenance, shard names) and of raw-file trees.

:func:`stable_hash` keys every cache (a stage's settings, a plan); :func:`sha256_file` and
:func:`hash_file_into` stream a file through sha256 (weights, checkpoints, shards).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short, stable hex digest of a JSON-able object (key order does not matter)."""
    payload = json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def hash_file_into(h, path: str | os.PathLike, chunk: int = 1 << 20):
    """Feed a file's bytes into the hash object ``h`` in blocks (large files never sit in memory)."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes."""
    return hash_file_into(hashlib.sha256(), path).hexdigest()


def content_fingerprint(paths: list[Path], length: int = 8) -> str:
    """A short sha256 of the given files' bytes, in order."""
    h = hashlib.sha256()
    for p in paths:
        hash_file_into(h, p)
    return h.hexdigest()[:length]


