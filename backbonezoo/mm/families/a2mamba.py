"""A2Mamba for mmdet / mmseg: ``dict(type='A2Mamba', arch='tiny')``.

The official repository ships no detection or segmentation code (only ``return_features=True``, the four stage outputs
before downsampling, no extra norms), so the dense wrapper is the zoo's own design: the four stage outputs (strides
4 / 8 / 16 / 32, ``embed_dims`` channels), each through a fresh ``LayerNorm2d`` (the usual choice for SSM / attention
backbones with un-normalised residual streams, e.g. VMamba's and Swin's dense wrappers), ``out_indices``,
``frozen_stages``, ``norm_eval``, ``with_cp``.

Input sizes: every stage map must hold its window (11 / 9 / 7 / 7), i.e. 193 px per side. Inputs are zero-padded
bottom / right to a multiple of 32 and, when smaller, up to the model's minimum, and the outputs are cropped back to
``ceil(size / stride)``, so every input size works (mmdet / mmseg pad their batches to 32 anyway). As in the official
model, the dilation of the second head half is ``min(map // window, window)`` and so follows the padded size; the
stage-4 global-attention bias is resized bicubically from its 7x7 training grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbone import ZooBackbone, register_backbone

__all__ = ['A2Mamba']


@register_backbone
class A2Mamba(ZooBackbone):
    """A2Mamba backbone (``arch`` = 'nano' / 'tiny' / 'small' / 'base' / 'large' or a timm name).

    Args:
        **kwargs: :class:`backbonezoo.mm.ZooBackbone` arguments (``out_indices``, ``frozen_stages``, ``norm_eval``,
            ``with_cp``, ``drop_path_rate``, ``out_norm``, ``model_kwargs``, ``init_cfg``, ...).
    """

    arch_zoo = {
        'nano': 'a2mamba_nano',
        'tiny': 'a2mamba_tiny',
        'small': 'a2mamba_small',
        'base': 'a2mamba_base',
        'large': 'a2mamba_large',
    }
    out_norm = 'ln2d'
    size_divisor = 32

    def __init__(self, arch: str = 'tiny', **kwargs) -> None:
        super().__init__(arch=arch, **kwargs)

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Pad to a multiple of ``pad_divisor`` and at least the model's minimum side (bottom / right, zeros)."""
        minimum = getattr(self.model, 'min_input_size', 1)
        height, width = x.shape[-2:]
        target_h = max(height + (-height) % self.pad_divisor, minimum)
        target_w = max(width + (-width) % self.pad_divisor, minimum)
        if (target_h, target_w) == (height, width):
            return x
        return F.pad(x, (0, target_w - width, 0, target_h - height))
