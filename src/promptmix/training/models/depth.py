"""A GuideDepth-style lightweight depth network (Rudolph et al., "Lightweight Monocular Depth
Estimation through Guided Decoding", ICRA 2022).

GuideDepth decodes stride-8 encoder features with three Guided Upsampling Blocks (GUB): each
block doubles the resolution and mixes the features with the input image resized to that
resolution (the guide), with squeeze-and-excitation channel attention; decoder widths 64, 32, 16.
The blocks here follow that design. The encoder differs: GuideDepth uses DDRNet-23-slim; here
it is ResNet-18's stem, ``layer1``-``layer3`` (torchvision names, so ImageNet weights load), with
``layer3`` (stride 16) upsampled and added to ``layer2`` (stride 8) to give the 64-channel stride-8
features. The output is ``max_depth * sigmoid(.)``, in metres, at the input resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ResNetTrunk, init_resnet, scaled

DECODER_FEATURES = (64, 32, 16)


class SELayer(nn.Module):
    """Squeeze-and-excitation channel attention (GuideDepth's ``SELayer``)."""

    def __init__(self, channels: int, reduction: int = 1) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        w = self.fc(x.mean(dim=(2, 3))).view(b, c, 1, 1)
        return x * w


def _conv_bn_relu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class GuidedUpsamplingBlock(nn.Module):
    """GuideDepth's GUB with full guidance: features and guide image -> refined, reduced features."""

    def __init__(self, in_features: int, expand_features: int, out_features: int, guide_features: int = 3) -> None:
        super().__init__()
        half = max(1, expand_features // 2)
        self.feature_conv = nn.Sequential(*_conv_bn_relu(in_features, expand_features, 3),
                                          *_conv_bn_relu(expand_features, half, 1))
        self.guide_conv = nn.Sequential(*_conv_bn_relu(guide_features, expand_features, 3),
                                        *_conv_bn_relu(expand_features, half, 1))
        self.se = SELayer(2 * half, reduction=1)
        self.comb_conv = nn.Sequential(*_conv_bn_relu(2 * half, expand_features, 3),
                                       *_conv_bn_relu(expand_features, in_features, 1))
        self.reduce = nn.Conv2d(in_features, out_features, kernel_size=1)

    def forward(self, guide: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        xy = torch.cat([self.feature_conv(features), self.guide_conv(guide)], dim=1)
        return self.reduce(self.comb_conv(self.se(xy)) + features)


class GuideDepth(nn.Module):
    task = "depth"
    output_stride = 1
    backbone_kind = "resnet18"
    backbone_prefix = "encoder."

    def __init__(self, width_div: int = 1, max_depth: float = 10.0) -> None:
        super().__init__()
        self.max_depth = float(max_depth)
        self.encoder = ResNetTrunk(num_layers=3, width_div=width_div)
        c2, c3 = self.encoder.out_channels[1], self.encoder.out_channels[2]
        f = [scaled(c, width_div) for c in DECODER_FEATURES]
        self.lateral2 = nn.Conv2d(c2, f[0], kernel_size=1, bias=False)
        self.lateral3 = nn.Conv2d(c3, f[0], kernel_size=1, bias=False)
        self.fuse = nn.Sequential(nn.BatchNorm2d(f[0]), nn.ReLU(inplace=True))
        self.up_1 = GuidedUpsamplingBlock(f[0], f[0], f[1])
        self.up_2 = GuidedUpsamplingBlock(f[1], f[1], f[2])
        self.up_3 = GuidedUpsamplingBlock(f[2], f[2], 1)
        for m in (self.lateral2, self.lateral3, self.fuse, self.up_1, self.up_2, self.up_3):
            init_resnet(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        _, l2, l3 = self.encoder(x)
        y = self.lateral2(l2) + F.interpolate(self.lateral3(l3), size=l2.shape[-2:], mode="bilinear",
                                              align_corners=False)
        y = self.fuse(y)
        for block, div in ((self.up_1, 4), (self.up_2, 2), (self.up_3, 1)):
            size = (math.ceil(h / div), math.ceil(w / div))
            guide = x if div == 1 else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            y = block(guide, y)
        return self.max_depth * torch.sigmoid(y)
