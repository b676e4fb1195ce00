"""Image classifiers: ResNet-18 (torchvision layout) and Wide ResNet-28-k (Zagoruyko & Komodakis, 2016).

ResNet-18 keeps torchvision's parameter names, so ImageNet weights load directly (``fc`` is left
out when the class count differs); ``cifar_stem`` replaces the 7x7/2 stem and the max-pool by a
3x3/1 convolution for 32x32 images. WRN-28-k (k = 2 or 10) is the CIFAR network: 3 groups of 4
pre-activation blocks of width 16k, 32k, 64k; random initialisation only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ResNetTrunk, init_resnet, scaled


class ResNet18(nn.Module):
    task = "classification"
    output_stride = None
    backbone_kind = "resnet18"
    backbone_prefix = ""

    def __init__(self, num_classes: int, width_div: int = 1, cifar_stem: bool = False) -> None:
        super().__init__()
        trunk = ResNetTrunk(num_layers=4, width_div=width_div, cifar_stem=cifar_stem)
        # torchvision's top-level names: conv1, bn1, layer1..layer4, fc
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(trunk.out_channels[-1], num_classes)
        self.cifar_stem = cifar_stem

    def pretrained_skip(self) -> set[str]:
        """Keys an ImageNet checkpoint does not provide for this model (the head; the 3x3 stem)."""
        skip = {"fc.weight", "fc.bias"}
        if self.cifar_stem:
            skip.add("conv1.weight")
        return skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class WideBasic(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3 plus a 1x1 shortcut when needed."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.dropout = float(dropout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = F.relu(self.bn2(o))
        if self.dropout > 0:
            o = F.dropout(o, p=self.dropout, training=self.training)
        return self.conv2(o) + shortcut


class WideResNet(nn.Module):
    task = "classification"
    output_stride = None
    backbone_kind = None
    backbone_prefix = ""

    def __init__(self, depth: int, widen_factor: int, num_classes: int, width_div: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth: expected 6n + 4; got {depth}")
        n = (depth - 4) // 6
        widths = [scaled(16, width_div)] + [scaled(c * widen_factor, width_div) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        blocks = []
        cin = widths[0]
        for g, (cout, stride) in enumerate(zip(widths[1:], (1, 2, 2))):
            layers = [WideBasic(cin if i == 0 else cout, cout, stride if i == 0 else 1, dropout) for i in range(n)]
            blocks.append(nn.Sequential(*layers))
            cin = cout
        self.block1, self.block2, self.block3 = blocks
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        init_resnet(self)  # torchvision's initialisation, and zero linear biases
        nn.init.constant_(self.fc.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
