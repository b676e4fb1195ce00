"""Offline test kit: tiny random-weight models in their real save formats, and raw-dataset writers.

``save_tiny_models(out_dir)`` writes every model the pipeline needs, built from the real classes
with random weights and saved through ``save_pretrained`` (or the annotators' own safetensors
format), so they load back through exactly the path a Hub model takes. Tests, the demo and the
benchmarks use them; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

TINY_MODEL_KEYS = ("sd", "captioner", "counter_a", "counter_b", "depth", "classifier")
#: written only when asked for in ``keys``: a CLIP model, an InstructPix2Pix pipeline, and one tiny pipeline of
#: every text-to-image family (``_families.FAMILY_MODELS``: sd-v, sd-turbo, lcm, sdxl, sdxl-turbo, sd3, flux,
#: flux-schnell, pixart, sana)
EXTRA_MODEL_KEYS = ("clip", "pix2pix", "sd-v", "sd-turbo", "lcm", "sdxl", "sdxl-turbo", "sd3", "flux",
                    "flux-schnell", "pixart", "sana")
DEFAULT_CLASS_NAMES = ("cat", "dog", "bird")


def save_tiny_models(out_dir: str | Path, *, class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
                     keys: Sequence[str] = TINY_MODEL_KEYS, seed: int = 0) -> dict[str, Path]:
    """Write tiny random models under ``out_dir/<key>`` and return ``{key: folder}``.

    Keys: ``sd`` (Stable Diffusion pipeline folder), ``captioner`` (BLIP), ``counter_a`` and
    ``counter_b`` (two different crowd-counting architectures), ``depth`` (a transformers depth
    model), ``classifier`` (a transformers image classifier over ``class_names``). On request also
    ``clip`` (a CLIP model for zero-shot annotation), ``pix2pix`` (an InstructPix2Pix pipeline with
    an 8-channel U-Net, as MVC fine-tuning writes) and the family pipelines of ``_families`` (SD 2.x
    v-prediction, SD-Turbo, LCM, SDXL, SDXL-Turbo, SD3, Flux-dev, Flux-schnell, PixArt-Sigma, Sana).
    Folders that already hold a complete model are reused.
    """
    from . import _annotators, _captioner, _diffusion, _families

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    allowed = TINY_MODEL_KEYS + EXTRA_MODEL_KEYS
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise ValueError(f"keys: expected a subset of {allowed}; got unknown {unknown}")
    writers = {
        "sd": lambda p: _diffusion.save_tiny_sd(p, seed=seed),
        "captioner": lambda p: _captioner.save_tiny_captioner(p, seed=seed),
        "counter_a": lambda p: _annotators.save_tiny_counter(p, arch="csrnet", seed=seed),
        "counter_b": lambda p: _annotators.save_tiny_counter(p, arch="dmcount", seed=seed + 1),
        "depth": lambda p: _annotators.save_tiny_depth(p, seed=seed),
        "classifier": lambda p: _annotators.save_tiny_classifier(p, class_names=class_names, seed=seed),
        "clip": lambda p: _annotators.save_tiny_clip(p, seed=seed),
        "pix2pix": lambda p: _diffusion.save_tiny_pix2pix(p, seed=seed),
        **{key: (lambda p, w=w: w(p, seed)) for key, w in _families.WRITERS.items()},
    }
    out = {}
    for key in keys:
        folder = out_dir / key
        if not (folder / ".complete").exists():
            from ..utils.io import atomic_path
            from ..utils.outputs import guard_output

            guard_output(folder, "demo", flag="tiny model folder", force_flag=None)  # never a folder of the user's
            with atomic_path(folder) as tmp:
                tmp.mkdir(parents=True)
                writers[key](tmp)
                (tmp / ".complete").write_text("ok\n")
        out[key] = folder
    return out
