"""Backbone pieces with torchvision's module names, so ImageNet weights load by key.

``vgg_layers`` is the ``make_layers`` of torchvision, CSRNet and DM-Count (same module order, so the same
indices); ``vgg16_front`` is VGG-16's first ten convolutions with the indices of
``torchvision.models.vgg16().features`` (0, 2, 5, ..., 21). ``ResNetTrunk`` holds ResNet-18's
``conv1``, ``bn1``, ``layer1`` ... ``layerN`` under the names torchvision uses
(``layer2.0.downsample.0.weight`` ...). Channel widths divide by ``width_div`` for tiny test models.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

VGG16_FRONT_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
RESNET18_WIDTHS = (64, 128, 256, 512)


def scaled(channels: int, width_div: int) -> int:
    """``channels // width_div``, at least 2 (tiny models keep every layer)."""
    return max(2, channels // int(width_div))


def vgg_layers(cfg: Sequence, in_channels: int = 3, *, dilation: int = 1, batch_norm: bool = False,
               width_div: int = 1) -> nn.Sequential:
    """torchvision's / CSRNet's / DM-Count's ``make_layers``: 3x3 convolutions (``"M"``: a 2x2 max-pool), each
    followed by BatchNorm (``batch_norm``) and ReLU, in that module order, so the indices (and hence the
    state-dict keys) are the authors'. ``dilation`` 2 gives CSRNet's back end."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = scaled(v, width_div)
        layers.append(nn.Conv2d(in_channels, out, kernel_size=3, padding=dilation, dilation=dilation))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out
    return nn.Sequential(*layers)


def vgg16_front(width_div: int = 1) -> nn.Sequential:
    """VGG-16 up to conv4_3 + ReLU (10 convolutions, 3 max-pools: output stride 8), indices as
    ``torchvision.models.vgg16().features`` (0, 2, 5, ..., 21)."""
    return vgg_layers(VGG16_FRONT_CFG, 3, width_div=width_div)


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` (same parameter names)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def resnet_layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(inplanes, planes, stride), *[BasicBlock(planes, planes) for _ in range(blocks - 1)])


class ResNetTrunk(nn.Module):
    """ResNet-18's stem and its first ``num_layers`` stages, with torchvision's names.

    ``num_layers=2`` is "the first 9 layers of ResNet-18" that ResCSRNet uses (conv1 + 8 convolutions
    of layer1-2, output stride 8). ``cifar_stem`` swaps the 7x7/2 convolution and the max-pool for a
    3x3/1 convolution (the usual setting for 32x32 images). :meth:`forward` returns every stage's output.
    """

    def __init__(self, num_layers: int = 4, width_div: int = 1, cifar_stem: bool = False) -> None:
        super().__init__()
        widths = [scaled(w, width_div) for w in RESNET18_WIDTHS[:num_layers]]
        stem = widths[0]
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, stem, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        inplanes = stem
        for i, w in enumerate(widths):
            setattr(self, f"layer{i + 1}", resnet_layer(inplanes, w, 2, stride=1 if i == 0 else 2))
            inplanes = w
        self.num_layers = num_layers
        self.out_channels = widths
        init_resnet(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i + 1}")(x)
            outs.append(x)
        return outs


def init_resnet(module: nn.Module) -> None:
    """torchvision's ResNet initialisation (Kaiming normal, fan-out; BN weight 1, bias 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def init_normal(module: nn.Module, std: float = 0.01) -> None:
    """CSRNet's initialisation of the layers it adds: N(0, 0.01) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
