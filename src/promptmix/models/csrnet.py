"""CSRNet (Li et al., CVPR 2018), the one definition used by the CSRNet annotator and the CSRNet trainer.

VGG-16's first ten convolutions (``frontend``), six 3x3 convolutions with dilation 2 (512, 512, 512,
256, 128, 64 channels, ``backend``) and a 1x1 convolution to one channel (``output_layer``); ReLU after
every convolution but the last. 16.26 M parameters. The module names are leeyeehoo/CSRNet-pytorch's
(``model.py``), so its released checkpoints load key for key::

    frontend.{0,2,5,7,10,12,14,17,19,21}.{weight,bias}   (torchvision vgg16 ``features`` indices)
    backend.{0,2,4,6,8,10}.{weight,bias}
    output_layer.{weight,bias}

Output stride 8: three 2x2 max-pools, each flooring, so an ``H x W`` image gives ``H // 8 x W // 8``
cells; cell ``(i, j)`` sits on pixels ``[8i, 8i + 8) x [8j, 8j + 8)``. The density map is the output
(no scaling). Inputs are RGB in [0, 1] normalised with the ImageNet mean and std.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import init_normal, init_resnet, scaled, vgg16_front, vgg_layers

BACKEND = (512, 512, 512, 256, 128, 64)


class CSRNet(nn.Module):
    task = "counting"
    output_stride = 8
    output_rounding = "floor"  # max-pools floor: H // 8 cells
    backbone_kind = "vgg16"
    backbone_prefix = "frontend."

    def __init__(self, width_div: int = 1) -> None:
        super().__init__()
        self.frontend = vgg16_front(width_div)
        init_resnet(self.frontend)  # torchvision's VGG initialisation (Kaiming normal, fan-out)
        self.backend = vgg_layers(BACKEND, scaled(512, width_div), dilation=2, width_div=width_div)
        self.output_layer = nn.Conv2d(scaled(BACKEND[-1], width_div), 1, kernel_size=1)
        init_normal(self.backend)  # CSRNet's N(0, 0.01) for the layers it adds
        init_normal(self.output_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.backend(self.frontend(x)))

    @staticmethod
    def output_size(height: int, width: int) -> tuple[int, int]:
        return height // 8, width // 8
