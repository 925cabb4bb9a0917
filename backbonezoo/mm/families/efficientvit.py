"""EfficientViT-M for mmdet / mmseg: ``dict(type='EfficientViT', arch='m4')`` on timm's ``efficientvit_m*``.

Like the authors' detection backbone (``microsoft/Cream`` ``EfficientViT/downstream/efficientvit.py``): three outputs
right after stages 1 / 2 / 3 (strides 16 / 32 / 64, channels = the embed dims, no extra norms), window 7 in every
stage (the model is built at ``img_size=448`` so no window is clamped; the ImageNet checkpoint's smaller stage-3 bias
table is resized bicubically on load, as the official loader does), and every BatchNorm kept in eval mode while
training (``norm_eval=True`` by default; the official wrapper cannot switch it off).

The attention runs kernel-backed (``backbonezoo.backbones.efficientvit_ext.to_kernel_backed(fit_small_maps=True)``):
maps larger than a window are zero-padded to window multiples as in the official code, and a map that fits in one
window on both sides is attended as one window of its own size with the bias table sliced to it, so every input size
works (the official wrapper crashes on such maps unless they are exactly 7x7, e.g. at 224x224 or 96x96 input).
``frozen_stages`` / ``out_indices`` / ``with_cp`` / strict ``init_cfg`` loading follow the zoo conventions (the official
``frozen_stages`` only freezes the stem). Official and timm checkpoints both load (converted).
"""

from __future__ import annotations

from ...backbones.efficientvit_ext import to_kernel_backed
from ..backbone import ZooBackbone, register_backbone

__all__ = ['EfficientViT']


@register_backbone
class EfficientViT(ZooBackbone):
    """EfficientViT-M backbone (``arch`` = 'm0' ... 'm5' or a timm name); see the module docstring.

    Args:
        window_img_size: ``img_size`` the timm model is built with; it sets each stage's window to
            ``min(7, img_size / stride)`` (448 = window 7 everywhere, the official dense setting).
        **kwargs: :class:`backbonezoo.mm.ZooBackbone` arguments; ``norm_eval`` defaults to True (official).
    """

    arch_zoo = {f'm{i}': f'efficientvit_m{i}' for i in range(6)}
    size_divisor = 1  # the attention pads its own windows; stride-2 convs round up like the official model

    def __init__(self, arch: str = 'm4', window_img_size: int = 448, norm_eval: bool = True, **kwargs) -> None:
        model_kwargs = dict(kwargs.pop('model_kwargs', None) or {})
        model_kwargs.setdefault('img_size', window_img_size)
        super().__init__(arch=arch, norm_eval=norm_eval, model_kwargs=model_kwargs, **kwargs)
        to_kernel_backed(self.model, fit_small_maps=True)
        self._freeze_stages()  # the swapped attention modules are new (their parameters are the same)
