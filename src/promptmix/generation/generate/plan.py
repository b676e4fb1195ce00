"""The images part of a run folder: the plan, its chunk files, the lock, and the readers.

::

    RUN/images/
      config.yaml            the GenerateConfig of the run (a rerun with other settings is refused)
      plan.json              num_rows, num_chunks, chunk_size, config and plan hashes, task, class_names
      chunk-000000.parquet   rows 0 .. chunk_size-1 (schema.GENERATED), written whole (temp name + rename)
      chunk-000001.parquet   ...

(``promptmix.run_folder.RunFolder`` owns the folder, its chunk store and the run lock.)

The plan is the ordered list of rows: for each prompt in bag order, image index 0..k-1. A prompt with
several source images uses ``sources[index % len(sources)]`` for image ``index``, so k images of a
prompt made from 3 merged captions cycle through the 3 sources (their sizes and JPEG qualities).
With MVC the plan is per class instead: ``images_per_class`` rows per class, each mixed from the
class's caption embeddings around a base caption drawn from the row seed (its source image gives
the size and quality). Chunk ``c`` holds planned rows ``c*chunk_size .. (c+1)*chunk_size-1`` and is
done by rank ``c % world_size``; a chunk file exists only when complete, so the union of ranks and
restarts is exactly the plan.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from ... import schema as S
from ...errors import ConfigError, InputError
from ...run_folder import ChunkStore, RunFolder
from ...utils.hashing import stable_hash
from ...utils.io import write_json_atomic
from .config import GenerateConfig
from .seeds import derived_choice, row_seed
from .sizes import generation_size, parse_size

PLAN_FILE = "plan.json"
CONFIG_FILE = "config.yaml"
PLAN_VERSION = 1


def make_row_id(prompt_id: str, index: int) -> str:
    return f"{prompt_id}-{index:05d}"


# -- the plan -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PlannedRow:
    """One planned image: everything needed to generate it, and its stored record."""

    position: int  # 0-based position in the plan
    row_id: str
    prompt: str
    prompt_id: str
    image_index: int
    source_image_id: str | None
    label: int | None
    seed: int
    width: int  # stored size
    height: int
    gen_width: int  # size given to the pipeline
    gen_height: int
    jpeg_quality: int
    grayscale: bool
    conditioning_image_id: str | None = None  # image-conditioned models
    mvc_base: int | None = None  # MVC: index of the base caption among the class's captions

    def record(self) -> dict[str, Any]:
        """The row's ``schema.GENERATED`` columns except ``image`` and ``mixing``."""
        return {S.ROW_ID: self.row_id, S.PROMPT: self.prompt, S.PROMPT_ID: self.prompt_id,
                S.IMAGE_INDEX: self.image_index, S.SOURCE_IMAGE_ID: self.source_image_id, S.LABEL: self.label,
                S.SEED: self.seed, S.WIDTH: self.width, S.HEIGHT: self.height, S.JPEG_QUALITY: self.jpeg_quality,
                S.CONDITIONING_IMAGE_ID: self.conditioning_image_id}

    def key(self) -> tuple:
        return (self.row_id, self.prompt, self.source_image_id, self.label, self.seed, self.width, self.height,
                self.gen_width, self.gen_height, self.jpeg_quality, self.grayscale, self.conditioning_image_id,
                self.mvc_base)


@dataclasses.dataclass
class Plan:
    rows: list[PlannedRow]
    chunk_size: int
    task: str | None = None
    class_names: list[str] | None = None

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    @property
    def num_chunks(self) -> int:
        return -(-len(self.rows) // self.chunk_size)

    def chunk_rows(self, chunk: int) -> list[PlannedRow]:
        return self.rows[chunk * self.chunk_size:(chunk + 1) * self.chunk_size]

    def chunks_of_rank(self, rank: int, world_size: int) -> list[int]:
        return ChunkStore.of_rank(self.num_chunks, rank, world_size)

    def chunk_ids(self, chunk: int) -> list[str]:
        """The row ids chunk ``chunk`` holds, in order."""
        return [r.row_id for r in self.chunk_rows(chunk)]

    def plan_hash(self) -> str:
        return stable_hash([r.key() for r in self.rows])

    def prompts(self) -> list[str]:
        """The distinct prompt texts of the plan, in plan order."""
        return list(dict.fromkeys(r.prompt for r in self.rows))


def source_jpeg_quality(config: GenerateConfig, source: dict | None) -> int:
    """The JPEG quality of a row: the fixed one, else its source's, else ``default_jpeg_quality``."""
    if config.jpeg_quality != "source":
        return int(config.jpeg_quality)
    q = (source or {}).get(S.JPEG_QUALITY)
    return int(q) if q else int(config.default_jpeg_quality)


def conditioning_pool(sources: dict[str, dict]) -> dict[int | None, list[str]]:
    """Candidate conditioning image ids by class (``None``: all images), in dataset order."""
    pool: dict[int | None, list[str]] = {None: list(sources)}
    for image_id, meta in sources.items():
        label = meta.get(S.LABEL)
        if label is not None:
            pool.setdefault(int(label), []).append(image_id)
    return pool


def _pick_conditioning(pool: dict[int | None, list[str]] | None, label: int | None, seed: int,
                       row_id: str) -> str | None:
    if pool is None:
        return None
    candidates = pool.get(label) if label is not None else pool.get(None)
    if not candidates:
        raise InputError(f"row {row_id}: no real training image of class {label} to condition on; the real "
                         "dataset's train split needs at least one image of every class in the prompt bag")
    return candidates[derived_choice(seed, "conditioning", len(candidates))]


def build_plan(bag, config: GenerateConfig, *, default_size: tuple[int, int],
               pool: dict[int | None, list[str]] | None = None) -> Plan:
    """The ordered rows of a run from a loaded prompt bag (see the module docstring for the order).

    ``default_size`` (width, height) is used for prompts without a source image when ``config.size``
    is not set; ``pool`` (from :func:`conditioning_pool`) gives image-conditioned rows their
    conditioning image, drawn from the row seed among the real training images of the row's class.
    """
    if len(bag.prompts) == 0:
        raise InputError(f"prompt bag {bag.path or ''} holds no prompts")
    fallback = parse_size(config.size, key="generate.size") if config.size else tuple(default_size)
    sources = bag.sources or {}

    def sized(row_id: str, prompt_id: str, source_id: str | None) -> dict:
        meta = None
        if source_id is not None:
            meta = sources.get(source_id)
            if meta is None:
                raise InputError(f"prompt {prompt_id} names source image {source_id!r}, which is not in the prompt "
                                 f"bag's sources.parquet; rebuild the bag with `promptmix prompts`")
        if meta is not None and meta.get(S.WIDTH) and meta.get(S.HEIGHT):
            w, h = int(meta[S.WIDTH]), int(meta[S.HEIGHT])
        else:
            w, h = fallback
        gw, gh = generation_size(w, h, max_side=config.max_side, multiple=config.size_multiple,
                                 min_side=config.min_side)
        gray = bool(config.match_grayscale and meta is not None and meta.get(S.IS_GRAYSCALE))
        return {"width": w, "height": h, "gen_width": gw, "gen_height": gh, "grayscale": gray,
                "jpeg_quality": source_jpeg_quality(config, meta)}

    rows: list[PlannedRow] = []
    if config.mvc_enabled:
        rows = _mvc_rows(bag, config, sized, pool)
    else:
        seen: set[str] = set()
        cols = bag.prompts.select_columns([S.PROMPT_ID, S.PROMPT, S.SOURCE_IMAGE_IDS, S.LABEL])
        for p in cols:
            pid = p[S.PROMPT_ID]
            if pid in seen:
                raise InputError(f"prompt bag {bag.path or ''}: prompt_id {pid} occurs twice; rebuild the bag "
                                 "(prompt ids must be unique)")
            seen.add(pid)
            src_ids = list(p[S.SOURCE_IMAGE_IDS] or [])
            label = p[S.LABEL]
            for index in range(config.images_per_prompt):
                row_id = make_row_id(pid, index)
                source_id = src_ids[index % len(src_ids)] if src_ids else None
                seed = row_seed(config.seed, pid, index)
                rows.append(PlannedRow(position=len(rows), row_id=row_id, prompt=p[S.PROMPT], prompt_id=pid,
                                       image_index=index, source_image_id=source_id, label=label, seed=seed,
                                       conditioning_image_id=_pick_conditioning(pool, label, seed, row_id),
                                       **sized(row_id, pid, source_id)))
    return Plan(rows=rows, chunk_size=config.chunk_size, task=plan_task(bag, config),
                class_names=bag.info.get("class_names"))


def plan_task(bag, config: GenerateConfig) -> str | None:
    """The run's task: the prompt bag's, or ``generate.task`` for a ``.txt`` prompt file (which says none)."""
    own = bag.info.get("task")
    if own and config.task and own != config.task:
        raise ConfigError(f"generate.task: {config.task!r}, but the prompt bag {bag.path or ''} is of a {own} dataset; "
                          "leave generate.task out (a prompt bag says its task)")
    return own or config.task


def mvc_prompt_id(class_name: str, label: int) -> str:
    """The prompt id of the MVC rows of one class (they have no single prompt)."""
    from ..prompts.bag import prompt_id

    return prompt_id(f"[mvc] {class_name}", label)


def _mvc_rows(bag, config: GenerateConfig, sized, pool) -> list[PlannedRow]:
    from ..mvc import captions_by_class

    names = bag.info.get("class_names")
    groups = captions_by_class(bag.prompts)
    if not names or not groups:
        raise ConfigError("generate.mvc: MVC mixes the caption embeddings of each class, so it needs a "
                          "classification prompt bag with captioned, labelled prompts; this bag has "
                          f"{'no class names' if not names else 'no caption prompts with a label'}")
    sources_of = dict(zip(bag.prompts[S.PROMPT_ID], bag.prompts[S.SOURCE_IMAGE_IDS]))
    rows: list[PlannedRow] = []
    for label in sorted(groups):
        items = groups[label]
        name = names[label]
        if len(items) < 2 and (config.mvc.coarse or config.mvc.fine):
            raise InputError(f"generate.mvc: class {name!r} has {len(items)} caption in the prompt bag; MVC mixes "
                             "each embedding with another caption of its class, so every class needs at least 2 "
                             "(caption more images of the class, or set mvc.coarse and mvc.fine to 0)")
        pid = mvc_prompt_id(name, label)
        for index in range(config.mvc.images_per_class):
            seed = row_seed(config.seed, pid, index)
            base = derived_choice(seed, "mvc-base", len(items))
            base_pid, caption = items[base]
            src_ids = list(sources_of.get(base_pid) or [])
            source_id = src_ids[index % len(src_ids)] if src_ids else None
            row_id = make_row_id(pid, index)
            rows.append(PlannedRow(position=len(rows), row_id=row_id, prompt=config.mvc.class_texts([caption], name)[0],
                                   prompt_id=pid, image_index=index, source_image_id=source_id, label=label, seed=seed,
                                   conditioning_image_id=_pick_conditioning(pool, label, seed, row_id), mvc_base=base,
                                   **sized(row_id, pid, source_id)))
    return rows


# -- folder state ---------------------------------------------------------------------------------------
def read_plan(run: RunFolder | str | Path) -> dict:
    """``RUN/images/plan.json``: num_rows, num_chunks, chunk_size, config_hash, plan_hash, task, class_names."""
    run = RunFolder.of(run)
    path = run.images / PLAN_FILE
    if not path.is_file():
        raise InputError(f"{path} does not exist: {run.root} holds no generated images; run `promptmix generate "
                         f"--out {run.root} ...` first")
    return json.loads(path.read_text(encoding="utf-8"))


def read_run_config(run: RunFolder | str | Path) -> GenerateConfig:
    run = RunFolder.of(run)
    path = run.images / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{path} does not exist: {run.root} holds no generated images")
    return GenerateConfig.from_yaml(path)


def load_generated(run: RunFolder | str | Path):
    """All complete chunks of ``RUN/images`` in plan order, as one in-memory ``datasets.Dataset``."""
    import datasets

    run = RunFolder.of(run)
    store = run.image_chunks()
    chunks = store.list()
    if not chunks:
        read_plan(run)  # raises a clear error when the folder was never generated
        return datasets.Dataset.from_dict({k: [] for k in S.GENERATED}, features=S.GENERATED)
    return datasets.concatenate_datasets([datasets.Dataset(store.read(c)) for c, _ in chunks])


def generated_row_ids(run: RunFolder | str | Path, chunks: Sequence[tuple[int, Path]] | None = None
                      ) -> dict[int, list[str]]:
    """The row ids of the generated chunks (default: every one there), each chunk checked.

    A chunk must open as Parquet and be the chunk its name says (:meth:`~promptmix.run_folder.ChunkStore.problem`),
    hold the number of rows the plan gives it (``chunk_size``, fewer in the last one) and share no row id with
    another chunk. Anything else is an :class:`InputError` naming the chunk (and, for a repeated row id, both
    chunks): annotate and filter never read a chunk generate would not count as done.
    """
    run = RunFolder.of(run)
    store = run.image_chunks()
    chunks = store.list() if chunks is None else list(chunks)
    plan = read_plan(run)
    size, total = plan.get("chunk_size"), plan.get("num_rows")
    fix = ("rerun the same `promptmix generate` command: it moves the bad chunk aside (chunk-NNNNNN.parquet.bad) and "
           "generates it again")
    out: dict[int, list[str]] = {}
    seen: dict[str, int] = {}
    for c, path in chunks:
        ids = store.checked_ids(c, S.ROW_ID, fix)
        if isinstance(size, int) and isinstance(total, int) and size > 0:
            want = max(0, min(size, total - c * size))
            if len(ids) != want:
                raise InputError(f"{path} holds {len(ids)} rows; the plan ({run.images / PLAN_FILE}: {total} rows in "
                                 f"chunks of {size}) gives chunk {c} {want}; {fix}")
        for r in ids:
            if r in seen:
                raise InputError(f"{path} holds row {r!r}, which {store.path(seen[r])} holds too: one of them holds "
                                 f"the wrong rows; {fix}")
            seen[r] = c
        out[c] = ids
    return out


def chunk_table(rows: Sequence[dict]):
    """One chunk's ``schema.GENERATED`` rows (plan order) as an Arrow table, features in its schema metadata."""
    import datasets

    cols = {name: [r.get(name) for r in rows] for name in S.GENERATED}
    return datasets.Dataset.from_dict(cols, features=S.GENERATED).data.table


def check_compatible(run: RunFolder | str | Path, config: GenerateConfig, plan: Plan) -> None:
    """Refuse to add rows to a folder made with other settings or another prompt bag (names what differs)."""
    folder = RunFolder.of(run).images
    if not RunFolder.of(run).image_chunks().list():
        return  # no image was made with the folder's settings (e.g. a start that failed to load its model): replace them
    cfg_path = folder / CONFIG_FILE
    if cfg_path.is_file():
        old = GenerateConfig.from_yaml(cfg_path).hashed_dict()
        new = config.hashed_dict()
        # the task of a .txt prompt file may be declared after the images were made (it changes no image)
        diffs = [k for k in sorted(set(old) | set(new)) if k != "prompts" and old.get(k) != new.get(k)
                 and not (k == "task" and old.get(k) is None)]
        if diffs:
            detail = "; ".join(f"{k}: {old.get(k)!r} in the folder, {new.get(k)!r} now" for k in diffs)
            raise ConfigError(f"{folder} was generated with different settings ({detail}). Rerun with the "
                              f"folder's settings ({cfg_path}) to resume, or use a new --out folder")
    plan_path = folder / PLAN_FILE
    if plan_path.is_file():
        old_plan = json.loads(plan_path.read_text(encoding="utf-8"))
        if old_plan.get("plan_hash") != plan.plan_hash():
            raise ConfigError(f"{folder} was generated from other prompts ({old_plan.get('num_rows')} planned rows, "
                              f"now {plan.num_rows}; the prompt bag or its sources changed). Use a new --out folder "
                              "or the original prompt bag")


def plan_record(config: GenerateConfig, plan: Plan, *, truncated: dict | None = None) -> dict:
    return {"version": PLAN_VERSION, "num_rows": plan.num_rows, "num_chunks": plan.num_chunks,
            "chunk_size": plan.chunk_size, "config_hash": config.config_hash(), "plan_hash": plan.plan_hash(),
            "task": plan.task, "class_names": plan.class_names, "truncated_prompts": truncated or {}}


def write_plan(run: RunFolder | str | Path, config: GenerateConfig, plan: Plan, *, truncated: dict | None = None) -> None:
    folder = RunFolder.of(run).images
    folder.mkdir(parents=True, exist_ok=True)
    config.save(folder / CONFIG_FILE)
    write_json_atomic(folder / PLAN_FILE, plan_record(config, plan, truncated=truncated))


def iter_batches(rows: Sequence[PlannedRow], batch_size: int | str) -> Iterator[list[PlannedRow]]:
    """Batches of a chunk: rows grouped by generation size (first-appearance order), then cut to ``batch_size``.

    ``batch_size`` "auto" gives each size group whole; the generator splits it to fit in memory.
    """
    groups: dict[tuple[int, int], list[PlannedRow]] = {}
    for r in rows:
        groups.setdefault((r.gen_width, r.gen_height), []).append(r)
    for group in groups.values():
        step = len(group) if batch_size == "auto" else int(batch_size)
        for i in range(0, len(group), step):
            yield group[i:i + step]
