"""``promptmix filter``: quality scores, the kept subset and the training target -> the fake dataset.

Reads only what is stored (``RUN/images`` and ``RUN/annotations``), so refiltering with another
percentage loads no model and touches no network. Writes ``RUN/fake`` (or ``--out``), a Hub-layout
folder that ``datasets.load_dataset`` reads, with ``schema.fake_features(task, class_names)`` and
two configs:

- ``kept`` (default): the rows kept, ready for training (``data/kept/`` shards);
- ``all``: every row with its scores and flags, so nothing the filter drops is lost: the ``kept`` shards
  plus the ``dropped`` ones (``data/dropped/``), listed together in the README's ``configs`` -- each row
  is written once. Its rows are the kept rows first, then the dropped ones, each in generation order.

Memory stays constant whatever the row count: both passes read one chunk at a time, maps stay Arrow
buffers (or NumPy views of them), and rows are streamed into the shards (:class:`ShardWriter`).

Rules:

- Rows are joined by ``row_id``, chunk by chunk; an annotator that lacks a chunk or a row is an
  error naming it (finish it with ``promptmix annotate``).
- Labels join only the images they were made from: every annotation chunk's footer must name the sha256
  of its image chunk as it is now (``promptmix.image_sha256``, written by ``promptmix annotate``); a chunk
  that labels another version of its image chunk (images generated again after annotating), or does not
  say, is an error naming both chunk files. Image chunks are checked as annotate checks them
  (:func:`~promptmix.generation.generate.plan.generated_row_ids`: readable, the planned number of rows, no
  row in two chunks), and an unreadable chunk is an error naming it, never a traceback.
- A row where any annotator output NaN/inf (``ok`` False) gets ``annotation_ok`` False, a null
  ``quality_score`` and null target, is never kept, and is counted in the report.
- ``quality_score`` is :func:`promptmix.tasks.pairwise_quality` (the paper's
  ``max_{j != j'} d(A_j, A_j') / max_j d(A_j, 0)``). Rows are sorted by it (ties by row order) and
  the lowest ``keep_percent`` % of the flagged-free rows are kept: ``round(n * keep / 100)``
  rows (half up), at least one when any row is valid. With one annotator the score is null and
  every valid row is kept; asking for ``keep_percent < 100`` then is an error, since there is
  nothing to rank by.
- Target (``target``: ``first`` (default), an annotator's name, or ``mean``): counting takes that
  annotator's density map (at its own output resolution) or the mean of all maps resized to the
  first annotator's resolution with their mass preserved (:func:`promptmix.density.resize_density`);
  ``count`` is that annotator's count (the sum of its map, before float16 storage), or the mean map's
  sum. Depth takes that annotator's map, or the mean of all maps resized (bilinear) to the first annotator's size. The map is stored once: a named annotator's target is
  its map in ``annotations`` (the ``density`` / ``depth`` column stays null), only the mean is stored in
  that column (:func:`promptmix.schema.fake_target_map`). Classification's ``label`` is the prompt's class
  (the annotators only score agreement); ``target_annotator`` is then ``"prompt"``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ... import maps
from ... import schema as S
from ...errors import ConfigError, InputError
from ...run_folder import RunFolder
from ...tasks import get_task, pairwise_quality
from ...utils.progress import progress
from ..annotate.runner import annotated_names, run_task
from .config import FilterConfig

logger = logging.getLogger(__name__)

STAGE = "filter"
CONFIG_KEPT = "kept"
CONFIG_ALL = "all"
SPLIT = "train"
PARTS = ("kept", "dropped")  # data/kept/, data/dropped/: every row written once
CONFIG_PARTS = {CONFIG_KEPT: ["kept"], CONFIG_ALL: ["kept", "dropped"]}  # `all` is both parts, not a copy
BATCH_BYTES = 48 << 20  # rows assembled and written per step: about this many bytes of input (16 big-map rows)
PROMPT_TARGET = "prompt"


@dataclasses.dataclass
class FilterReport:
    run_dir: Path
    out: Path
    task: str
    annotators: list[str]
    target: str  # the resolved target: an annotator name, "mean" or "prompt"
    keep_percent: float
    rows: int
    kept: int
    flagged: int  # rows with a NaN/inf annotation
    flagged_by_annotator: dict[str, int]
    threshold: float | None  # highest quality score among kept rows (None with one annotator)

    def summary(self) -> str:
        thr = "n/a (one annotator)" if self.threshold is None else f"{self.threshold:.4g}"
        by = ", ".join(f"{k}: {v}" for k, v in self.flagged_by_annotator.items() if v)
        lines = [f"filtered {self.run_dir} ({self.task}; annotators {', '.join(self.annotators)})",
                 f"  rows: {self.rows}", f"  kept: {self.kept} (keep {self.keep_percent:g}%, "
                 f"quality score <= {thr})",
                 f"  flagged (NaN/inf annotations, not kept): {self.flagged}" + (f" [{by}]" if by else ""),
                 f"  target: {self.target}", f"  wrote {self.out} (configs '{CONFIG_KEPT}' and '{CONFIG_ALL}')"]
        return "\n".join(lines)


# -- reading what is stored ------------------------------------------------------------------------------
def _columns(task: str) -> list[str]:
    return [c for c in S.annotation_features(task) if c != S.ROW_ID]


def _redo(run: RunFolder, name: str) -> str:
    return f"`promptmix annotate {run.root} --annotator {name}:SPEC` (same SPEC as before)"


def _check_provenance(run: RunFolder, name: str, chunk: int, image_path: Path, image_sha256: str) -> None:
    """Annotation chunk ``chunk`` of ``name`` labels the image chunk at ``image_path`` as it is now."""
    from ..annotate.runner import provenance_problem

    store = run.annotation_chunks(name)
    path = store.path(chunk)
    if not path.exists():
        raise InputError(f"annotator {name!r} is incomplete: {path} is missing; finish it with {_redo(run, name)}")
    footer = store.footer(chunk)
    if footer is None:
        raise InputError(f"{path}: could not be read as Parquet ({store.problem(chunk)}); rerun {_redo(run, name)}: "
                         "it moves the file aside and annotates the chunk again")
    what = provenance_problem(footer, image_path, image_sha256)
    if what is not None:
        raise InputError(f"{path} {what}; labels and images that do not belong together are never joined. Rerun "
                         f"{_redo(run, name)}: it annotates those chunks again")


def _read_annotation_chunk(run: RunFolder, name: str, chunk: int, row_ids, columns: list[str]):
    """One annotator's rows of chunk ``chunk`` as an Arrow table in the order of ``row_ids`` (an Arrow array);
    an error names the file when any row is missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    store = run.annotation_chunks(name)
    path = store.path(chunk)
    if not path.exists():
        raise InputError(f"annotator {name!r} is incomplete: {path} is missing; finish it with {_redo(run, name)}")
    table = store.read(chunk, [S.ROW_ID, *columns])
    ids = table.column(S.ROW_ID).combine_chunks()
    if len(ids) == len(row_ids) and ids.equals(row_ids):
        return table
    where = pc.index_in(row_ids, value_set=ids)
    if where.null_count:
        missing = pc.filter(row_ids, pc.is_null(where)).to_pylist()
        raise InputError(f"annotator {name!r} is incomplete: {path} lacks rows {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}; delete that file and rerun `promptmix annotate`")
    return table.take(pa.array(where))


def _generated_chunks(run: RunFolder) -> list[tuple[int, Path]]:
    chunks = run.image_chunks().list()
    if not chunks:
        raise InputError(f"{run.images} holds no generated chunks; run `promptmix generate` first")
    return chunks


def _read_generated(path: Path, columns: list[str] | None = None):
    """A chunk of ``RUN/images`` as an Arrow table."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path)).read(columns=columns)
    except Exception as exc:  # truncated or damaged data pages
        raise InputError(f"{path}: could not be read as Parquet ({type(exc).__name__}: {str(exc)[:200]}); rerun the "
                         "same `promptmix generate` command: it moves the bad chunk aside and generates it again"
                         ) from None


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _finite(spec, table) -> np.ndarray:
    """Per row of one annotator's Arrow table: ``ok`` as stored and every finite column finite (maps checked
    as NumPy views, no Python floats)."""
    ok = np.asarray(table.column(S.OK).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    for c in spec.finite_columns:
        col = table.column(c)
        if c == spec.annotation_map:
            ms = maps.arrow_maps(col, dtype=np.float16)
            ok &= np.array([m is not None and bool(np.isfinite(m).all()) for m in ms], dtype=bool)
        else:
            v = col.to_numpy(zero_copy_only=False)
            ok &= np.array([x is not None and math.isfinite(float(x)) for x in v], dtype=bool) if v.dtype == object \
                else np.isfinite(v.astype(np.float64))
    return ok


def _quality_values(spec, table) -> list:
    """What the quality score compares, per row of one annotator's table."""
    if spec.annotation_map is not None and spec.annotation_map in spec.quality_columns:
        return maps.arrow_maps(table.column(spec.annotation_map))
    if spec.name == "classification":
        return list(zip(table.column(S.LABEL).to_pylist(), table.column(S.PROBABILITY).to_pylist()))
    return table.column(spec.quality_columns[0]).to_pylist()


def _to_struct_maps(column, dtype=np.float16):
    """A map column in the current layout (an old nested-list column is converted)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        col = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    else:
        col = column
    if pa.types.is_struct(col.type):
        return col
    return maps.map_struct_array(maps.arrow_maps(col, dtype=np.float32), dtype=dtype)


def _gather_binary(arrays: list, picks: np.ndarray):
    """A binary array of ``arrays[j][i]`` for each ``(j, i)`` in ``picks`` (one copy of the bytes)."""
    import pyarrow as pa

    parts, lengths = [], np.zeros(len(picks), dtype=np.int64)
    views = []
    for a in arrays:
        _, offsets_buf, values_buf = a.buffers()
        kind = np.int64 if pa.types.is_large_binary(a.type) else np.int32
        offsets = np.frombuffer(offsets_buf, dtype=kind)[a.offset:a.offset + len(a) + 1]
        raw = np.frombuffer(values_buf, dtype=np.uint8) if values_buf is not None else np.zeros(0, np.uint8)
        views.append((offsets, raw))
    for k, (j, i) in enumerate(picks):
        offsets, raw = views[j]
        parts.append(raw[offsets[i]:offsets[i + 1]])
        lengths[k] = offsets[i + 1] - offsets[i]
    ends = np.concatenate([[0], np.cumsum(lengths)])
    if ends[-1] >= 2 ** 31:
        raise InputError("a filter batch holds over 2 GB of maps; this should not happen with ROWS_PER_BATCH rows")
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    return pa.Array.from_buffers(pa.binary(), len(picks), [None, pa.py_buffer(ends.astype(np.int32)),
                                                          pa.py_buffer(values)])


def _gather_maps(columns: list, picks: np.ndarray, map_type):
    """The map structs ``columns[j][i]`` for each ``(j, i)`` in ``picks``: small fields by ``take``, the bytes by
    :func:`_gather_binary` (one copy, no concatenation first)."""
    import pyarrow as pa

    cols = [_to_struct_maps(c) for c in columns]
    cols = [c if c.type == map_type else c.cast(map_type) for c in cols]
    flat = [dict(zip([c.type.field(k).name for k in range(c.type.num_fields)], c.flatten())) for c in cols]
    if any(c.null_count for c in cols) or any(f[maps.DATA].null_count for f in flat):  # rare: the general path
        idx = pa.array(picks[:, 0] * len(cols[0]) + picks[:, 1])
        return pa.concat_arrays(cols).take(idx)
    idx = pa.array(picks[:, 0] * len(cols[0]) + picks[:, 1]) if len(picks) else pa.array([], pa.int64())
    fields = []
    for f in map_type:
        if f.name == maps.DATA:
            fields.append(_gather_binary([x[maps.DATA] for x in flat], picks))
        else:
            fields.append(pa.concat_arrays([x[f.name] for x in flat]).take(idx))
    return pa.StructArray.from_arrays(fields, fields=list(map_type))


def _fake_table(spec, features, names: list[str], gen, tables: list, rows: np.ndarray, scores: list,
                kept: np.ndarray, valid: list[bool], target_name: str, target_index: int | None):
    """The fake rows ``rows`` (indices into one chunk) as an Arrow table (``schema.fake_features``), from the
    chunk's generated rows ``gen`` and each annotator's aligned table ``tables``: maps move as bytes (copied once,
    straight into the annotations' order), and only a ``mean`` target is computed (in NumPy). ``scores``,
    ``kept`` and ``valid`` are per row of the chunk."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    take = pa.array(rows)
    gen = gen.take(take)
    scores = [scores[i] for i in rows]
    kept = np.asarray(kept, dtype=bool)[rows]
    valid = [valid[i] for i in rows]
    schema = features if isinstance(features, pa.Schema) else features.arrow_schema
    cols: dict[str, Any] = {k: gen.column(k) if k in gen.column_names else pa.nulls(n) for k in S.GENERATED}
    ann_type = schema.field(S.ANNOTATIONS).type.value_type
    k = len(names)
    picks = np.stack([np.tile(np.arange(k), n), np.repeat(rows, k)], axis=1)  # row by row, annotators in order
    flat_idx = pa.array(picks[:, 0] * (len(tables[0]) if tables else 0) + picks[:, 1]) if n else \
        pa.array([], pa.int64())
    fields = []
    for f in ann_type:
        if f.name == S.ANNOTATOR:
            fields.append(pa.array([names[j] for j in picks[:, 0]], type=f.type))
        elif f.name == spec.annotation_map:
            fields.append(_gather_maps([t.column(f.name) for t in tables], picks, f.type))
        else:
            fields.append(pa.concat_arrays([t.column(f.name).combine_chunks().cast(f.type) for t in tables])
                          .take(flat_idx))
    values = pa.StructArray.from_arrays(fields, fields=list(ann_type))
    cols[S.ANNOTATIONS] = pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), values)
    cols[S.QUALITY_SCORE] = pa.array(scores, pa.float32())
    cols[S.KEPT] = pa.array(np.asarray(kept, dtype=bool))
    cols[S.ANNOTATION_OK] = pa.array(list(valid), pa.bool_())
    cols[S.TARGET_ANNOTATOR] = pa.array([target_name] * n, pa.string())
    if spec.annotation_map is not None:  # a dense target: the named annotator's map (stored once) or the mean
        by_ann = [maps.arrow_maps(t.column(spec.annotation_map), dtype=np.float16) if target_index is None
                  or j == target_index else None for j, t in enumerate(tables)]
        heights = gen.column(S.HEIGHT).to_pylist() if S.HEIGHT in gen.column_names else [None] * n
        widths = gen.column(S.WIDTH).to_pylist() if S.WIDTH in gen.column_names else [None] * n
        targets: list[np.ndarray | None] = []
        for i, r in enumerate(rows):
            if not valid[i]:
                targets.append(None)
            elif target_index is None:
                targets.append(spec.target_map([m[r] for m in by_ann], None, (heights[i], widths[i])))
            else:
                targets.append(by_ann[target_index][r])  # only for its count, when the annotator stored none
        stored = targets if target_index is None else [None] * n
        cols[spec.fake_target] = maps.map_struct_array(stored)
        empty = spec.target_value(np.zeros((1, 1), np.float32))
        if target_index is not None and set(empty) <= set(tables[target_index].column_names):
            # a named target: its annotator's own values (counting: the count it gave, the sum of its map)
            for key in empty:
                values = tables[target_index].column(key).combine_chunks().take(take)
                cols[key] = pc.if_else(pa.array(list(valid), pa.bool_()), values, pa.scalar(None, values.type))
        else:
            per_row = [spec.target_value(np.asarray(m, dtype=np.float16)) if m is not None else None for m in targets]
            for key in empty:
                cols[key] = pa.array([v[key] if v is not None else None for v in per_row])
    return pa.table({name: cols[name] for name in schema.names}).cast(schema)


def build_target(task: str, maps: list[Any], target_index: int | None,
                 image_size: tuple[int, int] | None = None) -> np.ndarray:
    """The training map of one row: ``maps[target_index]``, or (``None``) the mean at ``maps[0]``'s size.

    Counting maps move to ``maps[0]``'s grid with their mass preserved, each cell onto the cells over the same
    pixels of the ``image_size`` (H, W) image (:func:`promptmix.density.align_density`); depth maps bilinearly
    (:meth:`Task.target_map`).
    """
    return get_task(task).target_map(maps, target_index, image_size)


def _resolve_target(config: FilterConfig, task: str, names: list[str]) -> tuple[str, int | None]:
    if get_task(task).annotation_map is None:  # classification: the prompt's class is the target
        return PROMPT_TARGET, None
    t = config.target
    if t == "first":
        return names[0], 0
    if t == "mean":
        return "mean", None
    if t in names:
        return t, names.index(t)
    raise ConfigError(f"filter.target: expected 'first', 'mean' or one of the run's annotators "
                      f"({', '.join(names)}); got {t!r}")


def keep_count(n_valid: int, keep_percent: float) -> int:
    """How many of ``n_valid`` scored rows the lowest ``keep_percent`` % is (half up, at least one)."""
    if n_valid == 0:
        return 0
    return min(n_valid, max(1, int(math.floor(n_valid * keep_percent / 100.0 + 0.5))))


# -- the stage ----------------------------------------------------------------------------------------------
def filter_run(run_dir: RunFolder | str | Path, config: FilterConfig | None = None) -> FilterReport:
    """Score, filter and write the fake dataset of ``run_dir`` from its stored annotations.

    Constant memory: both passes read one chunk at a time (the first only the columns the score reads), maps
    stay Arrow buffers or NumPy views of them, and the rows are streamed into the ``kept`` and ``dropped``
    shards as they are made.
    """
    import pyarrow as pa

    from ...utils.io import ShardWriter, atomic_path, parts_yaml_configs, render_readme
    from ...utils.outputs import guard_output, marker_files, remove_stale_beside, write_errors

    config = config or FilterConfig()
    from ...generation.generate.plan import read_plan

    run = RunFolder.of(run_dir)
    run_dir = run.root
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} does not exist")
    task, class_names = run_task(run)
    spec = get_task(task)
    names = annotated_names(run)
    if not names:
        raise InputError(f"{run.annotations} holds no annotator; run `promptmix annotate {run_dir} "
                         f"--annotator SPEC` first")
    if config.annotators is not None:
        missing = [n for n in config.annotators if n not in names]
        if missing:
            raise InputError(f"filter.annotators: {', '.join(missing)} not annotated in {run.annotations} (it holds "
                             f"{', '.join(names)}); run `promptmix annotate {run_dir} --annotator "
                             f"{missing[0]}:SPEC` first")
        names = list(config.annotators)
    if len(names) < 2 and config.keep_percent < 100:
        raise ConfigError(f"filter.keep_percent: {config.keep_percent:g} needs at least two annotators (the quality "
                          f"score compares them) but {run_dir} has only {names[0]!r}; add one with "
                          f"`promptmix annotate` or use --keep 100")
    target_name, target_index = _resolve_target(config, task, names)
    chunks = _generated_chunks(run)
    planned = read_plan(run).get("num_chunks")
    if planned and len(chunks) < int(planned):
        logger.warning("%s: generation is incomplete (%d of %d chunks); filtering the rows generated so far",
                       run_dir, len(chunks), int(planned))
    out = Path(config.out) if config.out is not None else run.fake
    guard_output(out, STAGE, run=run, own=[run.fake], force=config.force)
    remove_stale_beside(out, f"promptmix {STAGE}")

    # pass 1: scores and flags, one chunk at a time (only the columns the score reads) ---------------------------
    qcols = list(dict.fromkeys([*spec.quality_columns, *spec.finite_columns, S.OK]))
    scores: list[float | None] = []
    valid: list[bool] = []
    flagged_by = {n: 0 for n in names}
    from ...generation.generate.plan import generated_row_ids
    from ...utils.hashing import sha256_file

    ids_of = generated_row_ids(run, chunks)
    stamps = {}
    for c, path in progress(chunks, desc="score", unit="chunk"):
        row_ids = pa.array(ids_of[c], pa.string())
        stamps[c] = _stamp(path)
        sha = sha256_file(path)
        for n in names:
            _check_provenance(run, n, c, path, sha)
        tables = [_read_annotation_chunk(run, n, c, row_ids, qcols) for n in names]
        oks = [_finite(spec, t) for t in tables]
        for n, ok in zip(names, oks):
            flagged_by[n] += int((~ok).sum())
        every = np.logical_and.reduce(oks)
        values = [_quality_values(spec, t) for t in tables]
        for i in range(len(row_ids)):
            valid.append(bool(every[i]))
            scores.append(pairwise_quality([v[i] for v in values], task) if every[i] else None)
        del tables, values

    n_valid = sum(valid)
    order = sorted((i for i in range(len(valid)) if valid[i]),
                   key=lambda i: (scores[i] if scores[i] is not None else 0.0, i))
    kept_mask = np.zeros(len(valid), dtype=bool)
    kept_mask[order[:keep_count(n_valid, config.keep_percent)] if len(names) > 1 else order] = True
    kept_scores = [scores[i] for i in np.flatnonzero(kept_mask) if scores[i] is not None]
    threshold = max(kept_scores) if kept_scores else None
    n_kept = int(kept_mask.sum())
    if not n_kept and not config.allow_empty:
        n_flagged = len(valid) - n_valid
        raise InputError(f"{run_dir}: every row was filtered out ({n_flagged} flagged NaN/inf by an annotator, "
                         f"{n_valid - n_kept} below the keep share of {config.keep_percent:g} %, of "
                         f"{len(valid)} row(s) in {len(chunks)} image chunk(s)); nothing was written. Check the "
                         "annotators (`promptmix annotate`), or pass --allow-empty to write an empty 'kept' set")

    # pass 2: the rows, one chunk at a time, streamed into the kept and dropped shards ---------------------------
    features = S.fake_features(task, class_names)
    arrow_schema = features.arrow_schema
    acols = _columns(task)
    # datasets cannot load a split of no rows ("corresponds to no data"): an empty kept set (allow_empty) is
    # written as the 'all' config alone, the default, every row with kept = false
    parts = PARTS if n_kept else tuple(p for p in PARTS if p != "kept")
    config_parts = CONFIG_PARTS if n_kept else {CONFIG_ALL: list(parts)}
    with atomic_path(out) as tmp, write_errors(out):
        tmp.mkdir(parents=True)
        writers = {part: ShardWriter(tmp / "data" / part, SPLIT, features) for part in parts}
        index = 0
        for c, path in progress(chunks, desc="write", unit="chunk"):
            if _stamp(path) != stamps[c]:
                raise InputError(f"{path} changed while filtering (another command is writing {run.images}); "
                                 "rerun `promptmix filter` when it has finished")
            gen = _read_generated(path, list(S.GENERATED))
            row_ids = gen.column(S.ROW_ID).combine_chunks()
            tables = [_read_annotation_chunk(run, n, c, row_ids, acols) for n in names]
            here = slice(index, index + gen.num_rows)
            chunk_kept, chunk_scores, chunk_valid = kept_mask[here], scores[here], valid[here]
            row_bytes = (gen.nbytes + sum(t.nbytes for t in tables)) / max(1, gen.num_rows)
            step = max(1, int(BATCH_BYTES // max(row_bytes, 1)))  # bounded work per step, whatever the chunk size
            for part, rows in (("kept", np.flatnonzero(chunk_kept)), ("dropped", np.flatnonzero(~chunk_kept))):
                if part not in writers:
                    continue  # no kept rows at all (allow_empty)
                for start in range(0, len(rows), step):
                    writers[part].write(_fake_table(spec, arrow_schema, names, gen, tables, rows[start:start + step],
                                                    chunk_scores, chunk_kept, chunk_valid, target_name, target_index))
            index += gen.num_rows
            del gen, tables
        fingerprints = {part: {SPLIT: w.close()} for part, w in writers.items()}
        yaml_configs = parts_yaml_configs(config_parts, fingerprints, default=CONFIG_KEPT if n_kept else CONFIG_ALL)
        meta = {"tags": ["promptmix", "synthetic", task], "configs": yaml_configs}
        body = _readme_body(run_dir, task, names, target_name, config, len(valid), int(kept_mask.sum()),
                            len(valid) - n_valid, threshold)
        (tmp / "README.md").write_text(render_readme(meta, body), encoding="utf-8")
        (tmp / "promptmix_filter.yaml").write_text(config.to_yaml(), encoding="utf-8")
        for name, text in marker_files(STAGE).items():
            (tmp / name).write_text(text, encoding="utf-8")
    kept_idx = np.flatnonzero(kept_mask)

    report = FilterReport(run_dir=run_dir, out=out, task=task, annotators=names, target=target_name,
                          keep_percent=config.keep_percent, rows=len(valid), kept=len(kept_idx),
                          flagged=len(valid) - n_valid, flagged_by_annotator=flagged_by, threshold=threshold)
    annotate_stage = run.stage_record("annotate")
    run.record_stage(STAGE, {
        "config": config.to_dict(), "config_hash": config.config_hash(), "out": str(out),
        "annotators": names, "target": target_name, "rows": report.rows, "kept": report.kept,
        "flagged": report.flagged, "flagged_by_annotator": flagged_by, "threshold": threshold,
        "keep_percent": config.keep_percent,
        "annotator_records": {a.get("name"): a.get("weights_sha256") or (a.get("model") or {}).get("commit_hash")
                              for a in annotate_stage.get("annotators", []) if isinstance(a, dict)},
    })
    return report


def _readme_body(run_dir: Path, task: str, names: list[str], target: str, config: FilterConfig, rows: int,
                 kept: int, flagged: int, threshold: float | None) -> str:
    thr = "n/a" if threshold is None else f"{threshold:.4g}"
    return (f"# Fake {task} dataset (promptmix)\n\n"
            f"Generated images from `{run_dir.name}`, annotated by {', '.join(f'`{n}`' for n in names)}.\n\n"
            f"- rows: {rows}; kept: {kept} (lowest {config.keep_percent:g}% by quality score, threshold {thr}); "
            f"flagged NaN/inf: {flagged}\n"
            f"- target: `{target}`\n"
            f"- configs: `{CONFIG_KEPT}` (default, kept rows) and `{CONFIG_ALL}` (every row with its scores "
            f"and flags)\n")
