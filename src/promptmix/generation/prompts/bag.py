"""The prompt bag: every text prompt a run generates from, with its source images and label.

PromptMix (`[PromptMix, papers.md](papers.md)`, Sec. III-A/B) builds a bag of automatic prompts (captions of
the training images) and manual prompts ("[location] interior" expanded from a list), then modifies
them: a prefix (``"large crowd"``) and a suffix read from each source image (``"black and white image"``
for grayscale sources, ``"color image"`` otherwise). For classification, class templates such as
``"a photo of a {label}"`` or ``"{label}, {caption}"`` add labelled prompts.

A final prompt is ``separator.join`` of the non-empty parts ``[prefix, text, suffix]``::

    prefix "large crowd", caption "people walking on a street", grayscale source
    -> "large crowd, people walking on a street, black and white image"

Prompts with the same final text and label are merged (their source image ids are concatenated in
order); the same text under two labels stays two prompts. ``prompt_id`` is a hash of the final text
(and of the label when there is one), see :func:`prompt_id`.

The task, the class names and the source images (size, JPEG quality, grayscale: ``schema.SOURCES``)
come from the captions folder (``RUN/captions``), or, for a bag that needs no captions (manual prompts,
``"a photo of a {label}"`` templates), from the real dataset itself (``build_prompt_bag(..., real=DIR)``),
so such a run skips captioning. Both read the sources with
:func:`promptmix.generation.captions.source_rows`.

Output folder (``RUN/prompts/``), written atomically::

    prompts.parquet   schema.PROMPTS
    sources.parquet   schema.SOURCES (size, JPEG quality, grayscale of every source image)
    info.json         task, class_names, counts, real dataset reference
    config.yaml       the PromptsConfig used
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import random
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import datasets
import pyarrow.parquet as pq

from ... import schema
from ...errors import ConfigError, InputError
from ...run_folder import RunFolder
from ...tasks import get_task
from ...utils.io import atomic_path
from ...utils.model_source import is_local_ref
from ...utils.outputs import guard_output, remove_stale_beside, write_errors, write_marker
from .config import PromptsConfig, _format_fields

logger = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\[([A-Za-z_][A-Za-z0-9_]*)\]")
PROMPTS_FILE = "prompts.parquet"
SOURCES_FILE = "sources.parquet"
INFO_FILE = "info.json"
CONFIG_FILE = "config.yaml"


def prompt_id(text: str, label: int | None = None, *, repeat: int = 0) -> str:
    """The stable id of a prompt: the first 16 hex digits of a SHA-256.

    - no label (counting, depth, plain ``.txt`` prompt files): ``sha256(text.encode("utf-8"))``;
    - with a label (classification): ``sha256(f"{text}\\x1flabel={label}".encode("utf-8"))``, so the same
      text under two classes gets two ids;
    - ``repeat = n > 0`` (only when a bag is built with ``dedupe: false`` and a text occurs again):
      ``"\\x1frepeat={n}"`` is appended before hashing, keeping ids unique.
    """
    key = text
    if label is not None:
        key += f"\x1flabel={int(label)}"
    if repeat:
        key += f"\x1frepeat={int(repeat)}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def read_prompt_lines(path: str | Path) -> list[str]:
    """Prompts from a text file: one per line; blank lines and lines starting with ``#`` are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"prompt file {path} does not exist") from None
    except UnicodeDecodeError:
        raise InputError(f"prompt file {path} is not UTF-8 text (expected one prompt per line)") from None
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def expand_placeholders(text: str, values: dict[str, list[str]]) -> list[str]:
    """All expansions of the ``[name]`` placeholders of ``text`` (every combination, in list order)."""
    names = list(dict.fromkeys(PLACEHOLDER.findall(text)))
    if not names:
        return [text]
    missing = [n for n in names if n not in values]
    if missing:
        name = missing[0]
        hint = " (or locations: [...])" if name == "location" else ""
        flag = "--location VALUE" if name == "location" else f"--placeholder {name}=VALUE"
        raise ConfigError(f"manual prompt {text!r}: placeholder [{name}] has no values; give "
                          f"placeholders: {{{name}: [...]}}{hint} in the config, or {flag} on the command line")
    out = []
    for combo in itertools.product(*(values[n] for n in names)):
        mapping = dict(zip(names, combo))
        out.append(PLACEHOLDER.sub(lambda m: mapping.get(m.group(1), m.group(0)), text))
    return out


# -- the bag ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PromptBag:
    """A loaded prompt bag.

    ``prompts``: ``datasets.Dataset`` with ``schema.PROMPTS`` columns; ``sources``: ``{image_id: {label,
    width, height, jpeg_quality, is_grayscale}}``; ``info``: ``task``, ``class_names``, counts...
    """

    prompts: datasets.Dataset
    sources: dict[str, dict]
    info: dict
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def task(self) -> str | None:
        return self.info.get("task")

    @property
    def class_names(self) -> list[str] | None:
        return self.info.get("class_names")

    @property
    def texts(self) -> list[str]:
        return list(self.prompts[schema.PROMPT])


def _resolve_bag_dir(path: Path) -> Path:
    if (path / PROMPTS_FILE).is_file():
        return path
    in_run = RunFolder(path).prompts
    if (in_run / PROMPTS_FILE).is_file():
        return in_run
    raise InputError(f"{path}: expected a prompt bag folder (with {PROMPTS_FILE}), a run folder with "
                     f"{in_run.name}/{PROMPTS_FILE}, or a .txt file of prompts; found none. "
                     "Build one with `promptmix prompts --run RUN`")


def _rows_to_dataset(rows: Sequence[dict], features: datasets.Features) -> datasets.Dataset:
    cols = {name: [r.get(name) for r in rows] for name in features}
    return datasets.Dataset.from_dict(cols, features=features)


def load_prompt_bag(path: str | Path) -> PromptBag:
    """Load a prompt bag folder (or its ``prompts.parquet``), a run folder holding ``prompts/``, or a ``.txt`` file.

    A ``.txt`` file gives one prompt per line (blank lines and ``#`` comments skipped; repeated lines
    kept once), origin ``manual``, no sources and no label. An empty bag raises :class:`InputError`
    naming the file.
    """
    path = Path(path)
    if path.is_file() and path.name == PROMPTS_FILE:
        path = path.parent
    if path.is_file() or path.suffix.lower() == ".txt":
        if path.suffix.lower() not in (".txt", ".text") and path.suffix:
            raise InputError(f"{path}: expected a prompt bag folder or a .txt file of prompts; got a "
                             f"{path.suffix} file")
        lines = list(dict.fromkeys(read_prompt_lines(path)))
        if not lines:
            raise InputError(f"prompt file {path} holds no prompts (blank lines and # comments are skipped)")
        rows = [{schema.PROMPT_ID: prompt_id(t), schema.PROMPT: t, schema.BASE_TEXT: t, schema.ORIGIN: "manual",
                 schema.SOURCE_IMAGE_IDS: [], schema.LABEL: None} for t in lines]
        info = {"task": None, "class_names": None, "source": str(path),
                "counts": {"total": len(rows), "manual": len(rows)}}
        return PromptBag(_rows_to_dataset(rows, schema.PROMPTS), {}, info, path)
    if not path.exists():
        raise InputError(f"prompt bag {path} does not exist")
    folder = _resolve_bag_dir(path)
    prompts_file = folder / PROMPTS_FILE
    prompts = read_parquet(prompts_file)
    missing = [c for c in schema.PROMPTS if c not in prompts.column_names]
    if missing:
        raise InputError(f"{prompts_file}: missing column(s) {missing}; expected {list(schema.PROMPTS)}")
    if len(prompts) == 0:
        raise InputError(f"prompt bag {prompts_file} holds no prompts")
    sources: dict[str, dict] = {}
    if (folder / SOURCES_FILE).is_file():
        sources = _sources_dict(read_parquet(folder / SOURCES_FILE))
    info = {}
    if (folder / INFO_FILE).is_file():
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    return PromptBag(prompts, sources, info, folder)


def read_parquet(path: str | Path) -> datasets.Dataset:
    """An in-memory ``Dataset`` of one Parquet file written by promptmix (features from its metadata; no cache)."""
    try:
        return datasets.Dataset(pq.read_table(str(path)))
    except Exception as exc:  # missing or corrupt file
        raise InputError(f"{path}: could not be read as Parquet ({type(exc).__name__}: {exc})") from None


def _sources_dict(ds: datasets.Dataset) -> dict[str, dict]:
    out = {}
    for row in ds:
        row = dict(row)
        out[row.pop(schema.IMAGE_ID)] = row
    return out


# -- truncation ---------------------------------------------------------------------------------------
def truncated_prompts(tokenizer, prompts: Iterable[str], max_length: int | None = None) -> list[int]:
    """Indices of the prompts longer than the tokenizer allows (special tokens included, as SD encodes them)."""
    prompts = list(prompts)
    if not prompts:
        return []
    max_length = int(max_length or tokenizer.model_max_length)
    ids = tokenizer(prompts, truncation=False, padding=False, verbose=False)["input_ids"]
    return [i for i, seq in enumerate(ids) if len(seq) > max_length]


def count_truncated(tokenizer, prompts: Iterable[str], max_length: int | None = None) -> int:
    """How many ``prompts`` the text encoder will see truncated to ``max_length`` (default: the tokenizer's)."""
    return len(truncated_prompts(tokenizer, prompts, max_length))


def report_truncated(tokenizer, prompts: Sequence[str], max_length: int | None = None) -> int:
    """Count the truncated prompts and log a warning naming up to three of them; returns the count."""
    prompts = list(prompts)
    idx = truncated_prompts(tokenizer, prompts, max_length)
    if idx:
        limit = int(max_length or tokenizer.model_max_length)
        examples = "; ".join(repr(prompts[i][:80] + ("..." if len(prompts[i]) > 80 else "")) for i in idx[:3])
        logger.warning("%d of %d prompts are longer than %d tokens and will be truncated, e.g. %s",
                       len(idx), len(prompts), limit, examples)
    return len(idx)


def load_tokenizer(name_or_path: str | Path, revision: str | None = None):
    """A tokenizer from a tokenizer folder, a diffusers pipeline folder (its ``tokenizer/``) or a Hub id."""
    from transformers import AutoTokenizer

    from ...errors import ModelLoadError
    from ...utils.model_source import resolve_model

    src = resolve_model(name_or_path, revision, what="tokenizer")
    folder = Path(src.path)
    sub = "tokenizer" if (folder / "tokenizer").is_dir() else None
    try:
        return AutoTokenizer.from_pretrained(str(folder), subfolder=sub or "")
    except Exception as exc:
        raise ModelLoadError(f"tokenizer {name_or_path!r} could not be loaded from {folder}"
                             f"{'/tokenizer' if sub else ''}: {type(exc).__name__}: {exc}") from None


# -- building -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Candidate:
    text: str
    base: str
    origin: str
    label: int | None
    sources: list[str]


def _locate(path: Path, needs_captions: bool) -> tuple[Path, Path | None]:
    """(run_dir, captions_dir or None) for a run folder or a captions folder."""
    if (path / "captions.parquet").is_file():
        return path.parent, path
    captions = RunFolder(path).captions
    if (captions / "captions.parquet").is_file():
        return path, captions
    if needs_captions:
        raise InputError(f"{path}: expected a run folder with {captions.name}/captions.parquet (or a captions folder); "
                         "found none. Run `promptmix caption --real DIR --model ID --out RUN` first, or build a "
                         "bag without captions (use_captions: false, no {caption} templates) from the real dataset: "
                         "`promptmix prompts --real DIR --out RUN/prompts`")
    return path, None


class _Composer:
    def __init__(self, config: PromptsConfig, sources: dict[str, dict]):
        self.config = config
        self.sources = sources

    def suffix_of(self, image_id: str | None) -> str:
        if self.config.suffix != "grayscale" or image_id is None:
            return ""
        src = self.sources.get(image_id)
        if src is None:
            raise InputError(f"source image {image_id!r} has a caption but no row in sources.parquet; re-run "
                             "`promptmix caption`")
        gray = src.get(schema.IS_GRAYSCALE)
        if gray is None:
            raise InputError(f"source image {image_id!r}: {schema.IS_GRAYSCALE} is unknown, so suffix 'grayscale' "
                             "cannot be chosen; rebuild the real dataset or use suffix: none")
        return self.config.grayscale_suffix if gray else self.config.color_suffix

    def compose(self, text: str, suffix: str, *, manual: bool = False) -> str:
        prefix = self.config.prefix if (self.config.prefix_manual or not manual) else ""
        parts = [p.strip() for p in (prefix, text, suffix)]
        return self.config.separator.join(p for p in parts if p)


def _candidates(config: PromptsConfig, captions: datasets.Dataset | None, sources: dict[str, dict],
                task: str | None, class_names: list[str] | None, counts: dict[str, int]) -> list[_Candidate]:
    comp = _Composer(config, sources)
    out: list[_Candidate] = []
    rows = [] if captions is None else list(captions.select_columns([schema.IMAGE_ID, schema.CAPTION, schema.LABEL]))
    classification = task is not None and get_task(task).has_classes
    kept_rows = []
    for row in rows:
        cap = (row[schema.CAPTION] or "").strip()
        if not cap:
            counts["empty_captions"] += 1
            continue
        kept_rows.append((row[schema.IMAGE_ID], cap, row[schema.LABEL] if classification else None))
    if config.use_captions:
        for image_id, cap, label in kept_rows:
            out.append(_Candidate(comp.compose(cap, comp.suffix_of(image_id)), cap, "caption", label, [image_id]))
            counts["caption"] += 1
    if config.class_templates:
        if not classification or not class_names:
            raise ConfigError(f"class_templates: need a classification dataset with class names; the prompt bag's "
                              f"metadata (captions or real dataset) is of a {task or 'unknown'} dataset"
                              + ("" if task else "; give the real dataset (`promptmix prompts --real DIR`) or "
                                                  "caption it first"))
        by_label: dict[int, list[str]] = {}
        for image_id, src in sources.items():
            if src.get(schema.LABEL) is not None:
                by_label.setdefault(int(src[schema.LABEL]), []).append(image_id)
        for template in config.class_templates:
            if "caption" in (_format_fields(template) or ()):
                for image_id, cap, label in kept_rows:
                    if label is None:
                        continue
                    base = template.format(label=class_names[label], caption=cap)
                    out.append(_Candidate(comp.compose(base, comp.suffix_of(image_id)), base, "class", label,
                                          [image_id]))
                    counts["class"] += 1
                continue
            for label, name in enumerate(class_names):
                base = template.format(label=name)
                by_suffix: dict[str, list[str]] = {}
                for image_id in by_label.get(label, []):
                    by_suffix.setdefault(comp.suffix_of(image_id), []).append(image_id)
                for suffix, group in (by_suffix or {"": []}).items():
                    out.append(_Candidate(comp.compose(base, suffix), base, "class", label, group))
                    counts["class"] += 1
    manual = list(config.manual)
    if config.manual_file is not None:
        manual += read_prompt_lines(config.manual_file)
    values = config.all_placeholders()
    for text in manual:
        text = text.strip()
        if not text:
            continue
        expanded = expand_placeholders(text, values)
        origin = "template" if PLACEHOLDER.search(text) else "manual"
        for e in expanded:
            out.append(_Candidate(comp.compose(e, "", manual=True), e, origin, None, []))
            counts[origin] += 1
    return out


def _dedupe(cands: list[_Candidate], dedupe: bool, counts: dict[str, int]) -> list[dict]:
    rows: list[dict] = []
    index: dict[tuple[str, int | None], int] = {}
    repeats: dict[tuple[str, int | None], int] = {}
    for c in cands:
        key = (c.text, c.label)
        if dedupe and key in index:
            row = rows[index[key]]
            merged = row[schema.SOURCE_IMAGE_IDS]
            merged.extend(s for s in c.sources if s not in merged)
            counts["duplicates_merged"] += 1
            continue
        n = repeats.get(key, 0)
        repeats[key] = n + 1
        index.setdefault(key, len(rows))
        rows.append({schema.PROMPT_ID: prompt_id(c.text, c.label, repeat=n), schema.PROMPT: c.text,
                     schema.BASE_TEXT: c.base, schema.ORIGIN: c.origin, schema.SOURCE_IMAGE_IDS: list(c.sources),
                     schema.LABEL: c.label})
    return rows


def real_metadata(real: str | Path, revision: str | None = None, split: str = "train"
                  ) -> tuple[datasets.Dataset, dict[str, Any]]:
    """``schema.SOURCES`` rows and the ``info`` (task, class names, real dataset reference) of a real dataset's
    ``split``, read from the dataset itself, as ``promptmix caption`` records them beside the captions."""
    from ..caption.captioner import _task_and_classes, load_real_split, source_rows

    ds = load_real_split(str(real), revision, split)
    task, class_names = _task_and_classes(ds)
    sources = datasets.Dataset.from_list(source_rows(ds, task), features=schema.SOURCES)
    info = {"task": task, "class_names": class_names,
            "real": {"ref": str(real), "revision": revision, "split": split}, "captioner": None}
    return sources, info


def build_prompt_bag(config: PromptsConfig, run_dir: str | Path | None, out_dir: str | Path | None = None, *,
                     tokenizer=None, real: str | Path | None = None, real_revision: str | None = None,
                     real_split: str = "train") -> Path:
    """Build the prompt bag from ``run_dir`` (a run folder or its ``captions/`` folder) and write it.

    With ``real`` (a real dataset folder or Hub id), no captions are read: the task, class names and source
    images come from ``real_split`` of that dataset (:func:`real_metadata`), for bags that need no captions
    (``config.needs_captions()`` false: manual prompts, ``{label}`` templates); ``run_dir`` may then be None
    when ``out_dir`` is given.

    Writes ``out_dir`` (default ``RUN/prompts``) atomically: ``prompts.parquet``, ``sources.parquet``,
    ``info.json``, ``config.yaml``; records the stage in ``RUN/manifest.json`` (``RUN`` = ``run_dir``, or
    ``out_dir``'s parent). With a ``tokenizer``, prompts longer than its ``model_max_length`` are counted
    (``info["counts"]["truncated"]``) and reported. Raises :class:`InputError` when the bag would be empty.
    """
    captions = None
    sources_ds = _rows_to_dataset([], schema.SOURCES)
    cap_info: dict[str, Any] = {}
    if real is not None:
        if config.needs_captions():
            what = "use_captions: true" if config.use_captions else "a class template with {caption}"
            raise ConfigError(f"prompts: {what} needs captions, but the prompt bag is built from the real dataset "
                              f"{real} without captions; caption it first (`promptmix caption`, or a caption section "
                              "in a run config), or set use_captions: false and use only {label} templates")
        if run_dir is None and out_dir is None:
            raise InputError("build_prompt_bag: give run_dir or out_dir (where the prompt bag goes)")
        run_dir = Path(run_dir) if run_dir is not None else Path(out_dir).parent
        captions_dir = None
        sources_ds, cap_info = real_metadata(real, real_revision, real_split)
    else:
        if run_dir is None:
            raise InputError("build_prompt_bag: give run_dir (a run folder with captions/) or real (a real dataset)")
        run_dir, captions_dir = _locate(Path(run_dir), config.needs_captions())
    out_dir = Path(out_dir) if out_dir is not None else RunFolder(run_dir).prompts
    local_real = real if real is not None and is_local_ref(str(real)) else None
    guard_output(out_dir, "prompts", inputs=[captions_dir, local_real, config.manual_file],
                 run=RunFolder(run_dir) if captions_dir is not None else None, own=[RunFolder(run_dir).prompts],
                 force=config.force)
    remove_stale_beside(out_dir, "promptmix prompts")
    if captions_dir is not None:
        captions = read_parquet(captions_dir / "captions.parquet")
        if (captions_dir / SOURCES_FILE).is_file():
            sources_ds = read_parquet(captions_dir / SOURCES_FILE)
        if (captions_dir / INFO_FILE).is_file():
            cap_info = json.loads((captions_dir / INFO_FILE).read_text(encoding="utf-8"))
    sources = _sources_dict(sources_ds)
    task = cap_info.get("task")
    class_names = cap_info.get("class_names")
    counts = {k: 0 for k in ("caption", "class", "manual", "template", "empty_captions", "duplicates_merged")}
    cands = _candidates(config, captions, sources, task, class_names, counts)
    rows = _dedupe(cands, config.dedupe, counts)
    if config.max_prompts is not None and len(rows) > config.max_prompts:
        keep = sorted(random.Random(config.seed).sample(range(len(rows)), config.max_prompts))
        counts["dropped_by_max_prompts"] = len(rows) - len(keep)
        rows = [rows[i] for i in keep]
    if not rows:
        where = (f"captions in {captions_dir}" if captions_dir is not None
                 else f"no captions (metadata from the real dataset {real})" if real is not None
                 else f"no captions under {run_dir}")
        raise InputError(f"the prompt bag is empty: {where}; use_captions={config.use_captions}, "
                         f"{len(config.manual)} manual prompt(s), manual_file={config.manual_file}, "
                         f"{len(config.class_templates)} class template(s). Give prompts or caption the dataset")
    counts["total"] = len(rows)
    if tokenizer is not None:
        counts["truncated"] = report_truncated(tokenizer, [r[schema.PROMPT] for r in rows])
        counts["max_tokens"] = int(tokenizer.model_max_length)
    info = {
        "task": task,
        "class_names": class_names,
        "real": cap_info.get("real"),
        "captioner": cap_info.get("captioner"),
        "counts": counts,
        "config_hash": config.config_hash(),
    }
    prompts_ds = _rows_to_dataset(rows, schema.PROMPTS)
    with atomic_path(out_dir) as tmp, write_errors(out_dir):
        tmp.mkdir(parents=True)
        write_marker(tmp, "prompts")
        prompts_ds.to_parquet(str(tmp / PROMPTS_FILE))
        sources_ds.to_parquet(str(tmp / SOURCES_FILE))
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
    RunFolder(run_dir).record_stage("prompts", {"config": config.to_dict(), "config_hash": config.config_hash(),
                                      "out": str(out_dir), "counts": counts})
    logger.info("prompt bag: %d prompts written to %s", len(rows), out_dir)
    return out_dir
