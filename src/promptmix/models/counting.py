"""Crowd counters as annotators: the released architectures, their folder format, loading and prediction.

The networks live in their own modules (:mod:`.csrnet`, :mod:`.dmcount`, :mod:`.sasnet`; CSRNet is the same
class the trainer builds with ``create_model("csrnet")``). This module says how each one is used as a
counter: how its output becomes a density map (``density``) and what people per output pixel one unit
of it is (``density_scale``: 1/1000 for SASNet, whose authors scale their targets by ``log_para = 1000``).

Folder format (what :func:`save_counter` writes and :func:`load_counter_folder` reads)::

    config.json        {"architecture": "csrnet", "task": "counting", "width_div": 1, "output_stride": 8,
                        "density_scale": 1.0, "block_size": 32, "image_mean": [...], "image_std": [...]}
    model.safetensors  the state dict, in the authors' key layout

An author's own checkpoint (``.pth`` / ``.pth.tar``, CSRNet's ``{'state_dict': ...}`` wrapper, ``module.``
prefixes) loads with :func:`load_counter_checkpoint` (``promptmix annotate --annotator ARCH=FILE``), read
safely by :mod:`.checkpoints`. Inputs are RGB in [0, 1] normalised with the ImageNet mean and std, as all
three authors do.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclasses.dataclass(frozen=True)
class CounterArchitecture:
    """How a released counting network is built and read."""

    build: Callable[["CounterConfig"], nn.Module]
    density: Callable[[Any], torch.Tensor]  # model output -> (B, 1, h, w)
    defaults: dict


def _csrnet(c: "CounterConfig") -> nn.Module:
    from .csrnet import CSRNet

    return CSRNet(c.width_div)


def _dmcount(c: "CounterConfig") -> nn.Module:
    from .dmcount import DMCount

    return DMCount(c.width_div)


def _sasnet(c: "CounterConfig") -> nn.Module:
    from .sasnet import SASNet

    return SASNet(c.width_div, c.block_size)


ARCHITECTURES: dict[str, CounterArchitecture] = {
    "csrnet": CounterArchitecture(_csrnet, lambda out: out, {"output_stride": 8, "density_scale": 1.0}),
    "dmcount": CounterArchitecture(_dmcount, lambda out: out[0], {"output_stride": 8, "density_scale": 1.0}),
    "sasnet": CounterArchitecture(_sasnet, lambda out: out,
                                  {"output_stride": 1, "density_scale": 1e-3, "block_size": 32}),
}


@dataclasses.dataclass
class CounterConfig:
    """What ``config.json`` of a counting-model folder holds."""

    architecture: str
    task: str = "counting"
    width_div: int = 1
    output_stride: int = 8
    density_scale: float = 1.0  # multiply the network's output by this to get people per pixel
    block_size: int = 32  # SASNet only: patch size of the confidence pooling
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise InputError(f"architecture: expected one of {', '.join(sorted(ARCHITECTURES))}; "
                             f"got {self.architecture!r}")
        if self.task != "counting":
            raise InputError(f"task: expected 'counting' for a counting architecture; got {self.task!r}")
        if not isinstance(self.width_div, int) or self.width_div < 1:
            raise InputError(f"width_div: expected an integer >= 1; got {self.width_div!r}")
        self.image_mean = tuple(float(v) for v in self.image_mean)
        self.image_std = tuple(float(v) for v in self.image_std)

    @classmethod
    def default(cls, architecture: str, **overrides: Any) -> "CounterConfig":
        arch = architecture.lower()
        if arch not in ARCHITECTURES:
            raise InputError(f"architecture: expected one of {', '.join(sorted(ARCHITECTURES))}; got {architecture!r}")
        base = dict(ARCHITECTURES[arch].defaults)
        base.update(overrides)
        return cls(architecture=arch, **base)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config.json") -> "CounterConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"{source}: unknown key {unknown[0]!r}; allowed keys are {', '.join(sorted(names))}")
        if "architecture" not in data:
            raise InputError(f"{source}: the 'architecture' key is missing (one of {', '.join(sorted(ARCHITECTURES))})")
        arch = str(data["architecture"]).lower()
        merged = dict(ARCHITECTURES[arch].defaults) if arch in ARCHITECTURES else {}
        merged.update({k: v for k, v in data.items() if k != "architecture"})
        return cls(architecture=arch, **merged)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_mean"] = list(self.image_mean)
        d["image_std"] = list(self.image_std)
        return d


def build_counter(config: CounterConfig) -> nn.Module:
    """A randomly initialised network of ``config.architecture`` (eval mode)."""
    return ARCHITECTURES[config.architecture].build(config).eval()


def expected_state_shapes(config: CounterConfig) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of ``config``'s network, built on the meta device (no weights allocated)."""
    with torch.device("meta"):
        model = ARCHITECTURES[config.architecture].build(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def to_pixels(images: list, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """PIL images of one size -> normalised ``(B, 3, H, W)`` float32 (RGB in [0, 1], then ``(x - mean) / std``)."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()  # NCHW as torchvision's ToTensor gives
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def predict_density(model: nn.Module, config: CounterConfig, pixels: torch.Tensor) -> torch.Tensor:
    """Normalised pixels ``(B, 3, H, W)`` -> density maps ``(B, h, w)`` in people per output pixel."""
    out = ARCHITECTURES[config.architecture].density(model(pixels))
    return out[:, 0] * config.density_scale


def save_counter(model: nn.Module, config: CounterConfig, folder: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (the authors' key layout) to ``folder``."""
    from safetensors.torch import save_file

    from ..utils.io import atomic_path, write_text_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "architecture": config.architecture})
    write_text_atomic(folder / CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")
    return folder


def read_counter_config(folder: str | Path) -> CounterConfig:
    path = Path(folder) / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; a counting-model folder holds config.json + {WEIGHTS_NAME}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    return CounterConfig.from_dict(data, source=str(path))


def load_counter_folder(folder: str | Path) -> tuple[nn.Module, CounterConfig]:
    """Build the architecture named in ``folder/config.json`` and load ``model.safetensors`` into it."""
    from .checkpoints import load_state_dict_into, read_state_dict

    folder = Path(folder)
    config = read_counter_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.exists():
        raise InputError(f"{weights} does not exist; a counting-model folder holds config.json + {WEIGHTS_NAME}")
    model = build_counter(config)
    load_state_dict_into(model, read_state_dict(weights), architecture=config.architecture, source=str(weights))
    return model, config


def load_counter_checkpoint(architecture: str, checkpoint: str | Path,
                            **overrides: Any) -> tuple[nn.Module, CounterConfig]:
    """Build ``architecture`` at full width and load an author's raw checkpoint (``.pth``/``.tar``/safetensors)."""
    from .checkpoints import load_state_dict_into, read_state_dict

    config = CounterConfig.default(architecture, **overrides)
    model = build_counter(config)
    load_state_dict_into(model, read_state_dict(checkpoint), architecture=config.architecture, source=str(checkpoint))
    return model, config
