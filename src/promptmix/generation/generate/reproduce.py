"""``promptmix reproduce RUN --row N``: regenerate one stored row from its record and compare.

The row is regenerated alone (a batch of one) from the run's config and the row's own record
(prompt, seed, size, JPEG quality, conditioning image, MVC mixing record), so it may differ from
the stored image in the last bits (batched matrix products round differently); the comparison is
on decoded pixels: the maximum absolute difference, the PSNR, and whether the bytes are identical.
The seed is checked against its derivation from (run seed, prompt_id, index), and an MVC row's
mixing record is re-drawn from the seed and compared with the stored one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from ... import schema as S
from ...errors import InputError
from . import plan as rf
from .encode import decode_image, encode_row_image
from .families import resolve_config
from .seeds import row_seed
from .sizes import generation_size

DEFAULT_MIN_PSNR = 30.0


@dataclasses.dataclass
class ReproduceResult:
    row: int  # position in the plan
    row_id: str
    exact: bool  # identical JPEG bytes
    max_abs_diff: int  # decoded pixels, 0-255
    psnr: float  # dB; inf when the pixels are identical
    min_psnr: float
    seed_ok: bool  # stored seed == row_seed(run seed, prompt_id, index)
    mixing_ok: bool  # MVC: the record re-drawn from the seed equals the stored one (True when not MVC)
    record: dict

    @property
    def match(self) -> bool:
        return self.seed_ok and self.mixing_ok and (self.exact or self.psnr >= self.min_psnr)

    def summary_lines(self) -> list[str]:
        psnr = "inf" if math.isinf(self.psnr) else f"{self.psnr:.1f}"
        lines = [f"row {self.row} ({self.row_id}): prompt {self.record.get(S.PROMPT)!r}, seed {self.record.get(S.SEED)}, "
                 f"{self.record.get(S.WIDTH)}x{self.record.get(S.HEIGHT)}, JPEG quality {self.record.get(S.JPEG_QUALITY)}"]
        if self.record.get(S.CONDITIONING_IMAGE_ID):
            lines.append(f"conditioning image: {self.record[S.CONDITIONING_IMAGE_ID]}")
        lines.append(f"regenerated: bytes {'identical' if self.exact else 'differ'}; max abs pixel difference "
                     f"{self.max_abs_diff}; PSNR {psnr} dB (match needs >= {self.min_psnr:g} dB)")
        if not self.seed_ok:
            lines.append("the stored seed does not derive from (run seed, prompt_id, index): the record was altered")
        if not self.mixing_ok:
            lines.append("the stored MVC mixing record differs from the one drawn from the row seed")
        lines.append("MATCH" if self.match else "MISMATCH")
        return lines


def _raw_row(path: Path, offset: int) -> dict:
    import pyarrow.parquet as pq

    table = pq.read_table(str(path))
    if offset >= table.num_rows:
        raise InputError(f"{path} holds {table.num_rows} rows; row offset {offset} is not there")
    return table.slice(offset, 1).to_pylist()[0]


def find_row(run_dir: str | Path, row: int | None = None, row_id: str | None = None) -> tuple[int, dict]:
    """``(position, stored record with raw image bytes)`` of a row given by plan position or row_id."""
    from ...run_folder import RunFolder

    run = RunFolder.of(run_dir)
    store = run.image_chunks()
    plan = rf.read_plan(run)
    chunk_size, num_rows = int(plan["chunk_size"]), int(plan["num_rows"])
    if row_id is not None:
        for c, path in store.list():
            ids = store.row_ids(c, S.ROW_ID) or []
            if row_id in ids:
                offset = ids.index(row_id)
                return c * chunk_size + offset, _raw_row(path, offset)
        raise InputError(f"row_id {row_id!r} is not in any complete chunk of {run.images}")
    if row is None or not 0 <= row < num_rows:
        raise InputError(f"--row: expected a row number 0..{num_rows - 1} of {run_dir}; got {row}")
    chunk = row // chunk_size
    path = store.path(chunk)
    if not path.is_file():
        raise InputError(f"row {row} belongs to chunk {chunk} ({path}), which has not been generated yet; "
                         "finish the run first (rerun `promptmix generate`)")
    return row, _raw_row(path, row % chunk_size)


def reproduce_row(run_dir: str | Path, row: int | None = None, *, row_id: str | None = None,
                  min_psnr: float = DEFAULT_MIN_PSNR, device: str | None = None,
                  dtype: str | None = None) -> ReproduceResult:
    """Regenerate one row of ``RUN/images`` alone and compare it with the stored image."""
    from ...utils.device import pick_device, pick_dtype
    from ...utils.model_source import resolve_model
    from ..prompts.bag import load_prompt_bag
    from .runner import Generator

    run_dir = Path(run_dir)
    config = rf.read_run_config(run_dir)
    overrides = {k: v for k, v in (("device", device), ("dtype", dtype)) if v}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    position, stored = find_row(run_dir, row, row_id)
    stored_bytes = stored[S.IMAGE]["bytes"]
    stored_pixels = decode_image(stored_bytes)
    mixing = stored.get(S.MIXING)
    mvc_base = json.loads(mixing).get("base") if mixing else None
    w, h = int(stored[S.WIDTH]), int(stored[S.HEIGHT])
    source = resolve_model(config.model, config.revision, what="diffusion model")
    sizing = resolve_config(config, source.path)  # the family's size rules, as the run's plan used them
    gw, gh = generation_size(w, h, max_side=sizing.max_side, multiple=sizing.size_multiple, min_side=sizing.min_side)
    planned = rf.PlannedRow(
        position=position, row_id=stored[S.ROW_ID], prompt=stored[S.PROMPT], prompt_id=stored[S.PROMPT_ID],
        image_index=int(stored[S.IMAGE_INDEX]), source_image_id=stored.get(S.SOURCE_IMAGE_ID), label=stored.get(S.LABEL),
        seed=int(stored[S.SEED]), width=w, height=h, gen_width=gw, gen_height=gh,
        jpeg_quality=int(stored[S.JPEG_QUALITY]), grayscale=stored_pixels.ndim == 2,
        conditioning_image_id=stored.get(S.CONDITIONING_IMAGE_ID), mvc_base=mvc_base)

    dev = pick_device(config.device)
    gen = Generator(config, source, device=dev, dtype=pick_dtype(config.dtype, dev))
    bag = load_prompt_bag(config.prompts) if (config.mvc_enabled or gen.image_conditioned) else None
    images, records = gen([planned], bag=bag)  # MVC: the record is re-drawn from the seed, not copied
    data = encode_row_image(images[0], width=w, height=h, quality=planned.jpeg_quality, grayscale=planned.grayscale,
                            row_id=planned.row_id, prompt_id=planned.prompt_id, seed=planned.seed)
    pixels = decode_image(data)
    if pixels.shape != stored_pixels.shape:
        diff, psnr = 255, 0.0
    else:
        err = pixels.astype(np.float64) - stored_pixels.astype(np.float64)
        diff = int(np.abs(err).max()) if err.size else 0
        mse = float((err ** 2).mean()) if err.size else 0.0
        psnr = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    mixing_ok = True
    if mixing or records[0]:
        mixing_ok = bool(mixing and records[0]) and json.loads(mixing) == json.loads(records[0])
    seed_ok = int(stored[S.SEED]) == _expected_seed(config, stored)
    record = {k: v for k, v in stored.items() if k != S.IMAGE}
    return ReproduceResult(row=position, row_id=planned.row_id, exact=data == stored_bytes, max_abs_diff=diff,
                           psnr=psnr, min_psnr=min_psnr, seed_ok=seed_ok, mixing_ok=mixing_ok, record=record)


def _expected_seed(config, stored: dict) -> int:
    return row_seed(config.seed, stored[S.PROMPT_ID], int(stored[S.IMAGE_INDEX]))
