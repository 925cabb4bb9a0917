"""HaloNet: the paper's H0, H2-H7 on timm's ByoaNet machinery, and kernel-backed halo attention.

Paper: "Scaling Local Self-Attention for Parameter Efficient Visual Backbones" (arXiv 2103.12731). The authors
released no code; timm (``timm/layers/halo_attn.py``, ``timm/models/byoanet.py``) is the reference, and timm owns
``halonet_h1``, ``halonet26t``, ``sehalonet33ts``, ``halonet50ts``, ``eca_halonext26ts``, ... This module adds:

* ``halonet_h0``, ``halonet_h2`` ... ``halonet_h7``: the paper's table (b = block, h = halo, rv = value multiplier,
  rb = block output multiplier, l3 = stage-3 depth, df = final 1x1 width) in timm's ``halonet_h1`` conventions:
  ``ByobNet`` with a 7x7 stem + max-pool, four all-attention stages of depths (3, 3, l3, 3) whose bottleneck width is
  64 * 2**i and output width rb * 64 * 2**i, 8 heads, ReLU, BatchNorm. rv > 1 widens the values (and so the attention
  output, its BN and the last 1x1 conv) to rv * width, with query/key width kept at the bottleneck width.
* ``KernelHaloAttn``: timm's ``HaloAttn`` with the same parameters and state dict, running on
  ``backbonezoo.kernels.local_attention`` (``kernel = block + 2 * halo``, ``stride = block``, border ``'zero'``, the
  query-dependent relative logits passed as a per-query bias). With ``pad_to_block=True`` it zero-pads its input to a
  block multiple and crops the output, so any input size works; for block-multiple sizes the outputs equal timm's.
* ``to_kernel_backed(model)``: swaps every ``HaloAttn`` of a timm model for ``KernelHaloAttn`` in place.

The paper variants use ``KernelHaloAttn(pad_to_block=True)``: H7's 600 input is not a multiple of 32 x its block 10.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers.halo_attn import HaloAttn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.byobnet import ByoBlockCfg, ByobNet, ByoModelCfg, SelfAttnBlock

from backbonezoo.kernels import local_attention
from backbonezoo.layers.tracing import block_counts, crop, is_tracing

__all__ = [
    'HaloNet',
    'KernelHaloAttn',
    'ValueExpandedSelfAttnBlock',
    'checkpoint_filter_fn',
    'halo_model_cfg',
    'to_kernel_backed',
]


class KernelHaloAttn(HaloAttn):
    """timm's ``HaloAttn`` (same arguments, parameters and state dict) on ``backbonezoo.kernels.local_attention``.

    Args (beyond timm's): ``pad_to_block``: zero-pad the input on the bottom / right to a block multiple (to a multiple
    of 2 blocks' lcm when the output is average-pooled) and crop the output to ``ceil(size / stride)``; without it a
    non-multiple raises ValueError as timm's module asserts. ``backend``: the kernel backend (None = automatic).

    Zero padding of the input gives zero queries / keys / values there (the projections have no bias, as in every
    timm HaloNet), which is exactly how the halo treats positions outside the image.

    Under torch.export / torch.compile with ``pad_to_block=True`` the module takes a size-independent form, so a
    dynamic-shape export (``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)``) runs at any size: with
    symbolic sizes one extra block of zeros per axis (exact, by the rule above; no block count is then 1 at the
    traced size) and the crop as a negative pad. Without ``pad_to_block`` (timm's contract: block multiples only) no
    such form is taken: export with ``to_kernel_backed(model, pad_to_block=True)``.
    """

    def __init__(self, *args, pad_to_block: bool = True, backend: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad_to_block = pad_to_block
        self.backend = backend

    @classmethod
    def from_halo_attn(cls, module: HaloAttn, pad_to_block: bool = False, backend: str | None = None) -> KernelHaloAttn:
        """A ``KernelHaloAttn`` sharing ``module``'s parameters (no copy): same state dict, same outputs."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for name, value in vars(module).items():
            if not name.startswith('_'):
                setattr(new, name, value)
        for name, child in module.named_children():
            new.add_module(name, child)
        for name, param in module.named_parameters(recurse=False):
            new.register_parameter(name, param)
        new.pad_to_block = pad_to_block
        new.backend = backend
        new.train(module.training)
        return new

    def _relative_bias(self, q: torch.Tensor, query_block: int) -> torch.Tensor:
        """Per-query relative logits ``q . R_h[ki - qi + win - 1] + q . R_w[kj - qj + win - 1]``.

        ``q``: (B, heads, H, W, d) at query resolution; (qi, qj) = position inside the query block, (ki, kj) = position
        inside the (block + 2 * halo) window. Returns (B, heads, H, W, win * win), window slots in row-major order.
        """
        win = self.win_size
        height, width = q.shape[2], q.shape[3]
        slots = torch.arange(win, device=q.device)

        def axis_logits(table: torch.Tensor, length: int, dim: int) -> torch.Tensor:
            offsets = torch.arange(length, device=q.device) % query_block
            index = slots[None, :] - offsets[:, None] + win - 1  # (length, win)
            logits = q @ table.transpose(0, 1)  # (B, heads, H, W, 2 * win - 1)
            shape = [1, 1, 1, 1, win]
            shape[dim] = length
            return logits.gather(-1, index.view(shape).expand(*logits.shape[:-1], win))

        rel_h = axis_logits(self.pos_embed.height_rel, height, 2)
        rel_w = axis_logits(self.pos_embed.width_rel, width, 3)
        return (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        block, stride = self.block_size, self.block_stride
        out_stride = stride if isinstance(self.pool, nn.Identity) else 2
        if self.pad_to_block:
            multiple = math.lcm(block, out_stride)
            # an extra block of zeros when traced is exact: zero inputs give zero queries / keys / values, as the
            # halo's outside-the-map positions
            blocks_h, blocks_w = block_counts(H, W, multiple)
            pad_h, pad_w = blocks_h * multiple - H, blocks_w * multiple - W
            if is_tracing() or pad_h or pad_w:  # traced: no branch on symbolic sizes
                x = F.pad(x, (0, pad_w, 0, pad_h))
        elif H % block or W % block:
            raise ValueError(
                f'KernelHaloAttn: input size {H}x{W} must be a multiple of block_size={block} '
                '(set pad_to_block=True to pad and crop)'
            )
        heads, dqk, dv = self.num_heads, self.dim_head_qk, self.dim_head_v
        q = self.q(x)
        q = q.view(B, heads, dqk, *q.shape[-2:]).permute(0, 1, 3, 4, 2)
        kv = self.kv(x)  # output channels grouped per head: [k_0, v_0, k_1, v_1, ...]
        kv = kv.view(B, heads, dqk + dv, *kv.shape[-2:]).permute(0, 1, 3, 4, 2)
        k, v = kv.split([dqk, dv], dim=-1)
        bias = self._relative_bias(q, self.block_size_ds)
        if stride > 1:
            # strided queries: each query stands for a stride x stride cell of its key block; run the cell at full
            # resolution (the same query and relative bias repeated) and keep one output per cell
            q = q.repeat_interleave(stride, dim=2).repeat_interleave(stride, dim=3)
            bias = bias.repeat_interleave(stride, dim=2).repeat_interleave(stride, dim=3)
        if self.scale_pos_embed:
            bias = bias * self.scale
        out = local_attention(
            q,
            k,
            v,
            self.win_size,
            stride=block,
            border='zero',
            bias=bias,
            scale=self.scale,
            backend=self.backend,
        )
        if stride > 1:
            out = out[:, :, ::stride, ::stride]
        out = out.permute(0, 1, 4, 2, 3).reshape(B, heads * dv, out.shape[2], out.shape[3])
        out = self.pool(out)
        return crop(out, (H + out_stride - 1) // out_stride, (W + out_stride - 1) // out_stride)


def to_kernel_backed(model: nn.Module, pad_to_block: bool | None = None, backend: str | None = None) -> nn.Module:
    """Swap every timm ``HaloAttn`` of ``model`` for a ``KernelHaloAttn`` sharing its parameters, in place.

    The state dict (keys, tensors) is unchanged and outputs equal timm's. ``pad_to_block=True`` also makes the model
    accept inputs that are not multiples of 32 x block (outputs then differ from timm, which cannot run them); None
    keeps the setting of modules that are already kernel-backed (the paper variants pad) and is False for swapped
    ones. Returns ``model``.
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, HaloAttn):
                if isinstance(child, KernelHaloAttn):
                    child.pad_to_block = child.pad_to_block if pad_to_block is None else pad_to_block
                    child.backend = backend
                    continue
                setattr(module, child_name, KernelHaloAttn.from_halo_attn(child, bool(pad_to_block), backend))
    return model


class ValueExpandedSelfAttnBlock(SelfAttnBlock):
    """timm's ``SelfAttnBlock`` with the paper's value multiplier rv.

    The attention's values (and so its output, the post-attention BN and the input of the last 1x1 conv) are
    ``value_ratio`` x the bottleneck width; queries / keys keep the bottleneck width (the attention layer must be
    given ``qk_ratio = 1 / value_ratio``). Key names equal ``SelfAttnBlock``'s.
    """

    def __init__(self, in_chs: int, out_chs: int, value_ratio: float = 1.0, **kwargs):
        super().__init__(in_chs, out_chs, **kwargs)
        if value_ratio != 1.0:
            layers, stride = kwargs['layers'], kwargs.get('stride', 1)
            dd = {'device': kwargs.get('device'), 'dtype': kwargs.get('dtype')}
            mid_chs = self.conv1_1x1.conv.out_channels
            value_chs = int(round(mid_chs * value_ratio))
            if isinstance(self.conv2_kxk, nn.Module) and not isinstance(self.conv2_kxk, nn.Identity):
                stride = 1  # striding done by the extra conv
            self.self_attn = layers.self_attn(mid_chs, dim_out=value_chs, stride=stride, **dd)
            if not isinstance(self.post_attn, nn.Identity):
                self.post_attn = layers.norm_act(value_chs, **dd)
            self.conv3_1x1 = layers.conv_norm_act(value_chs, out_chs, 1, apply_act=False, **dd)
            self.init_weights(zero_init_last=False)


class HaloNet(ByobNet):
    """timm's ``ByobNet`` for the paper variants, with input checks that name what was expected."""

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(
                f'{type(self).__name__}: expected a 4-D input (batch, {self.in_chans}, height, width), '
                f'got shape {tuple(x.shape)}'
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return super().forward_features(x)

    def forward_intermediates(self, x: torch.Tensor, *args, **kwargs):
        self._check_input(x)
        return super().forward_intermediates(x, *args, **kwargs)


def halo_model_cfg(
    block_size: int,
    halo_size: int,
    value_ratio: float,
    output_ratio: float,
    stage3_depth: int,
    num_features: int = 0,
    num_heads: int = 8,
) -> ByoModelCfg:
    """A paper HaloNet (table 2 of the paper) as a timm ``ByoModelCfg`` in ``halonet_h1``'s conventions."""
    block_type: Any = (
        'self_attn' if value_ratio == 1.0 else partial(ValueExpandedSelfAttnBlock, value_ratio=value_ratio)
    )
    attn_kwargs = dict(block_size=block_size, halo_size=halo_size, num_heads=num_heads)
    if value_ratio != 1.0:
        attn_kwargs['qk_ratio'] = 1.0 / value_ratio
    blocks = tuple(
        ByoBlockCfg(
            type=block_type, d=depth, c=int(width * output_ratio), s=1 if i == 0 else 2, gs=0, br=1 / output_ratio
        )
        for i, (depth, width) in enumerate(zip((3, 3, stage3_depth, 3), (64, 128, 256, 512)))
    )
    return ByoModelCfg(
        blocks=blocks,
        stem_chs=64,
        stem_type='7x7',
        stem_pool='maxpool',
        num_features=num_features,
        self_attn_layer=KernelHaloAttn,
        self_attn_kwargs=attn_kwargs,
    )


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict:
    """HaloNet checkpoints are timm's flat layout (there is no official one): pass through.

    Unwraps a ``'state_dict'`` / ``'model'`` nest; unknown keys stay in place so that a strict load names them.
    """
    for nest in ('state_dict', 'model'):
        if isinstance(state_dict.get(nest), Mapping):
            state_dict = state_dict[nest]
            break
    return dict(state_dict)


def _create_halonet(variant: str, pretrained: bool = False, **kwargs) -> HaloNet:
    return build_model_with_cfg(
        HaloNet,
        variant,
        pretrained,
        model_cfg=kwargs.pop('model_cfg'),
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )


def _cfg(name: str, img_size: int, **kwargs) -> dict[str, Any]:
    # url / hf_hub_id, license, paper and origin: the zoo record (backbonezoo/zoo), never restated here
    from backbonezoo.zoo import pretrained_cfg

    return {
        'num_classes': 1000,
        'input_size': (3, img_size, img_size),
        'pool_size': (-(-img_size // 32), -(-img_size // 32)),
        'crop_pct': 0.94,
        'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv1.conv',
        'classifier': 'head.fc',
        'fixed_input_size': False,
        **pretrained_cfg(name),
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        'halonet_h0.untrained': _cfg('halonet_h0.untrained', 256),
        'halonet_h2.untrained': _cfg('halonet_h2.untrained', 256),
        'halonet_h3.untrained': _cfg('halonet_h3.untrained', 320),
        'halonet_h4.untrained': _cfg('halonet_h4.untrained', 384),
        'halonet_h5.untrained': _cfg('halonet_h5.untrained', 448),
        'halonet_h6.untrained': _cfg('halonet_h6.untrained', 512),
        'halonet_h7.untrained': _cfg('halonet_h7.untrained', 600),
    }
)


@register_model
def halonet_h0(pretrained: bool = False, **kwargs) -> HaloNet:
    """HaloNet-H0: b 8, h 3, rv 1, rb 0.5, depths (3, 3, 7, 3), 256 px."""
    cfg = halo_model_cfg(block_size=8, halo_size=3, value_ratio=1.0, output_ratio=0.5, stage3_depth=7)
    return _create_halonet('halonet_h0', pretrained, model_cfg=cfg, **kwargs)


@register_model
def halonet_h2(pretrained: bool = False, **kwargs) -> HaloNet:
    """HaloNet-H2: b 8, h 3, rv 1, rb 1.25, depths (3, 3, 11, 3), 256 px."""
    cfg = halo_model_cfg(block_size=8, halo_size=3, value_ratio=1.0, output_ratio=1.25, stage3_depth=11)
    return _create_halonet('halonet_h2', pretrained, model_cfg=cfg, **kwargs)


@register_model
def halonet_h3(pretrained: bool = False, **kwargs) -> HaloNet:
    """HaloNet-H3: b 10, h 3, rv 1, rb 1.5, depths (3, 3, 12, 3), final 1x1 1024, 320 px."""
    cfg = halo_model_cfg(
        block_size=10, halo_size=3, value_ratio=1.0, output_ratio=1.5, stage3_depth=12, num_features=1024
    )
    return _create_halonet('halonet_h3', pretrained, model_cfg=cfg, **kwargs)


@register_model
def halonet_h4(pretrained: bool = False, **kwargs) -> HaloNet:
    """HaloNet-H4: b 12, h 2, rv 1, rb 3, depths (3, 3, 12, 3), final 1x1 1280, 384 px."""
    cfg = halo_model_cfg(
        block_size=12, halo_size=2, value_ratio=1.0, output_ratio=3.0, stage3_depth=12, num_features=1280
    )
    return _create_halonet('halonet_h4', pretrained, model_cfg=cfg, **kwargs)


@register_model
def halonet_h5(pretrained: bool = False, **kwargs) -> HaloNet:
    """HaloNet-H5: b 14, h 2, rv 2.5, rb 2, depths (3, 3, 23, 3), final 1x1 1536, 448 px."""
    cfg = halo_model_cfg(
        block_size=14, halo_size=2, value_ratio=2.5, output_ratio=2.0, stage3_depth=23, num_features=1536
    )
    return _create_halonet('halonet_h5', pretrained, model_cfg=cfg, **kwargs)


@register_model
def halonet_h6(pretrained: bool = False, **kwargs) -> HaloNet:
    """HaloNet-H6: b 8, h 4, rv 3, rb 2.75, depths (3, 3, 24, 3), final 1x1 1536, 512 px."""
    cfg = halo_model_cfg(
        block_size=8, halo_size=4, value_ratio=3.0, output_ratio=2.75, stage3_depth=24, num_features=1536
    )
    return _create_halonet('halonet_h6', pretrained, model_cfg=cfg, **kwargs)


@register_model
def halonet_h7(pretrained: bool = False, **kwargs) -> HaloNet:
    """HaloNet-H7: b 10, h 3, rv 4, rb 3.5, depths (3, 3, 26, 3), final 1x1 2048, 600 px."""
    cfg = halo_model_cfg(
        block_size=10, halo_size=3, value_ratio=4.0, output_ratio=3.5, stage3_depth=26, num_features=2048
    )
    return _create_halonet('halonet_h7', pretrained, model_cfg=cfg, **kwargs)
