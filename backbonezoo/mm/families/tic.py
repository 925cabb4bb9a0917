"""TiC for mmdet / mmseg: ``dict(type='TiC', arch='tiny')``.

TiC has no official dense code; this wrapper is our design (labelled so in the model card): it returns the four
stage maps (strides 4 / 8 / 16 / 32, channels C, 2C, 4C, 8C) through one new LayerNorm each (Swin-style dense
outputs). No input padding: MSA-Conv runs on any map size (the paper's point), every stride-2 step rounds odd sides up
and inter-pooling pads to its factor internally, so an H x W image gives ``ceil(H / stride) x ceil(W / stride)`` maps.
"""

from __future__ import annotations

from ..backbone import ZooBackbone, register_backbone

__all__ = ['TiC']


@register_backbone
class TiC(ZooBackbone):
    """TiC backbone (``arch``: 'tiny', 'small', 'base' or a timm name)."""

    arch_zoo = {'tiny': 'tic_tiny', 'small': 'tic_small', 'base': 'tic_base'}
    out_norm = 'ln2d'
    size_divisor = 1
