"""Stride4Pyramid: a stride-4 level for backbones that start at stride 8 (SReT), as ViTDet's simple pyramid builds
its finer levels: a 2x2 stride-2 transposed convolution of the finest input, LayerNorm and GELU. The input levels
pass through unchanged, so a standard FPN can follow (``neck=[dict(type='Stride4Pyramid', ...), dict(type='FPN',
...)]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d
from torch import nn

from ..mm.backbone import register_backbone

__all__ = ['Stride4Pyramid']


@register_backbone
class Stride4Pyramid(BaseModule):
    """Prepend a level at half the finest input's stride.

    Args:
        in_channels: channels of the input levels, finest first.
        out_channels: channels of the new level (default: the finest input's).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int | None = None, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not in_channels:
            raise ValueError('in_channels: expected the channels of at least one input level')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels or self.in_channels[0]
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(self.in_channels[0], self.out_channels, kernel_size=2, stride=2),
            LayerNorm2d(self.out_channels),
            nn.GELU(),
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'Stride4Pyramid: got {len(inputs)} levels, expected {len(self.in_channels)}')
        return (self.upsample(inputs[0]), *inputs)
