"""Per-channel learned scale and shift."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ['ChannelAffine']


class ChannelAffine(nn.Module):
    """Per-channel ``x * weight + bias`` on NCHW maps.

    Several official codebases write LayerScale as a depthwise 1x1 conv with bias (A2Mamba, OverLoCK); this is the same
    map stored as two ``(C,)`` vectors, so one fused ``addcmul`` replaces the conv. timm's ``LayerScale2d`` has no bias.
    """

    def __init__(self, dim: int, init_value: float = 1.0, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim,), float(init_value), device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))
