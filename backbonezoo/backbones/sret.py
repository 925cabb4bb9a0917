"""SReT: Sliced Recursive Transformer.

Paper: "Sliced Recursive Transformer", Zhiqiang Shen, Zechun Liu, Eric Xing, ECCV 2022 (arXiv:2111.05297).
Official code: https://github.com/szq0214/SReT (MIT). Written from the paper and the official model's behaviour;
equivalence is proven by the parity fixture in ``tests/fixtures/parity/sret``.

A three-stage ViT (strides 8 / 16 / 32) with a convolutional stem. Each attention block is applied twice
(recursion) with a small MLP "projection layer" after each application, so a stage of depth ``d`` owns ``d / 2``
attention blocks and ``d`` projection layers. Attention is sliced: the tokens (raster order) are split into
contiguous groups that attend within themselves; the recursive application uses other group counts and, when it
has more than one group, first shuffles the tokens by a random permutation.

Randomness at inference: the official model draws that permutation with ``torch.randperm`` from the global CPU
generator on every recursive application, in eval mode too. We do the same by default (same draws, same order, so
seeding the global generator reproduces the official outputs). For reproducible inference set
``model.set_shuffle_seed(seed)``: every recursive pass then uses a fixed pseudo-random permutation derived from
``seed``, the stage and the block (integer arithmetic only, so it is exact on every backend, compiles and exports),
so outputs no longer depend on the global RNG (nor perturb it).

Other input sizes: the absolute position embedding (sized ``img_size / 8``) is resized bicubically to the stem's
output, as timm does for ViTs; every stage's token count must be divisible by its group counts, which holds for
sides that are multiples of 32.
"""

import os
import warnings
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    LayerNorm2d,
    Mlp,
    NormMlpClassifierHead,
    calculate_drop_path_rates,
    get_device_dtype,
    register_notrace_function,
    trunc_normal_,
)
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint

from backbonezoo.layers import check_input
from backbonezoo.layers.attention import dense_attention

__all__ = ['SReT', 'checkpoint_filter_fn']

SHUFFLE_SEED_ENV = 'BACKBONEZOO_SRET_SHUFFLE_SEED'

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class SlicedAttention(nn.Module):
    """Multi-head self-attention within contiguous token groups, optionally after a token permutation."""

    def __init__(
        self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0, device=None, dtype=None
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % num_heads:
            raise ValueError(f'dim={dim} must be divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, **dd)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x: torch.Tensor,
        num_groups: int = 1,
        perm: torch.Tensor | None = None,
        out_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``out_scale``: a scalar the output is multiplied by, folded into the output projection's weights."""
        B, N, C = x.shape
        if perm is not None:
            x = x[:, perm]
        # Groups are contiguous runs of N / G tokens: attention on a (B * G) batch is the block-diagonal attention.
        qkv = self.qkv(x).reshape(B * num_groups, N // num_groups, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = dense_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(B, N, C)
        if perm is not None:
            x = x[:, torch.argsort(perm)]
        x = self.proj(x) if out_scale is None else scaled_linear(x, self.proj.weight, self.proj.bias, out_scale)
        return self.proj_drop(x)


def scaled_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor
) -> torch.Tensor:
    """``scale * F.linear(x, weight, bias)`` with the scalar folded into the (small) weights, not the activations."""
    return F.linear(x, weight * scale, bias * scale if bias is not None else None)


class ScaledOutputMlp(Mlp):
    """timm's ``Mlp`` (same keys) whose output can be multiplied by a scalar, folded into ``fc2``."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(self.drop1(self.act(self.fc1(x))))
        x = self.fc2(x) if scale is None else scaled_linear(x, self.fc2.weight, self.fc2.bias, scale)
        return self.drop2(x)


class ResidualScale(nn.Module):
    """A learnable scalar multiplying a residual path (initialised to 1)."""

    def __init__(self, device=None, dtype=None):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class AttentionBlock(nn.Module):
    """x = s1 * x + s2 * Attn(LN(x)); x = s3 * x + s4 * MLP(LN(x)), with learnable scalars s_i."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm1 = LayerNorm(dim, **dd)
        self.attn = SlicedAttention(dim, num_heads, attn_drop=attn_drop, proj_drop=proj_drop, **dd)
        self.norm2 = LayerNorm(dim, **dd)
        self.mlp = ScaledOutputMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.skip_scale1, self.attn_scale = ResidualScale(**dd), ResidualScale(**dd)
        self.skip_scale2, self.mlp_scale = ResidualScale(**dd), ResidualScale(**dd)

    def forward(self, x: torch.Tensor, num_groups: int = 1, perm: torch.Tensor | None = None) -> torch.Tensor:
        # s1 * x + s2 * f(x) as one addcmul, s2 folded into f's last linear: a third of the elementwise passes
        # over the activations (the official code's three multiplies and add per residual took ~25 % of the time)
        y = self.drop_path(self.attn(self.norm1(x), num_groups, perm, self.attn_scale.scale))
        x = torch.addcmul(y, x, self.skip_scale1.scale)
        y = self.drop_path(self.mlp(self.norm2(x), self.mlp_scale.scale))
        return torch.addcmul(y, x, self.skip_scale2.scale)


class ProjectionLayer(nn.Module):
    """The non-linear projection between recursions: x = s1 * x + s2 * MLP(LN(x))."""

    def __init__(self, dim: int, mlp_ratio: float, proj_drop: float = 0.0, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm = LayerNorm(dim, **dd)
        self.mlp = ScaledOutputMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.skip_scale, self.mlp_scale = ResidualScale(**dd), ResidualScale(**dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.mlp(self.norm(x), self.mlp_scale.scale), x, self.skip_scale.scale)


class ConvPool(nn.Module):
    """PiT-style pooling between stages: 3x3 stride-2 grouped conv doubling the channels."""

    def __init__(self, in_chs: int, out_chs: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=2, padding=1, groups=in_chs, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConvStem(nn.Module):
    """Three 3x3 stride-2 conv + BN + ReLU layers (total stride 8): in_chans -> C/2 -> C -> C."""

    def __init__(self, in_chans: int, out_chs: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        mid_chs = out_chs // 2
        self.conv1, self.bn1 = nn.Conv2d(in_chans, mid_chs, 3, 2, 1, **dd), nn.BatchNorm2d(mid_chs, **dd)
        self.conv2, self.bn2 = nn.Conv2d(mid_chs, out_chs, 3, 2, 1, **dd), nn.BatchNorm2d(out_chs, **dd)
        self.conv3, self.bn3 = nn.Conv2d(out_chs, out_chs, 3, 2, 1, **dd), nn.BatchNorm2d(out_chs, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.relu(self.bn3(self.conv3(x)))


class RecursiveUnit(nn.Module):
    """One attention block applied twice: block, projection, block again (recursion), projection."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        proj_mlp_ratio: float,
        groups: int,
        recursive_groups: int,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.groups, self.recursive_groups = groups, recursive_groups
        self.block = AttentionBlock(dim, num_heads, mlp_ratio, proj_drop, attn_drop, drop_path, **dd)
        self.proj1 = ProjectionLayer(dim, proj_mlp_ratio, proj_drop, **dd)
        self.proj2 = ProjectionLayer(dim, proj_mlp_ratio, proj_drop, **dd)

    def forward(self, x: torch.Tensor, perm: torch.Tensor | None = None) -> torch.Tensor:
        x = self.proj1(self.block(x, self.groups))
        return self.proj2(self.block(x, self.recursive_groups, perm))


@register_notrace_function
def check_group_split(height: int, width: int, groups: list[int]) -> None:
    for g in groups:
        if (height * width) % g != 0:
            raise ValueError(
                f'a {height}x{width} map ({height * width} tokens) cannot be split into {g} attention groups; '
                'use input sides that are multiples of 32'
            )


def fixed_permutation(num_tokens: int, key: int, device: torch.device) -> torch.Tensor:
    """A pseudo-random permutation of ``range(num_tokens)`` determined by ``key`` alone.

    i -> (a * i + key) mod p, with p prime > num_tokens and a = 48271 * (key + 1) mod p (non-zero, so invertible),
    takes distinct values that a large multiplier scatters; sorting them gives the permutation. Integer ops keep it
    exact everywhere (eager, compile, ONNX).
    """
    prime = 2_147_483_647
    multiplier = (48_271 * (key % prime + 1)) % prime
    index = torch.arange(num_tokens, device=device, dtype=torch.int64)
    return torch.argsort((index * multiplier + key) % prime)


class SReTStage(nn.Module):
    """One stage: (pooling,) then ``depth / 2`` recursive units on the token sequence (raster order)."""

    def __init__(
        self,
        in_chs: int,
        dim: int,
        depth: int,
        num_heads: int,
        groups: int,
        recursive_groups: int,
        mlp_ratio: float,
        proj_mlp_ratio: float,
        downsample: bool,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: Sequence[float] = (),
        stage_index: int = 0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if depth % 2:
            raise ValueError(f'depth={depth}: every attention block is applied twice, so depth must be even')
        self.groups, self.recursive_groups = groups, recursive_groups
        self.stage_index = stage_index
        self.grad_checkpointing = False
        self.downsample = ConvPool(in_chs, dim, **dd) if downsample else nn.Identity()
        # The official model gives block j the drop-path rate of the stage's j-th application.
        self.units = nn.ModuleList(
            RecursiveUnit(
                dim,
                num_heads,
                mlp_ratio,
                proj_mlp_ratio,
                groups,
                recursive_groups,
                proj_drop,
                attn_drop,
                drop_path[j] if drop_path else 0.0,
                **dd,
            )
            for j in range(depth // 2)
        )

    def forward(self, x: torch.Tensor, shuffle_seed: int | None = None) -> torch.Tensor:
        x = self.downsample(x)
        B, C, H, W = x.shape
        check_group_split(H, W, [self.groups, self.recursive_groups])
        x = x.flatten(2).transpose(1, 2)
        for j, unit in enumerate(self.units):
            # One permutation per recursive pass, drawn in the official order (and outside any checkpointed call,
            # so recomputation reuses it). Only the recursive pass of a sliced block shuffles.
            perm: torch.Tensor | None = None
            if self.recursive_groups > 1:
                if shuffle_seed is None:
                    perm = torch.randperm(H * W).to(x.device)
                else:
                    key = shuffle_seed * 1_000_003 + self.stage_index * 1_009 + j
                    perm = fixed_permutation(H * W, key, x.device)
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(unit, x, perm, use_reentrant=False)
            else:
                x = unit(x, perm)
        return x.transpose(1, 2).reshape(B, C, H, W)


@register_notrace_function
def resize_pos_embed(pos_embed: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Bicubic resize of an NCHW absolute position embedding to ``size``.

    Always resampled, without a shape test: at the built size bicubic resampling is an exact identity, and a branch
    on the input size would freeze exported graphs (ONNX, torch.export) to one resolution.
    """
    return F.interpolate(pos_embed, size=size, mode='bicubic', align_corners=False)


class SReT(nn.Module):
    """Sliced Recursive Transformer.

    Args:
        img_size: size the absolute position embedding is built for (img_size / 8 per side).
        base_dims, num_heads: per-stage head dim and head count (stage width = base_dim * num_heads).
        depths: attention applications per stage (each block is applied twice, so depth / 2 blocks).
        groups: group count of each block's first application per stage; ``None`` for unsliced (global) attention.
        recursive_groups: group count of the second (recursive) application; shuffled first when > 1.
        mlp_ratio: block MLP ratio; proj_mlp_ratio: ratio of the projection layers between recursions.
        shuffle_seed: ``None`` (default) draws the recursive passes' token permutations from the global CPU RNG, as
            the official model does; an int uses fixed permutations derived from it (deterministic inference).
            When ``None``, the ``BACKBONEZOO_SRET_SHUFFLE_SEED`` environment variable, if set, provides the seed.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = 'avg',
        base_dims: Sequence[int] = (32, 32, 32),
        num_heads: Sequence[int] = (2, 4, 8),
        depths: Sequence[int] = (4, 10, 6),
        groups: Sequence[int] | None = (8, 4, 1),
        recursive_groups: Sequence[int] | None = (2, 1, 1),
        mlp_ratio: float = 3.6,
        proj_mlp_ratio: float = 1.0,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        shuffle_seed: int | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        num_stages = len(depths)
        if not (len(base_dims) == len(num_heads) == num_stages):
            raise ValueError(f'base_dims={base_dims}, num_heads={num_heads}, depths={depths} must have equal lengths')
        groups = tuple(groups) if groups is not None else (1,) * num_stages
        recursive_groups = tuple(recursive_groups) if recursive_groups is not None else (1,) * num_stages
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        dims = [b * h for b, h in zip(base_dims, num_heads)]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = img_size
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = dims[-1]
        if shuffle_seed is None and os.environ.get(SHUFFLE_SEED_ENV):
            shuffle_seed = int(os.environ[SHUFFLE_SEED_ENV])
        self.shuffle_seed = shuffle_seed
        self.min_input_size = 2 ** (num_stages + 2)

        self.stem = ConvStem(in_chans, dims[0], **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, dims[0], img_size[0] // 8, img_size[1] // 8, **dd))
        self.pos_drop = nn.Dropout(drop_rate)

        # Official rule: rate * i / total for the i-th of all applications, so drop_path_rate itself is never reached:
        # the first ``total`` of ``total + 1`` evenly spaced rates
        total = sum(depths)
        rates = calculate_drop_path_rates(drop_path_rate, total + 1)[:total]
        stages, self.feature_info, start, prev = [], [], 0, dims[0]
        for i in range(num_stages):
            stages.append(
                SReTStage(
                    prev,
                    dims[i],
                    depths[i],
                    num_heads[i],
                    groups[i],
                    recursive_groups[i],
                    mlp_ratio,
                    proj_mlp_ratio,
                    downsample=i > 0,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=rates[start : start + depths[i]],
                    stage_index=i,
                    **dd,
                )
            )
            start += depths[i]
            prev = dims[i]
            self.feature_info.append(dict(num_chs=dims[i], reduction=8 * 2**i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.head = NormMlpClassifierHead(
            dims[-1],
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-6),
            **dd,
        )
        if self.pos_embed.device.type != 'meta':  # nothing to initialise on the meta device
            self._init_weights()

    def _init_weights(self):
        trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def set_shuffle_seed(self, seed: int | None) -> None:
        """``None``: draw token permutations from the global CPU RNG (official behaviour); an int: use fixed
        permutations derived from it (deterministic inference, exportable)."""
        self.shuffle_seed = seed

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {'pos_embed'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r'^pos_embed|^stem',
            blocks=r'^stages\.(\d+)'
            if coarse
            else [(r'^stages\.(\d+)\.(blocks|projs)\.(\d+)', None), (r'^stages\.(\d+)\.downsample', (0,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.reset_head(num_classes, global_pool)

    @torch.jit.ignore
    def reset_head(self, num_classes: int, global_pool: str | None = None, reset_other: bool = False) -> None:
        """``reset_classifier``, optionally also removing the head's norm (``reset_other``: what pruning to an
        earlier stage needs, whose width the norm does not fit). New layers follow the model's device and dtype."""
        self.num_classes = num_classes
        dd = get_device_dtype(self)
        self.head.reset(num_classes, global_pool, reset_other=reset_other, in_features=self.num_features, **dd)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        check_input(
            x,
            self.stem.conv1.weight,
            'SReT',
            in_chans=self.in_chans,
            min_size=self.min_input_size,
            reason='sides that are multiples of 32 always work',
        )
        x = self.stem(x)
        return self.pos_drop(x + resize_pos_embed(self.pos_embed, x.shape[-2:]))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ):
        """Stage outputs (strides 8 / 16 / 32) as NCHW maps; ``norm`` has no effect (SReT normalises after
        pooling only)."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt={output_fmt!r}: only 'NCHW' is supported")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self._embed(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x, self.shuffle_seed)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[: max_index + 1]
        if prune_end:
            # the head's norm is sized for the last stage, so it goes with it
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_head(0, '', reset_other=True)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._embed(x)
        for stage in self.stages:
            x = stage(x, self.shuffle_seed)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Official names of the learnable residual scalars (``coefficientN.bias``) -> ours, per module kind.
_BLOCK_SCALES = {
    'coefficient1': 'skip_scale1',
    'coefficient2': 'attn_scale',
    'coefficient3': 'skip_scale2',
    'coefficient4': 'mlp_scale',
}
_PROJ_NAMES = {'coefficient1': 'skip_scale', 'coefficient2': 'mlp_scale', 'norm1': 'norm'}


def _official_to_ours(key: str) -> tuple[str, int] | None:
    """Map one official key to ours: (key, rank); among duplicates the higher rank (the later key) wins.

    Official stages list their executed modules [B0, P0, B0, P1, B1, P2, B1, P3, ...]: index i belongs to unit
    i // 4, as its block (i % 4 in {0, 2}: the same block twice), its first projection (1) or its second (3).
    """
    parts = key.split('.')
    if parts[0] == 'patch_embed':
        return 'stem.' + '.'.join(parts[1:]), 0
    if parts[0] == 'pools':
        return f'stages.{int(parts[1]) + 1}.downsample.' + '.'.join(parts[2:]), 0
    if parts[0] in ('norm', 'head') and len(parts) == 2:
        return f'head.{"norm" if parts[0] == "norm" else "fc"}.{parts[1]}', 0
    if parts[0] != 'transformers' or len(parts) < 6 or parts[2] != 'blocks':
        return None
    stage, index, rest = int(parts[1]), int(parts[3]), parts[4:]
    prefix = f'stages.{stage}.units.{index // 4}.'
    if index % 2:
        if rest[0] in _PROJ_NAMES:
            rest = [_PROJ_NAMES[rest[0]], 'scale' if rest[0].startswith('coefficient') else rest[1]]
        return prefix + ('proj1.' if index % 4 == 1 else 'proj2.') + '.'.join(rest), 0
    if rest[0] in _BLOCK_SCALES:
        rest = [_BLOCK_SCALES[rest[0]], 'scale']
    return prefix + 'block.' + '.'.join(rest), index % 4


def checkpoint_filter_fn(state_dict: dict, model: SReT) -> dict:
    """Convert an official SReT checkpoint (sliced or not, distilled or not) to our layout.

    Shared blocks are stored twice in official files; we keep the later key (what the official ``load_state_dict``
    ends with) and warn when the two copies differ. The position embedding is resized to the model's when the
    checkpoint was trained at another resolution. Our own layout passes through.
    """
    if 'stem.conv1.weight' in state_dict:
        out = dict(state_dict)
    else:
        out, priority = {}, {}
        for key, value in state_dict.items():
            mapped = _official_to_ours(key)
            if mapped is None:
                out[key] = value  # unknown: left for the strict check to name
                continue
            new_key, rank = mapped
            if new_key in out and not torch.equal(out[new_key], value):
                warnings.warn(
                    f'official checkpoint holds two different copies of shared parameter {new_key} '
                    '(a real checkpoint stores identical copies); using the later one, as the official loader does',
                    stacklevel=2,
                )
            if new_key not in out or rank >= priority[new_key]:
                out[new_key], priority[new_key] = value, rank
    pos = out.get('pos_embed')
    if pos is not None and pos.shape != model.pos_embed.shape and pos.ndim == 4:
        out['pos_embed'] = F.interpolate(
            pos.float(), size=model.pos_embed.shape[-2:], mode='bicubic', align_corners=False
        ).to(pos.dtype)
    return out


def _create_sret(variant: str, pretrained: bool = False, **kwargs) -> SReT:
    return build_model_with_cfg(
        SReT,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2), feature_cls='getter'),
        **kwargs,
    )


def _cfg(name: str, **kwargs) -> dict:
    # url / hf_hub_id, license, paper and origin: the zoo record (backbonezoo/zoo), never restated here
    from backbonezoo.zoo import pretrained_cfg

    return {
        'num_classes': 1000,
        'input_size': (3, 224, 224),
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


# Official Google Drive files (a manual download each: see the zoo record); `.in1k_dist` = trained with distillation.
default_cfgs = generate_default_cfgs(
    {
        'sret_tiny.in1k': _cfg('sret_tiny.in1k'),
        'sret_tiny.in1k_dist': _cfg('sret_tiny.in1k_dist'),
        'sret_little_tiny.in1k': _cfg('sret_little_tiny.in1k'),
        'sret_little_tiny.in1k_dist': _cfg('sret_little_tiny.in1k_dist'),
        # its slicing groups need the token counts of 224-pixel inputs or larger (smaller maps do not split evenly)
        'sret_little_tiny_g16.in1k': _cfg('sret_little_tiny_g16.in1k', min_input_size=(3, 224, 224)),
        'sret_small.in1k': _cfg('sret_small.in1k'),
        'sret_tiny_noslice.in1k': _cfg('sret_tiny_noslice.in1k'),
        'sret_tiny_noslice.in1k_dist': _cfg('sret_tiny_noslice.in1k_dist'),
        'sret_little_tiny_noslice.in1k': _cfg('sret_little_tiny_noslice.in1k'),
        'sret_little_tiny_noslice.in1k_dist': _cfg('sret_little_tiny_noslice.in1k_dist'),
        'sret_small_noslice.in1k': _cfg('sret_small_noslice.in1k'),
        'sret_tiny_noslice_384.in1k_dist': _cfg(
            'sret_tiny_noslice_384.in1k_dist', input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0
        ),
        'sret_small_noslice_384.in1k_dist': _cfg(
            'sret_small_noslice_384.in1k_dist', input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0
        ),
        'sret_small_noslice_512.in1k_dist': _cfg(
            'sret_small_noslice_512.in1k_dist', input_size=(3, 512, 512), pool_size=(16, 16), crop_pct=1.0
        ),
    }
)

_TINY = dict(base_dims=(32, 32, 32), num_heads=(2, 4, 8), depths=(4, 10, 6), mlp_ratio=3.6, proj_mlp_ratio=1.0)
_LITTLE_TINY = dict(_TINY, mlp_ratio=4.0)
_SMALL = dict(base_dims=(42, 42, 42), num_heads=(3, 6, 12), depths=(4, 10, 6), mlp_ratio=3.0, proj_mlp_ratio=2.0)
_SLICED = dict(groups=(8, 4, 1), recursive_groups=(2, 1, 1))
_NO_SLICE = dict(groups=None, recursive_groups=None)


@register_model
def sret_tiny(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_TINY, **_SLICED, drop_path_rate=0.1)
    return _create_sret('sret_tiny', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_little_tiny(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_LITTLE_TINY, **_SLICED, drop_path_rate=0.1)
    return _create_sret('sret_little_tiny', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_little_tiny_g16(pretrained: bool = False, **kwargs) -> SReT:
    """SReT-LT with the README's alternative slicing [16-14-1, 1-1-1]."""
    model_args = dict(_LITTLE_TINY, groups=(16, 14, 1), recursive_groups=(1, 1, 1), drop_path_rate=0.1)
    return _create_sret('sret_little_tiny_g16', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_small(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_SMALL, **_SLICED, drop_path_rate=0.1)
    return _create_sret('sret_small', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_tiny_noslice(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_TINY, **_NO_SLICE)
    return _create_sret('sret_tiny_noslice', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_little_tiny_noslice(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_LITTLE_TINY, **_NO_SLICE)
    return _create_sret('sret_little_tiny_noslice', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_small_noslice(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_SMALL, **_NO_SLICE)
    return _create_sret('sret_small_noslice', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_tiny_noslice_384(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_TINY, **_NO_SLICE, img_size=384)
    return _create_sret('sret_tiny_noslice_384', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_small_noslice_384(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_SMALL, **_NO_SLICE, img_size=384)
    return _create_sret('sret_small_noslice_384', pretrained, **dict(model_args, **kwargs))


@register_model
def sret_small_noslice_512(pretrained: bool = False, **kwargs) -> SReT:
    model_args = dict(_SMALL, **_NO_SLICE, img_size=512)
    return _create_sret('sret_small_noslice_512', pretrained, **dict(model_args, **kwargs))
