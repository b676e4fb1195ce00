"""BatchNorm in training: normalise by the batch ("train") or by the running statistics ("frozen").

PyTorch's BatchNorm in training mode normalises each batch by its own statistics and updates the
running averages used at evaluation. At batch size 1 (the paper's setting for ShanghaiTech A and
UCF-QNRF, whose images differ in size) each image is normalised alone: the network optimised is not the
one evaluated, and a density regressor's predictions collapse towards a constant.

``frozen`` is what detection codebases do for small batches (mmcv's ``norm_eval=True`` with trainable
affine parameters, the default of mmdetection's ResNet backbones): BatchNorm layers stay in evaluation
mode while the rest of the network trains, so they normalise with their running statistics (the ImageNet
ones of a pretrained backbone, or the initial ones) and never update them; their scale and shift
(``weight``, ``bias``) are still trained. Unlike detectron2's ``FrozenBatchNorm2d`` nothing is replaced, so
checkpoints keep their keys and ``train`` / ``frozen`` runs load each other's weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - the mode names are read by configs, which stay light
    from torch import nn

BN_MODES = ("auto", "train", "frozen")


def batchnorm_layers(module: "nn.Module") -> list:
    from torch.nn.modules.batchnorm import _BatchNorm

    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def has_batchnorm(module: "nn.Module") -> bool:
    return bool(batchnorm_layers(module))


def resolve_bn_mode(mode: str, batch_size: int) -> str:
    """``auto`` -> ``frozen`` when each process's batch holds one image, else ``train``."""
    if mode not in BN_MODES:
        raise ValueError(f"bn: expected one of {', '.join(BN_MODES)}; got {mode!r}")
    if mode == "auto":
        return "frozen" if int(batch_size) == 1 else "train"
    return mode


def apply_bn_mode(module: "nn.Module", mode: str) -> None:
    """Call after ``module.train()``: with ``frozen`` every BatchNorm layer goes back to evaluation mode."""
    if mode == "frozen":
        for m in batchnorm_layers(module):
            m.eval()
    elif mode != "train":
        raise ValueError(f"bn: expected 'train' or 'frozen' (auto resolved); got {mode!r}")
