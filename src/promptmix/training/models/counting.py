"""Crowd counters: CSRNet and ResCSRNet. Both map an image to a density map at output stride 8.

CSRNet (Li et al., CVPR 2018): VGG-16's first ten convolutions, then six 3x3 convolutions with
dilation 2 (512, 512, 512, 256, 128, 64 channels) and a 1x1 convolution to one channel.
16.26 M parameters.

ResCSRNet (PromptMix, section IV-A): the first 9 layers of ResNet-18 (``conv1``, ``layer1``,
``layer2``: output stride 8, 128 channels) and the dilated back end with its channels limited
to 128. 1.57 M parameters, as Table III.

The predicted count of an image is the sum of its density map.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import ResNetTrunk, dilated_backend, init_normal, init_resnet, scaled, vgg16_front

CSRNET_BACKEND = (512, 512, 512, 256, 128, 64)
RESCSRNET_BACKEND = (128, 128, 128, 128, 128, 128)


class CSRNet(nn.Module):
    task = "counting"
    output_stride = 8
    backbone_kind = "vgg16"
    backbone_prefix = "frontend."

    def __init__(self, width_div: int = 1) -> None:
        super().__init__()
        self.frontend = vgg16_front(width_div)
        init_resnet(self.frontend)  # torchvision's VGG initialisation (Kaiming normal, fan-out)
        cfg = [scaled(c, width_div) for c in CSRNET_BACKEND]
        self.backend = dilated_backend(scaled(512, width_div), cfg)
        self.output_layer = nn.Conv2d(cfg[-1], 1, kernel_size=1)
        init_normal(self.backend)
        init_normal(self.output_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.backend(self.frontend(x)))


class ResCSRNet(nn.Module):
    task = "counting"
    output_stride = 8
    backbone_kind = "resnet18"
    backbone_prefix = "frontend."

    def __init__(self, width_div: int = 1) -> None:
        super().__init__()
        self.frontend = ResNetTrunk(num_layers=2, width_div=width_div)
        cfg = [scaled(c, width_div) for c in RESCSRNET_BACKEND]
        self.backend = dilated_backend(self.frontend.out_channels[-1], cfg)
        self.output_layer = nn.Conv2d(cfg[-1], 1, kernel_size=1)
        init_normal(self.backend)
        init_normal(self.output_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.backend(self.frontend(x)[-1]))
