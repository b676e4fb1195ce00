"""``promptmix annotate``: run every annotator over a run's generated images, chunk by chunk.

::

    RUN/annotations/<name>/annotator.json          spec, task, weights / model record, output stride
    RUN/annotations/<name>/chunk-000000.parquet    annotation_features(task), one row per generated row

Annotation chunk ``c`` holds exactly the rows of ``RUN/images/chunk-c``; it is written under a
temporary name and renamed when complete, so a rerun skips finished chunks and redoes at most
the ones in flight. Every annotator with work left is loaded at once, and each image chunk is decoded
once for all of them (:func:`_annotate_chunks`). The annotation chunk's footer records the sha256 of the
image chunk it labelled (``promptmix.image_sha256``, with ``promptmix.image_chunk`` its file name): a rerun
counts a chunk as done only when it opens, holds the image chunk's row ids and labels that very file. One
that does not (truncated, wrong rows, images regenerated since, or written before this was recorded) is
moved aside (``chunk-NNNNNN.parquet.bad``, never deleted) with a warning naming why, and annotated again.
An image chunk that is unreadable, holds the wrong number of rows or repeats another chunk's rows is an
error (:func:`~promptmix.generation.generate.plan.generated_row_ids`). Under ``accelerate launch`` /
``torchrun`` chunk ``c`` is done by rank
``c % world_size`` (as in generation), so the union of ranks equals a one-process run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ... import maps
from ... import schema as S
from ...errors import ConfigError, InputError
from ...run_folder import RunFolder
from ...tasks import get_task
from ...utils.hashing import sha256_file
from ...utils.io import write_json_atomic
from ...utils.progress import progress
from ..annotators.registry import build_annotator, default_name, parse_spec

logger = logging.getLogger(__name__)

ANNOTATOR_JSON = "annotator.json"
STAGE = "annotate"
IMAGE_SHA256 = "image_sha256"  # footer key (``promptmix.image_sha256``) of an annotation chunk: what it labelled
IMAGE_CHUNK = "image_chunk"
_IDENTITY_KEYS = ("task", "kind", "architecture", "weights_sha256", "class_names", "template", "dtype",
                  "implementation")


@dataclasses.dataclass
class AnnotatorSummary:
    name: str
    task: str
    folder: Path
    chunks_written: int = 0
    chunks_skipped: int = 0
    rows: int = 0  # rows annotated by this call
    not_ok: int = 0  # of those, rows whose output held NaN/inf


@dataclasses.dataclass
class AnnotateReport:
    run_dir: Path
    task: str
    annotators: list[AnnotatorSummary]

    def summary(self) -> str:
        lines = [f"annotated {self.run_dir} ({self.task})"]
        for a in self.annotators:
            flag = f", {a.not_ok} with NaN/inf (flagged)" if a.not_ok else ""
            lines.append(f"  {a.name}: {a.rows} rows in {a.chunks_written} chunks{flag}; "
                         f"{a.chunks_skipped} chunks already done")
        return "\n".join(lines)


def run_task(run_dir: RunFolder | str | Path, annotator_tasks: Callable[[], list[str]] | None = None
             ) -> tuple[str, list[str]]:
    """The run's task and class names, from the generation plan.

    Images generated from a ``.txt`` prompt file without ``--task`` have none: then the task annotate took
    from its annotators (its manifest record), else the one ``annotator_tasks()`` agree on."""
    from ...generation.generate.plan import PLAN_FILE, read_plan

    run = RunFolder.of(run_dir)
    plan = read_plan(run)
    task = plan.get("task")
    where = run.images / PLAN_FILE
    if task is None:
        task = run.stage_record("annotate").get("task")
    if task is None and annotator_tasks is not None:
        tasks = sorted(set(annotator_tasks()))
        if len(tasks) == 1 and not get_task(tasks[0]).has_classes:
            task = tasks[0]
            logger.info("%s says no task (a .txt prompt file); the annotators are %s models", where, task)
        elif len(tasks) > 1:
            raise InputError(f"{where}: the images were generated from a .txt prompt file, which says no task, and "
                             f"the annotators disagree ({', '.join(tasks)}); give annotators of one task, or declare "
                             "it: rerun the same `promptmix generate` command with --task counting|depth (nothing is "
                             "regenerated)")
    if task is None:
        raise InputError(f"{where}: the images were generated from a .txt prompt file, which says no task; declare "
                         "it: rerun the same `promptmix generate` command with --task counting|depth (nothing is "
                         "regenerated). Classification needs class labels: build a prompt bag with `promptmix "
                         "prompts --class-template ...`")
    if task not in S.TASKS:
        raise InputError(f"{where}: task {task!r} is not one of {', '.join(S.TASKS)}")
    names = list(plan.get("class_names") or [])
    if get_task(task).has_classes and not names:
        raise InputError(f"{where}: a classification run needs class_names")
    return task, names


def read_chunk_images(path: Path) -> tuple[list[str], list]:
    """Row ids and decoded PIL images of one generated chunk (``schema.GENERATED``)."""
    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(str(path), columns=[S.ROW_ID, S.IMAGE])
    row_ids = table.column(S.ROW_ID).to_pylist()
    images = []
    for row_id, cell in zip(row_ids, table.column(S.IMAGE).to_pylist()):
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if data is None and isinstance(cell, dict) and cell.get("path"):
            data = Path(cell["path"]).read_bytes()
        if data is None:
            raise InputError(f"{path}: row {row_id} has no image bytes")
        im = Image.open(io.BytesIO(data))
        im.load()
        images.append(im)
    return row_ids, images


def read_chunk_arrays(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """Row ids and images of one generated chunk, decoded once as (H, W, 3) uint8 RGB arrays."""
    from ..annotators.base import as_rgb_array

    row_ids, images = read_chunk_images(path)
    return row_ids, [as_rgb_array(im) for im in images]


def _rows_to_dataset(task: str, row_ids: Sequence[str], outputs: Sequence[dict], name: str):
    from datasets import Dataset

    feats = S.annotation_features(task)
    cols: dict[str, list] = {k: [] for k in feats}
    if len(outputs) != len(row_ids):
        raise InputError(f"annotator {name!r} returned {len(outputs)} outputs for {len(row_ids)} images")
    for row_id, out in zip(row_ids, outputs):
        cols[S.ROW_ID].append(row_id)
        missing = [k for k in feats if k != S.ROW_ID and k not in out]
        if missing:
            raise InputError(f"annotator {name!r} output lacks {missing}; expected keys "
                             f"{sorted(k for k in feats if k != S.ROW_ID)}")
        finite = True
        for key in feats:
            if key in (S.ROW_ID, S.OK):
                continue
            value = out[key]
            if key in (S.DENSITY, S.DEPTH):
                value = np.asarray(value, dtype=np.float16)
                if value.ndim != 2:
                    raise InputError(f"annotator {name!r}: its {key} map for row {row_id!r} has shape "
                                     f"{value.shape}; expected a 2-D (H, W) map")
                finite = finite and bool(np.isfinite(value).all())
                value = maps.encode(value)
            elif key in (S.COUNT, S.PROBABILITY):
                finite = finite and value is not None and bool(np.isfinite(value))
            cols[key].append(value)
        cols[S.OK].append(bool(out[S.OK]) and finite)  # NaN/inf flags the row whatever the annotator says
    return Dataset.from_dict(cols, features=feats)


def _identity(record: dict) -> dict:
    """What must match for a rerun to continue a folder: the kind of model and its weights."""
    out = {k: record.get(k) for k in _IDENTITY_KEYS if record.get(k) is not None}
    model = record.get("model")
    if isinstance(model, dict) and model.get("name") and "weights_sha256" not in out:
        name = model["name"]
        local = str(Path(name).expanduser().resolve()) if model.get("local") else name
        out["model"] = model.get("commit_hash") or local
    return out


def _check_identity(folder: Path, record: dict) -> None:
    path = folder / ANNOTATOR_JSON
    if not path.exists():
        if any(folder.glob("chunk-*.parquet")):
            raise InputError(f"{folder} holds annotation chunks but no {ANNOTATOR_JSON}; delete the folder to redo it")
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    a, b = _identity(old), _identity(record)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        raise ConfigError(f"{folder} was annotated with a different annotator (differs in {', '.join(diff)}: "
                          f"{old.get('spec')!r} vs {record.get('spec')!r}); give this one another name with "
                          f"NAME:SPEC, or delete {folder} to redo it")


def annotated_names(run_dir: RunFolder | str | Path) -> list[str]:
    """Annotator names of a run in the order they were first run (manifest), then any other folders by name."""
    run = RunFolder.of(run_dir)
    stage = run.stage_record(STAGE)
    ordered = [a["name"] for a in stage.get("annotators", []) if isinstance(a, dict) and "name" in a]
    root = run.annotations
    present = sorted(p.name for p in root.iterdir() if (p / ANNOTATOR_JSON).exists()) if root.is_dir() else []
    out = [n for n in ordered if n in present]
    return out + [n for n in present if n not in out]


def annotate_run(run_dir: RunFolder | str | Path, specs: Sequence[str], *, batch_size: int = 8, device: Any = None,
                 dtype: Any = None, revision: str | None = None) -> AnnotateReport:
    """Annotate every generated row of ``run_dir`` with each SPEC; resumable, sharded by rank."""
    from accelerate import PartialState

    run = RunFolder.of(run_dir)
    if not run.root.is_dir():
        raise InputError(f"run folder {run.root} does not exist")
    if not specs:
        raise InputError("no annotator given; pass --annotator SPEC at least once")
    names = [default_name(parse_spec(s)) for s in specs]

    def annotator_tasks() -> list[str]:  # built, not loaded: cheap
        return [build_annotator(spec, name=name, device=device, dtype=dtype, batch_size=batch_size,
                                revision=revision).task for spec, name in zip(specs, names)]

    task, class_names = run_task(run, annotator_tasks)
    images = run.image_chunks()
    chunks = images.list()
    if not chunks:
        raise InputError(f"{run.images} holds no generated chunks; run `promptmix generate` first")
    from ...generation.generate.plan import read_plan

    planned = read_plan(run).get("num_chunks")
    if planned and len(chunks) < int(planned):
        logger.warning("%s: generation is incomplete (%d of %d chunks); annotating the chunks that exist, rerun "
                       "`promptmix annotate` after generation to finish", run.root, len(chunks), int(planned))

    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"annotator names must be unique in a run; {', '.join(dupes)} is given twice. "
                          f"Name them with NAME:SPEC, e.g. --annotator {dupes[0]}-a:{specs[names.index(dupes[0])]}")

    state = PartialState()
    rank, world = state.process_index, state.num_processes
    if device in (None, "", "auto") and world > 1:
        device = state.device
    with contextlib.ExitStack() as stack:
        if rank == 0:
            stack.enter_context(run.lock(STAGE))
            for name in names:  # partial chunk files of a killed run (logged with their size)
                run.annotation_chunks(name).remove_temps()
        return _annotate(run, specs, names, task, class_names, chunks, state, batch_size=batch_size, device=device,
                         dtype=dtype, revision=revision)


def _annotate(run: RunFolder, specs: Sequence[str], names: Sequence[str], task: str, class_names: list[str],
              chunks: list[tuple[int, Path]], state, *, batch_size: int, device: Any, dtype: Any,
              revision: str | None) -> AnnotateReport:
    rank, world = state.process_index, state.num_processes
    images = run.image_chunks()
    # build (not load) every annotator and check it before any work: a bad SPEC fails fast
    prepared = []
    for spec, name in zip(specs, names):
        ann = build_annotator(spec, name=name, class_names=class_names or None, device=device, dtype=dtype,
                             batch_size=batch_size, revision=revision)
        if ann.task != task:
            raise InputError(f"annotator {name!r} ({spec}) is a {ann.task} model but the run's task is {task}")
        ann.validate()
        folder = run.annotator(name)
        record = ann.record()
        _check_identity(folder, record)
        prepared.append((ann, folder, record))

    report = AnnotateReport(run_dir=run.root, task=task, annotators=[])
    records = []
    from ...generation.generate.plan import generated_row_ids

    expected = generated_row_ids(run, chunks)  # every image chunk checked (readable, planned rows, no repeats)
    mine = [c for c, _ in chunks if c % world == rank]
    image_sha = {c: sha256_file(images.path(c)) for c in mine}
    work = []  # (annotator, its chunk store, its summary, the chunks it still needs)
    try:
        for ann, folder, record in prepared:
            name = ann.name
            store = run.annotation_chunks(name)
            summary = AnnotatorSummary(name=name, task=task, folder=folder)
            todo = []
            for c in mine:
                why = label_problem(store, c, expected[c], image_sha[c], images.path(c))
                if why is not None:
                    if store.exists(c):
                        store.set_aside(c, why)
                    todo.append(c)
            summary.chunks_skipped = len(mine) - len(todo)
            if todo:
                # load before writing annotator.json: weights that cannot load must leave no registered annotator
                # (filter would wait for its chunks)
                ann.load()
            if not (folder / ANNOTATOR_JSON).exists():  # every rank may write it: same content, atomic rename
                write_json_atomic(folder / ANNOTATOR_JSON, record)
            work.append((ann, store, summary, set(todo)))
            report.annotators.append(summary)
            records.append(record)
        _annotate_chunks(images, task, expected, image_sha, [c for c in mine if any(c in w[3] for w in work)], work)
    finally:
        for ann, *_ in work:
            ann.unload()
    for summary in report.annotators:
        if summary.not_ok:
            logger.warning("annotator %s: %d rows had NaN/inf outputs; they are flagged and `promptmix filter` "
                           "leaves them out", summary.name, summary.not_ok)

    state.wait_for_everyone()
    if state.is_main_process:
        _record(run, task, records, chunks, batch_size=batch_size, device=device, dtype=dtype)
    return report


def label_footer(image_path: Path, image_sha256: str | None = None) -> dict[str, str]:
    """The footer keys of the annotation chunk that labels the image chunk at ``image_path``: its sha256 and name."""
    return {IMAGE_SHA256: image_sha256 or sha256_file(image_path), IMAGE_CHUNK: Path(image_path).name}


def label_problem(store, chunk: int, row_ids: Sequence[str], image_sha256: str, image_path: Path) -> str | None:
    """Why annotation chunk ``chunk`` of ``store`` is not the labels of the image chunk at ``image_path`` (whose rows
    are ``row_ids`` and whose sha256 is ``image_sha256``), or None when it is."""
    why = store.problem(chunk, row_ids, column=S.ROW_ID)
    if why is not None:
        return why
    return provenance_problem(store.footer(chunk) or {}, image_path, image_sha256)


def provenance_problem(footer: Mapping[str, str], image_path: Path, image_sha256: str) -> str | None:
    """How an annotation chunk's ``footer`` disagrees with the image chunk at ``image_path`` (sha256
    ``image_sha256``), or None when it labels that very file (``annotate`` redoes such a chunk, ``filter``
    refuses to join it)."""
    labelled = footer.get(IMAGE_SHA256)
    if labelled is None:
        return (f"does not record which image chunk it labelled (written by an older promptmix), so it may label "
                f"other images than {image_path}")
    if labelled != image_sha256:
        return (f"labels another version of {image_path} (sha256 {labelled[:12]}... when annotated, "
                f"{image_sha256[:12]}... now: the images were generated again since)")
    return None


def _annotate_chunks(images, task: str, expected: dict[int, list[str]], image_sha: dict[int, str], todo: list[int],
                     work: list) -> None:
    """Every chunk of ``todo`` through every annotator of ``work`` that still needs it, decoded once.

    The chunk's images are cut into batches, grouped by size (``annotators.base.group_by_size``) when an
    annotator asks for it (``batch_by_size``: the counters and depth models, which do not resize), and every
    annotator runs in turn on each batch of decoded arrays. Three stages overlap: a reader thread decodes
    chunk c + 1 (Parquet + JPEG -> uint8 arrays) while the calling thread runs the forward passes on chunk c,
    and a writer thread turns chunk c - 1's outputs into its annotation chunks (tmp name, then rename). At
    most one chunk is decoded ahead and one written behind, so memory stays at about three chunks of images;
    an interrupted run (kill -9 included) leaves whole chunks only, which a rerun skips. On an error the
    chunks already annotated are still written before it propagates.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from ..annotators.base import group_by_size

    if not todo:
        return
    names = ", ".join(ann.name for ann, *_ in work)
    total = sum(len(expected[c]) for c in todo)

    def write(c: int, row_ids: list[str], outputs: list[dict], ann, store, summary: AnnotatorSummary) -> None:
        ds = _rows_to_dataset(task, row_ids, outputs, ann.name)
        store.write(c, ds, footer=label_footer(images.path(c), image_sha[c]))
        summary.chunks_written += 1
        summary.rows += len(row_ids)
        summary.not_ok += sum(1 for ok in ds[S.OK] if not ok)

    with ThreadPoolExecutor(1, thread_name_prefix="annotate-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="annotate-write") as writer, \
            progress(total=total, desc=f"annotate {names}", unit="img") as bar:
        ahead: Future = reader.submit(read_chunk_arrays, images.path(todo[0]))
        behind: list[Future] = []
        try:
            for i, c in enumerate(todo):
                row_ids, arrays = ahead.result()
                if row_ids != expected[c]:
                    raise InputError(f"{images.path(c)} changed while it was annotated; rerun "
                                     "`promptmix annotate` when generation has finished")
                if i + 1 < len(todo):
                    ahead = reader.submit(read_chunk_arrays, images.path(todo[i + 1]))
                results = [(ann, store, summary, [None] * len(arrays)) for ann, store, summary, needs in work
                           if c in needs]
                step = min(ann.batch_size for ann, *_ in results)
                if any(ann.batch_by_size for ann, *_ in results):
                    batches = list(group_by_size(arrays, step))
                else:
                    batches = [list(range(s, min(s + step, len(arrays)))) for s in range(0, len(arrays), step)]
                for idx in batches:  # batch by batch, every annotator in turn on it
                    batch = [arrays[i] for i in idx]
                    for ann, _, _, outputs in results:
                        got = ann.annotate_arrays(batch)
                        if len(got) != len(batch):
                            raise InputError(f"annotator {ann.name!r} returned {len(got)} outputs for "
                                             f"{len(batch)} images")
                        for i, out in zip(idx, got):
                            outputs[i] = out
                    bar.update(len(idx))
                for f in behind:  # the previous chunk's files are written before this chunk's start
                    f.result()
                behind = [writer.submit(write, c, row_ids, outputs, ann, store, summary)
                          for ann, store, summary, outputs in results]
            for f in behind:
                f.result()
        finally:  # on an error, the chunks already annotated are still written (whole, then renamed)
            ahead.cancel()
            for f in behind:
                f.exception()


def _record(run: RunFolder, task: str, records: list[dict], chunks: list, **runtime: Any) -> None:
    previous = run.stage_record(STAGE).get("annotators", [])
    by_name = {a["name"]: a for a in previous if isinstance(a, dict) and "name" in a}
    order = [a["name"] for a in previous if isinstance(a, dict) and "name" in a]
    for rec in records:
        store = run.annotation_chunks(rec["name"])
        complete = all(store.exists(c) for c, _ in chunks)
        by_name[rec["name"]] = {**rec, "complete": complete}
        if rec["name"] not in order:
            order.append(rec["name"])
    run.record_stage(STAGE, {
        "task": task,
        "annotators": [by_name[n] for n in order],
        "config": {"annotators": [by_name[n].get("spec") for n in order],
                   **{k: (str(v) if v is not None else None) for k, v in runtime.items()}},
        "models": {n: by_name[n].get("model") or {"weights_sha256": by_name[n].get("weights_sha256")} for n in order},
    })
