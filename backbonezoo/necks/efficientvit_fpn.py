"""EfficientViTFPN: the neck of EfficientViT-M's (and SHViT's) official detection setups, for mmdet 3.

EfficientViT-M and SHViT end at stride 64 and start at 16, so the authors' FPN (``microsoft/Cream``
``EfficientViT/downstream/efficientvit_fpn.py``, mmdet 2.x) adds ``num_extra_trans_convs`` levels below the
backbone's finest one: each a 2x2 stride-2 transposed conv (+ norm / act) of the previous level's top-down lateral,
followed by its own 3x3 output conv. Mask R-CNN uses 2 (levels 4, 8, 16, 32, 64), RetinaNet 1 plus an extra
stride-2 conv on the last input (levels 8 ... 128).

Module names and ordering follow the authors' neck, so their detector checkpoints load; note that they pair
``extra_fpn_convs[i]`` with the i-th *finest* extra level (``extra_fpn_convs[0]`` is the stride-4 output with two
transposed convs) while ``extra_trans_convs[i]`` builds the (i+1)-th one going down: we keep that pairing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.necks import FPN
from torch import nn

from ..mm.backbone import register_backbone

__all__ = ['EfficientViTFPN']


@register_backbone  # root + mmdet + mmseg registries: found whatever the current default scope
class EfficientViTFPN(FPN):
    """mmdet's ``FPN`` plus ``num_extra_trans_convs`` transposed-conv levels under the finest input level.

    Args:
        num_extra_trans_convs: levels added at strides in_stride / 2, / 4, ... (counted in ``num_outs``).
        Others: as mmdet's ``FPN`` (``add_extra_convs`` builds the remaining coarse levels).
    """

    def __init__(
        self, in_channels: list[int], out_channels: int, num_outs: int, num_extra_trans_convs: int = 0, **kwargs
    ):
        end_level = kwargs.get('end_level', -1)
        start_level = kwargs.get('start_level', 0)
        used = (len(in_channels) if end_level == -1 else end_level) - start_level
        if not 0 <= num_extra_trans_convs <= num_outs - used:
            raise ValueError(
                f'EfficientViTFPN: num_extra_trans_convs={num_extra_trans_convs} must be between 0 and '
                f'num_outs - used input levels = {num_outs - used}'
            )
        super().__init__(in_channels, out_channels, num_outs - num_extra_trans_convs, **kwargs)
        self.num_outs = num_outs
        self.num_extra_trans_convs = num_extra_trans_convs
        conv_cfg, norm_cfg, act_cfg = kwargs.get('conv_cfg'), kwargs.get('norm_cfg'), kwargs.get('act_cfg')
        trans_cfg = dict(conv_cfg or {}, type='deconv')
        self.extra_trans_convs = nn.ModuleList(
            ConvModule(
                out_channels,
                out_channels,
                2,
                stride=2,
                padding=0,
                conv_cfg=trans_cfg,
                norm_cfg=None if self.no_norm_on_lateral else norm_cfg,
                act_cfg=act_cfg,
                inplace=False,
            )
            for _ in range(num_extra_trans_convs)
        )
        self.extra_fpn_convs = nn.ModuleList(
            ConvModule(
                out_channels,
                out_channels,
                3,
                padding=1,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                inplace=False,
            )
            for _ in range(num_extra_trans_convs)
        )

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f'EfficientViTFPN: got {len(inputs)} input levels, expected {len(self.in_channels)} '
                f'(in_channels={self.in_channels})'
            )
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            if 'scale_factor' in self.upsample_cfg:
                laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], **self.upsample_cfg)
            else:
                size = laterals[i - 1].shape[2:]
                laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=size, **self.upsample_cfg)
        extra_laterals = []  # finest first
        previous = laterals[0]
        for trans_conv in self.extra_trans_convs:
            previous = trans_conv(previous)
            extra_laterals.insert(0, previous)
        extra_outs = [conv(lateral) for conv, lateral in zip(self.extra_fpn_convs, extra_laterals)]
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals))]
        coarse = self.num_outs - self.num_extra_trans_convs
        if coarse > len(outs):
            if not self.add_extra_convs:
                while len(outs) < coarse:
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                if self.add_extra_convs == 'on_input':
                    source = inputs[self.backbone_end_level - 1]
                elif self.add_extra_convs == 'on_lateral':
                    source = laterals[-1]
                else:
                    source = outs[-1]
                outs.append(self.fpn_convs[len(laterals)](source))
                for i in range(len(laterals) + 1, coarse):
                    outs.append(self.fpn_convs[i](F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]))
        return tuple(extra_outs + outs)
