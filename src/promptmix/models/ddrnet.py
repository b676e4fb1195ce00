"""DDRNet-23-slim (Hong et al., "Deep Dual-resolution Networks for Real-time and Accurate Semantic
Segmentation of Road Scenes", 2021): GuideDepth's encoder, written from the paper and its authors'
public model definition.

Two branches after a shared stem and ``layer1``-``layer2`` (stride 8): a low-resolution branch
(``layer3`` stride 16, ``layer4`` stride 32, ``layer5`` bottleneck stride 64 + DAPPM pyramid pooling)
and a high-resolution branch kept at stride 8 (``layer3_``, ``layer4_``, ``layer5_``), joined by
bilateral fusions (``down3``/``down4``: high -> low, ``compression3``/``compression4``: low -> high).
The segmentation head (``final_layer``) maps the fused stride-8 features to ``out_features``
channels (GuideDepth: 64). Slim widths: 32 base planes, 128 DAPPM planes, 64 head planes.

Parameter names are those of the authors' code, so the DDRNet-23-slim ImageNet checkpoint
(``DDRNet23s_imagenet.pth``, converted to safetensors) loads by key: it provides ``conv1``,
``layer1``-``layer5``, ``layer3_``-``layer5_``, ``compression3/4`` and ``down3/4``; ``spp`` and
``final_layer`` are trained from scratch (its ``down5``, ``last_layer`` and ``linear`` are the
classifier's and are not used). The ImageNet classifier's ``layer5`` has stride 1 and the
segmentation network's stride 2: the shapes are the same, so the weights fit.

One departure: a batch normalisation that sees a single value per channel in training (batch size 1
through DAPPM's globally pooled branch, or tiny inputs) normalises with its running statistics
instead of failing (:class:`BatchNorm2dAnyBatch`), so GuideDepth trains with batch size 1 too, as
PromptMix's variable-size counting runs do; with two or more values it is ``nn.BatchNorm2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import init_resnet, scaled

BN_MOMENTUM = 0.1


class BatchNorm2dAnyBatch(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that uses its running statistics when a training batch has one value per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _bn(c: int) -> nn.BatchNorm2d:
    return BatchNorm2dAnyBatch(c, momentum=BN_MOMENTUM)


class DDRBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 no_relu: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out = out + residual
        return out if self.no_relu else self.relu(out)


class DDRBottleneck(nn.Module):
    expansion = 2

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 no_relu: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + residual
        return out if self.no_relu else self.relu(out)


def _make_layer(block, inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                                   _bn(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    inplanes = planes * block.expansion
    for i in range(1, blocks):
        layers.append(block(inplanes, planes, 1, no_relu=(i == blocks - 1)))
    return nn.Sequential(*layers)


def _bn_relu_conv(cin: int, cout: int, k: int = 1, pool: nn.Module | None = None) -> nn.Sequential:
    layers = [pool] if pool is not None else []
    layers += [_bn(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)]
    return nn.Sequential(*layers)


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module: average pools at 1/2, 1/4, 1/8 and global, fused hierarchically."""

    def __init__(self, inplanes: int, branch_planes: int, outplanes: int) -> None:
        super().__init__()
        self.scale1 = _bn_relu_conv(inplanes, branch_planes, pool=nn.AvgPool2d(5, stride=2, padding=2))
        self.scale2 = _bn_relu_conv(inplanes, branch_planes, pool=nn.AvgPool2d(9, stride=4, padding=4))
        self.scale3 = _bn_relu_conv(inplanes, branch_planes, pool=nn.AvgPool2d(17, stride=8, padding=8))
        self.scale4 = _bn_relu_conv(inplanes, branch_planes, pool=nn.AdaptiveAvgPool2d((1, 1)))
        self.scale0 = _bn_relu_conv(inplanes, branch_planes)
        self.process1 = _bn_relu_conv(branch_planes, branch_planes, 3)
        self.process2 = _bn_relu_conv(branch_planes, branch_planes, 3)
        self.process3 = _bn_relu_conv(branch_planes, branch_planes, 3)
        self.process4 = _bn_relu_conv(branch_planes, branch_planes, 3)
        self.compression = _bn_relu_conv(branch_planes * 5, outplanes)
        self.shortcut = _bn_relu_conv(inplanes, outplanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [self.scale0(x)]
        for scale, process in ((self.scale1, self.process1), (self.scale2, self.process2),
                               (self.scale3, self.process3), (self.scale4, self.process4)):
            up = F.interpolate(scale(x), size=size, mode="bilinear", align_corners=False)
            outs.append(process(up + outs[-1]))
        return self.compression(torch.cat(outs, 1)) + self.shortcut(x)


class SegmentHead(nn.Module):
    def __init__(self, inplanes: int, interplanes: int, outplanes: int) -> None:
        super().__init__()
        self.bn1 = _bn(inplanes)
        self.conv1 = nn.Conv2d(inplanes, interplanes, 3, padding=1, bias=False)
        self.bn2 = _bn(interplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(interplanes, outplanes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.relu(self.bn2(x)))


class DDRNet23Slim(nn.Module):
    """DDRNet-23-slim as a dense feature extractor: (B, 3, H, W) -> (B, out_features, ceil(H/8), ceil(W/8))."""

    def __init__(self, out_features: int = 64, width_div: int = 1, planes: int = 32, spp_planes: int = 128,
                 head_planes: int = 64) -> None:
        super().__init__()
        p = scaled(planes, width_div)
        spp, head = scaled(spp_planes, width_div), scaled(head_planes, width_div)
        high = p * 2
        self.conv1 = nn.Sequential(nn.Conv2d(3, p, 3, stride=2, padding=1), _bn(p), nn.ReLU(inplace=True),
                                   nn.Conv2d(p, p, 3, stride=2, padding=1), _bn(p), nn.ReLU(inplace=True))
        self.relu = nn.ReLU(inplace=False)
        self.layer1 = _make_layer(DDRBasicBlock, p, p, 2)
        self.layer2 = _make_layer(DDRBasicBlock, p, p * 2, 2, stride=2)
        self.layer3 = _make_layer(DDRBasicBlock, p * 2, p * 4, 2, stride=2)
        self.layer4 = _make_layer(DDRBasicBlock, p * 4, p * 8, 2, stride=2)
        self.compression3 = nn.Sequential(nn.Conv2d(p * 4, high, 1, bias=False), _bn(high))
        self.compression4 = nn.Sequential(nn.Conv2d(p * 8, high, 1, bias=False), _bn(high))
        self.down3 = nn.Sequential(nn.Conv2d(high, p * 4, 3, stride=2, padding=1, bias=False), _bn(p * 4))
        self.down4 = nn.Sequential(nn.Conv2d(high, p * 4, 3, stride=2, padding=1, bias=False), _bn(p * 4),
                                   nn.ReLU(inplace=True),
                                   nn.Conv2d(p * 4, p * 8, 3, stride=2, padding=1, bias=False), _bn(p * 8))
        self.layer3_ = _make_layer(DDRBasicBlock, p * 2, high, 2)
        self.layer4_ = _make_layer(DDRBasicBlock, high, high, 2)
        self.layer5_ = _make_layer(DDRBottleneck, high, high, 1)
        self.layer5 = _make_layer(DDRBottleneck, p * 8, p * 8, 1, stride=2)
        self.spp = DAPPM(p * 16, spp, p * 4)
        self.final_layer = SegmentHead(p * 4, head, out_features)
        init_resnet(self)  # torchvision's initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x1 = self.layer1(x)
        x2 = self.layer2(self.relu(x1))
        size = x2.shape[-2:]  # stride 8: the high-resolution branch
        x3 = self.layer3(self.relu(x2))
        hi = self.layer3_(self.relu(x2))
        lo = x3 + self.down3(self.relu(hi))
        hi = hi + F.interpolate(self.compression3(self.relu(x3)), size=size, mode="bilinear", align_corners=False)
        x4 = self.layer4(self.relu(lo))
        hi = self.layer4_(self.relu(hi))
        lo = x4 + self.down4(self.relu(hi))
        hi = hi + F.interpolate(self.compression4(self.relu(x4)), size=size, mode="bilinear", align_corners=False)
        hi = self.layer5_(self.relu(hi))
        lo = F.interpolate(self.spp(self.layer5(self.relu(lo))), size=size, mode="bilinear", align_corners=False)
        return self.final_layer(lo + hi)
