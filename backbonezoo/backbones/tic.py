"""TiC: Vision Transformer in Convolution (MSA-Conv), rebuilt from the paper.

Paper: "TiC: Exploring Vision Transformer in Convolution", Song Zhang, Qingzhong Wang, Jiang Bian, Haoyi Xiong
(arXiv:2310.04134). The authors released only the MSA-Conv CUDA operator (https://github.com/StriveZs/MSA-Conv, no
license): no network, configs or checkpoints. Everything above the operator is backbonezoo's design, written from the
paper's abstract and the author's answers in the operator's issues (https://github.com/StriveZs/MSA-Conv/issues/1
and /issues/2); the variants are our configurations.

**MSA-Conv** is self-attention over a sliding k x k window (dilation ``d``, stride 1) computed like a convolution:
neighbours outside the map are zero keys and zero values that still take part in the softmax (the official op pads
with zeros and never masks). It is ``backbonezoo.kernels.local_attention(..., border='zero')`` with q / k / v from one
fused projection (split ``[q | k | v]``), heads folded into the batch and the scale ``head_dim ** -0.5``. The
paper's three forms are its head counts and dilation: one head = standard (every channel in one logit, like a dense
conv), ``heads = channels`` = depthwise, ``dilation > 1`` = dilated. There is no attention dropout (the official toy
block drops 10 % of the attention weights; the kernels fuse softmax and aggregation).

**Multi-directional cyclic shift** (our reading of the name): in a shifted block the heads are split into up to four
groups whose keys / values are rolled cyclically by ``shift_size`` tokens along the four diagonals before MSA-Conv,
so each group's window sees another neighbourhood, and tokens near one border see the opposite border.

**Inter-pooling** (the author's explanation in StriveZs/MSA-Conv#2): queries go space-to-batch by a factor ``f``
(pixel (y, x) joins the sub-image (y mod f, x mod f)); keys / values are downsampled by a depthwise f x f stride-f
convolution and shared by the f * f sub-images; MSA-Conv runs on each; batch-to-space restores the map. Every query
attends to the k x k window of pooled tokens around its own f x f cell: a window f times wider at the same cost.
(Equivalently: MSA-Conv with dilation ``f * d`` over the pooled keys / values upsampled to pixels; the batch form
runs faster on the kernels.) Maps whose sides are not multiples of ``f`` are zero-padded (bottom / right) and cropped
after.

Network (ours): a two-conv stem (stride 4), four stages of pre-norm blocks (MSA-Conv + MLP) joined by 2x2 stride-2
convolutions, strides 4 / 8 / 16 / 32. Blocks alternate: even blocks plain MSA-Conv (dilation 1); odd blocks the
long-range form (stage dilation, inter-pooling, cyclic shift). Nothing depends on the input size (no position
embedding, no window partition), so one model runs at any size of at least 32 (odd sides are rounded up at each
stride-2 step, like a padded convolution). The size arithmetic is written as products (pad to ``f * ceil(H / f)``),
never as remainders or slices of a padded map, so torch.export and the dynamo ONNX exporter keep H and W symbolic:
one exported graph runs at other sizes, from about half the traced side up (the fast local-attention tiling is sized
at the traced size and needs two tiles per dilation group: 113 px for a graph traced at 224).

Tensors inside the stages are NHWC; ``forward_features`` and the intermediates are NCHW.
"""

import math
from collections.abc import Callable, Sequence
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

from backbonezoo.kernels import local_attention
from backbonezoo.layers import check_input, opaque_to_tracing

__all__ = ['TiC', 'MSAConv', 'msa_conv', 'checkpoint_filter_fn']

MIN_INPUT_SIZE = 32  # a 32x32 image leaves a 1x1 map in stage 4

# Roll directions (rows, columns) of the cyclic-shift head groups: the four diagonals.
SHIFT_DIRECTIONS = ((1, 1), (-1, -1), (1, -1), (-1, 1))


def cyclic_shift(x: torch.Tensor, shift_size: int, dims: tuple[int, int], head_dim: int) -> torch.Tensor:
    """Roll head group ``g`` of ``x`` by ``shift_size * SHIFT_DIRECTIONS[g]`` along ``dims`` (rows, columns).

    The heads (axis ``head_dim``) form ``gcd(heads, 4)`` equal groups, so every group has the same width.
    """
    groups = math.gcd(x.shape[head_dim], len(SHIFT_DIRECTIONS))
    chunks = x.chunk(groups, dim=head_dim)
    rolled = [
        torch.roll(chunk, shifts=(dy * shift_size, dx * shift_size), dims=dims)
        for chunk, (dy, dx) in zip(chunks, SHIFT_DIRECTIONS)
    ]
    return torch.cat(rolled, dim=head_dim)


def space_to_batch(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, heads, H, W, d) -> (B * f * f, heads, H / f, W / f, d): sub-image ``a * f + b`` is ``x[.., a::f, b::f]``."""
    B, heads, H, W, d = x.shape
    x = x.reshape(B, heads, H // factor, factor, W // factor, factor, d).permute(0, 3, 5, 1, 2, 4, 6)
    return x.reshape(B * factor * factor, heads, H // factor, W // factor, d)


def batch_to_space(x: torch.Tensor, factor: int, batch: int) -> torch.Tensor:
    """Inverse of :func:`space_to_batch` (``batch`` = B) with the heads merged into channels:
    (B * f * f, heads, H / f, W / f, d) -> (B, H, W, heads * d), one copy into the NHWC layout."""
    _, heads, h, w, d = x.shape
    x = x.reshape(batch, factor, factor, heads, h, w, d).permute(0, 4, 1, 5, 2, 3, 6)
    return x.reshape(batch, h * factor, w * factor, heads * d)


@opaque_to_tracing  # dispatches in Python (backbonezoo.kernels) and reshapes by the map size
def msa_conv(
    qkv: torch.Tensor,
    num_heads: int,
    kernel_size: int,
    dilation: int = 1,
    pool_factor: int = 1,
    pool_weight: torch.Tensor | None = None,
    pool_bias: torch.Tensor | None = None,
    shift_size: int = 0,
    backend: str | None = None,
) -> torch.Tensor:
    """Multi-head MSA-Conv of a fused NHWC projection ``qkv`` (B, H, W, 3C) -> (B, H, W, C).

    Heads are folded into the batch (``C / num_heads`` channels each, scale ``(C / num_heads) ** -0.5``). With
    ``shift_size > 0`` head groups' keys / values are rolled cyclically first (see :func:`cyclic_shift`).

    ``pool_factor = f > 1`` is inter-pooling: keys / values are downsampled by the depthwise stride-f convolution
    ``pool_weight`` (2C, 1, f, f) / ``pool_bias``, queries go space-to-batch (sub-image ``(a, b)`` = pixels
    ``a::f, b::f``), every sub-image attends to the same pooled keys / values, and batch-to-space restores the map.
    Sides that are not multiples of f are zero-padded first and cropped after.
    """
    B, H, W, C3 = qkv.shape
    dim = C3 // 3
    head_dim = dim // num_heads
    f = pool_factor
    if f > 1:
        if pool_weight is None:
            raise ValueError(f'msa_conv: pool_factor={f} needs pool_weight (2C, 1, {f}, {f}); got None')
        # Pad up to f * (pooled side), written as that product rather than as a remainder `(-H) % f`: traced with
        # symbolic H / W the padded side is then literally `f * pooled`, so torch.export proves the space-to-batch
        # reshapes and the pooled keys' size equal to the sub-images' without guards (a remainder form leaves `Mod`
        # terms the solver cannot cancel, and the export only runs at the traced size). Always padded (by 0 on
        # multiples of f): no branch on sizes. Zeros: padded queries are cropped, padded keys are pooled in.
        pooled_h, pooled_w = (H + f - 1) // f, (W + f - 1) // f
        qkv = F.pad(qkv, (0, 0, 0, f * pooled_w - W, 0, f * pooled_h - H))
    q, kv = qkv.split([dim, 2 * dim], dim=-1)
    if f > 1:
        kv = F.conv2d(kv.permute(0, 3, 1, 2), pool_weight, pool_bias, stride=f, groups=2 * dim).permute(0, 2, 3, 1)
    kv = kv.unflatten(-1, (2, num_heads, head_dim))  # (B, h, w, 2, heads, d)
    if shift_size > 0:
        kv = cyclic_shift(kv, shift_size, dims=(1, 2), head_dim=4)
    k, v = kv.permute(3, 0, 4, 1, 2, 5).unbind(0)
    q = q.unflatten(-1, (num_heads, head_dim)).permute(0, 3, 1, 2, 4)
    if f > 1:
        q = space_to_batch(q, f)
        # every sub-image reads the same pooled keys / values (the author's "repeat f^2 times")
        k = k.unsqueeze(1).expand(-1, f * f, -1, -1, -1, -1).flatten(0, 1)
        v = v.unsqueeze(1).expand(-1, f * f, -1, -1, -1, -1).flatten(0, 1)
    out = local_attention(q, k, v, kernel_size, dilation=dilation, border='zero', backend=backend)
    if f > 1:
        # cropped by a negative pad (a copy, which the projection would make anyway): a slice view's contiguity is
        # decided on the sizes (empty crop or not), a guard that pins exported graphs to the traced sides' parity
        return F.pad(batch_to_space(out, f, B), (0, 0, 0, W - f * pooled_w, 0, H - f * pooled_h))
    return out.permute(0, 2, 3, 1, 4).reshape(B, H, W, dim)


class MSAConv(nn.Module):
    """Multi-head self-attention convolution on an NHWC map: fused qkv projection, MSA-Conv, output projection.

    Args:
        dim: channels (in and out).
        num_heads: 1 = the paper's standard form, ``dim`` = its depthwise form.
        kernel_size: odd window side ``k``.
        dilation: window dilation (the dilated form for ``> 1``).
        pool_factor: inter-pooling factor ``f`` (1 = none).
        shift_size: cyclic shift of the head groups' keys / values in tokens (0 = none).
        kernel_backend: ``backbonezoo.kernels`` backend; None = automatic.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int = 7,
        dilation: int = 1,
        pool_factor: int = 1,
        shift_size: int = 0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        kernel_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % num_heads:
            raise ValueError(f'MSAConv: dim={dim} must be divisible by num_heads={num_heads}')
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f'MSAConv: kernel_size={kernel_size}, expected an odd size (a window centred on the query)'
            )
        for name, value, low in (
            ('dilation', dilation, 1),
            ('pool_factor', pool_factor, 1),
            ('shift_size', shift_size, 0),
        ):
            if value < low:
                raise ValueError(f'MSAConv: {name}={value}, expected an int >= {low}')
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.pool_factor = pool_factor
        self.shift_size = shift_size
        self.kernel_backend = kernel_backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **dd)
        # inter-pooling: one depthwise f x f stride-f conv over the key and value channels
        self.kv_pool = (
            nn.Conv2d(2 * dim, 2 * dim, pool_factor, stride=pool_factor, groups=2 * dim, **dd)
            if pool_factor > 1
            else None
        )
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool_weight = pool_bias = None
        if self.kv_pool is not None:
            pool_weight, pool_bias = self.kv_pool.weight, self.kv_pool.bias
        x = msa_conv(
            self.qkv(x),
            self.num_heads,
            self.kernel_size,
            self.dilation,
            self.pool_factor,
            pool_weight,
            pool_bias,
            self.shift_size,
            self.kernel_backend,
        )
        return self.proj_drop(self.proj(x))


class TiCBlock(nn.Module):
    """Pre-norm MSA-Conv + pre-norm MLP, both residual. NHWC."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int = 7,
        dilation: int = 1,
        pool_factor: int = 1,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        kernel_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm1 = norm_layer(dim, **dd)
        self.attn = MSAConv(
            dim, num_heads, kernel_size, dilation, pool_factor, shift_size, qkv_bias, proj_drop, kernel_backend, **dd
        )
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvStem(nn.Module):
    """3x3 stride-2 conv + BN + GELU + 3x3 stride-2 conv + LayerNorm (stride 4, ceil sizes). NCHW -> NHWC."""

    def __init__(
        self,
        in_chans: int,
        dim: int,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(dim // 2, **dd)
        self.act = act_layer()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1, **dd)
        self.norm = norm_layer(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.act(self.bn1(self.conv1(x))))
        return self.norm(x.permute(0, 2, 3, 1))


@register_notrace_module  # pads by the map size: a leaf for torch.fx
class Downsample(nn.Module):
    """LayerNorm + 2x2 stride-2 conv; odd sides are zero-padded first (ceil sizes, like the stem). NHWC."""

    def __init__(
        self, in_dim: int, out_dim: int, norm_layer: Callable[..., nn.Module] = nn.LayerNorm, device=None, dtype=None
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm = norm_layer(in_dim, **dd)
        self.conv = nn.Conv2d(in_dim, out_dim, 2, stride=2, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x).permute(0, 3, 1, 2)
        # always padded (by 0 on even sides): no branch on the size, so traced graphs keep H and W dynamic; the pad
        # is `2 * ceil(side / 2) - side` so that the padded side is symbolically even (see msa_conv)
        height, width = x.shape[-2:]
        x = F.pad(x, (0, 2 * ((width + 1) // 2) - width, 0, 2 * ((height + 1) // 2) - height))
        return self.conv(x).permute(0, 2, 3, 1)


class TiCStage(nn.Module):
    """(Downsample,) then ``depth`` blocks: even blocks plain MSA-Conv, odd blocks the long-range form."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        downsample: bool,
        kernel_size: int = 7,
        dilation: int = 1,
        pool_factor: int = 1,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        drop_path: Sequence[float] = (),
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        kernel_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grad_checkpointing = False
        self.downsample = Downsample(in_dim, dim, norm_layer, **dd) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *[
                TiCBlock(
                    dim,
                    num_heads,
                    kernel_size,
                    dilation=dilation if i % 2 else 1,
                    pool_factor=pool_factor if i % 2 else 1,
                    shift_size=shift_size if i % 2 else 0,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_drop=proj_drop,
                    drop_path=drop_path[i] if drop_path else 0.0,
                    norm_layer=norm_layer,
                    act_layer=act_layer,
                    kernel_backend=kernel_backend,
                    **dd,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class TiC(nn.Module):
    """TiC with the timm model API.

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0: no classifier).
        global_pool: 'avg', 'max', ... or '' for no pooling.
        embed_dim: stage-1 width; stage ``i`` has ``embed_dim * 2**i`` channels.
        depths: blocks per stage (even blocks plain MSA-Conv, odd blocks the long-range form).
        num_heads: MSA-Conv heads per stage.
        kernel_sizes: MSA-Conv window side per stage (odd).
        dilations: window dilation of the long-range blocks per stage.
        pool_factors: inter-pooling factor of the long-range blocks per stage (1 = none).
        shift_sizes: cyclic shift of the long-range blocks per stage, in tokens of the (pooled) key map; None =
            ``kernel // 2 * dilation`` (each head group's window moves by its own half-extent).
        mlp_ratio: MLP hidden width / width.
        qkv_bias: bias on the fused qkv projections.
        drop_rate: dropout before the classifier.
        proj_drop_rate: dropout after the attention projection and inside the MLPs.
        drop_path_rate: stochastic depth, linear over all blocks.
        kernel_backend: ``backbonezoo.kernels`` backend of MSA-Conv; None = automatic.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = 'avg',
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        kernel_sizes: Sequence[int] = (7, 7, 7, 7),
        dilations: Sequence[int] = (2, 2, 1, 1),
        pool_factors: Sequence[int] = (2, 2, 2, 1),
        shift_sizes: Sequence[int] | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        kernel_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        num_stages = len(depths)
        if shift_sizes is None:
            shift_sizes = [k // 2 * d for k, d in zip(kernel_sizes, dilations)]
        per_stage = (
            ('num_heads', num_heads),
            ('kernel_sizes', kernel_sizes),
            ('dilations', dilations),
            ('pool_factors', pool_factors),
            ('shift_sizes', shift_sizes),
        )
        for arg, value in per_stage:
            if len(value) != num_stages:
                raise ValueError(f'TiC: {arg}={tuple(value)} must have one entry per stage ({num_stages} stages)')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.min_input_size = MIN_INPUT_SIZE
        dims = [int(embed_dim * 2**i) for i in range(num_stages)]
        self.num_features = self.head_hidden_size = dims[-1]

        self.stem = ConvStem(in_chans, embed_dim, norm_layer, act_layer, **dd)
        dpr = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)  # linear over all blocks
        self.feature_info = []
        stages = []
        for i in range(num_stages):
            stages.append(
                TiCStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depths[i],
                    num_heads[i],
                    downsample=i > 0,
                    kernel_size=kernel_sizes[i],
                    dilation=dilations[i],
                    pool_factor=pool_factors[i],
                    shift_size=shift_sizes[i],
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_drop=proj_drop_rate,
                    drop_path=dpr[i],
                    norm_layer=norm_layer,
                    act_layer=act_layer,
                    kernel_backend=kernel_backend,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2**i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.norm = norm_layer(self.num_features, **dd)
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        if not is_meta_device(device):  # timm's rule: a meta model holds no values to initialise
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

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
        dd = get_device_dtype(self)  # the model's, also once the head has no parameters
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool, **dd)
        self.head.train(self.training)

    def _check_input(self, x: torch.Tensor) -> None:
        check_input(
            x,
            self.stem.conv1.weight,
            'TiC',
            in_chans=self.in_chans,
            min_size=self.min_input_size,
            reason='the stride-32 map needs a pixel',
        )

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (NCHW, strides 4 / 8 / 16 / 32), optionally with the final features.

        Args:
            x: input images (B, C, H, W).
            indices: last n stages if int, all if None, else the listed stage indices.
            norm: apply the final norm to the last stage's intermediate.
            stop_early: stop after the last wanted stage.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the intermediates.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"TiC: output_fmt={output_fmt!r}, only 'NCHW' is supported")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: max_index + 1]
        last = len(self.stages) - 1
        intermediates = []
        x = self.stem(x)
        i = 0
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                inter = self.norm(x) if norm and i == last else x
                intermediates.append(inter.permute(0, 3, 1, 2))
        if intermediates_only:
            return intermediates
        if i == last:
            x = self.norm(x)
        return x.permute(0, 3, 1, 2), intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages (and norm / head) not needed for the ``indices`` intermediates."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # sized for the last stage only
        self.stages = self.stages[: max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.stem(x)
        x = self.stages(x)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """TiC has no official checkpoints: our own (timm) layout passes through unchanged, and anything else is left
    for the strict load to name (missing / unexpected keys)."""
    return dict(state_dict)


def _create_tic(variant: str, pretrained: bool = False, **kwargs: Any) -> TiC:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        TiC,
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
        'pool_size': (7, 7),
        'crop_pct': 0.9,
        'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv1',
        'classifier': 'head.fc',
        **pretrained_cfg(name),
        **kwargs,
    }


# No weights exist (the authors released none and backbonezoo has not trained these configurations).
default_cfgs = generate_default_cfgs(
    {
        'tic_tiny': _cfg('tic_tiny'),
        'tic_small': _cfg('tic_small'),
        'tic_base': _cfg('tic_base'),
    }
)


@register_model
def tic_tiny(pretrained: bool = False, **kwargs: Any) -> TiC:
    model_args = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.2)
    return _create_tic('tic_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def tic_small(pretrained: bool = False, **kwargs: Any) -> TiC:
    model_args = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.3)
    return _create_tic('tic_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def tic_base(pretrained: bool = False, **kwargs: Any) -> TiC:
    model_args = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5)
    return _create_tic('tic_base', pretrained=pretrained, **dict(model_args, **kwargs))
