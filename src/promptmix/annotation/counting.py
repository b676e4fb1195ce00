"""Crowd-counting architectures (CSRNet, DM-Count, SASNet), their folder format, and their annotator.

Each network is rebuilt here with the module names its authors used, so the ``state_dict`` of
their released checkpoints loads key for key (``promptmix.annotation.checkpoints`` unwraps and
checks them). A ``width_div`` divides every channel count, so tiny random versions of the same
graphs exist for tests; real checkpoints use ``width_div=1``.

Key layouts (``width_div=1``):

CSRNet (leeyeehoo/CSRNet-pytorch, ``model.py``)
    ``frontend.{0,2,5,7,10,12,14,17,19,21}.{weight,bias}``: the first ten 3x3 convs of VGG-16
    (an ``nn.Sequential`` with ReLU and 2x2 max-pool modules in between: 64,64,M,128,128,M,256x3,M,512x3);
    ``backend.{0,2,4,6,8,10}.*``: dilated (rate 2) 3x3 convs 512,512,512,256,128,64;
    ``output_layer.*``: 1x1 conv 64 -> 1. Output stride 8; the density is the output.
DM-Count (cvlab-stonybrook/DM-Count, ``models.py``, VGG-19)
    ``features.N.*``: VGG-19 convs (64,64,M,128,128,M,256x4,M,512x4,M,512x4; no batch norm);
    ``reg_layer.{0,2}.*``: 3x3 convs 512 -> 256 -> 128 after a 2x bilinear upsampling;
    ``density_layer.0.*``: 1x1 conv 128 -> 1 followed by ReLU. ``forward`` returns
    ``(mu, mu_normed)``; the density is ``mu``. Output stride 8.
SASNet (TencentYoutuResearch/CrowdCounting-SASNet, ``model.py``)
    ``features{1..5}.N.*``: torchvision's VGG-16-BN ``features`` split at 6/13/23/33/43 (conv at
    index i, BatchNorm at i+1); ``de_pred{5..1}.{0,1}.conv.*``: the decoder's 3x3 convs;
    ``density_head{5..1}.0.branch{1x1,1x1_1,3x3_1,3x3_2,3x3dbl_1,3x3dbl_2}.{conv,bn}.*`` (the
    multi-branch module, bias-free convs + BatchNorm eps 1e-3) and ``density_head{k}.1.conv.*``;
    ``confidence_head{5..1}.{0,1}.conv.*``. This is the authors' module tree, written out without
    torchvision; every parameter and buffer name matches theirs. The forward pass is theirs
    (bilinear upsampling with ``align_corners=True`` as ``F.upsample_bilinear`` did, nearest
    upsampling of the five density and confidence maps, sigmoid then softmax over levels). Their
    maps are scaled by ``log_para=1000`` (``main.py``), so ``density_scale`` is 1/1000 for SASNet.
    Output stride 1 (the density map has the input's size). The patch size of the confidence
    pooling is ``block_size`` (32); for inputs smaller than one block a 1x1 grid is used.

Inputs are RGB in [0, 1] normalised with the ImageNet mean and std, as all three authors do.

Folder format (what :func:`save_counter` writes and :func:`load_counter_folder` reads)::

    config.json        {"architecture": "csrnet", "task": "counting", "width_div": 1, "output_stride": 8,
                        "density_scale": 1.0, "block_size": 32, "image_mean": [...], "image_std": [...]}
    model.safetensors  the state dict, in the authors' key layout
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .base import Annotator, group_by_size
from .registry import register_annotator

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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


def _c(channels: int, width_div: int) -> int:
    return max(1, channels // width_div)


def _vgg_layers(cfg: list, in_channels: int = 3, *, dilation: int = 1, batch_norm: bool = False,
                width_div: int = 1) -> nn.Sequential:
    """``make_layers`` as in torchvision / CSRNet / DM-Count: same module order, hence same indices."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = _c(v, width_div)
        layers.append(nn.Conv2d(in_channels, out, kernel_size=3, padding=dilation, dilation=dilation))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out
    return nn.Sequential(*layers)


# -- CSRNet --------------------------------------------------------------------------------------------
class CSRNet(nn.Module):
    """CSRNet (Li et al., CVPR 2018) with leeyeehoo/CSRNet-pytorch's module names."""

    FRONTEND = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]
    BACKEND = [512, 512, 512, 256, 128, 64]

    def __init__(self, width_div: int = 1):
        super().__init__()
        self.frontend = _vgg_layers(self.FRONTEND, 3, width_div=width_div)
        self.backend = _vgg_layers(self.BACKEND, _c(512, width_div), dilation=2, width_div=width_div)
        self.output_layer = nn.Conv2d(_c(64, width_div), 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.backend(self.frontend(x)))


# -- DM-Count ------------------------------------------------------------------------------------------
class DMCount(nn.Module):
    """DM-Count's VGG-19 regressor (Wang et al., NeurIPS 2020) with cvlab-stonybrook/DM-Count's names."""

    FEATURES = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]

    def __init__(self, width_div: int = 1):
        super().__init__()
        self.features = _vgg_layers(self.FEATURES, 3, width_div=width_div)
        self.reg_layer = nn.Sequential(
            nn.Conv2d(_c(512, width_div), _c(256, width_div), kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(_c(256, width_div), _c(128, width_div), kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.density_layer = nn.Sequential(nn.Conv2d(_c(128, width_div), 1, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)  # F.upsample_bilinear
        x = self.reg_layer(x)
        mu = self.density_layer(x)
        mu_sum = mu.flatten(1).sum(1).view(-1, 1, 1, 1)
        return mu, mu / (mu_sum + 1e-6)


# -- SASNet --------------------------------------------------------------------------------------------
class _SASConv2d(nn.Module):
    """SASNet's ``Conv2d`` wrapper: ``conv`` (+ identity ``bn``) + optional ReLU; key ``<name>.conv.*``."""

    def __init__(self, cin: int, cout: int, k: int, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, padding=(k - 1) // 2)
        self.bn = nn.Identity()
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


class _BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs: Any):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class _MultiBranchModule(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        h = max(1, c // 2)
        self.branch1x1 = _BasicConv2d(c, h, kernel_size=1)
        self.branch1x1_1 = _BasicConv2d(h, c, kernel_size=1)
        self.branch3x3_1 = _BasicConv2d(c, h, kernel_size=1)
        self.branch3x3_2 = _BasicConv2d(h, c, kernel_size=(3, 3), padding=(1, 1))
        self.branch3x3dbl_1 = _BasicConv2d(c, h, kernel_size=1)
        self.branch3x3dbl_2 = _BasicConv2d(h, c, kernel_size=5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1_1(self.branch1x1(x))
        b = self.branch3x3_2(self.branch3x3_1(x))
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([a, b, c, x], 1)


class SASNet(nn.Module):
    """SASNet (Song et al., AAAI 2021) with TencentYoutuResearch/CrowdCounting-SASNet's module names."""

    VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

    def __init__(self, width_div: int = 1, block_size: int = 32):
        super().__init__()
        w = width_div
        feats = list(_vgg_layers(self.VGG16, 3, batch_norm=True, width_div=w).children())
        self.features1 = nn.Sequential(*feats[0:6])
        self.features2 = nn.Sequential(*feats[6:13])
        self.features3 = nn.Sequential(*feats[13:23])
        self.features4 = nn.Sequential(*feats[23:33])
        self.features5 = nn.Sequential(*feats[33:43])
        c = lambda n: _c(n, w)  # noqa: E731
        self.de_pred5 = nn.Sequential(_SASConv2d(c(512), c(1024), 3), _SASConv2d(c(1024), c(512), 3))
        self.de_pred4 = nn.Sequential(_SASConv2d(c(512) * 2, c(512), 3), _SASConv2d(c(512), c(256), 3))
        self.de_pred3 = nn.Sequential(_SASConv2d(c(256) * 2, c(256), 3), _SASConv2d(c(256), c(128), 3))
        self.de_pred2 = nn.Sequential(_SASConv2d(c(128) * 2, c(128), 3), _SASConv2d(c(128), c(64), 3))
        self.de_pred1 = nn.Sequential(_SASConv2d(c(64) * 2, c(64), 3), _SASConv2d(c(64), c(64), 3))
        for k, ch in zip((5, 4, 3, 2, 1), (512, 256, 128, 64, 64)):
            setattr(self, f"density_head{k}", nn.Sequential(_MultiBranchModule(c(ch)),
                                                            _SASConv2d(4 * c(ch), 1, 1, relu=False)))
        for k, ch, hid in zip((5, 4, 3, 2, 1), (512, 256, 128, 64, 64), (256, 128, 64, 32, 32)):
            setattr(self, f"confidence_head{k}", nn.Sequential(_SASConv2d(c(ch), c(hid), 1),
                                                               _SASConv2d(c(hid), 1, 1, relu=False)))
        self.block_size = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape
        x1 = self.features1(x)
        x2 = self.features2(x1)
        x3 = self.features3(x2)
        x4 = self.features4(x3)
        x5 = self.features5(x4)
        up = lambda t, ref: F.interpolate(t, size=ref.shape[2:], mode="bilinear", align_corners=True)  # noqa: E731
        outs = {}
        y = self.de_pred5(x5)
        outs[5] = y
        y = self.de_pred4(torch.cat([x4, up(y, x4)], 1))
        outs[4] = y
        y = self.de_pred3(torch.cat([x3, up(y, x3)], 1))
        outs[3] = y
        y = self.de_pred2(torch.cat([x2, up(y, x2)], 1))
        outs[2] = y
        y = self.de_pred1(torch.cat([x1, up(y, x1)], 1))
        outs[1] = y
        grid = (max(1, size[-2] // self.block_size), max(1, size[-1] // self.block_size))
        target = x1.shape[2:]
        densities, confidences = [], []
        for k in (5, 4, 3, 2, 1):
            d = getattr(self, f"density_head{k}")(outs[k])
            conf = getattr(self, f"confidence_head{k}")(F.adaptive_avg_pool2d(outs[k], output_size=grid))
            densities.append(F.interpolate(d, size=target, mode="nearest"))
            confidences.append(F.interpolate(conf, size=target, mode="nearest"))
        confidence = torch.softmax(torch.sigmoid(torch.cat(confidences, 1)), 1)
        return (torch.cat(densities, 1) * confidence).sum(1, keepdim=True)


@dataclasses.dataclass(frozen=True)
class _Arch:
    build: Callable[[CounterConfig], nn.Module]
    density: Callable[[Any], torch.Tensor]  # model output -> (B, 1, h, w)
    defaults: dict


ARCHITECTURES: dict[str, _Arch] = {
    "csrnet": _Arch(lambda c: CSRNet(c.width_div), lambda out: out, {"output_stride": 8, "density_scale": 1.0}),
    "dmcount": _Arch(lambda c: DMCount(c.width_div), lambda out: out[0], {"output_stride": 8, "density_scale": 1.0}),
    "sasnet": _Arch(lambda c: SASNet(c.width_div, c.block_size), lambda out: out,
                    {"output_stride": 1, "density_scale": 1e-3, "block_size": 32}),
}


def build_counter(config: CounterConfig) -> nn.Module:
    """A randomly initialised network of ``config.architecture`` (eval mode)."""
    return ARCHITECTURES[config.architecture].build(config).eval()


def predict_density(model: nn.Module, config: CounterConfig, pixels: torch.Tensor) -> torch.Tensor:
    """Normalised pixels ``(B, 3, H, W)`` -> density maps ``(B, h, w)`` in people per output pixel."""
    out = ARCHITECTURES[config.architecture].density(model(pixels))
    return out[:, 0] * config.density_scale


def save_counter(model: nn.Module, config: CounterConfig, folder: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (the authors' key layout) to ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "architecture": config.architecture})
    (folder / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
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


def _to_pixels(images: list, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


class CountingAnnotator(Annotator):
    """A crowd counter: density map (float16, at the network's output resolution) and its sum.

    Images of different sizes are grouped by size and each group runs in batches of
    ``batch_size`` (no resizing: the counters are fully convolutional and the map keeps its
    geometry). A map or count that is NaN/inf gives ``ok=False``.
    """

    task = "counting"

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
        self._mean = torch.tensor(self.config.image_mean)
        self._std = torch.tensor(self.config.image_std)

    def unload(self) -> None:
        self.model = None
        super().unload()

    def record(self) -> dict:
        from ..utils.io import sha256_file

        rec = super().record()
        rec.update({"architecture": self.config.architecture, "output_stride": self.config.output_stride,
                    "width_div": self.config.width_div, "density_scale": self.config.density_scale, **self.source})
        weights = self.checkpoint if self.checkpoint is not None else self.folder / WEIGHTS_NAME
        rec["weights_sha256"] = sha256_file(weights)
        return rec

    @torch.inference_mode()
    def annotate(self, images: list) -> list[dict]:
        self.load()
        out: list[dict | None] = [None] * len(images)
        for idx in group_by_size(images, self.batch_size):
            pixels = _to_pixels([images[i] for i in idx], self._mean, self._std).to(self.device, self.dtype)
            dens = predict_density(self.model, self.config, pixels).float().cpu().numpy()
            for i, d in zip(idx, dens):
                d16 = d.astype(np.float16)
                count = float(d.sum(dtype=np.float64))
                ok = bool(np.isfinite(d16).all() and np.isfinite(count))
                out[i] = {"count": count, "density": d16, "ok": ok}
        return out  # type: ignore[return-value]


_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin", ".safetensors", ".pkl")


def _counting_factory(arch: str):
    def from_spec(arg: str, *, name: str, revision: str | None = None, resolved: Any = None,
                  **kwargs: Any) -> CountingAnnotator:
        from .registry import resolve_for

        p = Path(arg).expanduser()
        if p.is_file():
            return CountingAnnotator(name, architecture=arch, checkpoint=p,
                                     source={"checkpoint": p.name}, **kwargs)
        if p.suffix.lower() in _CHECKPOINT_SUFFIXES or p.name.endswith(".pth.tar"):
            raise InputError(f"{arch} checkpoint {arg!r} does not exist")
        src = resolve_for(arg, revision, resolved)  # a folder, or a Hub repo in our folder format
        folder = Path(src.path)
        cfg = read_counter_config(folder)
        if cfg.architecture != arch:
            raise InputError(f"{arg}: config.json names architecture {cfg.architecture!r}, not {arch!r}")
        return CountingAnnotator(name, folder=folder, source={"model": src.record()}, **kwargs)

    from_spec.__doc__ = f"``{arch}=CHECKPOINT_FILE`` (an author's checkpoint), ``{arch}=FOLDER`` or a Hub id."
    return from_spec


for _arch in ARCHITECTURES:
    register_annotator(_arch, task="counting")(_counting_factory(_arch))

