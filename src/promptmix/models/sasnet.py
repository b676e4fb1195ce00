"""SASNet (Song et al., AAAI 2021) with TencentYoutuResearch/CrowdCounting-SASNet's module tree and forward pass.

Parameter and buffer names are the authors' (``model.py``), written out without torchvision:

- ``features{1..5}.N.*``: torchvision's VGG-16-BN ``features`` split at 6 / 13 / 23 / 33 / 43 (convolution
  at index ``i``, BatchNorm (eps 1e-5) at ``i + 1``, ReLU at ``i + 2``; the last max-pool is not used);
- ``de_pred{5..1}.{0,1}.conv.*``: the decoder, two 3x3 convolutions each, with ReLU;
- ``density_head{5..1}``: ``0`` the multi-branch module (``branch{1x1,1x1_1,3x3_1,3x3_2,3x3dbl_1,3x3dbl_2}``,
  bias-free convolutions + BatchNorm eps 1e-3 + ReLU; its output concatenates the three branches and the
  input) and ``1.conv.*``, a 1x1 convolution to one channel **followed by ReLU** (the authors' ``Conv2d``
  wrapper defaults to ``NL='relu'`` and the density heads do not override it);
- ``confidence_head{5..1}.{0,1}.conv.*``: 1x1 convolutions, ReLU after the first, none after the second.

The authors' ``Conv2d`` wrapper has ``bn = nn.Identity()`` (``bn=False`` everywhere), so it has no BatchNorm
keys. Forward: each decoder level is upsampled bilinearly with ``align_corners=True``
(``F.upsample_bilinear``) and concatenated with the encoder's; the five density maps and the five
confidence maps (the decoder features average-pooled to ``(H // block_size, W // block_size)`` patches,
``block_size`` 32) are upsampled (nearest) to the first level's size (the input's); confidence is sigmoid
then softmax over the levels; the density is the confidence-weighted sum. The authors scale their targets by
``log_para = 1000`` (``main.py``: ``pred_cnt = pred_map.sum() / log_para``), so people per pixel is the
output / 1000 (``density_scale`` 1e-3 in the counting-model folder format). Output stride 1.

One departure: for an input smaller than one block the authors' pooling asks for a 0 x 0 grid (an error);
here the grid is at least 1 x 1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import scaled, vgg_layers

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
LOG_PARA = 1000.0  # main.py --log_para: the network predicts 1000 x people per pixel
BLOCK_SIZE = 32  # main.py --block_size


class SASConv2d(nn.Module):
    """The authors' ``Conv2d`` wrapper (``same_padding=True``, ``bn=False``): ``conv``, identity ``bn``, optional ReLU."""

    def __init__(self, cin: int, cout: int, k: int, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, padding=(k - 1) // 2)
        self.bn = nn.Identity()
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class MultiBranchModule(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        h = max(1, c // 2)
        self.branch1x1 = BasicConv2d(c, h, kernel_size=1)
        self.branch1x1_1 = BasicConv2d(h, c, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(c, h, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(h, c, kernel_size=(3, 3), padding=(1, 1))
        self.branch3x3dbl_1 = BasicConv2d(c, h, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(h, c, kernel_size=5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1_1(self.branch1x1(x))
        b = self.branch3x3_2(self.branch3x3_1(x))
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([a, b, c, x], 1)


_LEVELS = (5, 4, 3, 2, 1)
_CHANNELS = {5: 512, 4: 256, 3: 128, 2: 64, 1: 64}  # decoder output channels per level
_CONFIDENCE_HIDDEN = {5: 256, 4: 128, 3: 64, 2: 32, 1: 32}


class SASNet(nn.Module):
    task = "counting"
    output_stride = 1

    def __init__(self, width_div: int = 1, block_size: int = BLOCK_SIZE) -> None:
        super().__init__()
        c = lambda n: scaled(n, width_div)  # noqa: E731
        feats = list(vgg_layers(VGG16, 3, batch_norm=True, width_div=width_div).children())
        self.features1 = nn.Sequential(*feats[0:6])
        self.features2 = nn.Sequential(*feats[6:13])
        self.features3 = nn.Sequential(*feats[13:23])
        self.features4 = nn.Sequential(*feats[23:33])
        self.features5 = nn.Sequential(*feats[33:43])
        self.de_pred5 = nn.Sequential(SASConv2d(c(512), c(1024), 3), SASConv2d(c(1024), c(512), 3))
        self.de_pred4 = nn.Sequential(SASConv2d(c(512) * 2, c(512), 3), SASConv2d(c(512), c(256), 3))
        self.de_pred3 = nn.Sequential(SASConv2d(c(256) * 2, c(256), 3), SASConv2d(c(256), c(128), 3))
        self.de_pred2 = nn.Sequential(SASConv2d(c(128) * 2, c(128), 3), SASConv2d(c(128), c(64), 3))
        self.de_pred1 = nn.Sequential(SASConv2d(c(64) * 2, c(64), 3), SASConv2d(c(64), c(64), 3))
        for k in _LEVELS:
            ch = c(_CHANNELS[k])
            setattr(self, f"density_head{k}", nn.Sequential(MultiBranchModule(ch), SASConv2d(4 * ch, 1, 1)))
        for k in _LEVELS:
            ch, hid = c(_CHANNELS[k]), c(_CONFIDENCE_HIDDEN[k])
            setattr(self, f"confidence_head{k}", nn.Sequential(SASConv2d(ch, hid, 1), SASConv2d(hid, 1, 1, relu=False)))
        self.block_size = int(block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape
        x1 = self.features1(x)
        x2 = self.features2(x1)
        x3 = self.features3(x2)
        x4 = self.features4(x3)
        x5 = self.features5(x4)
        up = lambda t, ref: F.interpolate(t, size=ref.shape[2:], mode="bilinear", align_corners=True)  # noqa: E731
        outs = {5: self.de_pred5(x5)}
        for k, skip in ((4, x4), (3, x3), (2, x2), (1, x1)):
            outs[k] = getattr(self, f"de_pred{k}")(torch.cat([skip, up(outs[k + 1], skip)], 1))
        grid = (max(1, size[-2] // self.block_size), max(1, size[-1] // self.block_size))
        target = x1.shape[2:]
        densities, confidences = [], []
        for k in _LEVELS:
            d = getattr(self, f"density_head{k}")(outs[k])
            conf = getattr(self, f"confidence_head{k}")(F.adaptive_avg_pool2d(outs[k], output_size=grid))
            densities.append(F.interpolate(d, size=target, mode="nearest"))
            confidences.append(F.interpolate(conf, size=target, mode="nearest"))
        confidence = torch.softmax(torch.sigmoid(torch.cat(confidences, 1)), 1)
        return (torch.cat(densities, 1) * confidence).sum(1, keepdim=True)

    @staticmethod
    def output_size(height: int, width: int) -> tuple[int, int]:
        return height, width
