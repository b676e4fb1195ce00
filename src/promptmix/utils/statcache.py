"""The content-hash cache of raw files: sha256 by absolute path, valid while the file's stat is unchanged.

``promptmix run`` keys the ``real`` stage on a content hash of the raw files it reads
(:func:`promptmix.utils.io.files_fingerprint`). Hashing a raw download on every call (``--plan``
included) is what this cache avoids: a file is read again only when its size, mtime, ctime or inode
(and device) differ from when it was hashed; otherwise one ``stat`` per file is all the work.

Where: one SQLite file (stdlib :mod:`sqlite3`), shared by every run and config of the user, so the
first call already uses it, before any run folder exists::

    $PROMPTMIX_CACHE_DIR/fingerprints.sqlite            when PROMPTMIX_CACHE_DIR is set
    $XDG_CACHE_HOME/promptmix/fingerprints.sqlite       else, when XDG_CACHE_HOME is set
    %LOCALAPPDATA%\\promptmix\\cache\\fingerprints.sqlite  else, on Windows
    ~/.cache/promptmix/fingerprints.sqlite              else

Rows are ``(path, size, mtime_ns, ctime_ns, ino, dev, sha256)``; a call reads the rows under the
folders it hashes with one range query and writes only the files it (re)hashed (and drops the rows of
files no longer there), in one transaction,
without an fsync (``synchronous=OFF``, write-ahead log): a cache lost in a crash only costs a rehash.
Deleting the file is always safe. When it cannot be opened or written (read-only home, a damaged
file), the hashes are computed without it and a warning names the file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Mapping

logger = logging.getLogger(__name__)

CACHE_NAME = "fingerprints.sqlite"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
           "ctime_ns INTEGER, ino INTEGER, dev INTEGER, sha256 TEXT) WITHOUT ROWID")
_warned: set[str] = set()

#: what must be unchanged for a cached hash to be used (os.stat_result fields)
Stamp = tuple  # (size, mtime_ns, ctime_ns, ino, dev)


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def default_cache_path() -> Path:
    """The user's cache file (see the module docstring)."""
    env = os.environ.get("PROMPTMIX_CACHE_DIR")
    if env:
        return Path(env).expanduser() / CACHE_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "promptmix" / CACHE_NAME
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "promptmix" / "cache" / CACHE_NAME
    return Path.home() / ".cache" / "promptmix" / CACHE_NAME


def _warn(path: Path, what: str, exc: Exception) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        logger.warning("file hash cache %s: could not %s (%s: %s); hashing without it (deleting the file is safe)",
                       path, what, type(exc).__name__, exc)


class StatCache:
    """Cached sha256 of files by absolute path; use as a context manager (one connection per call)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> "StatCache":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            _warn(self.path, "open it", exc)
            self._db = None
        return self

    def __exit__(self, *exc) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def under(self, root: str) -> dict[str, tuple[Stamp, str]]:
        """Cached ``{path: (stamp, sha256)}`` for ``root`` itself and every path below it."""
        if self._db is None:
            return {}
        sep = os.sep
        hi = root.rstrip(sep) + chr(ord(sep) + 1)
        lo = root.rstrip(sep) + sep
        try:
            rows = self._db.execute("SELECT path, size, mtime_ns, ctime_ns, ino, dev, sha256 FROM files "
                                    "WHERE path = ? OR (path >= ? AND path < ?)", (root, lo, hi)).fetchall()
        except sqlite3.Error as exc:
            _warn(self.path, "read it", exc)
            return {}
        return {r[0]: (tuple(r[1:6]), r[6]) for r in rows}

    def put(self, entries: Mapping[str, tuple[Stamp, str]] | Iterable[tuple[str, tuple[Stamp, str]]],
            gone: Iterable[str] = ()) -> None:
        """Store ``{path: (stamp, sha256)}`` (only the files just hashed) and drop the rows of ``gone`` paths
        (files no longer there), in one transaction."""
        items = list(entries.items() if isinstance(entries, Mapping) else entries)
        gone = [(p,) for p in gone]
        if self._db is None or not (items or gone):
            return
        try:
            with self._db:  # BEGIN ... COMMIT
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     [(p, *stamp, digest) for p, (stamp, digest) in items])
                self._db.executemany("DELETE FROM files WHERE path = ?", gone)
        except sqlite3.Error as exc:
            _warn(self.path, "write it", exc)
