"""LITv2 for mmdet / mmseg: ``dict(type='LITv2', arch='small')``.

Outputs are the four stage outputs (strides 4 / 8 / 16 / 32, before the next stage's token merging) with the official
dense wrappers' extra LayerNorms: the mmdet wrapper normalises outputs 1-3 and returns output 0 as it is
(``norm_first_output=False``, the default), the mmseg wrapper normalises all four (``norm_first_output=True``).

Any input size works the way the official dense backbone handles it, so no extra padding is added here: the stem pads
to a multiple of 4, HiLo pads each map to its window (unmasked, as in the official code) and token merging floors odd
sizes, e.g. 250x333 gives maps of 63x84 / 31x42 / 15x21 / 7x10 (the official numbers). mmdet / mmseg pad their
batches to multiples of 32 before the backbone anyway.

Differences from the official wrappers, on purpose: ``frozen_stages`` follows the zoo's convention (0 = stem, ``i`` =
stem and stages 1..i, each stage with the token merging that opens it) and works for every value (the official one
raises for >= 2); ``LITv2(...).eval()`` returns the module (the official one returns None); pretrained files load
strictly (official: ``strict=False``). The official ``ws_4`` detection models are
``model_kwargs=dict(window_sizes=(0, 0, 4, 1))`` with the same ImageNet weights.
"""

from __future__ import annotations

import re

from timm.layers import LayerNorm2d
from torch import nn

from ..backbone import ZooBackbone, register_backbone

__all__ = ['LITv2']


@register_backbone
class LITv2(ZooBackbone):
    """LITv2 backbone (``arch`` = 'small' / 'medium' / 'base' or a timm name); see the module docstring.

    Args:
        norm_first_output: also LayerNorm the stride-4 output (official mmseg wrapper); False = official mmdet.
        **kwargs: :class:`backbonezoo.mm.ZooBackbone` arguments (``out_indices``, ``frozen_stages``, ``norm_eval``,
            ``with_cp``, ``drop_path_rate``, ``model_kwargs``, ``init_cfg``, ...).
    """

    arch_zoo = {'small': 'litv2_small', 'medium': 'litv2_medium', 'base': 'litv2_base', 'base_384': 'litv2_base_384'}
    out_norm = 'ln2d'
    size_divisor = 1  # the model pads and floors like the official dense backbone (module docstring)

    def __init__(self, arch: str = 'small', norm_first_output: bool = False, **kwargs) -> None:
        super().__init__(arch=arch, **kwargs)
        self.norm_first_output = norm_first_output
        if self.out_norms is not None:
            # official norms are nn.LayerNorm over channels: eps 1e-5 (timm's LayerNorm2d defaults to 1e-6)
            self.out_norms = nn.ModuleList(
                nn.Identity() if index == 0 and not norm_first_output else LayerNorm2d(channels, eps=1e-5)
                for index, channels in zip(self.out_indices, self.out_channels)
            )
            self._freeze_stages()  # the output norms of frozen stages

    def convert_dense_checkpoint(self, state_dict: dict) -> dict:
        """Official mmdet / mmseg checkpoints keep their output norms as ``norm0..norm3``: rename them to our
        ``out_norms.<position>``; norms of outputs not requested by ``out_indices`` are dropped."""
        out = {}
        for key, value in state_dict.items():
            match = re.match(r'^norm(\d)\.(weight|bias)$', key)
            if match is None:
                out[key] = value
            elif int(match[1]) in self.out_indices:
                out[f'out_norms.{self.out_indices.index(int(match[1]))}.{match[2]}'] = value
        return out
