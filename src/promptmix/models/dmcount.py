"""DM-Count's VGG-19 regressor (Wang et al., NeurIPS 2020) with cvlab-stonybrook/DM-Count's module names.

``features``: VGG-19's convolutions (64, 64, M, 128, 128, M, 256 x4, M, 512 x4, M, 512 x4; no batch norm,
output stride 16), then a 2x bilinear upsampling (``F.upsample_bilinear``, i.e. ``align_corners=True``),
``reg_layer`` (3x3 convolutions 512 -> 256 -> 128, each with ReLU) and ``density_layer`` (1x1 convolution
128 -> 1 and ReLU). ``forward`` returns ``(mu, mu_normed)`` as the authors' model does; the density is
``mu``. Keys: ``features.N.*``, ``reg_layer.{0,2}.*``, ``density_layer.0.*``.

Output grid: stride 8 after the upsampling, ``2 * (H // 16)`` cells per axis (four flooring max-pools,
then doubled); cell ``i`` sits on pixels ``[8i, 8i + 8)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import scaled, vgg_layers

FEATURES = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


class DMCount(nn.Module):
    task = "counting"
    output_stride = 8

    def __init__(self, width_div: int = 1) -> None:
        super().__init__()
        c = lambda n: scaled(n, width_div)  # noqa: E731
        self.features = vgg_layers(FEATURES, 3, width_div=width_div)
        self.reg_layer = nn.Sequential(
            nn.Conv2d(c(512), c(256), kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c(256), c(128), kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.density_layer = nn.Sequential(nn.Conv2d(c(128), 1, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)  # F.upsample_bilinear
        x = self.reg_layer(x)
        mu = self.density_layer(x)
        mu_sum = mu.flatten(1).sum(1).view(-1, 1, 1, 1)
        return mu, mu / (mu_sum + 1e-6)

    @staticmethod
    def output_size(height: int, width: int) -> tuple[int, int]:
        return 2 * (height // 16), 2 * (width // 16)
