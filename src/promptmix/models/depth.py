"""Depth students: GuideDepth (Rudolph et al., "Lightweight Monocular Depth Estimation through Guided
Decoding", ICRA 2022) and a ResNet-18 variant of it.

``guidedepth`` (:class:`GuideDepth`) is the paper's network, written from the paper and its authors'
public code (mic-rud/GuidedDecoding): a DDRNet-23-slim encoder (:mod:`promptmix.models.ddrnet`)
gives 64 channels at stride 8; three Guided Upsampling Blocks (GUB) each double the resolution and
mix the features with the input image resized to that resolution (the guide), with squeeze-and-
excitation channel attention; decoder widths 64 -> 32 -> 16 -> 1. As in the authors' code the network
predicts *normalised inverse depth* ``max_depth / depth`` (in [1, 100] for depths in
[max_depth / 100, max_depth]): in training mode ``forward`` returns that raw output and
:meth:`GuideDepth.loss_sum` applies the authors' loss (Alhashim et al.'s DenseDepth loss, their
default: ``0.1 * L1 + (1 - SSIM) / 2 + gradient L1`` on the normalised inverse depth); in evaluation
mode ``forward`` returns depth in metres, ``clamp(max_depth / output, max_depth / 100, max_depth)``.
ImageNet weights: the DDRNet-23-slim ImageNet checkpoint's keys (``conv1.0.weight``,
``layer1.0.conv1.weight``, ..., ``layer5_.0.conv3.weight``) load under ``feature_extractor.``.

``guidedepth-resnet18`` (:class:`GuideDepthResNet18`) is the network this project used before:
the same GUB decoder on ResNet-18's stem and ``layer1``-``layer3`` (torchvision names, ImageNet
weights from a torchvision-layout file), ``layer3`` (stride 16) upsampled and added to ``layer2``
(stride 8) for the 64-channel stride-8 features, output ``max_depth * sigmoid(.)`` in metres in both
modes, trained with the task's masked L1 loss (:mod:`promptmix.tasks`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ResNetTrunk, init_resnet, scaled
from .ddrnet import DDRNet23Slim

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


class GuideDepthResNet18(nn.Module):
    """``guidedepth-resnet18``: GuideDepth's decoder on a ResNet-18 encoder (see the module docstring)."""

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


def _upsample_guided(x: torch.Tensor, y: torch.Tensor, blocks) -> torch.Tensor:
    """Three GUBs: ``y`` (stride 8) doubled (bilinear) to 1/4, 1/2 and full resolution, guided by ``x`` resized
    alike (nearest, as the authors' ``F.interpolate(x, scale_factor=.5)``)."""
    h, w = x.shape[-2:]
    for block, div in zip(blocks, (4, 2, 1)):
        size = (math.ceil(h / div), math.ceil(w / div))
        guide = x if div == 1 else F.interpolate(x, size=size, mode="nearest")
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        y = block(guide, y)
    return y


class GuideDepth(nn.Module):
    """``guidedepth``: the paper's network (DDRNet-23-slim + three GUBs); see the module docstring."""

    task = "depth"
    output_stride = 1
    backbone_kind = "ddrnet23_slim"
    backbone_prefix = "feature_extractor."

    def __init__(self, width_div: int = 1, max_depth: float = 10.0) -> None:
        super().__init__()
        self.max_depth = float(max_depth)
        f = [scaled(c, width_div) for c in DECODER_FEATURES]
        self.feature_extractor = DDRNet23Slim(out_features=f[0], width_div=width_div)
        self.up_1 = GuidedUpsamplingBlock(f[0], f[0], f[1])
        self.up_2 = GuidedUpsamplingBlock(f[1], f[1], f[2])
        self.up_3 = GuidedUpsamplingBlock(f[2], f[2], 1)

    def pretrained_skip(self) -> set[str]:
        """Keys the ImageNet checkpoint does not provide: DAPPM and the segmentation head (trained from scratch)."""
        return {k for k in self.state_dict() if k.startswith(("feature_extractor.spp.", "feature_extractor.final_layer."))}

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output: normalised inverse depth ``max_depth / depth``."""
        return _upsample_guided(x, self.feature_extractor(x), (self.up_1, self.up_2, self.up_3))

    def to_depth(self, raw: torch.Tensor) -> torch.Tensor:
        """Metres from the raw output (the authors' ``inverse_depth_norm``)."""
        return torch.clamp(self.max_depth / raw, self.max_depth / 100.0, self.max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.raw(x)
        return raw if self.training else self.to_depth(raw)

    def depth_norm(self, depth: torch.Tensor) -> torch.Tensor:
        """The training target: ``max_depth / clamp(depth, max_depth / 100, max_depth)``; 0 (invalid) stays 0."""
        norm = self.max_depth / torch.clamp(depth, self.max_depth / 100.0, self.max_depth)
        return torch.where(depth > 0, norm, torch.zeros_like(norm))

    def loss_sum(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sum over the samples of GuideDepth's loss: ``0.1 * L1 + clamp((1 - SSIM) / 2, 0, 1) + gradient loss``
        between the raw output and the normalised target (``target`` in metres, as the data path gives it)."""
        outputs = outputs.float()
        if outputs.shape[-2:] != target.shape[-2:]:
            outputs = F.interpolate(outputs, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return depth_loss(outputs, self.depth_norm(target.float()), value_range=self.max_depth).sum()


def _gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    g = torch.tensor([math.exp(-((i - size // 2) ** 2) / (2.0 * sigma ** 2)) for i in range(size)])
    g = g / g.sum()
    return (g[:, None] @ g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor, value_range: float, window_size: int = 11) -> torch.Tensor:
    """Per-sample mean SSIM of (B, 1, H, W) maps (11 x 11 Gaussian window, sigma 1.5; DenseDepth's / GuideDepth's)."""
    real = min(window_size, a.shape[-2], a.shape[-1])
    window = _gaussian_window(real).to(a.device, a.dtype)
    pad = window_size // 2
    mu1, mu2 = F.conv2d(a, window, padding=pad), F.conv2d(b, window, padding=pad)
    s11 = F.conv2d(a * a, window, padding=pad) - mu1 ** 2
    s22 = F.conv2d(b * b, window, padding=pad) - mu2 ** 2
    s12 = F.conv2d(a * b, window, padding=pad) - mu1 * mu2
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))
    return ssim_map.flatten(1).mean(1)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dx = F.pad(x, [0, 1, 0, 0])[..., :, 1:] - x
    dy = F.pad(x, [0, 0, 0, 1])[..., 1:, :] - x
    dx[..., :, -1] = 0
    dy[..., -1, :] = 0
    return dx, dy


def depth_loss(pred: torch.Tensor, target: torch.Tensor, *, value_range: float, alpha: float = 0.1,
               beta: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    """Per-sample ``alpha * L1 + beta * clamp((1 - SSIM) / 2, 0, 1) + gamma * gradient L1`` (Alhashim et al.)."""
    l1 = (pred - target).abs().flatten(1).mean(1)
    l_ssim = torch.clamp((1 - ssim(pred, target, value_range)) * 0.5, 0, 1)
    pdx, pdy = _gradients(pred)
    tdx, tdy = _gradients(target)
    l_grad = ((tdx - pdx).abs() + (tdy - pdy).abs()).flatten(1).mean(1)
    return alpha * l1 + beta * l_ssim + gamma * l_grad
