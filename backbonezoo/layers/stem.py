"""The overlapping four-conv stem of the LMMMEng models (OverLoCK, A2Mamba): stride 4 in 3x3 convolutions."""

from __future__ import annotations

import torch.nn as nn

__all__ = ['deep_conv_stem']


def deep_conv_stem(in_chans: int, out_chans: int, device=None, dtype=None) -> nn.Sequential:
    """3x3 convs (stride 2, 1, 2, 1; widths ``out_chans // 2``, ``// 2``, ``out_chans``, ``out_chans``), each with
    BatchNorm, GELU between: the official ``stem`` / ``patch_embed1`` layout, so checkpoint keys (``stem.0.weight``,
    ``stem.1.running_mean``, ...) index the same layers. No bias on the convs (BatchNorm follows each)."""
    dd = {'device': device, 'dtype': dtype}
    half = out_chans // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, half, 3, stride=2, padding=1, bias=False, **dd),
        nn.BatchNorm2d(half, **dd),
        nn.GELU(),
        nn.Conv2d(half, half, 3, padding=1, bias=False, **dd),
        nn.BatchNorm2d(half, **dd),
        nn.GELU(),
        nn.Conv2d(half, out_chans, 3, stride=2, padding=1, bias=False, **dd),
        nn.BatchNorm2d(out_chans, **dd),
        nn.GELU(),
        nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False, **dd),
        nn.BatchNorm2d(out_chans, **dd),
    )
