"""SHViT for mmdet / mmseg: ``dict(type='SHViT', arch='s4')`` on timm's ``shvit_s*``.

Like the authors' detection backbone (``ysj9909/SHViT`` ``downstream/shvit.py``, ``Partial_ViT_Exp``): three outputs
after stages 1 / 2 / 3 (strides 16 / 32 / 64, channels = the embed dims, no extra norms), any input size (stride-2
convs round up), and every BatchNorm kept in eval mode while training (``norm_eval=True`` by default; the official
wrapper cannot switch it off). The single-head attention runs on SDPA's fused kernels
(``backbonezoo.backbones.shvit_ext.to_kernel_backed``), which matters at detection sizes (1050 tokens at stride 32
for 800x1333). Note: GroupNorm(1) and the global attention see mmdet's batch padding, as in the official setup.
"""

from __future__ import annotations

from ...backbones.shvit_ext import to_kernel_backed
from ..backbone import ZooBackbone, register_backbone

__all__ = ['SHViT']


@register_backbone
class SHViT(ZooBackbone):
    """SHViT backbone (``arch`` = 's1' ... 's4' or a timm name); see the module docstring.

    Args:
        **kwargs: :class:`backbonezoo.mm.ZooBackbone` arguments; ``norm_eval`` defaults to True (official).
    """

    arch_zoo = {f's{i}': f'shvit_s{i}' for i in range(1, 5)}
    size_divisor = 1

    def __init__(self, arch: str = 's4', norm_eval: bool = True, **kwargs) -> None:
        super().__init__(arch=arch, norm_eval=norm_eval, **kwargs)
        to_kernel_backed(self.model)
        self._freeze_stages()  # the swapped attention modules are new (their parameters are the same)
