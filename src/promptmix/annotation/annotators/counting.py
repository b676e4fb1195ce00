"""The counting annotator: a released crowd counter (CSRNet, DM-Count, SASNet) labelling generated images.

The networks, their folder format (``config.json`` + ``model.safetensors``) and the loading of the authors'
own checkpoints live in :mod:`promptmix.models.counting`; this module runs them over images and registers
the kinds ``csrnet``, ``dmcount`` and ``sasnet`` (``--annotator ARCH=CHECKPOINT_FILE`` or a folder / Hub id).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ...models.counting import (WEIGHTS_NAME, CounterConfig, load_counter_checkpoint,
                                load_counter_folder, predict_density, read_counter_config)
from .base import Annotator, as_rgb_array, group_by_size

logger = logging.getLogger(__name__)


#: the last batches of pixels made (arrays, normalisation key, tensor): ``promptmix annotate`` gives every counter
#: the same decoded arrays batch by batch, so counters with the same mean/std/device/dtype normalise each batch once
_RECENT: list[tuple[list, tuple, torch.Tensor]] = []
_RECENT_MAX = 2


class CountingAnnotator(Annotator):
    """A crowd counter: density map (float16, at the network's output resolution) and its sum.

    Images of different sizes are grouped by size and each group runs in batches of
    ``batch_size`` (no resizing: the counters are fully convolutional and the map keeps its
    geometry); each batch goes to the device as uint8 and is normalised there (:meth:`pixels`).
    A map or count that is NaN/inf gives ``ok=False``.
    """

    task = "counting"
    batch_by_size = True

    def __init__(self, name: str, *, folder: str | Path | None = None, architecture: str | None = None,
                 checkpoint: str | Path | None = None, source: dict | None = None, **kwargs: Any):
        super().__init__(name, **kwargs)
        if (folder is None) == (checkpoint is None):
            raise ValueError("give exactly one of folder or checkpoint")
        self.folder = Path(folder) if folder is not None else None
        self.architecture = architecture
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.source = source or {}
        self.config = (read_counter_config(self.folder) if self.folder is not None
                       else CounterConfig.default(architecture))
        self.model: nn.Module | None = None

    @property
    def output_stride(self) -> int:
        return self.config.output_stride

    def load(self) -> None:
        if self.model is not None:
            return
        if self.folder is not None:
            model, self.config = load_counter_folder(self.folder)
        else:
            model, self.config = load_counter_checkpoint(self.architecture, self.checkpoint)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self._mean = torch.tensor(self.config.image_mean, device=self.device)  # float32, as to_pixels
        self._std = torch.tensor(self.config.image_std, device=self.device)

    def unload(self) -> None:
        self.model = None
        _RECENT.clear()
        super().unload()

    def record(self) -> dict:
        from ...utils.hashing import sha256_file

        rec = super().record()
        rec.update({"architecture": self.config.architecture, "output_stride": self.config.output_stride,
                    "width_div": self.config.width_div, "density_scale": self.config.density_scale, **self.source})
        weights = self.checkpoint if self.checkpoint is not None else self.folder / WEIGHTS_NAME
        rec["weights_sha256"] = sha256_file(weights)
        if self.config.architecture in IMPLEMENTATION:  # labels made by an earlier, wrong forward pass differ
            rec["implementation"] = IMPLEMENTATION[self.config.architecture]
        return rec

    @torch.inference_mode()
    def annotate(self, images: list) -> list[dict]:
        return self.annotate_arrays([as_rgb_array(im) for im in images])

    def pixels(self, arrays: list) -> torch.Tensor:
        """Same-size (H, W, 3) uint8 arrays -> normalised ``(B, 3, H, W)`` on the device, in ``self.dtype``.

        The uint8 batch is what crosses to the device (a quarter of float32's bytes); ``/ 255``, mean and std
        run there in float32, then the cast: the same operations, in the same order and precision, as
        :func:`promptmix.models.counting.to_pixels` followed by ``.to(device, dtype)``, so on CPU the pixels
        are bit-identical to it. A batch another counter with the same normalisation just made (the same array
        objects) is reused, not normalised again.
        """
        key = (self.device, self.dtype, tuple(self.config.image_mean), tuple(self.config.image_std))
        for refs, k, pixels in _RECENT:  # another counter with the same normalisation just made this batch
            if k == key and len(refs) == len(arrays) and all(a is b for a, b in zip(refs, arrays)):
                return pixels
        x = torch.from_numpy(np.stack(arrays))
        cuda = self.device.type == "cuda"
        if cuda:
            x = x.pin_memory()
        # NCHW while still uint8 (a quarter of the bytes to move), then the float ops in place
        x = x.to(self.device, non_blocking=cuda).permute(0, 3, 1, 2).contiguous().to(torch.float32)
        x.div_(255.0).sub_(self._mean.view(1, 3, 1, 1)).div_(self._std.view(1, 3, 1, 1))
        x = x.to(self.dtype)
        _RECENT.append((list(arrays), key, x))  # holds the arrays: identity (``is``) stays a safe key
        del _RECENT[:-_RECENT_MAX]
        return x

    @torch.inference_mode()
    def annotate_arrays(self, arrays: list) -> list[dict]:
        self.load()
        out: list[dict | None] = [None] * len(arrays)
        for idx in group_by_size(arrays, self.batch_size):
            pixels = self.pixels([arrays[i] for i in idx])
            dens = predict_density(self.model, self.config, pixels).float().cpu().numpy()
            for i, d in zip(idx, dens):
                d16 = d.astype(np.float16)
                count = float(d.sum(dtype=np.float64))
                ok = bool(np.isfinite(d16).all() and np.isfinite(count))
                out[i] = {"count": count, "density": d16, "ok": ok}
        return out  # type: ignore[return-value]


#: versions of a network's forward pass that changed its labels (an annotation folder made by another version is
#: refused by `promptmix annotate`): SASNet 2 has the authors' ReLU at the end of its density heads
IMPLEMENTATION = {"sasnet": 2}

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin", ".safetensors", ".pkl")


def _counting_factory(arch: str):
    def from_spec(arg: str, *, name: str, revision: str | None = None, resolved: Any = None,
                  **kwargs: Any) -> CountingAnnotator:
        from ...utils.model_source import resolve_model

        p = Path(arg).expanduser()
        if p.is_file():
            return CountingAnnotator(name, architecture=arch, checkpoint=p,
                                     source={"checkpoint": p.name}, **kwargs)
        if p.suffix.lower() in _CHECKPOINT_SUFFIXES or p.name.endswith(".pth.tar"):
            raise InputError(f"{arch} checkpoint {arg!r} does not exist")
        src = resolved or resolve_model(arg, revision, what="annotator")  # a folder, or a Hub repo in our format
        folder = Path(src.path)
        cfg = read_counter_config(folder)
        if cfg.architecture != arch:
            raise InputError(f"{arg}: config.json names architecture {cfg.architecture!r}, not {arch!r}")
        return CountingAnnotator(name, folder=folder, source={"model": src.record()}, **kwargs)

    from_spec.__doc__ = f"``{arch}=CHECKPOINT_FILE`` (an author's checkpoint), ``{arch}=FOLDER`` or a Hub id."
    return from_spec


csrnet_from_spec = _counting_factory("csrnet")
dmcount_from_spec = _counting_factory("dmcount")
sasnet_from_spec = _counting_factory("sasnet")

