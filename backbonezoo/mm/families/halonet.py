"""HaloNet for mmdet / mmseg: ``dict(type='HaloNet', arch='26t')`` on timm's HaloNets and the zoo's H0-H7.

Outputs: timm's ``feature_info`` levels 1-4 by default (``stages.0`` .. ``final_conv``, strides 4 / 8 / 16 / 32), no
extra norms (there is no official dense wrapper). timm's halo attention asserts that every attention input is a
multiple of its block (inputs must be multiples of 32 x block, 256 for block 8); here every halo attention runs
kernel-backed with ``pad_to_block=True``: its input is zero-padded bottom / right to a block multiple and the output
cropped back, so any input size works. This equals timm exactly for block-multiple sizes only (elsewhere timm cannot
run); zero padding is the halo's own convention for positions outside the image.
"""

from __future__ import annotations

from torch import nn

from ...backbones.halonet_ext import to_kernel_backed
from ..backbone import ZooBackbone, register_backbone

__all__ = ['HaloNet']


@register_backbone
class HaloNet(ZooBackbone):
    """HaloNet backbone (``arch`` = 'h0' ... 'h7', '26t', '50ts', 'se33ts', 'eca_next26ts' or a timm name).

    Args:
        out_indices: ``feature_info`` levels, default (1, 2, 3, 4) (strides 4 ... 32; level 0 is the stride-2 stem).
        frozen_stages: -1 none, 0 the stem (and the output norm of level 0 when requested), i (1 .. 4) the stem and
            ``stages.0`` .. ``stages.{i-1}`` (4 includes ``final_conv``), as mmdet's ResNet, with their output norms.
        **kwargs: :class:`backbonezoo.mm.ZooBackbone` arguments.
    """

    arch_zoo = {
        **{f'h{i}': f'halonet_h{i}' for i in range(8)},
        '26t': 'halonet26t',
        '50ts': 'halonet50ts',
        'se33ts': 'sehalonet33ts',
        'eca_next26ts': 'eca_halonext26ts',
    }
    size_divisor = 32  # the stride-32 grid (mmdet pads to 32 anyway); the attention pads to its blocks itself

    def __init__(self, arch: str = '26t', out_indices=(1, 2, 3, 4), **kwargs) -> None:
        super().__init__(arch=arch, out_indices=out_indices, **kwargs)
        to_kernel_backed(self.model, pad_to_block=True)
        self._freeze_stages()  # the swapped attention modules are new (their parameters are the same)

    def level_stage(self, level: int) -> int:
        """ResNet convention: level 0 is the stem's output, level i (1 .. 4) the output of stage i."""
        return level

    def stem_modules(self) -> list[nn.Module]:
        """The whole ``stem`` (timm's ``feature_info[0]`` points inside it)."""
        return [self.model.stem]

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """Stage i is ``stages.{i-1}``; the last stage also owns ``final_conv`` (whose output is its level). Empty
        for a stage pruned away."""
        modules = []
        for name in [f'stages.{stage - 1}'] + (['final_conv'] if stage == self.num_stages else []):
            try:
                modules.append(self.model.get_submodule(name))
            except AttributeError:
                pass
        return modules
