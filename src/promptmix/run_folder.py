"""The run folder ``RUN/``: every path in it, its manifest, its lock and its chunk files, in one place.

Every stage reads and writes a run folder through a :class:`RunFolder`; no other module spells a
``RUN/`` sub-path. The layout::

    RUN/
      manifest.json            format_version + every stage's record (config, models, versions, counts)
      .lock  .lock.json        the run lock (filelock) and who holds it (command, pid)
      captions/                stage caption:  captions.parquet, sources.parquet, info.json,
                               .work-<config hash>/chunk-NNNNNN.parquet while captioning
      prompts/                 stage prompts:  the prompt bag (prompts.parquet, sources.parquet, info.json,
                               config.yaml)
      finetune/                stage finetune: the MVC-fine-tuned generator (`promptmix run` default)
      images/                  stage generate: plan.json, config.yaml, chunk-NNNNNN.parquet
      annotations/<name>/      stage annotate: annotator.json, chunk-NNNNNN.parquet (one folder per annotator)
      fake/                    stage filter:   the fake dataset (Hub layout, configs kept and all)
      publish/                 stage publish:  the local publication (`promptmix run` default)
      real/                    stage real:     the real dataset built by `promptmix run` (default)
      train/<name>/            stage train:    one training run per name (`promptmix run`)
      report/                  stage report:   the runs against their baseline (`promptmix run`)
      pipeline/                `promptmix run` only: config.yaml, state.json, trash/

Chunked work (captions, images, annotations) goes through :class:`ChunkStore`: chunk ``c`` is the file
``chunk-{c:06d}.parquet``, written whole under a temporary name and renamed, done by rank
``c % world_size``; a chunk counts as done only when its file opens as Parquet (footer and row-id
column), says in its footer that it is chunk ``c`` (``promptmix.chunk``) and holds the rows the caller
expects (:meth:`ChunkStore.problem`). A chunk that fails is never deleted: :meth:`ChunkStore.set_aside`
renames it ``chunk-NNNNNN.parquet.bad`` (``.bad-2``, ... when taken) with a warning, and it is redone.
Writers may add ``promptmix.*`` keys to a chunk's footer (annotate stores the sha256 of the image chunk
it labelled there, :meth:`ChunkStore.footer`).

One lock serialises the commands that write into a run folder (:meth:`RunFolder.lock`). It is reentrant
for the same :class:`RunFolder` object, so ``promptmix run`` holds it and the stages it calls take it
again; another process (or another :class:`RunFolder` of the same folder) is refused at once with a
message naming the holder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import InputError, RunLockedError

logger = logging.getLogger(__name__)

# 1: no format_version key (promptmix 0.1.0); 2: adds it, stage "caption" (was "captions"); 3: maps (density, depth)
# in annotation chunks are {shape, dtype, data} structs (promptmix.maps) -- the nested lists of 2 are still read,
# and a folder may hold both (an old run resumed)
MANIFEST_VERSION = 3
CHUNK_PATTERN = "chunk-{:06d}.parquet"
_CHUNK_RE = re.compile(r"^chunk-(\d{6})\.parquet$")
FOOTER_PREFIX = "promptmix."  # the footer keys promptmix writes into a chunk (schema metadata)
_LIBS = ("promptmix", "torch", "diffusers", "transformers", "datasets", "huggingface_hub", "accelerate",
         "evaluate", "numpy", "pillow", "scipy")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a run depends on (for manifests and cards)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            pass
    return out


class RunFolder:
    """``RUN/``: paths, manifest, lock and chunk stores of one run (see the module docstring)."""

    MANIFEST = "manifest.json"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._lock = None
        self._lock_depth = 0

    @classmethod
    def of(cls, run: "RunFolder | str | os.PathLike") -> "RunFolder":
        """``run`` itself when it is a :class:`RunFolder`, else the run folder at that path."""
        return run if isinstance(run, RunFolder) else cls(run)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    def __getstate__(self) -> dict:  # a held lock stays with its process (datasets pickles closures to hash them)
        return {"root": self.root}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"])

    def __fspath__(self) -> str:
        return str(self.root)

    # -- paths --------------------------------------------------------------------------------------------
    @property
    def captions(self) -> Path:
        return self.root / "captions"

    def captions_work(self, config_hash: str) -> Path:
        """Chunk folder of a captioning in progress with these settings."""
        return self.captions / f".work-{config_hash}"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts"

    @property
    def finetune(self) -> Path:
        return self.root / "finetune"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    def annotator(self, name: str) -> Path:
        return self.annotations / name

    @property
    def fake(self) -> Path:
        return self.root / "fake"

    @property
    def publish(self) -> Path:
        return self.root / "publish"

    @property
    def real(self) -> Path:
        return self.root / "real"

    @property
    def train(self) -> Path:
        return self.root / "train"

    def train_run(self, name: str) -> Path:
        return self.train / name

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline"

    @property
    def pipeline_state(self) -> Path:
        return self.pipeline / "state.json"

    @property
    def pipeline_config(self) -> Path:
        return self.pipeline / "config.yaml"

    @property
    def trash(self) -> Path:
        return self.pipeline / "trash"

    @property
    def manifest_path(self) -> Path:
        return self.root / self.MANIFEST

    def inside(self, path: str | os.PathLike) -> bool:
        """``path`` lies in this run folder (or is it)."""
        try:
            Path(path).resolve().relative_to(self.root.resolve())
            return True
        except ValueError:
            return False

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the run folder when inside it, else as given."""
        return os.path.relpath(path, self.root) if self.inside(path) else str(path)

    # -- chunk stores ---------------------------------------------------------------------------------------
    def image_chunks(self) -> "ChunkStore":
        return ChunkStore(self.images)

    def annotation_chunks(self, name: str) -> "ChunkStore":
        return ChunkStore(self.annotator(name))

    def caption_chunks(self, config_hash: str) -> "ChunkStore":
        return ChunkStore(self.captions_work(config_hash))

    # -- manifest -------------------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        """The manifest (``{"format_version": 3, "stages": {}}`` when there is none yet).

        A manifest of an older format is read as the current one (stage ``captions`` renamed ``caption``); a
        newer one is refused, naming its version.
        """
        path = self.manifest_path
        if not path.exists():
            return {"format_version": MANIFEST_VERSION, "stages": {}}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} is not a readable manifest ({type(exc).__name__}: {exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
            raise InputError(f"{path}: expected a JSON object with a 'stages' mapping")
        version = data.get("format_version", 1)
        if not isinstance(version, int) or version > MANIFEST_VERSION:
            raise InputError(f"{path} has manifest format version {version!r}, newer than this promptmix reads "
                             f"(up to {MANIFEST_VERSION}); upgrade promptmix (`pip install -U promptmix`) to use "
                             "this run folder")
        stages = dict(data.get("stages", {}))
        if version < 2 and "captions" in stages:
            stages.setdefault("caption", stages.pop("captions"))
        return {**data, "format_version": MANIFEST_VERSION, "stages": stages}

    def stage_record(self, stage: str) -> dict[str, Any]:
        """One stage's record in the manifest (empty when it never ran)."""
        return dict(self.read_manifest()["stages"].get(stage, {}))

    def record_stage(self, stage: str, record: dict[str, Any]) -> dict[str, Any]:
        """Merge ``record`` under ``stages[stage]`` (with ``finished_at`` and library versions); atomic.

        The read-modify-write holds a short blocking lock of its own (``.manifest.lock``), so ranks and
        stages that finish together never lose each other's records.
        """
        from filelock import FileLock

        from .utils.io import write_json_atomic

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".manifest.lock")):
            from .utils.outputs import remove_stale

            remove_stale(self.root, [f".{self.MANIFEST}.tmp-*"], str(self.root))  # left by a killed write
            manifest = self.read_manifest()
            entry = dict(record)
            entry.setdefault("finished_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
            entry.setdefault("versions", library_versions())
            manifest["stages"][stage] = entry
            write_json_atomic(self.manifest_path, manifest)
        return manifest

    # -- the lock ---------------------------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    @property
    def _holder_path(self) -> Path:
        return self.root / ".lock.json"

    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator["RunFolder"]:
        """Hold the run lock while the block runs; :class:`RunLockedError` at once when another holds it."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self
            finally:
                self._lock_depth -= 1
            return
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunLockedError(self.locked_message()) from None
        self._lock, self._lock_depth = lock, 1
        try:
            from .utils.io import write_json_atomic

            write_json_atomic(self._holder_path, {"command": command, "pid": os.getpid()})
            yield self
        finally:
            self._lock_depth = 0
            self._lock = None
            lock.release()

    def held_by_another(self) -> str | None:
        """:meth:`locked_message` when another process holds the run lock now, else None (checks without
        creating anything: a folder never locked is not locked)."""
        if self._lock_depth or not self.lock_path.exists():
            return None
        from filelock import FileLock, Timeout

        probe = FileLock(str(self.lock_path), timeout=0)
        try:
            probe.acquire()
        except Timeout:
            return self.locked_message()
        except OSError:  # a read-only folder: nobody can be writing into it
            return None
        probe.release()
        return None

    def locked_message(self) -> str:
        try:
            holder = json.loads(self._holder_path.read_text(encoding="utf-8"))
            who = f"another `promptmix {holder['command']}` (process {holder['pid']})"
        except (OSError, ValueError, KeyError, TypeError):
            who = "another promptmix command"
        return (f"{self.root} is locked by another run: {who} is writing into it (lock {self.lock_path}). Two "
                "commands writing one run folder would duplicate or mix their work; wait for it to finish, or "
                "stop it and rerun this command to resume")


class ChunkStore:
    """The numbered Parquet chunk files of one folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"ChunkStore({str(self.folder)!r})"

    def path(self, chunk: int) -> Path:
        return self.folder / CHUNK_PATTERN.format(chunk)

    def list(self) -> list[tuple[int, Path]]:
        """``[(chunk, path)]`` of the chunk files present, in chunk order (temporary files excluded)."""
        if not self.folder.is_dir():
            return []
        out = []
        for p in self.folder.iterdir():
            m = _CHUNK_RE.match(p.name)
            if m and p.is_file():
                out.append((int(m.group(1)), p))
        return sorted(out)

    def exists(self, chunk: int) -> bool:
        return self.path(chunk).is_file()

    def row_ids(self, chunk: int, column: str) -> list[str] | None:
        """The ``column`` values of a chunk file, or None when it is missing or not readable Parquet."""
        import pyarrow.parquet as pq

        path = self.path(chunk)
        if not path.is_file():
            return None
        try:
            return pq.read_table(str(path), columns=[column]).column(column).to_pylist()
        except Exception:  # truncated, zero bytes, another format, no such column
            return None

    def footer(self, chunk: int) -> dict[str, str] | None:
        """The ``promptmix.*`` keys of a chunk's footer (prefix removed), or None when it cannot be read."""
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(str(self.path(chunk))).metadata or {}
        except Exception:
            return None
        out = {}
        for k, v in meta.items():
            key = k.decode("utf-8", "replace")
            if key.startswith(FOOTER_PREFIX):
                out[key[len(FOOTER_PREFIX):]] = v.decode("utf-8", "replace")
        return out

    def problem(self, chunk: int, expected: Sequence[str] | None = None, *, column: str | None = None) -> str | None:
        """Why chunk ``chunk`` does not count as done, or None when it does.

        It must exist, be non-empty, open as Parquet (its footer, and its ``column`` when given), say in its
        footer that it is this chunk when it says which it is, and (with ``expected``) hold exactly those
        ``column`` values in order.
        """
        return self._check(chunk, expected, column)[0]

    def checked_ids(self, chunk: int, column: str, fix: str = "") -> list:
        """The ``column`` values of a chunk that passes :meth:`problem`; :class:`InputError` naming the file (and
        ``fix``) when it does not."""
        why, ids = self._check(chunk, None, column)
        if why is not None:
            raise InputError(f"{self.path(chunk)} {why}" + (f"; {fix}" if fix else ""))
        return ids

    def _check(self, chunk: int, expected: Sequence[str] | None, column: str | None) -> tuple[str | None, list | None]:
        import pyarrow.parquet as pq

        path = self.path(chunk)
        if not path.is_file():
            return "is missing", None
        if path.stat().st_size == 0:
            return "is empty (0 bytes; a copy or a disk that failed)", None
        try:
            pf = pq.ParquetFile(str(path))
            meta = pf.schema_arrow.metadata or {}
            ids = pf.read(columns=[column]).column(column).to_pylist() if column is not None else None
        except Exception as exc:  # truncated, another format, no such column
            return f"is not a readable Parquet chunk ({type(exc).__name__}: {str(exc)[:200]})", None
        written = meta.get(f"{FOOTER_PREFIX}chunk".encode())
        if written is not None and written.decode("utf-8", "replace") != str(chunk):
            return (f"is chunk {written.decode('utf-8', 'replace')} (its footer says so) stored under the name of "
                    f"chunk {chunk}"), ids
        if expected is not None and ids != list(expected):
            expected = list(expected)
            first = next((i for i, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))
            got = repr(ids[first]) if first < len(ids) else "nothing"
            want = repr(expected[first]) if first < len(expected) else "nothing"
            return (f"holds {len(ids)} rows where {len(expected)} are expected; row {first} is {got}, expected "
                    f"{want}"), ids
        return None, ids

    def is_complete(self, chunk: int, expected: Sequence[str] | None = None, *, column: str | None = None) -> bool:
        """:meth:`problem` finds nothing: the chunk opens and (with ``expected``) holds exactly those values."""
        return self.problem(chunk, expected, column=column) is None

    def set_aside(self, chunk: int, reason: str) -> Path | None:
        """Rename a chunk that failed :meth:`problem` to ``chunk-NNNNNN.parquet.bad`` (``.bad-2``, ... when that
        name is taken; never deleted) and warn with ``reason``; returns the new path (None when it is gone)."""
        path = self.path(chunk)
        bad = path.with_name(path.name + ".bad")
        n = 1
        while bad.exists():
            n += 1
            bad = path.with_name(f"{path.name}.bad-{n}")
        try:
            path.rename(bad)
        except FileNotFoundError:  # another rank set it aside first
            return None
        logger.warning("%s %s; moved it aside to %s, it is redone", path, reason, bad.name)
        return bad

    def write(self, chunk: int, table, footer: dict[str, str] | None = None) -> Path:
        """Write one whole chunk (a ``pyarrow.Table`` or ``datasets.Dataset``) under a temporary name, then rename.

        The footer records ``promptmix.chunk`` (this chunk's number) and ``promptmix.<key>`` for each of ``footer``.
        """
        import pyarrow.parquet as pq

        from .utils.io import atomic_path

        table = getattr(getattr(table, "data", None), "table", table)  # datasets.Dataset -> its Arrow table
        meta = dict(table.schema.metadata or {})
        for key, value in {"chunk": str(chunk), **(footer or {})}.items():
            meta[f"{FOOTER_PREFIX}{key}".encode()] = str(value).encode()
        table = table.replace_schema_metadata(meta)
        target = self.path(chunk)
        from .maps import parquet_options

        with atomic_path(target) as tmp:
            pq.write_table(table, str(tmp), **parquet_options(table.schema))  # maps' and images' bytes: zstd
        return target

    def read(self, chunk: int, columns: Sequence[str] | None = None):
        """One chunk as a ``pyarrow.Table``; :class:`InputError` naming the file when it cannot be read."""
        import pyarrow.parquet as pq

        path = self.path(chunk)
        try:
            # ParquetFile.read: a tenth of read_table's fixed cost per file (no dataset discovery)
            return pq.ParquetFile(str(path)).read(columns=list(columns) if columns is not None else None)
        except Exception as exc:
            raise InputError(f"{path}: could not be read as Parquet ({type(exc).__name__}: {exc})") from None

    def remove_temps(self) -> int:
        """Delete temporary chunk files left by a killed run, each logged with its size (call while holding the
        run lock; files of a process still running are kept)."""
        from .utils.outputs import remove_stale

        return len(remove_stale(self.folder, [".chunk-*.parquet.tmp-*"], str(self.folder)))

    @staticmethod
    def of_rank(num_chunks: int, rank: int, world_size: int) -> list[int]:
        """The chunks rank ``rank`` of ``world_size`` processes does: ``c % world_size == rank``."""
        return [c for c in range(num_chunks) if c % world_size == rank]
