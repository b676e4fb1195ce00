"""Parameters and multiply-accumulates (MACs) of a model at an input size (PromptMix Table III).

:func:`count_macs` runs one forward pass on the ``meta`` device (shapes only, no memory, no
compute) with forward hooks on convolutions and linear layers:

* ``Conv2d``: ``output elements x (in_channels / groups) x kernel_h x kernel_w``
* ``ConvTranspose2d``: ``input elements x (out_channels / groups) x kernel_h x kernel_w``
* ``Linear``: ``output elements x in_features``

Biases, normalisation, activations, pooling and interpolation are not counted (they add well under
1 % for these networks; profilers such as ptflops count them, hence Table III's slightly larger
figures: 26.54 vs 26.41 GMACs for ResCSRNet at 1024x768).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..errors import InputError


@dataclasses.dataclass
class ModelInfo:
    name: str
    height: int
    width: int
    params: int
    macs: int
    layers: int  # number of conv/linear calls counted

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "gmacs": self.gmacs, "mparams": self.mparams}


def _conv_macs(module: nn.Conv2d, inputs, output) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def _deconv_macs(module: nn.ConvTranspose2d, inputs, output) -> int:
    kh, kw = module.kernel_size
    return inputs[0].numel() * (module.out_channels // module.groups) * kh * kw


def _linear_macs(module: nn.Linear, inputs, output) -> int:
    return output.numel() * module.in_features


_COUNTERS = ((nn.Conv2d, _conv_macs), (nn.ConvTranspose2d, _deconv_macs), (nn.Linear, _linear_macs))


def count_macs(model: nn.Module, height: int, width: int, *, channels: int = 3) -> tuple[int, int]:
    """(MACs, counted layer calls) of one forward pass of a single ``channels x height x width`` image.

    The model is moved to the ``meta`` device for the pass and returned there; build a fresh one
    (or use :func:`model_info`) if you need its weights afterwards.
    """
    if height <= 0 or width <= 0:
        raise InputError(f"input size: expected positive height and width; got {height}x{width}")
    total = [0, 0]

    def hook(fn):
        def _h(module, inputs, output):
            total[0] += int(fn(module, inputs, output))
            total[1] += 1
        return _h

    handles = []
    for m in model.modules():
        for kind, fn in _COUNTERS:
            if type(m) is kind:
                handles.append(m.register_forward_hook(hook(fn)))
    model.to("meta").eval()
    try:
        with torch.no_grad():
            model(torch.empty(1, channels, height, width, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total[0], total[1]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parse_size(text: str) -> tuple[int, int]:
    """``"768x1024"`` (height x width) -> (768, 1024); a single number is a square."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"size: expected HxW such as 768x1024; got {text!r}") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) <= 0:
        raise InputError(f"size: expected HxW with two positive integers, such as 768x1024; got {text!r}")
    return nums[0], nums[1]


def model_info(name: str, height: int, width: int, **kwargs: Any) -> ModelInfo:
    """Parameters and MACs of registry model ``name`` (built on the meta device) at ``height x width``."""
    from . import create_model, model_task

    if model_task(name) == "classification":
        kwargs.setdefault("num_classes", 1000)
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    params = count_params(model)
    macs, layers = count_macs(model, height, width)
    return ModelInfo(name=name, height=height, width=width, params=params, macs=macs, layers=layers)
