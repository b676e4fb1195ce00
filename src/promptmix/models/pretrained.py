"""ImageNet backbones from safetensors in torchvision's key layout (no torchvision needed).

A VGG-16 checkpoint names its convolutions ``features.{i}.weight`` / ``.bias`` (i = 0, 2, 5, ...);
a ResNet-18/50 (or Wide ResNet-50-2) checkpoint ``conv1.weight``, ``bn1.*``, ``layer{1-4}.{j}.conv{1,2[,3]}.weight``,
``layer{k}.0.downsample.{0,1}.*`` and ``fc.*``; an EfficientNet-B0 checkpoint ``features.*`` and
``classifier.1.*``. torchvision's state dicts saved with ``safetensors.torch.save_file``, and timm's
``*.tv_in1k`` checkpoints, have these keys. DDRNet-23-slim (GuideDepth's encoder) uses its authors'
names (``conv1.*``, ``layer1``-``layer5``, ``layer3_``-``layer5_``, ``compression3/4``, ``down3/4``).
Keys the backbone does not use (classifier heads) are ignored; a missing or mis-shaped backbone
key is an error naming the file and the key.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ModelLoadError
from .backbone_ids import DEFAULT_PRETRAINED

logger = logging.getLogger(__name__)

#: how to make a safetensors file for the backbones that have no default Hub copy in the expected key layout
CONVERT_HINT = {
    "efficientnet_b0": "save torchvision's efficientnet_b0(weights='IMAGENET1K_V1').state_dict() with "
                       "safetensors.torch.save_file and pass the file",
    "ddrnet23_slim": "convert the DDRNet-23-slim ImageNet checkpoint (DDRNet23s_imagenet.pth from the DDRNet "
                     "authors): save_file(torch.load(path, weights_only=True), 'ddrnet23s_imagenet.safetensors') "
                     "and pass the file",
}
_STRIP_PREFIXES = ("module.", "model.")
_RESNET_KEY = re.compile(r"^(conv1|bn1|layer[1-4])\.")
_VGG_KEY = re.compile(r"^features\.(\d+)\.(weight|bias)$")
#: the keys each backbone kind takes from a checkpoint (vgg16 is mapped by index, see map_backbone_keys)
_BACKBONE_KEY = {
    "resnet18": _RESNET_KEY, "resnet50": _RESNET_KEY, "wide_resnet50_2": _RESNET_KEY,
    "efficientnet_b0": re.compile(r"^features\."),
    "ddrnet23_slim": re.compile(r"^(conv1|layer[1-5]_?|compression[34]|down[34])\."),
}
_EXAMPLE_KEY = {"vgg16": "features.0.weight", "efficientnet_b0": "features.1.0.block.0.0.weight",
                "ddrnet23_slim": "layer3_.0.conv1.weight"}


def safetensors_file(path: str | Path) -> Path:
    """The safetensors file at ``path``: the file itself, or the single ``*.safetensors`` (or
    ``model.safetensors``) in a folder."""
    p = Path(path)
    if p.is_file():
        if p.suffix != ".safetensors":
            raise ModelLoadError(f"{p}: expected a .safetensors file (pickled .pth/.bin weights are not loaded)")
        return p
    files = sorted(p.glob("*.safetensors"))
    if (p / "model.safetensors").exists():
        return p / "model.safetensors"
    if len(files) == 1:
        return files[0]
    if not files:
        raise ModelLoadError(f"{p}: expected a .safetensors file in the folder; found none")
    raise ModelLoadError(f"{p}: expected one .safetensors file; found {len(files)}: {[f.name for f in files]}")


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        for pre in _STRIP_PREFIXES:
            if k.startswith(pre):
                k = k[len(pre):]
        out[k] = v
    return out


def map_backbone_keys(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate a torchvision-layout state dict to ``model``'s backbone keys (others dropped)."""
    prefix = model.backbone_prefix
    own = model.state_dict()
    skip = model.pretrained_skip() if hasattr(model, "pretrained_skip") else set()
    out = {}
    for key, value in _strip(state).items():
        if model.backbone_kind == "vgg16":
            m = _VGG_KEY.match(key)
            target = f"{prefix}{m.group(1)}.{m.group(2)}" if m else None
        else:
            target = f"{prefix}{key}" if _BACKBONE_KEY[model.backbone_kind].match(key) else None
        if target is not None and target in own and target not in skip:
            out[target] = value
    return out


def backbone_keys(model: nn.Module) -> list[str]:
    """The keys of ``model`` an ImageNet checkpoint must provide."""
    skip = model.pretrained_skip() if hasattr(model, "pretrained_skip") else set()
    prefix = model.backbone_prefix
    keys = []
    for key in model.state_dict():
        if key in skip or key.endswith("num_batches_tracked"):  # old torchvision files lack these
            continue
        if prefix and not key.startswith(prefix):
            continue
        if not prefix and not _BACKBONE_KEY[model.backbone_kind].match(key):
            continue
        keys.append(key)
    return keys


def load_pretrained_backbone(model: nn.Module, source: str, revision: str | None = None) -> dict:
    """Load ImageNet weights into ``model``'s backbone; returns a record (name, revision, commit, file)."""
    from safetensors.torch import load_file

    from ..utils.model_source import resolve_model

    if source == "imagenet" and model.backbone_kind not in DEFAULT_PRETRAINED:
        raise ModelLoadError(f"pretrained: there is no default ImageNet checkpoint of {model.backbone_kind} in the "
                             f"expected key layout; {CONVERT_HINT[model.backbone_kind]}")
    name = DEFAULT_PRETRAINED[model.backbone_kind] if source == "imagenet" else source
    src = resolve_model(name, revision, what=f"pretrained {model.backbone_kind} backbone")
    file = safetensors_file(src.path)
    from .checkpoints import ensure_weights_file

    ensure_weights_file(file)  # a Git LFS pointer or an HTML page is named as such
    try:
        state = load_file(str(file))
    except Exception as exc:  # corrupt header, truncated file
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None
    mapped = map_backbone_keys(model, state)
    expected = backbone_keys(model)
    missing = [k for k in expected if k not in mapped]
    if missing:
        example = _EXAMPLE_KEY.get(model.backbone_kind, "layer1.0.conv1.weight")
        raise CheckpointError(
            f"{file}: {len(missing)} of {len(expected)} {model.backbone_kind} backbone weights are missing "
            f"(first: {missing[0]!r}); expected torchvision's key layout, e.g. {example!r}")
    own = model.state_dict()
    for k, v in mapped.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{file}: weight for {k!r} has shape {tuple(v.shape)}, the model expects "
                                  f"{tuple(own[k].shape)}; is it a {model.backbone_kind} checkpoint?")
    model.load_state_dict(mapped, strict=False)
    logger.info("loaded %d backbone tensors from %s", len(mapped), file)
    record = src.record()
    record["file"] = file.name
    return record
