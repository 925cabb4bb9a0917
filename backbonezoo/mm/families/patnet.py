"""PATNet for mmdet / mmseg: ``dict(type='PATNet', arch='det_s')``.

Outputs the four stage outputs (strides 4 / 8 / 16 / 32, channels C, 2C, 4C, 8C) through one BatchNorm each, as the
official detection wrapper (``fork_feat=True``, norms ``norm0/2/4/6``) does. Inputs are padded to multiples of 32
and the outputs cropped back to ``ceil(size / stride)`` (the official backbone floors other sizes). Official
detection checkpoints load: their ``norm{0,2,4,6}`` become our output norms. The official detection configs name
``type='partialnet_s'``, which was never registered; ours use ``type='PATNet'``.
"""

from __future__ import annotations

import re

from ..backbone import ZooBackbone, register_backbone

__all__ = ['PATNet']


@register_backbone
class PATNet(ZooBackbone):
    """PATNet backbone (``arch``: 't0', 't1', 't2', 's', 'm', 'l', 'det_s', 'det_m', 'det_l' or a timm name)."""

    arch_zoo = {a: f'patnet_{a}' for a in ('t0', 't1', 't2', 's', 'm', 'l', 'det_s', 'det_m', 'det_l')}
    out_norm = 'bn'
    size_divisor = 32

    def convert_dense_checkpoint(self, state_dict: dict) -> dict:
        """Official dense checkpoints keep their output norms as ``norm0/2/4/6``: ours are ``out_norms.<i>``."""
        out = {}
        for key, value in state_dict.items():
            match = re.match(r'^norm([0246])\.(.+)$', key)
            if match is None:
                out[key] = value
            elif int(match[1]) // 2 in self.out_indices:
                out[f'out_norms.{self.out_indices.index(int(match[1]) // 2)}.{match[2]}'] = value
        return out
