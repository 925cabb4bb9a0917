"""SReT for mmdet / mmseg: ``dict(type='SReT', arch='tiny')``.

SReT has no official dense code; this wrapper is our design (labelled so in the model card):
- outputs the three stage maps (strides 8 / 16 / 32, channels T 64/128/256, S 126/252/504), each through a new
  LayerNorm (the classification model normalises only after pooling); pair it with ``Stride4Pyramid``
  (``backbonezoo.necks``) for detectors and segmentors that expect a stride-4 level;
- pads inputs to multiples of 32 so every stage's token count splits into its attention groups, and crops the
  outputs back to ``ceil(size / stride)``; the position embedding is resized to the padded map;
- the random token shuffles of the recursive passes (official inference draws them from the global RNG) use the
  model's deterministic mode (``shuffle_seed=0``): dense training and evaluation are reproducible. Pass
  ``model_kwargs=dict(shuffle_seed=None)`` for the official behaviour;
- ``frozen_stages`` as mmdet's Swin: 0 freezes the stem and the absolute position embedding (``pos_embed``), ``i``
  also stages 1..i and their output norms.
"""

from __future__ import annotations

from ..backbone import ZooBackbone, register_backbone

__all__ = ['SReT']


@register_backbone
class SReT(ZooBackbone):
    """SReT backbone (``arch``: 'tiny', 'little_tiny', 'small', their '_noslice' forms, or a timm name)."""

    arch_zoo = {
        'tiny': 'sret_tiny',
        'little_tiny': 'sret_little_tiny',
        'small': 'sret_small',
        'tiny_noslice': 'sret_tiny_noslice',
        'little_tiny_noslice': 'sret_little_tiny_noslice',
        'small_noslice': 'sret_small_noslice',
    }
    out_norm = 'ln2d'
    size_divisor = 32

    def __init__(self, arch: str = 'tiny', model_kwargs: dict | None = None, **kwargs) -> None:
        super().__init__(arch=arch, model_kwargs=dict(dict(shuffle_seed=0), **(model_kwargs or {})), **kwargs)
