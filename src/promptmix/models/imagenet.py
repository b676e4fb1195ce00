"""ImageNet classifiers the MVC paper fine-tunes: ResNet-50, Wide ResNet-50-2 and EfficientNet-B0.

Written from the papers (He et al. 2016; Zagoruyko & Komodakis 2016; Tan & Le 2019) with
torchvision's module names and shapes, so torchvision's ImageNet state dicts (and timm's
``*.tv_in1k`` copies) saved as safetensors load by key (``pretrained``; the classifier head is left
new when the class count differs):

* ResNet-50 / Wide ResNet-50-2: ``conv1``, ``bn1``, ``layer1``-``layer4`` of bottlenecks
  ``conv1`` (1x1) ``conv2`` (3x3, the stride: "ResNet v1.5") ``conv3`` (1x1, 4x expansion) with
  ``bn1``-``bn3`` and ``downsample.0/1``, ``fc``. Wide ResNet-50-2 doubles the bottleneck width
  (``width_per_group`` 128). 25,557,032 and 68,883,240 parameters with 1,000 classes.
* EfficientNet-B0: ``features.0`` (3x3/2 stem, BN, SiLU), ``features.1``-``features.7`` (16 MBConv
  blocks: ``block.0`` 1x1 expansion (when the ratio is not 1), depthwise conv, squeeze-and-excitation
  ``fc1``/``fc2`` with ``input_channels // 4`` channels, 1x1 projection; stochastic depth rising
  linearly to 0.2), ``features.8`` (1x1 to 1280), ``classifier.1`` (after dropout 0.2).
  5,288,548 parameters with 1,000 classes.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbones import init_resnet, scaled


# -- ResNet-50 / Wide ResNet-50-2 -------------------------------------------------------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, width: int | None = None) -> None:
        super().__init__()
        width = width or planes
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNetBottleneck(nn.Module):
    """ResNet-50 (``width_per_group=64``) or Wide ResNet-50-2 (``128``), torchvision's names."""

    task = "classification"
    output_stride = None
    backbone_prefix = ""

    def __init__(self, num_classes: int, width_div: int = 1, width_per_group: int = 64,
                 layers: Sequence[int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.backbone_kind = "resnet50" if width_per_group == 64 else "wide_resnet50_2"
        stem = scaled(64, width_div)
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            p = scaled(planes, width_div)
            width = scaled(int(planes * (width_per_group / 64.0)), width_div)
            stride = 1 if i == 0 else 2
            stage = [Bottleneck(inplanes, p, stride, width)]
            inplanes = p * Bottleneck.expansion
            stage += [Bottleneck(inplanes, p, 1, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_resnet(self)  # torchvision's initialisation

    def pretrained_skip(self) -> set[str]:
        return {"fc.weight", "fc.bias"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# -- EfficientNet-B0 -------------------------------------------------------------------------------------
# (expand ratio, kernel, stride, input channels, output channels, layers): the paper's Table 1
EFFICIENTNET_B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                   (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


def _conv_norm_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation``: conv (no bias), BN, SiLU (indices 0, 1, 2)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


def stochastic_depth(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop the whole residual branch of each sample with probability ``p`` (row mode), scaled by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class MBConv(nn.Module):
    def __init__(self, expand: int, k: int, stride: int, cin: int, cout: int, drop: float) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if mid != cin:
            layers.append(_conv_norm_act(cin, mid, 1))
        layers.append(_conv_norm_act(mid, mid, k, stride=stride, groups=mid))
        layers.append(SqueezeExcitation(mid, max(1, cin // 4)))
        layers.append(_conv_norm_act(mid, cout, 1, act=False))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout
        self.drop = float(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        if self.use_residual:
            y = stochastic_depth(y, self.drop, self.training) + x
        return y


class EfficientNetB0(nn.Module):
    task = "classification"
    output_stride = None
    backbone_kind = "efficientnet_b0"
    backbone_prefix = ""

    def __init__(self, num_classes: int, width_div: int = 1, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2) -> None:
        super().__init__()
        total = sum(cfg[5] for cfg in EFFICIENTNET_B0)
        stem = scaled(EFFICIENTNET_B0[0][3], width_div)
        features: list[nn.Module] = [_conv_norm_act(3, stem, 3, stride=2)]
        block_id = 0
        for expand, k, stride, cin, cout, n in EFFICIENTNET_B0:
            cin, cout = scaled(cin, width_div), scaled(cout, width_div)
            stage = []
            for i in range(n):
                stage.append(MBConv(expand, k, stride if i == 0 else 1, cin if i == 0 else cout, cout,
                                    stochastic_depth_prob * block_id / total))
                block_id += 1
            features.append(nn.Sequential(*stage))
        last_in, last = scaled(EFFICIENTNET_B0[-1][4], width_div), scaled(1280, width_div)
        features.append(_conv_norm_act(last_in, last, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                r = 1.0 / float(m.out_features) ** 0.5
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def pretrained_skip(self) -> set[str]:
        return {"classifier.1.weight", "classifier.1.bias"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
