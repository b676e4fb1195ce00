"""``promptmix filter``: quality scores, the kept subset and the training target -> the fake dataset.

Reads only what is stored (``RUN/images`` and ``RUN/annotations``), so refiltering with another
percentage loads no model and touches no network. Writes ``RUN/fake`` (or ``--out``), a Hub-layout
folder that ``datasets.load_dataset`` reads, with ``schema.fake_features(task, class_names)`` and
two configs:

- ``kept`` (default): the rows kept, ready for training;
- ``all``: every row with its scores and flags, so nothing the filter drops is lost.

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
  ``count`` is the target map's sum. Depth takes that annotator's map, or the mean of all maps
  resized (bilinear) to the first annotator's size. Classification's ``label`` is the prompt's class
  (the annotators only score agreement); ``target_annotator`` is then ``"prompt"``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

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
    from ..annotate.runner import IMAGE_SHA256

    store = run.annotation_chunks(name)
    path = store.path(chunk)
    if not path.exists():
        raise InputError(f"annotator {name!r} is incomplete: {path} is missing; finish it with {_redo(run, name)}")
    footer = store.footer(chunk)
    if footer is None:
        raise InputError(f"{path}: could not be read as Parquet ({store.problem(chunk)}); rerun {_redo(run, name)}: "
                         "it moves the file aside and annotates the chunk again")
    labelled = footer.get(IMAGE_SHA256)
    if labelled != image_sha256:
        what = ("does not record which image chunk it labelled (written by an older promptmix)" if labelled is None
                else f"labels another version of {image_path} (sha256 {labelled[:12]}... when annotated, "
                     f"{image_sha256[:12]}... now: the images were generated again after annotating)")
        raise InputError(f"{path} {what}; labels and images that do not belong together are never joined. Rerun "
                         f"{_redo(run, name)}: it annotates those chunks again")


def _read_annotation_chunk(run: RunFolder, name: str, chunk: int, row_ids: list[str], columns: list[str]) -> list[dict]:
    """One annotator's rows of chunk ``chunk``, in the order of ``row_ids`` (error if any is missing)."""
    store = run.annotation_chunks(name)
    path = store.path(chunk)
    if not path.exists():
        raise InputError(f"annotator {name!r} is incomplete: {path} is missing; finish it with {_redo(run, name)}")
    table = store.read(chunk, [S.ROW_ID, *columns])
    rows = table.to_pylist()
    by_id = {r[S.ROW_ID]: r for r in rows}
    missing = [r for r in row_ids if r not in by_id]
    if missing:
        raise InputError(f"annotator {name!r} is incomplete: {path} lacks rows {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}; delete that file and rerun `promptmix annotate`")
    return [by_id[r] for r in row_ids]


def _generated_chunks(run: RunFolder) -> list[tuple[int, Path]]:
    chunks = run.image_chunks().list()
    if not chunks:
        raise InputError(f"{run.images} holds no generated chunks; run `promptmix generate` first")
    return chunks


def _read_generated(path: Path, columns: list[str] | None = None) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(str(path), columns=columns).to_pylist()
    except Exception as exc:  # truncated or damaged data pages
        raise InputError(f"{path}: could not be read as Parquet ({type(exc).__name__}: {str(exc)[:200]}); rerun the "
                         "same `promptmix generate` command: it moves the bad chunk aside and generates it again"
                         ) from None


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


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
    """Score, filter and write the fake dataset of ``run_dir`` from its stored annotations."""
    from datasets import Dataset

    from ...utils.io import write_hub_folder
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

    # pass 1: scores and flags --------------------------------------------------------------------------------
    qcols = list(spec.quality_columns)
    scores: list[float | None] = []
    valid: list[bool] = []
    flagged_by = {n: 0 for n in names}
    from ...generation.generate.plan import generated_row_ids
    from ...utils.hashing import sha256_file

    ids_of = generated_row_ids(run, chunks)
    stamps = {}
    for c, path in progress(chunks, desc="score", unit="chunk"):
        row_ids = ids_of[c]
        stamps[c] = _stamp(path)
        sha = sha256_file(path)
        for n in names:
            _check_provenance(run, n, c, path, sha)
        per_ann = [_read_annotation_chunk(run, n, c, row_ids, qcols) for n in names]
        for i in range(len(row_ids)):
            rows = [a[i] for a in per_ann]
            oks = [spec.finite(r) for r in rows]
            for n, ok in zip(names, oks):
                flagged_by[n] += 0 if ok else 1
            if all(oks):
                valid.append(True)
                scores.append(pairwise_quality([spec.quality_value(r) for r in rows], task))
            else:
                valid.append(False)
                scores.append(None)

    n_valid = sum(valid)
    order = sorted((i for i in range(len(valid)) if valid[i]),
                   key=lambda i: (scores[i] if scores[i] is not None else 0.0, i))
    kept_idx = set(order[:keep_count(n_valid, config.keep_percent)]) if len(names) > 1 else set(order)
    kept_scores = [scores[i] for i in kept_idx if scores[i] is not None]
    threshold = max(kept_scores) if kept_scores else None
    if not kept_idx and not config.allow_empty:
        n_flagged = len(valid) - n_valid
        raise InputError(f"{run_dir}: every row was filtered out ({n_flagged} flagged NaN/inf by an annotator, "
                         f"{n_valid - len(kept_idx)} below the keep share of {config.keep_percent:g} %, of "
                         f"{len(valid)} row(s) in {len(chunks)} image chunk(s)); nothing was written. Check the "
                         "annotators (`promptmix annotate`), or pass --allow-empty to write an empty 'kept' set")

    # pass 2: the rows ----------------------------------------------------------------------------------------
    features = S.fake_features(task, class_names)
    acols = _columns(task)

    def fake_rows() -> Iterator[dict]:
        index = 0
        for c, path in chunks:
            if _stamp(path) != stamps[c]:
                raise InputError(f"{path} changed while filtering (another command is writing {run.images}); "
                                 "rerun `promptmix filter` when it has finished")
            gen = _read_generated(path, list(S.GENERATED))
            row_ids = [r[S.ROW_ID] for r in gen]
            per_ann = [_read_annotation_chunk(run, n, c, row_ids, acols) for n in names]
            for i, g in enumerate(gen):
                anns = [{S.ANNOTATOR: n, **{k: a[i][k] for k in acols}} for n, a in zip(names, per_ann)]
                row = {k: g.get(k) for k in S.GENERATED}
                row.update({S.ANNOTATIONS: anns, S.QUALITY_SCORE: scores[index], S.KEPT: index in kept_idx,
                            S.ANNOTATION_OK: valid[index], S.TARGET_ANNOTATOR: target_name})
                if spec.annotation_map is not None:  # a dense target: density (+ count) or depth
                    key = spec.fake_target
                    m = spec.target_map([a[spec.annotation_map] for a in anns], target_index,
                                         (g.get(S.HEIGHT), g.get(S.WIDTH))) if valid[index] else None
                    row[key] = m.astype(np.float16).tolist() if m is not None else None
                    values = spec.target_value(m) if m is not None else spec.target_value(np.zeros((1, 1), np.float32))
                    row.update({k: (v if m is not None else None) for k, v in values.items()})
                yield row
                index += 1

    with tempfile.TemporaryDirectory(prefix="promptmix-filter-") as tmp, write_errors(out):
        all_ds = Dataset.from_generator(fake_rows, features=features, cache_dir=tmp)
        kept_ds = all_ds.select(sorted(kept_idx))
        meta = {"tags": ["promptmix", "synthetic", task]}
        # datasets cannot load a split of no rows ("corresponds to no data"): an empty kept set (allow_empty) is
        # written as the 'all' config alone, the default, every row with kept = false
        configs = {CONFIG_KEPT: {SPLIT: kept_ds}, CONFIG_ALL: {SPLIT: all_ds}} if kept_idx else \
            {CONFIG_ALL: {SPLIT: all_ds}}
        write_hub_folder(out, configs, default=CONFIG_KEPT if kept_idx else CONFIG_ALL,
                         metadata=meta, body=_readme_body(run_dir, task, names, target_name, config,
                                                          len(valid), len(kept_idx), len(valid) - n_valid, threshold),
                         extra_files={"promptmix_filter.yaml": config.to_yaml(), **marker_files(STAGE)})

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
