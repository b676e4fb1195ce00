"""Atomic file and folder writes, and the Hub dataset layout every stage writes.

Nothing half-written is ever left where a reader looks: files are written to a
temporary name beside the target and renamed when complete; folders are built
in a temporary sibling folder and moved into place at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import yaml

from .hashing import content_fingerprint, sha256_file, stable_hash

PARQUET_MAX_ROWS_PER_SHARD = 1000


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` when the block succeeds.

    Works for files and folders. On error the temporary is removed and ``target`` is untouched; a full disk
    (or a read-only or over-quota file system) is a one-line :class:`~promptmix.errors.WriteError` naming
    ``target`` and the free space. An existing folder at ``target`` is replaced only after the new one is
    complete; callers check first that it may be (:func:`promptmix.utils.outputs.guard_output`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{next(tempfile._get_candidate_names())}"
    try:
        try:
            yield tmp
        except Exception as exc:
            from .outputs import disk_error

            err = disk_error(exc, target)
            if err is not None:
                raise err from None
            raise
        if target.is_dir() and tmp.is_dir():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet_atomic(dataset, path: str | os.PathLike) -> Path:
    """Write a ``datasets.Dataset`` to one Parquet file (features kept in the schema metadata), atomically."""
    with atomic_path(path) as tmp:
        dataset.to_parquet(str(tmp))
    return Path(path)


def _num_shards(num_rows: int, max_rows: int) -> int:
    return max(1, math.ceil(num_rows / max_rows))


def write_split_shards(dataset, folder: Path, prefix: str, max_rows: int = PARQUET_MAX_ROWS_PER_SHARD) -> list[Path]:
    """Write ``dataset`` as ``folder/<prefix>-0000i-of-0000n.parquet`` shards (Hub naming)."""
    import datasets

    n = _num_shards(len(dataset), max_rows)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    bars = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # one bar per shard is noise; callers show their own progress
    try:
        for i in range(n):
            shard = dataset.shard(num_shards=n, index=i, contiguous=True)
            path = folder / f"{prefix}-{i:05d}-of-{n:05d}.parquet"
            shard.to_parquet(str(path))
            paths.append(path)
    finally:
        if not bars:
            datasets.enable_progress_bars()
    return paths


def hub_yaml_configs(configs: Mapping[str, Mapping[str, Any]], default: str,
                     fingerprints: Mapping[tuple[str, str], str] | None = None) -> list[dict]:
    """The README ``configs:`` YAML list for ``{config_name: {split: dataset}}`` laid out by :func:`write_hub_layout`."""
    out = []
    for name, splits in configs.items():
        entry: dict[str, Any] = {"config_name": name}
        if name == default:
            entry["default"] = True
        files = []
        for split in splits:
            prefix = _shard_prefix(split, (fingerprints or {}).get((name, split)))
            files.append({"split": split,
                          "path": f"data/{name}/{prefix}-*.parquet" if len(configs) > 1 else f"data/{prefix}-*.parquet"})
        entry["data_files"] = files
        out.append(entry)
    return out


def _shard_prefix(split: str, fingerprint: str | None) -> str:
    return f"{split}-{fingerprint}" if fingerprint else split


def write_hub_layout(root: Path, configs: Mapping[str, Mapping[str, Any]], *, default: str | None = None,
                     max_rows: int = PARQUET_MAX_ROWS_PER_SHARD) -> list[dict]:
    """Write Parquet shards under ``root/data`` in Hub layout and return the YAML ``configs`` list.

    A single config is written as ``data/<split>-<fp>-*.parquet``; several as
    ``data/<config>/<split>-<fp>-*.parquet``, where ``<fp>`` is a fingerprint of the shards' bytes.
    The fingerprint matters: ``datasets.load_dataset(local_folder)`` keys its Arrow cache on the folder's
    base name and its README ``configs`` only, so a rewritten folder (or another folder with the same
    name) would otherwise be served the old cached rows.
    """
    default = default or next(iter(configs))
    fingerprints = {}
    for name, splits in configs.items():
        folder = root / "data" if len(configs) == 1 else root / "data" / name
        for split, ds in splits.items():
            staging = folder / f".staging-{split}"
            paths = write_split_shards(ds, staging, split, max_rows=max_rows)
            fp = content_fingerprint(paths)
            for p in paths:
                os.replace(p, folder / p.name.replace(f"{split}-", f"{_shard_prefix(split, fp)}-", 1))
            staging.rmdir()
            fingerprints[(name, split)] = fp
    return hub_yaml_configs(configs, default, fingerprints)


class ShardWriter:
    """Streams Arrow tables into the Parquet shards of one split, ``folder/<split>-<fp>-0000i-of-0000n.parquet``.

    Shards roll over every ``max_rows`` rows and are written under a staging folder; :meth:`close` names them
    with the fingerprint of their bytes (as :func:`write_hub_layout` does) and returns it. Memory: the table
    being written (at most a row group: ``row_group_rows`` rows or ``row_group_bytes``), never the split. ``features`` (``datasets.Features``) gives the schema and its
    ``huggingface`` metadata, so ``load_dataset`` reads the shards back with their features.
    """

    def __init__(self, folder: str | os.PathLike, split: str, features, *,
                 max_rows: int = PARQUET_MAX_ROWS_PER_SHARD, row_group_rows: int = 100,
                 row_group_bytes: int = 64 << 20) -> None:
        self.folder = Path(folder)
        self.split = split
        self.schema = features.arrow_schema
        self.max_rows = max_rows
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self._pending: list = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self.staging = self.folder / f".staging-{split}"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []
        self.rows = 0
        self._writer = None
        self._in_file = 0

    def _open(self):
        import pyarrow.parquet as pq

        path = self.staging / f"part-{len(self.files):05d}.parquet"
        self.files.append(path)
        from ..maps import parquet_options

        self._writer = pq.ParquetWriter(str(path), self.schema, **parquet_options(self.schema))
        self._in_file = 0

    def write(self, table) -> None:
        """Append ``table`` (its columns in the schema's order, cast to it). Tables are held until a row group
        (``row_group_rows`` rows or ``row_group_bytes`` bytes) is full, then written as one."""
        table = table.select(self.schema.names)
        if not table.schema.equals(self.schema, check_metadata=False):
            table = table.cast(self.schema)
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        if self._pending_rows >= self.row_group_rows or self._pending_bytes >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._open()
            take = min(self.max_rows - self._in_file, table.num_rows - offset)
            self._writer.write_table(table.slice(offset, take), row_group_size=self.row_group_rows)
            self._in_file += take
            self.rows += take
            offset += take
            if self._in_file >= self.max_rows:
                self._writer.close()
                self._writer = None

    def close(self) -> str:
        """Finish the shards (one empty shard for an empty split); returns their fingerprint."""
        self._flush()
        if self._writer is None and not self.files:
            self._open()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        n = len(self.files)
        fp = content_fingerprint(self.files)
        for i, path in enumerate(self.files):
            os.replace(path, self.folder / f"{_shard_prefix(self.split, fp)}-{i:05d}-of-{n:05d}.parquet")
        self.staging.rmdir()
        return fp


def parts_yaml_configs(configs: Mapping[str, Sequence[str]], parts: Mapping[str, Mapping[str, str]],
                       default: str) -> list[dict]:
    """README ``configs:`` for datasets made of parts written once: ``configs`` maps a config name to the
    parts it is made of (``{"kept": ["kept"], "all": ["kept", "dropped"]}``), ``parts`` a part to its
    ``{split: fingerprint}`` (shards at ``data/<part>/<split>-<fp>-*.parquet``, :class:`ShardWriter`)."""
    out = []
    for name, members in configs.items():
        entry: dict[str, Any] = {"config_name": name}
        if name == default:
            entry["default"] = True
        splits = list(dict.fromkeys(s for m in members for s in parts[m]))
        files = []
        for split in splits:
            paths = [f"data/{m}/{_shard_prefix(split, parts[m][split])}-*.parquet" for m in members if split in parts[m]]
            files.append({"split": split, "path": paths[0] if len(paths) == 1 else paths})
        entry["data_files"] = files
        out.append(entry)
    return out


def write_parts_folder(out_dir: str | os.PathLike, parts: Mapping[str, Mapping[str, Any]],
                       configs: Mapping[str, Sequence[str]], *, default: str, metadata: Mapping[str, Any] | None = None,
                       body: str = "", max_rows: int = PARQUET_MAX_ROWS_PER_SHARD) -> Path:
    """A Hub-layout folder whose configs share files: ``parts`` maps a part name to ``{split: Dataset}``
    (written once under ``data/<part>/``), ``configs`` a config to its parts (:func:`parts_yaml_configs`)."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        fingerprints: dict[str, dict[str, str]] = {}
        for part, splits in parts.items():
            fingerprints[part] = {}
            for split, ds in splits.items():
                writer = ShardWriter(tmp / "data" / part, split, ds.features, max_rows=max_rows)
                for batch in ds.with_format("arrow").iter(batch_size=max(1, min(max_rows, 256))):
                    writer.write(batch)
                fingerprints[part][split] = writer.close()
        meta = dict(metadata or {})
        meta["configs"] = parts_yaml_configs(configs, fingerprints, default)
        (tmp / "README.md").write_text(render_readme(meta, body or f"# {out_dir.name}\n"), encoding="utf-8")
    return out_dir


def render_readme(metadata: Mapping[str, Any], body: str) -> str:
    """A README.md with YAML front matter (as the Hub and ``load_dataset`` read it) and a Markdown body."""
    front = yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{body.strip()}\n"


def write_hub_folder(out_dir: str | os.PathLike, configs: Mapping[str, Mapping[str, Any]], *,
                     default: str | None = None, metadata: Mapping[str, Any] | None = None, body: str = "",
                     extra_files: Mapping[str, bytes | str] | None = None,
                     max_rows: int = PARQUET_MAX_ROWS_PER_SHARD) -> Path:
    """Write a complete Hub-layout dataset folder atomically: Parquet shards, README.md with YAML ``configs``.

    ``configs`` maps config name -> split name -> ``datasets.Dataset``. ``metadata`` is merged into the
    README's YAML (``configs`` is filled in here). ``extra_files`` maps relative paths to contents.
    ``datasets.load_dataset(out_dir)`` reads the result back with its features.
    """
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        yaml_configs = write_hub_layout(tmp, configs, default=default, max_rows=max_rows)
        meta = dict(metadata or {})
        meta["configs"] = yaml_configs
        for rel, content in (extra_files or {}).items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        if not (extra_files and "README.md" in extra_files):
            (tmp / "README.md").write_text(render_readme(meta, body or f"# {out_dir.name}\n"), encoding="utf-8")
    return out_dir


def _walk_files(root: str, rel: tuple[str, ...], out: list) -> None:
    """Every file under ``root`` as ``(relative parts, absolute path, stat)``; like ``Path.rglob("*")`` +
    ``is_file()`` (symlinked files followed, symlinked folders not entered) with one ``stat`` per file."""
    with os.scandir(root) as it:
        entries = list(it)
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            _walk_files(e.path, rel + (e.name,), out)
        elif e.is_file():
            out.append((rel + (e.name,), e.path, e.stat()))


def files_fingerprint(paths: Iterable[str | os.PathLike], cache_file: str | os.PathLike | bool | None = None) -> str:
    """A content hash of files and folders (recursively), each file's sha256 cached by its stat.

    ``cache_file``: None for the user's cache (:func:`promptmix.utils.statcache.default_cache_path`), a path
    for another SQLite cache file, False for none. A file is read again only when its size, mtime, ctime,
    inode or device changed (:mod:`promptmix.utils.statcache`); on a warm cache the cost is one ``stat`` per file.
    """
    from ..errors import InputError
    from .statcache import StatCache, stamp_of

    roots = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root} does not exist")
        roots.append(root)
    entries = []
    with contextlib.ExitStack() as stack:
        cache = stack.enter_context(StatCache(cache_file or None)) if cache_file is not False else None
        for root in roots:
            top = os.path.abspath(root.resolve())
            if root.is_dir():
                found: list = []
                _walk_files(top, (), found)
                found.sort(key=lambda f: f[0])  # the order of sorted(Path.rglob("*")): by path parts
            else:
                found = [((root.name,), top, os.stat(top))]
            known = cache.under(top) if cache is not None else {}
            fresh = {}
            for parts, path, st in found:
                stamp = stamp_of(st)
                hit = known.get(path)
                if hit is not None and tuple(hit[0]) == stamp:
                    digest = hit[1]
                else:
                    digest = sha256_file(path)
                    fresh[path] = (stamp, digest)
                entries.append(["/".join(parts), digest])
            if cache is not None:
                present = {path for _, path, _ in found}
                cache.put(fresh, gone=[p for p in known if p not in present])
    return stable_hash(entries, length=32)
