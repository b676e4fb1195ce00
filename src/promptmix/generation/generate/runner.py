"""``promptmix generate``: images for every planned row, in resumable chunks, on one or many processes.

:func:`generate` plans the rows (``run_folder.build_plan``), takes the run lock, then generates the
chunks of its rank (``c % world_size == rank``) that are not done: a chunk file counts as done only when
it opens as Parquet and holds exactly its planned row ids (:meth:`~promptmix.run_folder.ChunkStore.problem`);
a truncated, empty or wrong-rows file is moved aside (``chunk-NNNNNN.parquet.bad``) with a warning and
generated again. Inside a chunk, rows are
grouped by generation size and batched; every row has its own ``torch.Generator`` seeded with its
row seed (created on the CPU, so the starting noise is the same on every device), so its image
depends only on its record and the batch it was generated in, which is the same on every rerun.
A background thread encodes JPEGs and writes Parquet while the next batch is generated.

Works in plain ``python``, under ``accelerate launch`` and ``torchrun`` (CPU-only machines use
``Accelerator(cpu=True)`` semantics: the gloo backend).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ... import schema as S
from ...errors import ConfigError, InputError, ModelLoadError, PromptmixError, RunLockedError
from ...run_folder import RunFolder
from ...utils.device import pick_device, pick_dtype
from ...utils.model_source import ModelSource, resolve_model
from ...utils.progress import progress
from ..prompts.bag import load_prompt_bag
from . import families
from . import plan as rf
from .config import GenerateConfig
from .encode import BackgroundWorker, encode_row_image
from .sizes import resize_exact

logger = logging.getLogger(__name__)

PIX2PIX_CLASS = "StableDiffusionInstructPix2PixPipeline"
AUTO_BATCH_OFF_CUDA = 8  # batch_size auto on CPU/MPS: rows per pipeline call
STAGE = "generate"


# -- the model ----------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pipeline_class_name(model_path: str | Path) -> str | None:
    """``_class_name`` of a diffusers pipeline folder's ``model_index.json`` (None when absent)."""
    index = _read_json(Path(model_path) / "model_index.json")
    return index.get("_class_name") if index else None


def model_default_size(model_path: str | Path) -> tuple[int, int] | None:
    """The native (width, height) of a pipeline folder, read from its configs (no weights loaded).

    The denoiser's ``sample_size`` times the VAE factor (8, or 32 for Sana's DC-AE); Flux, whose
    transformer has none, is 1024 (``FluxPipeline.default_sample_size`` 128 x 8).
    """
    return families.describe(model_path).native_size


def truncation_report(model_path: str | Path, texts: Sequence[str], *, max_sequence_length: int | None = None) -> dict:
    """Prompts the pipeline will cut: ``{count, of, max_tokens, examples, tokenizers}``.

    Counted with the tokenizer(s) whose limit loses words (:func:`families.token_limits`): CLIP's 77
    for SD/SDXL, T5 at ``max_sequence_length`` for SD3/Flux/PixArt, Gemma for Sana.
    """
    from transformers import AutoTokenizer

    texts = list(texts)
    idx: set[int] = set()
    limits, names = [], []
    facts = families.describe(model_path)
    for limit in families.token_limits(model_path, max_sequence_length, facts):
        try:
            tok = AutoTokenizer.from_pretrained(str(model_path), subfolder=limit.subfolder)
        except Exception as exc:  # counting is a report, not a reason to stop
            logger.warning("could not load %s/%s to count truncated prompts: %s", model_path, limit.subfolder, exc)
            continue
        found, max_length = families.truncated_indices(tok, limit, texts)
        limits.append(max_length)
        names.append(f"{limit.subfolder} ({type(tok).__name__})")
        idx.update(found)
    order = sorted(idx)
    return {"count": len(order), "of": len(texts), "max_tokens": min(limits) if limits else None,
            "examples": [texts[i][:120] for i in order[:3]], "tokenizers": names}


class Generator:
    """A loaded diffusers pipeline and the way promptmix calls it for a batch of planned rows.

    The model family (:mod:`.families`) decides the call: guidance convention, negative prompt,
    T5/Gemma token limit, resolution binning and caption cleaning off (PixArt, Sana: sizes come from
    promptmix's rules and prompts are used as written), and the dtype on CUDA when ``dtype: auto``.
    The speed options of the config are applied after loading (see :meth:`_speed_up`).
    """

    def __init__(self, config: GenerateConfig, source: ModelSource, *, device: torch.device, dtype: torch.dtype):
        self.facts = families.describe(source.path)
        self.config = families.resolve_config(config, source.path, self.facts)
        self.source = source
        self.device = device
        self.dtype = self._family_dtype(dtype)
        self.class_name = pipeline_class_name(source.path)
        self.pipe = self._load()
        self.image_conditioned = type(self.pipe).__name__ == PIX2PIX_CLASS
        self._call_params = set(inspect.signature(type(self.pipe).__call__).parameters)
        self.speed = self._speed_up()
        self._embeddings: dict[int, tuple[torch.Tensor, list[str]]] = {}
        self._pooled: dict[int, tuple[torch.Tensor, list[int]]] = {}  # SDXL MVC: pooled embeddings, EOS rows
        self._real = None
        self._real_index: dict[str, int] | None = None
        self._batch_limits: dict[tuple[int, int], int] = {}  # batch_size auto: rows of one size that fit
        self.pipeline_seconds = 0.0

    # loading ---------------------------------------------------------------------------------------
    def _family_dtype(self, dtype: torch.dtype) -> torch.dtype:
        if self.config.dtype not in (None, "", "auto") or self.device.type != "cuda":
            return dtype
        name = families.cuda_dtype(self.facts, bf16_supported=torch.cuda.is_bf16_supported())
        if name == "float32" and self.facts.family.cuda_dtype == "bfloat16":
            logger.warning("%s runs in bfloat16 on CUDA (float16 overflows) but this GPU has no bfloat16; "
                           "using float32", self.facts.family.name)
        return getattr(torch, name)

    def _load(self):
        import diffusers

        from ...utils.verbosity import quiet_imported_libraries

        quiet_imported_libraries()  # diffusers' own bars and warnings, unless -v
        cfg = self.config
        cls = diffusers.StableDiffusionInstructPix2PixPipeline if self.class_name == PIX2PIX_CLASS \
            else diffusers.AutoPipelineForText2Image
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if cfg.trust_remote_code:
            kwargs["trust_remote_code"] = True
        try:
            pipe = cls.from_pretrained(self.source.path, **kwargs)
        except Exception as exc:
            raise ModelLoadError(
                f"diffusion model {cfg.model!r} (at {self.source.path}) could not be loaded as a diffusers "
                f"text-to-image pipeline ({self.class_name or 'no model_index.json'}): {type(exc).__name__}: {exc}"
            ) from None
        if cfg.scheduler:
            sched_cls = getattr(diffusers, cfg.scheduler, None)
            if sched_cls is None or not hasattr(sched_cls, "from_config"):
                compatible = sorted(c.__name__ for c in getattr(pipe.scheduler, "compatibles", []))
                raise ConfigError(f"generate.scheduler: expected a diffusers scheduler class name such as "
                                  f"{', '.join(compatible[:6]) or 'EulerDiscreteScheduler'}; got {cfg.scheduler!r}")
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config)
        offload = cfg.speed.cpu_offload
        if offload != "none":
            if self.device.type != "cuda":
                raise ConfigError(f"generate.speed.cpu_offload: {offload!r} moves sub-models between CPU and a "
                                  f"CUDA GPU; the device here is {self.device}. Use cpu_offload: none")
            if offload == "model":
                pipe.enable_model_cpu_offload(device=self.device)
            else:
                pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @property
    def denoiser(self):
        return getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)

    def _speed_up(self) -> dict:
        """Apply channels-last, fused QKV, the attention kernel, torch.compile and VAE tiling; returns what was set."""
        from . import speed

        return speed.apply(self.pipe, self.denoiser, self.config.speed, device=self.device)

    def attention_processors(self) -> list[str]:
        """The attention processor classes of the denoiser (provenance: what computed the images)."""
        denoiser = getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)
        processors = getattr(denoiser, "attn_processors", None) or {}
        return sorted({type(p).__name__ for p in processors.values()})

    def record(self) -> dict:
        """The model record of the manifest, with the settings the family filled in (``resolved``)."""
        cfg = self.config
        resolved = {k: getattr(cfg, k) for k in families.RESOLVED_KEYS}
        return {**self.source.record(), "pipeline": type(self.pipe).__name__,
                "scheduler": type(self.pipe.scheduler).__name__, "dtype": str(self.dtype).replace("torch.", ""),
                "device": self.device.type, "family": self.facts.family.key, "resolved": resolved,
                "speed": self.speed, "attention": self.attention_processors()}

    # MVC --------------------------------------------------------------------------------------------
    @property
    def _two_encoders(self) -> bool:
        return getattr(self.pipe, "text_encoder_2", None) is not None and self.facts.family.key.startswith("sdxl")

    def class_embeddings(self, bag, label: int) -> tuple[torch.Tensor, list[str]]:
        """``[N, L, D]`` embeddings of a class's MVC texts and their prompt ids (cached).

        One CLIP encoder: its last hidden states (:func:`mvc.encode_texts`). SDXL: both encoders'
        penultimate hidden states concatenated per token (``[N, 77, 768 + 1280]``, exactly what
        ``encode_prompt`` gives the U-Net), so one span of Algorithm 1 mixes the same tokens of
        both; the pooled embeddings and each text's EOS row are kept for :meth:`_pooled_for`.
        """
        if label not in self._embeddings:
            from ..mvc import captions_by_class, encode_texts

            if not self.facts.family.mvc or getattr(self.pipe, "text_encoder", None) is None:
                raise ConfigError(families.mvc_refusal(f"{type(self.pipe).__name__} ({self.facts.family.name})"))
            items = captions_by_class(bag.prompts).get(label, [])
            if not items:
                raise InputError(f"generate.mvc: class {label} has no captions in the prompt bag")
            name = bag.info["class_names"][label]
            texts = self.config.mvc.class_texts([c for _, c in items], name)
            if self._two_encoders:
                emb, pooled, eos = self._encode_two(texts)
                self._pooled[label] = (pooled, eos)
            else:
                emb = encode_texts(self.pipe.tokenizer, self.pipe.text_encoder, texts, self.device)
            self._embeddings[label] = (emb, [pid for pid, _ in items])
        return self._embeddings[label]

    def _encode_two(self, texts: Sequence[str], batch: int = 32) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        embeds, pooled = [], []
        with torch.no_grad():
            for start in range(0, len(texts), batch):
                part = list(texts[start:start + batch])
                e, _, p, _ = self.pipe.encode_prompt(prompt=part, device=self.device, num_images_per_prompt=1,
                                                     do_classifier_free_guidance=False)
                embeds.append(e)
                pooled.append(p)
        tok = self.pipe.tokenizer_2
        ids = tok(list(texts), padding="max_length", max_length=tok.model_max_length, truncation=True)["input_ids"]
        eos = [seq.index(tok.eos_token_id) + 1 if tok.eos_token_id in seq else len(seq) for seq in ids]  # 1-based
        return torch.cat(embeds), torch.cat(pooled), eos

    def _pooled_for(self, label: int, record: dict) -> torch.Tensor:
        """SDXL's pooled embedding of a mixed sequence: that of the caption whose tokens fill its EOS row.

        CLIP's pooled output is read at the EOS token; after Algorithm 1's coarse ops the base
        caption's EOS row holds the row of the last op that covered it (fine ops change < 10 of its
        1280 + 768 elements and leave it). The record names that caption (``pooled.src``).
        """
        pooled, _ = self._pooled[label]
        return pooled[int(record["pooled"]["src"])]

    @staticmethod
    def _pooled_source(record: dict, eos_row: int) -> int:
        owner = int(record["base"])
        for op in record["coarse"]:
            if int(op["r"]) <= eos_row <= int(op["s"]):
                owner = int(op["src"])
        return owner

    def _mixed_embeds(self, bag, rows, mixing: Sequence[str | None] | None) -> tuple[dict, list[str]]:
        from ..mvc import replay_mixing

        embeds, pooled, records = [], [], []
        for i, row in enumerate(rows):
            label = int(row.label)
            emb, ids = self.class_embeddings(bag, label)
            given = mixing[i] if mixing is not None else None
            if given:
                e, rec = replay_mixing(emb, given), json.loads(given)
            else:
                e, rec = self.config.mvc.mix(emb, seed=row.seed, base=row.mvc_base, ids=ids)
                if self._two_encoders:
                    eos_row = self._pooled[label][1][int(rec["base"])]
                    rec["pooled"] = {"eos_row": eos_row, "src": self._pooled_source(rec, eos_row)}
            if self._two_encoders:
                pooled.append(self._pooled_for(label, rec))
            embeds.append(e)
            records.append(json.dumps(rec, sort_keys=True, separators=(",", ":")))
        out = {"prompt_embeds": torch.stack(embeds).to(self.device, self.dtype)}
        if pooled:
            out["pooled_prompt_embeds"] = torch.stack(pooled).to(self.device, self.dtype)
        return out, records

    # conditioning images -----------------------------------------------------------------------------
    def _real_split(self, bag):
        if self._real is None:
            from ..caption.captioner import load_real_split

            ref = self.config.real
            revision = None
            if ref is None:
                info_real = (bag.info or {}).get("real") if bag is not None else None
                if isinstance(info_real, dict):
                    ref, revision = info_real.get("ref"), info_real.get("revision")
                else:
                    ref = info_real
            if not ref:
                raise ConfigError("generate.real: an image-conditioned model needs the real dataset whose train "
                                  "images condition it; the prompt bag records none, so pass --real DIR_OR_ID")
            self._real = load_real_split(str(ref), revision, "train")
            self._real_index = {iid: i for i, iid in enumerate(self._real[S.IMAGE_ID])}
        return self._real

    def conditioning_images(self, bag, rows) -> list:
        real = self._real_split(bag)
        out = []
        for row in rows:
            i = self._real_index.get(row.conditioning_image_id)
            if i is None:
                raise InputError(f"row {row.row_id}: conditioning image {row.conditioning_image_id!r} is not in the "
                                 "real dataset's train split")
            image = real[i][S.IMAGE].convert("RGB")
            out.append(resize_exact(image, row.gen_width, row.gen_height))
        return out

    def conditioning_pool(self, bag) -> dict[int | None, list[str]] | None:
        if not self.image_conditioned:
            return None
        if bag.sources:
            return rf.conditioning_pool(bag.sources)
        real = self._real_split(bag)
        labels = real[S.LABEL] if S.LABEL in real.column_names else [None] * len(real)
        return rf.conditioning_pool({iid: {S.LABEL: y} for iid, y in zip(real[S.IMAGE_ID], labels)})

    # generating -------------------------------------------------------------------------------------
    def __call__(self, rows: Sequence[rf.PlannedRow], *, bag=None,
                 mixing: Sequence[str | None] | None = None) -> tuple[np.ndarray, list[str | None]]:
        """Images ``[B, H, W, 3]`` (float, 0..1) for ``rows`` (one generation size) and their mixing records.

        With ``batch_size: auto`` the rows go through the pipeline in parts that fit in memory: the
        whole batch first (at most 8 rows off CUDA), halved on out-of-memory, and the part size that
        worked is kept for that generation size.
        """
        gw, gh = rows[0].gen_width, rows[0].gen_height
        if any((r.gen_width, r.gen_height) != (gw, gh) for r in rows):
            raise ValueError("a batch must have one generation size")
        auto = self.config.batch_size == "auto"
        limit = len(rows)
        if auto:
            cap = len(rows) if self.device.type == "cuda" else min(len(rows), AUTO_BATCH_OFF_CUDA)
            limit = min(cap, self._batch_limits.get((gw, gh), cap))
        images: list[np.ndarray] = []
        records: list[str | None] = []
        start = 0
        while start < len(rows):
            part = list(rows[start:start + limit])
            part_mixing = list(mixing[start:start + limit]) if mixing is not None else None
            try:
                out, recs = self._generate(part, bag=bag, mixing=part_mixing)
            except torch.OutOfMemoryError as exc:
                if not auto or len(part) == 1:
                    raise ConfigError(f"generate.batch_size: {len(part)} image(s) of {gw}x{gh} do not fit in "
                                      f"{self.device} memory ({str(exc).splitlines()[0][:200]}); use a smaller "
                                      "batch_size, batch_size: auto, or speed.cpu_offload: model") from None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                limit = max(1, len(part) // 2)
                self._batch_limits[(gw, gh)] = limit
                logger.info("batch_size auto: %d images of %dx%d ran out of memory; trying %d", len(part), gw, gh,
                            limit)
                continue
            images.append(out)
            records += recs
            start += len(part)
        return np.concatenate(images, axis=0), records

    def _generate(self, rows: Sequence[rf.PlannedRow], *, bag=None,
                  mixing: Sequence[str | None] | None = None) -> tuple[np.ndarray, list[str | None]]:
        cfg = self.config
        fam = self.facts.family
        gw, gh = rows[0].gen_width, rows[0].gen_height
        kwargs: dict[str, Any] = {
            "num_inference_steps": cfg.steps, "guidance_scale": cfg.guidance_scale, "output_type": "np",
            "generator": [torch.Generator(device="cpu").manual_seed(int(r.seed)) for r in rows],
        }
        records: list[str | None] = [None] * len(rows)
        if cfg.mvc_enabled:
            embeds, records = self._mixed_embeds(bag, rows, mixing)
            kwargs.update(embeds)
        else:
            kwargs["prompt"] = [r.prompt for r in rows]
        if cfg.negative_prompt and cfg.guidance_scale > 1 and "negative_prompt" in self._call_params \
                and fam.guidance not in ("distilled", "embedded"):
            kwargs["negative_prompt"] = [cfg.negative_prompt] * len(rows)
        if cfg.max_sequence_length is not None and "max_sequence_length" in self._call_params:
            kwargs["max_sequence_length"] = int(cfg.max_sequence_length)
        for name, value in (("use_resolution_binning", False), ("clean_caption", False)):
            if name in self._call_params:  # PixArt, Sana: promptmix sizes; prompts as written (no bs4/ftfy rewrite)
                kwargs[name] = value
        if self.image_conditioned:
            kwargs["image"] = self.conditioning_images(bag, rows)
            kwargs["image_guidance_scale"] = cfg.image_guidance_scale
        else:
            kwargs["height"], kwargs["width"] = gh, gw
        t0 = time.perf_counter()
        with torch.inference_mode():
            images = self.pipe(**kwargs).images
        self.pipeline_seconds += time.perf_counter() - t0
        return np.asarray(images, dtype=np.float32), records


# -- the run ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class GenerateReport:
    """What one ``generate`` call did (counts are over all processes)."""

    run_dir: Path
    rows_planned: int
    chunks_planned: int
    rows_done: int = 0  # generated by this call
    rows_skipped: int = 0  # already in the folder
    chunks_done: int = 0
    chunks_skipped: int = 0
    world_size: int = 1
    seconds: float = 0.0  # whole call
    load_seconds: float = 0.0  # loading the pipeline (main process)
    generation_seconds: float = 0.0  # the chunk loop, writer drained (main process)
    pipeline_seconds: float = 0.0  # inside pipeline calls (main process)
    rows_main: int = 0  # rows generated by the main process
    truncated: dict = dataclasses.field(default_factory=dict)
    model: dict = dataclasses.field(default_factory=dict)
    dry_run: bool = False
    projected_seconds: float | None = None
    chunk_layout: list[dict] = dataclasses.field(default_factory=list)  # dry run: where rows would go

    @property
    def images_per_second(self) -> float:
        return self.rows_main / self.generation_seconds if self.generation_seconds > 0 else 0.0

    def summary_lines(self) -> list[str]:
        out = []
        where = RunFolder.of(self.run_dir).images
        if self.dry_run:
            out.append(f"dry run: {self.rows_planned} rows planned in {self.chunks_planned} chunks "
                       f"({self.rows_skipped} already done), {self.world_size} process(es)")
            for c in self.chunk_layout:
                state = "done" if c["done"] else f"rank {c['rank']}"
                out.append(f"  rows {c['first_row']:>6}-{c['last_row']:<6} -> {c['path']}  ({state})")
            if self.projected_seconds is not None:
                out.append(f"one batch of {self.rows_main} image(s) took {self.generation_seconds:.2f} s "
                           f"(model load {self.load_seconds:.1f} s); projected time for the remaining "
                           f"{self.rows_planned - self.rows_skipped} rows: {_fmt_seconds(self.projected_seconds)}")
            else:
                out.append("nothing to generate: every planned row is already in the folder")
        else:
            out.append(f"rows: {self.rows_planned} planned, {self.rows_done} generated, {self.rows_skipped} already "
                       f"done; chunks: {self.chunks_planned} planned, {self.chunks_done} written, "
                       f"{self.chunks_skipped} skipped; {self.world_size} process(es)")
            if self.rows_done:
                out.append(f"time: {_fmt_seconds(self.seconds)} ({self.images_per_second:.2f} images/s on the main "
                           f"process, {_pct(self.pipeline_seconds, self.generation_seconds)} of it in the pipeline)")
            out.append(f"images: {where}")
        t = self.truncated or {}
        if t.get("count"):
            out.append(f"truncated prompts: {t['count']} of {t.get('of')} are longer than {t.get('max_tokens')} "
                       f"tokens and were cut, e.g. {t['examples'][0]!r}")
        elif t:
            out.append("truncated prompts: none")
        return out


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.0f}%" if b > 0 else "n/a"


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class _Dist:
    """Rank and world size of the current launch (plain python, accelerate or torchrun); the collectives are
    accelerate's (``gather_object``, ``broadcast_object_list``, ``wait_for_everyone``)."""

    def __init__(self, device_pref: str):
        from accelerate import PartialState

        cpu = device_pref == "cpu" or not torch.cuda.is_available()
        self.state = PartialState(cpu=cpu)
        self.rank = self.state.process_index
        self.world = self.state.num_processes
        self.is_main = self.state.is_main_process

    def device(self, pref: str) -> torch.device:
        return self.state.device if pref in (None, "", "auto") else pick_device(pref)

    def broadcast(self, obj: Any) -> Any:
        """``obj`` of rank 0, on every rank."""
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def gather(self, obj: Any) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        from accelerate.utils import gather_object

        return gather_object([obj])

    def barrier(self) -> None:
        self.state.wait_for_everyone()


_ERRORS = {cls.__name__: cls for cls in (ConfigError, InputError, ModelLoadError, RunLockedError, PromptmixError)}


def _prepare_folder(dist: _Dist, run: RunFolder, config: GenerateConfig, plan: rf.Plan, truncated: dict,
                    *, dry_run: bool, stack: contextlib.ExitStack) -> None:
    """Rank 0 takes the run lock (held until ``stack`` closes), checks the folder fits this config and plan, and
    writes them; all ranks agree."""
    failure = None
    if dist.rank == 0:
        try:
            rf.check_compatible(run, config, plan)
            if not dry_run:
                stack.enter_context(run.lock(STAGE))
                rf.check_compatible(run, config, plan)  # again, now that no one else writes
                removed = run.image_chunks().remove_temps()
                if removed:
                    logger.info("removed %d partial chunk file(s) of an interrupted run", removed)
                rf.write_plan(run, config, plan, truncated=truncated)
        except PromptmixError as exc:
            stack.close()
            failure = (type(exc).__name__, str(exc))
    failure = dist.broadcast(failure)
    if failure is not None:
        raise _ERRORS.get(failure[0], PromptmixError)(failure[1])


def _plan(bag, config: GenerateConfig, model_path: str, pool=None) -> rf.Plan:
    default = model_default_size(model_path)
    if default is None and config.size is None:
        needs = any(not (ids or []) for ids in bag.prompts[S.SOURCE_IMAGE_IDS])
        if needs:
            raise ConfigError(f"generate.size: prompts without a source image need a size and the model "
                              f"{config.model!r} does not say its native size; pass --size WIDTHxHEIGHT")
    return rf.build_plan(bag, config, default_size=default or (512, 512), pool=pool)


def _mvc_texts(bag, config: GenerateConfig) -> list[str]:
    from ..mvc import captions_by_class

    names = bag.info.get("class_names") or []
    texts = []
    for label, items in captions_by_class(bag.prompts).items():
        texts += config.mvc.class_texts([c for _, c in items], names[label] if label < len(names) else str(label))
    return texts


def _encode_batch(rows: Sequence[rf.PlannedRow], images: np.ndarray, mixing: Sequence[str | None],
                  out: dict[int, dict]) -> None:
    for row, array, mix in zip(rows, images, mixing):
        data = encode_row_image(array, width=row.width, height=row.height, quality=row.jpeg_quality,
                                grayscale=row.grayscale, row_id=row.row_id, prompt_id=row.prompt_id, seed=row.seed)
        out[row.position] = {**row.record(), S.IMAGE: {"bytes": data, "path": None}, S.MIXING: mix}


def _write_chunk(run: RunFolder, chunk: int, rows: Sequence[rf.PlannedRow], encoded: dict[int, dict]) -> None:
    run.image_chunks().write(chunk, rf.chunk_table([encoded[r.position] for r in rows]))


def _run_dtype(config: GenerateConfig, model_path: str) -> str:
    """The dtype this run computes in: ``auto`` is the model family's on CUDA (float16, or bfloat16 for SD3, Flux,
    Sana where supported) and float32 elsewhere. It changes the pixels, so the run folder records it."""
    from ...utils.device import device_type, effective_dtype

    if config.dtype in (None, "", "auto") and device_type(config.device) == "cuda":
        return families.cuda_dtype(families.describe(model_path), bf16_supported=torch.cuda.is_bf16_supported())
    return effective_dtype(config.dtype, config.device)


def generate(config: GenerateConfig, run_dir: RunFolder | str | Path, *, dry_run: bool = False) -> GenerateReport:
    """Generate every planned row of ``config`` into ``RUN/images`` (see the module docstring).

    Resumes where a previous run stopped; refuses a folder made with other settings
    (:class:`ConfigError`) or being written by another run (:class:`RunLockedError`). With
    ``dry_run`` nothing is written: one batch is generated and timed, and the report says where
    each chunk would go and how long the whole run would take.
    """
    t_start = time.perf_counter()
    run = RunFolder.of(run_dir)
    dist = _Dist(config.device)
    source = resolve_model(config.model, config.revision, what="diffusion model")
    config = dataclasses.replace(config, dtype=_run_dtype(config, source.path))  # config.yaml names the dtype
    resolved = families.resolve_config(config, source.path)  # the family's sizes, steps, guidance, token limit
    conditioned = pipeline_class_name(source.path) == PIX2PIX_CLASS

    bag = load_prompt_bag(config.prompts)
    gen: Generator | None = None
    load_seconds = 0.0
    if conditioned:  # the plan needs the conditioning pool, which may come from the real dataset
        t0 = time.perf_counter()
        device = dist.device(config.device)
        gen = Generator(config, source, device=device, dtype=pick_dtype(config.dtype, device))
        load_seconds = time.perf_counter() - t0
    plan = _plan(bag, resolved, source.path, pool=gen.conditioning_pool(bag) if gen is not None else None)

    truncated: dict = {}
    if dist.is_main:
        texts = _mvc_texts(bag, config) if config.mvc_enabled else plan.prompts()
        truncated = truncation_report(source.path, texts, max_sequence_length=resolved.max_sequence_length)
        if truncated["count"]:
            logger.warning("%d of %d prompts are longer than %s tokens and will be truncated, e.g. %r",
                           truncated["count"], truncated["of"], truncated["max_tokens"], truncated["examples"][0])
    with contextlib.ExitStack() as stack:
        _prepare_folder(dist, run, config, plan, truncated, dry_run=dry_run, stack=stack)
        return _run(dist, config, run, source, bag, plan, gen, load_seconds, truncated, dry_run, t_start)


def _run(dist: _Dist, config: GenerateConfig, run: RunFolder, source: ModelSource, bag, plan: rf.Plan,
         gen: Generator | None, load_seconds: float, truncated: dict, dry_run: bool, t_start: float) -> GenerateReport:
    store = run.image_chunks()
    done = set()
    for c, _ in store.list():  # verified, not trusted because it exists: footer, chunk number, row ids of the plan
        if c >= plan.num_chunks:
            continue
        why = store.problem(c, plan.chunk_ids(c), column=S.ROW_ID)
        if why is None:
            done.add(c)
        elif c % dist.world == dist.rank and not dry_run:  # its own rank moves it aside (never deleted), redoes it
            store.set_aside(c, why)
    mine = [c for c in plan.chunks_of_rank(dist.rank, dist.world) if c not in done]
    rows_skipped = sum(len(plan.chunk_rows(c)) for c in done)
    report = GenerateReport(run_dir=run.root, rows_planned=plan.num_rows, chunks_planned=plan.num_chunks,
                            rows_skipped=rows_skipped, chunks_skipped=len(done), world_size=dist.world,
                            truncated=truncated, dry_run=dry_run, load_seconds=load_seconds)
    todo_any = any(dist.gather(bool(mine)))

    if mine and gen is None:
        t0 = time.perf_counter()
        device = dist.device(config.device)
        gen = Generator(config, source, device=device, dtype=pick_dtype(config.dtype, device))
        report.load_seconds = time.perf_counter() - t0
    report.model = gen.record() if gen is not None else source.record()

    if dry_run:
        return _dry_run(dist, config, run, plan, bag, gen, mine, done, report, t_start)

    rows_mine = sum(len(plan.chunk_rows(c)) for c in mine)
    t_gen = time.perf_counter()
    bar = progress(total=rows_mine, desc="generating", unit="img")
    try:
        with BackgroundWorker(max_pending=4) as worker:
            for c in mine:
                rows = plan.chunk_rows(c)
                encoded: dict[int, dict] = {}
                for batch in rf.iter_batches(rows, config.batch_size):
                    images, mixing = gen(batch, bag=bag)
                    worker.submit(_encode_batch, batch, images, mixing, encoded)
                    bar.update(len(batch))
                worker.submit(_write_chunk, run, c, rows, encoded)
    finally:
        bar.close()
    report.generation_seconds = time.perf_counter() - t_gen
    report.pipeline_seconds = gen.pipeline_seconds if gen is not None else 0.0
    report.rows_main = rows_mine

    counts = dist.gather((len(mine), rows_mine))
    report.chunks_done = sum(c for c, _ in counts)
    report.rows_done = sum(r for _, r in counts)
    dist.barrier()  # every rank's chunks are written before the run is recorded and the lock released
    report.seconds = time.perf_counter() - t_start
    if dist.is_main:
        complete = len(store.list()) >= plan.num_chunks
        previous = run.stage_record(STAGE)
        if todo_any or previous.get("config_hash") != config.config_hash():
            run.record_stage(STAGE, {
                "config": config.to_dict(), "config_hash": config.config_hash(), "plan_hash": plan.plan_hash(),
                "models": {"generator": report.model}, "rows": plan.num_rows, "chunks": plan.num_chunks,
                "complete": complete, "world_size": dist.world, "truncated_prompts": truncated,
                "out": str(run.images), "seconds": round(report.seconds, 3)})
    return report


def _dry_run(dist: _Dist, config: GenerateConfig, run: RunFolder, plan: rf.Plan, bag, gen: Generator | None,
             mine: list[int], done: set[int], report: GenerateReport, t_start: float) -> GenerateReport:
    shown = list(range(min(plan.num_chunks, 8))) + ([plan.num_chunks - 1] if plan.num_chunks > 8 else [])
    for c in shown:
        rows = plan.chunk_rows(c)
        report.chunk_layout.append({"chunk": c, "path": str(run.image_chunks().path(c)), "first_row": rows[0].position,
                                    "last_row": rows[-1].position, "rank": c % dist.world, "done": c in done})
    if mine:
        batch = next(rf.iter_batches(plan.chunk_rows(mine[0]), config.batch_size))
        t0 = time.perf_counter()
        images, mixing = gen(batch, bag=bag)
        _encode_batch(batch, images, mixing, {})
        per_image = (time.perf_counter() - t0) / len(batch)
        remaining = plan.num_rows - report.rows_skipped
        report.generation_seconds = per_image * len(batch)
        report.pipeline_seconds = gen.pipeline_seconds
        report.rows_main = len(batch)
        report.projected_seconds = per_image * remaining / dist.world
    report.seconds = time.perf_counter() - t_start
    return report
