"""BiFormer for mmdet / mmseg: ``dict(type='BiFormer', arch='small', n_win=16)``.

Outputs are the four stage outputs (strides 4 / 8 / 16 / 32, channels 64-512 for tiny / small, 96-768 for base / stl),
each through a fresh ``LayerNorm2d`` (eps 1e-6) like the official ``BiFormer_mm`` (its ``extra_norms``), which drops the
classification ``norm`` and ``head``. Routing stages pad their maps to the region grid themselves (``auto_pad=True``,
every official dense config), so inputs of any size work and no extra input padding is added here.

``n_win`` is the number of regions per side (16 in the official COCO configs, 8 for ADE20K 512 crops, 7 in
classification); the weights do not depend on it. Differences from the official wrappers, on purpose: ``out_indices``,
``frozen_stages`` and ``with_cp`` exist, ``norm_eval`` replaces the mmdet copy's default BN freezing (the configs set
it) and pretrained files load strictly (official: ``strict=False``).
"""

from __future__ import annotations

import re

from ..backbone import ZooBackbone, register_backbone

__all__ = ['BiFormer']


@register_backbone
class BiFormer(ZooBackbone):
    """BiFormer backbone (``arch`` = 'tiny' / 'small' / 'base' / 'stl' / 'stl_nchw' or a timm name).

    Args:
        n_win: regions per side in the routing stages.
        auto_pad: pad each routing stage's map to a multiple of ``n_win`` (legacy models; the NCHW model always pads).
        **kwargs: :class:`backbonezoo.mm.ZooBackbone` arguments (``out_indices``, ``frozen_stages``, ``norm_eval``,
            ``with_cp``, ``drop_path_rate``, ``model_kwargs``, ``init_cfg``, ...).
    """

    arch_zoo = {
        'tiny': 'biformer_tiny',
        'small': 'biformer_small',
        'base': 'biformer_base',
        'stl': 'biformer_stl',
        'stl_nchw': 'biformer_stl_nchw',
    }
    out_norm = 'ln2d'
    size_divisor = 1  # the routing stages pad themselves, as in the official dense code

    def __init__(self, arch: str = 'small', n_win: int = 16, auto_pad: bool = True, **kwargs) -> None:
        kwargs['model_kwargs'] = dict(kwargs.get('model_kwargs') or {}, n_win=n_win, auto_pad=auto_pad)
        super().__init__(arch=arch, **kwargs)

    def convert_dense_checkpoint(self, state_dict: dict) -> dict:
        """Official dense checkpoints keep the output norms as ``extra_norms.<stage>``: rename them to our
        ``out_norms.<position>``; norms of stages not in ``out_indices`` are dropped."""
        out = {}
        for key, value in state_dict.items():
            match = re.match(r'^extra_norms\.(\d)\.(weight|bias)$', key)
            if match is None:
                out[key] = value
            elif int(match[1]) in self.out_indices:
                out[f'out_norms.{self.out_indices.index(int(match[1]))}.{match[2]}'] = value
        return out
