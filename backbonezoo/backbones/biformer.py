"""BiFormer: Vision Transformer with Bi-Level Routing Attention.

Paper: `BiFormer: Vision Transformer with Bi-Level Routing Attention` - https://arxiv.org/abs/2303.08810 (CVPR 2023)
Official code (MIT): https://github.com/rayleizhu/BiFormer

Stages 1-3 use bi-level routing attention (BRA): the map is cut into ``n_win x n_win`` regions, each region routes to
its ``topk`` most related regions (region-mean queries / keys), and its tokens attend to the tokens of those regions
through ``backbonezoo.kernels.routing_attention`` (no top-k copies of the keys / values). Stage 4 is global attention
with a depthwise "LePE" branch.

Two BRA flavours are reproduced exactly, both from the official code:

* ``routing_pad='bias'`` (``ops/bra_legacy.py``, every released T / S / B / STL checkpoint): with ``auto_pad`` the
  normalised block input is zero-padded to a multiple of ``n_win`` *before* the qkv projection, so padded tokens
  carry the projection bias into region means, attention and the LCE conv; without ``auto_pad`` stage sides must
  be multiples of ``n_win``.
* ``routing_pad='zero'`` (``ops/bra_nchw.py``, BiFormer-STL-nchw): region size ``floor(side / n_win)``, region count
  ``ceil(side / size)``, q / k / v zero-padded *after* the projection, region means over real tokens only.

Official quirks kept: routing-stage softmax scale ``qk_dim ** -0.5`` (full width, not per head), stage 4 always has
8 heads and no qkv bias, the pre-block depthwise positional conv has padding 1 whatever its kernel.
"""

import re
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    ClassifierHead,
    DropPath,
    Mlp,
    calculate_drop_path_rates,
    get_device_dtype,
    is_meta_device,
    register_notrace_module,
    trunc_normal_,
)
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from backbonezoo.kernels import routing_attention
from backbonezoo.layers import check_input, opaque_to_tracing

__all__ = ['BiFormer', 'BiLevelRoutingAttention', 'GlobalAttentionLePE', 'checkpoint_filter_fn']


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


@opaque_to_tracing  # dispatches in Python (backbonezoo.kernels)
def bi_level_routing(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_regions: int | None,
    topk: int,
    region_size: tuple[int, int] | None,
    scale: float,
    routing_scale: float | None,
) -> torch.Tensor:
    """:func:`backbonezoo.kernels.routing_attention` on ``(B, heads, H, W, d)`` maps (one region grid argument)."""
    if q.is_meta:  # shape-only forward (timm builds models on the meta device): routing needs values, the shape not
        return torch.empty_like(v)
    if q.shape[0] == 0:  # an empty batch: nothing to route (the kernel's region reshapes need a batch); keep the graph
        return v + (q.sum() + k.sum()) * 0
    return routing_attention(
        q, k, v, num_regions, topk, region_size=region_size, scale=scale, routing_scale=routing_scale
    )


@register_notrace_module  # pads on size-dependent branches: a leaf for torch.fx
class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention on NHWC maps (official key names: ``qkv`` / ``wo`` -> ``qkv`` / ``proj``)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        n_win: int = 7,
        topk: int = 4,
        qk_dim: int | None = None,
        side_dwconv: int = 5,
        routing_pad: str = 'bias',
        auto_pad: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if routing_pad not in ('bias', 'zero'):
            raise ValueError(f"routing_pad must be 'bias' (legacy BRA) or 'zero' (NCHW BRA), got {routing_pad!r}")
        self.dim = dim
        self.qk_dim = qk_dim or dim
        if self.qk_dim % num_heads or dim % num_heads:
            raise ValueError(f'qk_dim={self.qk_dim} and dim={dim} must be divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.n_win = n_win
        self.topk = topk
        self.routing_pad = routing_pad
        self.auto_pad = auto_pad
        # The official scale uses the full query width, not head_dim (kept for the released weights).
        self.scale = self.qk_dim**-0.5
        self.qkv = nn.Linear(dim, 2 * self.qk_dim + dim, **dd)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim, **dd)
        self.proj = nn.Linear(dim, dim, **dd)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).permute(0, 3, 1, 2, 4)  # (B, heads, H, W, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, height, width, _ = x.shape
        n = self.n_win
        num_regions: int | None = None
        region_size: tuple[int, int] | None = None
        routing_scale: float | None = None
        if self.routing_pad == 'bias':
            pad_b, pad_r = (-height) % n, (-width) % n
            if pad_b or pad_r:
                if not self.auto_pad:
                    raise ValueError(
                        f'BiFormer routing attention with n_win={n} needs map sides divisible by n_win, got '
                        f'{height}x{width}; build the model with auto_pad=True to pad (the official dense setting) '
                        f'or use inputs that are multiples of {16 * n}'
                    )
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))  # before the projection: padded tokens carry the bias
            num_regions = n
        else:
            if height < n or width < n:
                raise ValueError(
                    f'BiFormer routing attention with n_win={n} needs map sides >= {n}, got {height}x{width}'
                )
            region_size, routing_scale = (height // n, width // n), 1.0
        q, k, v = self.qkv(x).split([self.qk_dim, self.qk_dim, self.dim], dim=-1)
        out = bi_level_routing(
            self._heads(q),
            self._heads(k),
            self._heads(v),
            num_regions,
            self.topk,
            region_size,
            self.scale,
            routing_scale,
        )
        out = out.permute(0, 2, 3, 1, 4).flatten(3)
        out = out + _to_nhwc(self.lepe(_to_nchw(v)))
        return self.proj(out[:, :height, :width])


class GlobalAttentionLePE(nn.Module):
    """Stage-4 multi-head self-attention plus a depthwise LePE branch on the block input or on the values."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        side_dwconv: int = 5,
        lepe_on: str = 'input',
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if lepe_on not in ('input', 'value'):
            raise ValueError(f"lepe_on must be 'input' or 'value', got {lepe_on!r}")
        if dim % num_heads:
            raise ValueError(f'dim={dim} must be divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.lepe_on = lepe_on
        self.qkv = nn.Linear(dim, dim * 3, bias=False, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        qkv = self.qkv(x)
        q, k, v = qkv.flatten(1, 2).unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, height, width, channels)
        lepe_in = x if self.lepe_on == 'input' else qkv[..., 2 * channels :]
        out = out + _to_nhwc(self.lepe(_to_nchw(lepe_in)))
        return self.proj(out)


class BiFormerBlock(nn.Module):
    """[DW-conv position embedding] -> x + attn(LN(x)) -> x + MLP(LN(x)), on NHWC maps."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        n_win: int,
        topk: int | None,
        qk_dim: int | None = None,
        mlp_ratio: float = 3.0,
        side_dwconv: int = 5,
        pos_embed_kernel: int = 3,
        global_heads: int = 8,
        global_lepe: str = 'input',
        routing_pad: str = 'bias',
        auto_pad: bool = False,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        # The official padding is hard-coded to 1 whatever the kernel size.
        self.pos_embed = (
            nn.Conv2d(dim, dim, pos_embed_kernel, padding=1, groups=dim, **dd) if pos_embed_kernel > 0 else None
        )
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, **dd)
        if topk:
            self.attn = BiLevelRoutingAttention(
                dim, num_heads, n_win, topk, qk_dim, side_dwconv, routing_pad=routing_pad, auto_pad=auto_pad, **dd
            )
        else:
            self.attn = GlobalAttentionLePE(dim, global_heads, side_dwconv, lepe_on=global_lepe, **dd)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer=nn.GELU, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pos_embed is not None:
            x = x + _to_nhwc(self.pos_embed(_to_nchw(x)))
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class BiFormerStage(nn.Module):
    """Downsample (none for stage 1) then blocks; NCHW in and out, NHWC inside."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        downsample: str | None,
        drop_path: list[float],
        device=None,
        dtype=None,
        **block_kwargs: Any,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grad_checkpointing = False
        if downsample == 'conv':  # 3x3 stride-2 conv + BN (BiFormer T/S/B)
            self.downsample = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_dim, dim, 3, stride=2, padding=1, **dd),
                    norm=nn.BatchNorm2d(dim, **dd),
                )
            )
        elif downsample == 'patch':  # BN + 2x2 stride-2 conv (Swin-T layout)
            self.downsample = nn.Sequential(
                OrderedDict(
                    norm=nn.BatchNorm2d(in_dim, **dd),
                    conv=nn.Conv2d(in_dim, dim, 2, stride=2, **dd),
                )
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *[BiFormerBlock(dim, drop_path=drop_path[i], **block_kwargs, **dd) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _to_nhwc(self.downsample(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return _to_nchw(x)


class BiFormer(nn.Module):
    """BiFormer (T / S / B: conv stem, ``stem_type='conv'``; STL: patch stem, ``stem_type='patch'``)."""

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = 'avg',
        depths: tuple[int, ...] = (2, 2, 8, 2),
        embed_dims: tuple[int, ...] = (64, 128, 256, 512),
        qk_dims: tuple[int, ...] | None = None,
        head_dim: int = 32,
        mlp_ratios: tuple[float, ...] = (3, 3, 3, 3),
        n_win: int = 7,
        topks: tuple[int | None, ...] = (1, 4, 16, None),
        side_dwconv: int = 5,
        pos_embed_kernel: int = 3,
        stem_type: str = 'conv',
        global_heads: int = 8,
        global_lepe: str = 'input',
        routing_pad: str = 'bias',
        auto_pad: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        """
        Args:
            depths / embed_dims / qk_dims / mlp_ratios / topks: per stage; ``topks[i]`` of None (or 0) makes the
                stage global attention. ``qk_dims`` default to ``embed_dims``.
            head_dim: routing-stage heads are ``qk_dim // head_dim``; global stages always use ``global_heads``.
            n_win: regions per side in every routing stage (a count, not a size: 7 for 224 classification, the
                official dense configs use 16 for COCO and 8 for ADE20K).
            stem_type: 'conv' (two 3x3 stride-2 conv-BN, 3x3 stride-2 conv-BN downsamples, DW-conv position
                embedding before every block) or 'patch' (4x4 patch conv-BN, BN + 2x2 conv merges).
            global_lepe: stage-4 LePE on the block 'input' (legacy models) or on the 'value' map (NCHW model).
            routing_pad: 'bias' (legacy BRA) or 'zero' (NCHW BRA), see the module docstring.
            auto_pad: legacy BRA only: pad maps to multiples of n_win (every official dense config sets it).
        """
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        num_stages = len(depths)
        if not (len(embed_dims) == len(mlp_ratios) == len(topks) == num_stages):
            raise ValueError(
                f'depths, embed_dims, mlp_ratios and topks need one entry per stage, got {depths}, {embed_dims}, '
                f'{mlp_ratios}, {topks}'
            )
        if stem_type not in ('conv', 'patch'):
            raise ValueError(f"stem_type must be 'conv' or 'patch', got {stem_type!r}")
        qk_dims = tuple(qk_dims or embed_dims)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.n_win = n_win
        self.routing_pad = routing_pad
        self.auto_pad = auto_pad
        self.stem_type = stem_type
        self.topks = tuple(topks)

        if stem_type == 'conv':
            self.stem = nn.Sequential(
                OrderedDict(
                    conv1=nn.Conv2d(in_chans, embed_dims[0] // 2, 3, stride=2, padding=1, **dd),
                    norm1=nn.BatchNorm2d(embed_dims[0] // 2, **dd),
                    act=nn.GELU(),
                    conv2=nn.Conv2d(embed_dims[0] // 2, embed_dims[0], 3, stride=2, padding=1, **dd),
                    norm2=nn.BatchNorm2d(embed_dims[0], **dd),
                )
            )
        else:
            self.stem = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_chans, embed_dims[0], 4, stride=4, **dd),
                    norm=nn.BatchNorm2d(embed_dims[0], **dd),
                )
            )
            pos_embed_kernel = 0

        dpr = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)  # linear over all blocks
        stages, self.feature_info = [], []
        for i in range(num_stages):
            stages.append(
                BiFormerStage(
                    embed_dims[i - 1] if i else embed_dims[0],
                    embed_dims[i],
                    depths[i],
                    downsample=stem_type if i else None,
                    drop_path=dpr[i],
                    num_heads=qk_dims[i] // head_dim,
                    n_win=n_win,
                    topk=topks[i],
                    qk_dim=qk_dims[i],
                    mlp_ratio=mlp_ratios[i],
                    side_dwconv=side_dwconv,
                    pos_embed_kernel=pos_embed_kernel,
                    global_heads=global_heads,
                    global_lepe=global_lepe,
                    routing_pad=routing_pad,
                    auto_pad=auto_pad,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=4 * 2**i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.norm = nn.BatchNorm2d(self.num_features, **dd)
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        if not is_meta_device(device):  # timm's rule: a meta model holds no values to initialise
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def min_input_size(self) -> int:
        """Smallest input side: stage 3 (stride 16) must hold n_win tokens, unless legacy auto-padding is on."""
        if self.routing_pad == 'bias' and self.auto_pad:
            return 32
        return 16 * self.n_win if any(self.topks[:3]) else 32

    def _check_input(self, x: torch.Tensor) -> None:
        reason = (
            'the stride-32 map needs a pixel'
            if self.min_input_size == 32
            else f'n_win={self.n_win} regions per side at stride 16'
        )
        check_input(
            x, self.stem[0].weight, 'BiFormer', in_chans=self.in_chans, min_size=self.min_input_size, reason=reason
        )

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)'
            if coarse
            else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^norm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        dd = get_device_dtype(self)  # the model's
        self.num_classes = num_classes
        self.head = ClassifierHead(
            self.num_features,
            num_classes,
            pool_type=self.head.global_pool.pool_type if global_pool is None else global_pool,
            drop_rate=self.drop_rate,
            **dd,
        )
        self.head.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (NCHW). ``norm`` applies the final BatchNorm to the last stage's output."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        self._check_input(x)
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1
        x = self.stem(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: max_index + 1]
        for feat_idx, stage in enumerate(stages):
            x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(self.norm(x) if norm and feat_idx == last_idx else x)
        if intermediates_only:
            return intermediates
        if feat_idx == last_idx:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[: max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.stem(x)
        x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Official key -> ours, for the conv-stem (T / S / B) and patch-stem (STL, STL-nchw) layouts.
_CONV_LAYOUT = (
    (r'^downsample_layers\.0\.0\.', 'stem.conv1.'),
    (r'^downsample_layers\.0\.1\.', 'stem.norm1.'),
    (r'^downsample_layers\.0\.3\.', 'stem.conv2.'),
    (r'^downsample_layers\.0\.4\.', 'stem.norm2.'),
    (r'^downsample_layers\.(\d+)\.0\.', r'stages.\1.downsample.conv.'),
    (r'^downsample_layers\.(\d+)\.1\.', r'stages.\1.downsample.norm.'),
    (r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.'),
    (r'\.mlp\.3\.', '.mlp.fc2.'),
)
_PATCH_LAYOUT = (
    (r'^downsample_layers\.0\.0\.', 'stem.conv.'),
    (r'^downsample_layers\.0\.1\.', 'stem.norm.'),
    (r'^downsample_layers\.(\d+)\.0\.', r'stages.\1.downsample.norm.'),
    (r'^downsample_layers\.(\d+)\.1\.', r'stages.\1.downsample.conv.'),
    (r'\.mlp\.2\.', '.mlp.fc2.'),
)
_COMMON = (
    (r'\.attn\.qkv\.qkv\.', '.attn.qkv.'),  # legacy BRA
    (r'\.attn\.qkv_linear\.', '.attn.qkv.'),  # NCHW BRA (1x1 convs)
    (r'\.attn\.(wo|output_linear)\.', '.attn.proj.'),
    (r'\.mlp\.0\.', '.mlp.fc1.'),
    (r'^head\.', 'head.fc.'),
)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: BiFormer) -> dict[str, torch.Tensor]:
    """Convert an official BiFormer checkpoint (legacy or NCHW BRA) to this module's layout.

    Our own layout passes through; keys the mapping does not know are left in place so that a strict load names
    them (e.g. the dense wrapper's ``extra_norms``).
    """
    if 'downsample_layers.0.0.weight' not in state_dict:
        return state_dict
    rules = (_CONV_LAYOUT if model.stem_type == 'conv' else _PATCH_LAYOUT) + _COMMON
    expected = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        target = expected.get(key)
        if target is not None and value.dim() == 4 and target.dim() == 2 and value.shape[2:] == (1, 1):
            value = value.flatten(1)  # NCHW model's 1x1 convs -> our Linear layers
        out[key] = value
    return out


def _create_biformer(variant: str, pretrained: bool = False, **kwargs: Any) -> BiFormer:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        BiFormer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(name: str, **kwargs: Any) -> dict[str, Any]:
    # url / hf_hub_id, license, paper and origin: the zoo record (backbonezoo/zoo), never restated here
    from backbonezoo.zoo import pretrained_cfg

    return {
        'num_classes': 1000,
        'input_size': (3, 224, 224),
        'min_input_size': (3, 112, 112),
        'pool_size': (7, 7),
        'crop_pct': 0.875,
        'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv1',
        'classifier': 'head.fc',
        **pretrained_cfg(name),
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        'biformer_tiny.in1k': _cfg('biformer_tiny.in1k'),
        'biformer_small.in1k': _cfg('biformer_small.in1k'),
        'biformer_base.in1k': _cfg('biformer_base.in1k'),
        'biformer_stl.in1k': _cfg('biformer_stl.in1k', first_conv='stem.conv'),
        'biformer_stl_nchw.in1k': _cfg('biformer_stl_nchw.in1k', first_conv='stem.conv', min_input_size=(3, 112, 112)),
    }
)


@register_model
def biformer_tiny(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    model_args = dict(depths=(2, 2, 8, 2), embed_dims=(64, 128, 256, 512), mlp_ratios=(3, 3, 3, 3))
    return _create_biformer('biformer_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_small(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(64, 128, 256, 512), mlp_ratios=(3, 3, 3, 3))
    return _create_biformer('biformer_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_base(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(96, 192, 384, 768), mlp_ratios=(3, 3, 3, 3))
    return _create_biformer('biformer_base', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_stl(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    model_args = dict(depths=(2, 2, 6, 2), embed_dims=(96, 192, 384, 768), mlp_ratios=(4, 4, 4, 4), stem_type='patch')
    return _create_biformer('biformer_stl', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_stl_nchw(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    model_args = dict(
        depths=(2, 2, 6, 2),
        embed_dims=(96, 192, 384, 768),
        mlp_ratios=(4, 4, 4, 4),
        stem_type='patch',
        global_lepe='value',
        routing_pad='zero',
    )
    return _create_biformer('biformer_stl_nchw', pretrained=pretrained, **dict(model_args, **kwargs))
