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
- A row where any annotator output NaN/inf (``ok`` False) gets ``annotation_ok`` False, a null
  ``quality_score`` and null target, is never kept, and is counted in the report.
- ``quality_score`` is :func:`promptmix.annotation.quality.pairwise_quality` (the paper's
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

from .. import schema as S
from ..config import StageConfig, field
from ..errors import ConfigError, InputError
from ..utils.manifest import read_manifest, record_stage
from ..utils.progress import progress
from .quality import pairwise_quality, resize_map
from .runner import annotated_names, annotator_dir, chunk_filename, run_task

logger = logging.getLogger(__name__)

STAGE = "filter"
FAKE_DIR = "fake"
CONFIG_KEPT = "kept"
CONFIG_ALL = "all"
SPLIT = "train"
PROMPT_TARGET = "prompt"


@dataclasses.dataclass
class FilterConfig(StageConfig):
    """Settings of ``promptmix filter``."""

    _section = "filter"

    keep_percent: float = field(100.0, help="keep this percentage of rows, those with the lowest quality scores "
                                            "(0 < value <= 100)")
    target: str = field("first", help="training target: 'first' annotator, an annotator's name, or 'mean' of all")
    out: Path | None = field(None, help="output folder (default RUN/fake)", runtime=True)

    def validate(self) -> None:
        if isinstance(self.keep_percent, bool) or not isinstance(self.keep_percent, (int, float)) \
                or not (0 < float(self.keep_percent) <= 100):
            self.fail("keep_percent", "a number in (0, 100]")
        self.keep_percent = float(self.keep_percent)
        if not isinstance(self.target, str) or not self.target.strip():
            self.fail("target", "'first', 'mean' or an annotator name")
        if self.out is not None and not isinstance(self.out, Path):
            self.out = Path(self.out)


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


def _quality_columns(task: str) -> list[str]:
    return {"counting": [S.COUNT, S.OK], "depth": [S.DEPTH, S.OK],
            "classification": [S.LABEL, S.PROBABILITY, S.OK]}[task]


def _read_annotation_chunk(run_dir: Path, name: str, chunk: int, row_ids: list[str], columns: list[str]) -> list[dict]:
    """One annotator's rows of chunk ``chunk``, in the order of ``row_ids`` (error if any is missing)."""
    import pyarrow.parquet as pq

    path = annotator_dir(run_dir, name) / chunk_filename(chunk)
    if not path.exists():
        raise InputError(f"annotator {name!r} is incomplete: {path} is missing; finish it with "
                         f"`promptmix annotate {run_dir} --annotator {name}:SPEC` (same SPEC as before)")
    table = pq.read_table(str(path), columns=[S.ROW_ID, *columns])
    rows = table.to_pylist()
    by_id = {r[S.ROW_ID]: r for r in rows}
    missing = [r for r in row_ids if r not in by_id]
    if missing:
        raise InputError(f"annotator {name!r} is incomplete: {path} lacks rows {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}; delete that file and rerun `promptmix annotate`")
    return [by_id[r] for r in row_ids]


def _generated_chunks(run_dir: Path) -> list[tuple[int, Path]]:
    from ..generation import run_folder

    chunks = sorted((int(c), Path(p)) for c, p in run_folder.list_chunks(run_dir))
    if not chunks:
        raise InputError(f"{run_dir}/images holds no generated chunks; run `promptmix generate` first")
    return chunks


def _run_folder_plan(run_dir: Path) -> dict:
    from ..generation import run_folder

    return run_folder.read_plan(run_dir)


def _read_generated(path: Path, columns: list[str] | None = None) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(str(path), columns=columns).to_pylist()


def _value(task: str, row: dict) -> Any:
    if task == "counting":
        return row[S.COUNT]
    if task == "depth":
        return np.asarray(row[S.DEPTH], dtype=np.float32)
    return (row[S.LABEL], row[S.PROBABILITY])


def _finite(task: str, row: dict) -> bool:
    """``ok`` as stored, double-checked on the values (a NaN that slipped through is still flagged)."""
    if not row.get(S.OK, False):
        return False
    vals = {"counting": [row.get(S.COUNT)], "depth": [row.get(S.DEPTH)],
            "classification": [row.get(S.PROBABILITY)]}[task]
    try:
        return all(v is not None and bool(np.all(np.isfinite(np.asarray(v, dtype=np.float64)))) for v in vals)
    except (TypeError, ValueError):
        return False


# -- targets ------------------------------------------------------------------------------------------------
def _map(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


def build_target(task: str, maps: list[Any], target_index: int | None) -> np.ndarray:
    """The training map of one row: ``maps[target_index]``, or (``None``) the mean at ``maps[0]``'s size.

    Counting maps are resized with their mass preserved; depth maps bilinearly.
    """
    if target_index is not None:
        return _map(maps[target_index])
    size = _map(maps[0]).shape
    if task == "counting":
        from ..density import resize_density

        resized = [_map(resize_density(_map(m), size[0], size[1])) for m in maps]
    else:
        resized = [resize_map(_map(m), size) for m in maps]
    return np.mean(resized, axis=0).astype(np.float32)


def _resolve_target(config: FilterConfig, task: str, names: list[str]) -> tuple[str, int | None]:
    if task == "classification":
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
def filter_run(run_dir: str | Path, config: FilterConfig | None = None) -> FilterReport:
    """Score, filter and write the fake dataset of ``run_dir`` from its stored annotations."""
    from datasets import Dataset

    from ..utils.io import write_hub_folder

    config = config or FilterConfig()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} does not exist")
    task, class_names = run_task(run_dir)
    names = annotated_names(run_dir)
    if not names:
        raise InputError(f"{run_dir}/annotations holds no annotator; run `promptmix annotate {run_dir} "
                         f"--annotator SPEC` first")
    if len(names) < 2 and config.keep_percent < 100:
        raise ConfigError(f"filter.keep_percent: {config.keep_percent:g} needs at least two annotators (the quality "
                          f"score compares them) but {run_dir} has only {names[0]!r}; add one with "
                          f"`promptmix annotate` or use --keep 100")
    target_name, target_index = _resolve_target(config, task, names)
    chunks = _generated_chunks(run_dir)
    planned = _run_folder_plan(run_dir).get("num_chunks")
    if planned and len(chunks) < int(planned):
        logger.warning("%s: generation is incomplete (%d of %d chunks); filtering the rows generated so far",
                       run_dir, len(chunks), int(planned))
    out = Path(config.out) if config.out is not None else run_dir / FAKE_DIR

    # pass 1: scores and flags --------------------------------------------------------------------------------
    qcols = _quality_columns(task)
    scores: list[float | None] = []
    valid: list[bool] = []
    flagged_by = {n: 0 for n in names}
    for c, path in progress(chunks, desc="score", unit="chunk"):
        row_ids = [r[S.ROW_ID] for r in _read_generated(path, [S.ROW_ID])]
        per_ann = [_read_annotation_chunk(run_dir, n, c, row_ids, qcols) for n in names]
        for i in range(len(row_ids)):
            rows = [a[i] for a in per_ann]
            oks = [_finite(task, r) for r in rows]
            for n, ok in zip(names, oks):
                flagged_by[n] += 0 if ok else 1
            if all(oks):
                valid.append(True)
                scores.append(pairwise_quality([_value(task, r) for r in rows], task))
            else:
                valid.append(False)
                scores.append(None)

    n_valid = sum(valid)
    order = sorted((i for i in range(len(valid)) if valid[i]),
                   key=lambda i: (scores[i] if scores[i] is not None else 0.0, i))
    kept_idx = set(order[:keep_count(n_valid, config.keep_percent)]) if len(names) > 1 else set(order)
    kept_scores = [scores[i] for i in kept_idx if scores[i] is not None]
    threshold = max(kept_scores) if kept_scores else None

    # pass 2: the rows ----------------------------------------------------------------------------------------
    features = S.fake_features(task, class_names)
    acols = _columns(task)

    def fake_rows() -> Iterator[dict]:
        index = 0
        for c, path in chunks:
            gen = _read_generated(path, list(S.GENERATED))
            row_ids = [r[S.ROW_ID] for r in gen]
            per_ann = [_read_annotation_chunk(run_dir, n, c, row_ids, acols) for n in names]
            for i, g in enumerate(gen):
                anns = [{S.ANNOTATOR: n, **{k: a[i][k] for k in acols}} for n, a in zip(names, per_ann)]
                row = {k: g.get(k) for k in S.GENERATED}
                row.update({S.ANNOTATIONS: anns, S.QUALITY_SCORE: scores[index], S.KEPT: index in kept_idx,
                            S.ANNOTATION_OK: valid[index], S.TARGET_ANNOTATOR: target_name})
                if task in ("counting", "depth"):
                    key = S.DENSITY if task == "counting" else S.DEPTH
                    m = build_target(task, [a[key] for a in anns], target_index) if valid[index] else None
                    row[key] = m.astype(np.float16).tolist() if m is not None else None
                    if task == "counting":
                        row[S.COUNT] = float(m.astype(np.float16).astype(np.float32).sum()) if m is not None else None
                yield row
                index += 1

    with tempfile.TemporaryDirectory(prefix="promptmix-filter-") as tmp:
        all_ds = Dataset.from_generator(fake_rows, features=features, cache_dir=tmp)
        kept_ds = all_ds.select(sorted(kept_idx))
        meta = {"tags": ["promptmix", "synthetic", task]}
        write_hub_folder(out, {CONFIG_KEPT: {SPLIT: kept_ds}, CONFIG_ALL: {SPLIT: all_ds}}, default=CONFIG_KEPT,
                         metadata=meta, body=_readme_body(run_dir, task, names, target_name, config,
                                                          len(valid), len(kept_idx), len(valid) - n_valid, threshold),
                         extra_files={"promptmix_filter.yaml": config.to_yaml()})

    report = FilterReport(run_dir=run_dir, out=out, task=task, annotators=names, target=target_name,
                          keep_percent=config.keep_percent, rows=len(valid), kept=len(kept_idx),
                          flagged=len(valid) - n_valid, flagged_by_annotator=flagged_by, threshold=threshold)
    annotate_stage = read_manifest(run_dir).get("stages", {}).get("annotate", {})
    record_stage(run_dir, STAGE, {
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
