"""Caption every training image of a real dataset with a transformers captioning model.

Any model ``AutoModelForImageTextToText`` knows works (BLIP, BLIP-2, GIT, vision-encoder-decoder,
...), given by Hub id (+ ``revision``) or local folder. transformers 5 has no ``image-to-text``
pipeline, so the processor and the model's ``generate`` are called directly: batched, greedy, fp16
on CUDA.

Output (``RUN/captions/``)::

    captions.parquet   schema.CAPTIONS: image_id, caption, label, captioner (one row per train image)
    sources.parquet    schema.SOURCES: image_id, label, width, height, jpeg_quality, is_grayscale
    info.json          task, class_names, real dataset ref + revision + split, captioner record, config
    .work-<hash>/      chunk-NNNNNN.parquet while captioning (removed at the end)

Resume: images are captioned in chunks of ``chunk_size`` consecutive rows; each chunk file is written
atomically and a rerun with the same settings skips the chunks already on disk (and the whole stage
when ``info.json`` says it finished with the same config hash).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import datasets
import torch

from ... import schema
from ...errors import ConfigError, InputError, ModelLoadError
from ...run_folder import RunFolder
from ...tasks import get_task
from ...utils.device import pick_device, pick_dtype
from ...utils.io import write_json_atomic, write_parquet_atomic
from ...utils.model_source import ModelSource, resolve_model
from ...utils.progress import progress
from .config import CaptionConfig

logger = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.parquet"
SOURCES_FILE = "sources.parquet"
INFO_FILE = "info.json"
_META = (schema.WIDTH, schema.HEIGHT, schema.JPEG_QUALITY, schema.IS_GRAYSCALE)


# -- the real dataset ---------------------------------------------------------------------------------
def load_real_split(ref: str, revision: str | None, split: str) -> datasets.Dataset:
    """The ``split`` of a real dataset (folder or Hub id, via ``promptmix.builders.load_real``), checked to
    have image and image_id columns."""
    from ...builders import load_real

    loaded = load_real(ref, revision)
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        if split not in loaded:
            raise InputError(f"real dataset {ref!r} has no split {split!r}; it has {sorted(loaded)}")
        ds = loaded[split]
    else:
        ds = loaded
    for col in (schema.IMAGE, schema.IMAGE_ID):
        if col not in ds.column_names:
            raise InputError(f"real dataset {ref!r} (split {split}) has no {col!r} column; columns: {ds.column_names}. "
                             "Convert it with `promptmix real imagefolder|hub ...` first")
    if len(ds) == 0:
        raise InputError(f"real dataset {ref!r} split {split!r} has no images")
    return ds




def _task_and_classes(ds: datasets.Dataset) -> tuple[str, list[str] | None]:
    from ...builders import task_of

    label_feat = ds.features.get(schema.LABEL)
    names = list(label_feat.names) if isinstance(label_feat, datasets.ClassLabel) else None
    return task_of(ds.features), names


def source_rows(ds: datasets.Dataset, task: str) -> list[dict]:
    """``schema.SOURCES`` rows of every image, from the dataset's columns (computed from the image if missing:
    ``promptmix.builders.image_meta``, the JPEG quality from the quantization tables)."""
    from ...builders import image_meta

    have = [c for c in _META if c in ds.column_names]
    cols = [schema.IMAGE_ID] + have + ([schema.LABEL] if get_task(task).has_classes else [])
    meta = ds.select_columns(cols).to_dict()
    missing = [c for c in _META if c not in have]
    if missing:
        logger.info("real dataset lacks %s; reading them from the images", missing)
        images = ds.select_columns([schema.IMAGE])
        for i in progress(range(len(ds)), desc="reading image sizes", unit="img"):
            image = images[i][schema.IMAGE]
            computed = image_meta(image)
            for c in missing:
                meta.setdefault(c, [None] * len(ds))[i] = computed[c]
    rows = []
    for i in range(len(ds)):
        rows.append({schema.IMAGE_ID: meta[schema.IMAGE_ID][i],
                     schema.LABEL: meta[schema.LABEL][i] if schema.LABEL in meta else None,
                     **{c: meta[c][i] for c in _META}})
    return rows


# -- the captioner ------------------------------------------------------------------------------------
class Captioner:
    """A processor + ``generate`` wrapper: ``captioner(list_of_pil_images) -> list[str]``."""

    def __init__(self, source: ModelSource, *, device: torch.device, dtype: torch.dtype, max_new_tokens: int,
                 num_beams: int = 1, prompt: str | None = None, keep_prompt: bool = False,
                 trust_remote_code: bool = False):
        from transformers import (AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer,
                                  ProcessorMixin)

        self.source = source
        self.device, self.dtype = device, dtype
        self.max_new_tokens, self.num_beams = max_new_tokens, num_beams
        self.prompt, self.keep_prompt = prompt, keep_prompt
        remote = {"trust_remote_code": trust_remote_code}
        try:
            processor = AutoProcessor.from_pretrained(source.path, **remote)
            self.model = AutoModelForImageTextToText.from_pretrained(source.path, dtype=dtype, **remote)
            # BLIP, BLIP-2, GIT...: one processor for images and text. vision-encoder-decoder checkpoints
            # (e.g. ViT + GPT-2) ship an image processor and a tokenizer separately.
            self._joint = isinstance(processor, ProcessorMixin) and hasattr(processor, "tokenizer")
            if self._joint:
                self.processor, self.tokenizer = processor, processor.tokenizer
            else:
                self.processor = AutoImageProcessor.from_pretrained(source.path, **remote)
                self.tokenizer = (processor if hasattr(processor, "batch_decode")
                                  else AutoTokenizer.from_pretrained(source.path, **remote))
        except Exception as exc:
            raise ModelLoadError(f"captioning model {source.name!r} could not be loaded from {source.path} as an "
                                 f"image-to-text model (BLIP, BLIP-2, GIT, vision-encoder-decoder, ...): "
                                 f"{type(exc).__name__}: {exc}") from None
        self.model.to(device).eval()
        if prompt and not self._joint:
            raise ConfigError(f"captions.prompt: the processor of {source.name!r} ({type(self.processor).__name__}) "
                              "takes no text, so captions cannot start from a prompt; leave `prompt` unset")

    def record(self) -> dict[str, Any]:
        return {**self.source.record(), "model_type": getattr(self.model.config, "model_type", None),
                "class": type(self.model).__name__, "max_new_tokens": self.max_new_tokens,
                "num_beams": self.num_beams, "prompt": self.prompt}

    def _inputs(self, images: Sequence) -> dict:
        images = [im.convert("RGB") for im in images]
        if self._joint:
            kwargs = {"images": images, "return_tensors": "pt"}
            if self.prompt:
                kwargs["text"] = [self.prompt] * len(images)
            inputs = self.processor(**kwargs)
        else:
            inputs = dict(self.processor(images, return_tensors="pt"))
        out = {}
        for k, v in dict(inputs).items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.dtype)
            out[k] = v
        return out

    def _strip_prompt(self, text: str) -> str:
        text = " ".join(text.split())
        if self.prompt and not self.keep_prompt:
            p = " ".join(self.prompt.split())
            if text.lower().startswith(p.lower()):
                text = text[len(p):]
        return text.strip()

    @torch.no_grad()
    def __call__(self, images: Sequence) -> list[str]:
        inputs = self._inputs(images)
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                  do_sample=False)
        ids = inputs.get("input_ids")
        if (ids is not None and not getattr(self.model.config, "is_encoder_decoder", False)
                and out.shape[1] >= ids.shape[1] and torch.equal(out[:, :ids.shape[1]], ids)):
            out = out[:, ids.shape[1]:]  # decoder-only models return the prompt tokens first
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [self._strip_prompt(t) for t in texts]


# -- the stage ----------------------------------------------------------------------------------------
def _finished(out: Path, config_hash: str, n: int) -> bool:
    info_path = out / INFO_FILE
    if not (info_path.is_file() and (out / CAPTIONS_FILE).is_file() and (out / SOURCES_FILE).is_file()):
        return False
    info = json.loads(info_path.read_text(encoding="utf-8"))
    return info.get("config_hash") == config_hash and info.get("num_captions") == n


def caption_dataset(config: CaptionConfig, run_dir: RunFolder | str | Path, *,
                    captioner: Captioner | None = None) -> Path:
    """Caption ``config.split`` of ``config.real`` into ``RUN/captions``; returns that folder.

    Resumable (see module docstring); records the ``caption`` stage in ``RUN/manifest.json``.
    ``captioner`` lets callers reuse a loaded model.
    """
    run = RunFolder.of(run_dir)
    out = run.captions
    ds = load_real_split(config.real, config.real_revision, config.split)
    task, class_names = _task_and_classes(ds)
    config_hash = config.config_hash()
    if _finished(out, config_hash, len(ds)):
        logger.info("captions in %s are complete for this config; nothing to do", out)
        return out
    image_ids = list(ds.select_columns([schema.IMAGE_ID])[schema.IMAGE_ID])
    if len(set(image_ids)) != len(image_ids):
        dup = next(i for i in image_ids if image_ids.count(i) > 1)
        raise InputError(f"real dataset {config.real!r}: image_id {dup!r} occurs more than once")
    labels = (list(ds.select_columns([schema.LABEL])[schema.LABEL]) if get_task(task).has_classes
              else [None] * len(ds))

    store = run.caption_chunks(config_hash)
    chunk = config.chunk_size
    n_chunks = (len(ds) + chunk - 1) // chunk
    todo = []
    for c in range(n_chunks):  # a chunk file is verified, not trusted because it exists
        why = store.problem(c, image_ids[c * chunk:(c + 1) * chunk], column=schema.IMAGE_ID)
        if why is not None:
            if store.exists(c):
                store.set_aside(c, why)
            todo.append(c)
    if todo and captioner is None:
        source = resolve_model(config.model, config.revision, what="captioning model")
        device = pick_device(config.device)
        captioner = Captioner(source, device=device, dtype=pick_dtype(config.dtype, device),
                              max_new_tokens=config.max_new_tokens, num_beams=config.num_beams,
                              prompt=config.prompt, keep_prompt=config.keep_prompt,
                              trust_remote_code=config.trust_remote_code)
    if captioner is not None:
        captioner_record = captioner.record()
    else:  # every chunk already on disk: describe the captioner without loading it
        captioner_record = resolve_model(config.model, config.revision, what="captioning model").record()
    name = config.model if captioner is None else captioner.source.name

    done_images = len(ds) - sum(min(chunk, len(ds) - c * chunk) for c in todo)
    images_only = ds.select_columns([schema.IMAGE])
    bar = progress(total=len(ds), initial=done_images, desc="captioning", unit="img")
    try:
        for c in todo:
            start, stop = c * chunk, min((c + 1) * chunk, len(ds))
            caps: list[str] = []
            for b in range(start, stop, config.batch_size):
                images = images_only[b:min(b + config.batch_size, stop)][schema.IMAGE]
                caps.extend(captioner(images))
                bar.update(len(images))
            rows = {schema.IMAGE_ID: image_ids[start:stop], schema.CAPTION: caps,
                    schema.LABEL: labels[start:stop], schema.CAPTIONER: [name] * (stop - start)}
            store.write(c, datasets.Dataset.from_dict(rows, features=schema.CAPTIONS))
    finally:
        bar.close()

    captions = datasets.concatenate_datasets([datasets.Dataset(store.read(c)) for c in range(n_chunks)])
    sources = datasets.Dataset.from_list(source_rows(ds, task), features=schema.SOURCES)
    empty = sum(1 for t in captions[schema.CAPTION] if not (t or "").strip())
    if empty:
        logger.warning("%d of %d captions are empty", empty, len(captions))
    write_parquet_atomic(captions, out / CAPTIONS_FILE)
    write_parquet_atomic(sources, out / SOURCES_FILE)
    real = {"ref": config.real, "revision": config.real_revision, "split": config.split}
    info = {"task": task, "class_names": class_names, "real": real, "captioner": captioner_record,
            "config": config.to_dict(), "config_hash": config_hash, "num_captions": len(captions),
            "empty_captions": empty}
    write_json_atomic(out / INFO_FILE, info)  # written last: marks the stage complete
    for stale in out.glob(".work-*"):  # this run's chunks, and partial work of other settings
        shutil.rmtree(stale, ignore_errors=True)
    run.record_stage("caption", {"config": config.to_dict(), "config_hash": config_hash,
                                       "models": {"captioner": captioner_record}, "real": real,
                                       "task": task, "num_captions": len(captions), "empty_captions": empty})
    return out
