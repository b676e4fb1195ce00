"""ResCSRNet (PromptMix, Section IV-A): the first 9 layers of ResNet-18 and CSRNet's dilated back end.

``frontend`` is ResNet-18's ``conv1``/``bn1``/``layer1``/``layer2`` with torchvision's names (output
stride 8, 128 channels); ``backend`` six 3x3 convolutions with dilation 2, all 128 channels; a 1x1
``output_layer`` to one channel. 1.57 M parameters, as Table III.

Output grid: the stride-2 convolutions and the max-pool are padded (``floor((n + 2p - k) / 2) + 1``), which
is ``ceil(n / 2)`` at each of the three halvings, so an ``H x W`` image gives ``ceil(H / 8) x ceil(W / 8)``
cells; the last row and column of cells cover the image's remaining ``H mod 8`` / ``W mod 8`` pixels.
ResNet-18 holds BatchNorm layers: see ``TrainConfig.bn`` for training them at batch size 1.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import ResNetTrunk, init_normal, scaled, vgg_layers

BACKEND = (128, 128, 128, 128, 128, 128)


class ResCSRNet(nn.Module):
    task = "counting"
    output_stride = 8
    output_rounding = "ceil"  # padded stride-2 convolutions and max-pool: ceil(H / 8) cells
    backbone_kind = "resnet18"
    backbone_prefix = "frontend."

    def __init__(self, width_div: int = 1) -> None:
        super().__init__()
        self.frontend = ResNetTrunk(num_layers=2, width_div=width_div)
        self.backend = vgg_layers(BACKEND, self.frontend.out_channels[-1], dilation=2, width_div=width_div)
        self.output_layer = nn.Conv2d(scaled(BACKEND[-1], width_div), 1, kernel_size=1)
        init_normal(self.backend)
        init_normal(self.output_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.backend(self.frontend(x)[-1]))

    @staticmethod
    def output_size(height: int, width: int) -> tuple[int, int]:
        return -(-height // 8), -(-width // 8)
