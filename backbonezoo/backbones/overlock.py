"""OverLoCK: an Overview-first, Look-Closely-next ConvNet with Context-Mixing dynamic kernels.

Paper: `OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels`
(CVPR 2025), https://arxiv.org/abs/2502.20087. Official code: https://github.com/LMMMEng/OverLoCK (Apache-2.0).

The network is three sub-networks in one graph:

* Base-Net, ``stages[0..2]``: large-kernel RepConv blocks (a UniRepLKNet dilated-reparam depthwise conv) at
  strides 4 / 8 / 16.
* Overview-Net, ``stages[3]``: more RepConv blocks on top of stage 3 at stride 32; its output is the coarse context.
* Focus-Net, ``focus_stages[0..1]``: ContMix blocks at strides 16 / 32 that carry the features together with a
  context stream (``C3 // 4`` channels) re-injected from the Overview-Net in every block.

ContMix is a per-pixel, per-group dynamic depthwise convolution: its taps come from the affinity between each pixel
and 7x7 pooled context regions, plus a relative-position bias, softmax-normalised, and are applied to the values with
NATTEN's border-shifted neighbourhood rule through :func:`backbonezoo.kernels.local_aggregate`.

Exports (torch.export, the dynamo ONNX exporter) keep H and W dynamic: traced, ContMix takes its small-map path at
every size (resize to ``contmix_size``, the identity where the map holds the kernel; pool back with averaging matmuls
built from the sizes). The small-map rule truncates a float product: torch.export keeps Python's double arithmetic,
but the ONNX translation computes it in float32, so at rare sizes where the two round differently (where
``k * long / short`` is an integer, e.g. a 5 x 45 stage map with k = 7: 62 in double, 63 in float32) an ONNX graph
resizes that map by one pixel more than the official model.

The registered models are built in the reparameterised (deploy) form by default, the form the paper's parameter
counts describe; ``deploy=False`` builds the training form (dilated branches with BatchNorms), which
:meth:`OverLoCK.reparameterize` turns into the deploy form. ``checkpoint_filter_fn`` loads the authors' training-form
and reparameterised files into either form it can (a training-form file is fused on the fly for a deploy model).
"""

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    ClassifierHead,
    DropPath,
    LayerNorm2d,
    SelectAdaptivePool2d,
    SEModule,
    calculate_drop_path_rates,
    get_device_dtype,
    is_meta_device,
    register_notrace_module,
    trunc_normal_,
)
from timm.layers.grn import GlobalResponseNorm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from backbonezoo.layers import (
    ChannelAffine,
    check_input,
    deep_conv_stem,
    is_tracing,
    neighborhood_aggregate,
    neighborhood_scores,
    opaque_to_tracing,
)

__all__ = ['OverLoCK', 'checkpoint_filter_fn']


# Parallel (kernel size, dilation) branches of UniRepLKNet's DilatedReparamBlock per large-kernel size (official
# defaults); they fold into one dense kernel of the block's size.
DILATED_BRANCHES: dict[int, tuple[tuple[int, int], ...]] = {
    19: ((5, 1), (7, 1), (9, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    17: ((5, 1), (7, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    15: ((5, 1), (7, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    13: ((5, 1), (7, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    11: ((5, 1), (7, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    9: ((5, 1), (7, 1), (5, 2), (3, 3), (3, 4)),
    7: ((5, 1), (3, 1), (3, 2), (3, 3)),
    5: ((3, 1), (3, 2)),
}
CONTEXT_POOL_SIZE = 7  # ContMix keys: the context pooled to 7x7 regions, whatever the input size
MIN_INPUT_SIZE = 32


def _bn_scale_shift(bn: dict[str, torch.Tensor], eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn['weight'] / (bn['running_var'] + eps).sqrt()
    return scale, bn['bias'] - bn['running_mean'] * scale


def fuse_dilated_reparam(tensors: dict[str, torch.Tensor], eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a training-form DilatedReparamBlock into one dense depthwise kernel and bias.

    ``tensors`` holds the block's state dict in our names (``conv.weight``, ``bn.*``,
    ``branches.k{k}_d{r}.conv.weight``, ``branches.k{k}_d{r}.bn.*``). Shared by :meth:`DilatedReparamBlock.
    reparameterize` and by :func:`checkpoint_filter_fn`, which fuses training-form files for deploy models.
    """

    def bn_of(prefix: str) -> dict[str, torch.Tensor]:
        return {n: tensors[f'{prefix}.{n}'].double() for n in ('weight', 'bias', 'running_mean', 'running_var')}

    dtype = tensors['conv.weight'].dtype
    large = tensors['conv.weight'].double()
    size = large.shape[-1]
    scale, shift = _bn_scale_shift(bn_of('bn'), eps)
    weight, bias = large * scale.view(-1, 1, 1, 1), shift
    branch_names = sorted({k.split('.')[1] for k in tensors if k.startswith('branches.')})
    for name in branch_names:
        dilation = int(re.fullmatch(r'k\d+_d(\d+)', name).group(1))
        kernel = tensors[f'branches.{name}.conv.weight'].double()
        scale, shift = _bn_scale_shift(bn_of(f'branches.{name}.bn'), eps)
        kernel = kernel * scale.view(-1, 1, 1, 1)
        # a dilated k x k kernel is a dense (d*(k-1)+1)-wide kernel with zeros between its taps, centred in `size`
        span = dilation * (kernel.shape[-1] - 1) + 1
        dense = kernel.new_zeros(kernel.shape[0], 1, span, span)
        dense[:, :, ::dilation, ::dilation] = kernel
        pad = (size - span) // 2
        weight = weight + F.pad(dense, [pad] * 4)
        bias = bias + shift
    return weight.to(dtype), bias.to(dtype)


class ConvBn(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d (+ optional activation)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        act_layer: type[nn.Module] | None = None,
        device=None,
        dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation, groups, bias=False, **dd)
        self.bn = nn.BatchNorm2d(out_chs, **dd)
        if act_layer is not None:
            self.act = act_layer()


class ResidualConvDw(nn.Conv2d):
    """x + depthwise kxk conv(x)."""

    def __init__(self, dim: int, kernel_size: int = 3, device=None, dtype=None):
        super().__init__(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self._conv_forward(x, self.weight, self.bias)  # not super().forward: TorchScript has no super()


class DilatedReparamBlock(nn.Module):
    """UniRepLKNet's large-kernel depthwise conv: a kxk conv + BN and parallel dilated small convs + BN (training
    form), or the single kxk conv with bias they fold into (deploy form)."""

    def __init__(self, dim: int, kernel_size: int, deploy: bool = False, device=None, dtype=None):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if kernel_size not in DILATED_BRANCHES:
            raise ValueError(f'kernel_size={kernel_size} is not supported; expected one of {sorted(DILATED_BRANCHES)}')
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=deploy, **dd)
        if deploy:
            self.bn = None
            self.branches = None
        else:
            self.bn = nn.BatchNorm2d(dim, **dd)
            self.branches = nn.ModuleDict(
                {
                    f'k{k}_d{r}': ConvBn(dim, dim, k, dilation=r, groups=dim, **dd)
                    for k, r in DILATED_BRANCHES[kernel_size]
                }
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None:
            return self.conv(x)
        out = self.bn(self.conv(x))
        for branch in self.branches.values():
            out = out + branch(x)
        return out

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the branches into ``conv`` (training form -> deploy form); a no-op in deploy form."""
        if self.bn is None:
            return
        weight, bias = fuse_dilated_reparam(self.state_dict(), eps=self.bn.eps)
        dim, dd = weight.shape[0], {'device': weight.device, 'dtype': weight.dtype}
        conv = nn.Conv2d(dim, dim, self.kernel_size, padding=self.kernel_size // 2, groups=dim, **dd)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.conv, self.bn, self.branches = conv, None, None


class GrnMlp(nn.Module):
    """1x1 expand, GELU, residual 3x3 depthwise conv, GRN, 1x1 reduce."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None, device=None, dtype=None):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1, **dd)
        self.act = nn.GELU()
        self.conv_dw = ResidualConvDw(hidden_dim, 3, **dd)
        self.grn = GlobalResponseNorm(hidden_dim, channels_last=False, **dd)
        self.fc2 = nn.Conv2d(hidden_dim, out_dim or dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.grn(self.conv_dw(self.act(self.fc1(x)))))


class RepConvBlock(nn.Module):
    """Base-Net / Overview-Net block: x += dw3x3(x); x = ls(x) + MLP(SE(BN(DilatedReparam(LN(x)))))."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        mlp_ratio: float = 4.0,
        ls_init_value: float | None = None,
        drop_path: float = 0.0,
        deploy: bool = False,
        device=None,
        dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.conv_dw = ResidualConvDw(dim, 3, **dd)
        self.norm = LayerNorm2d(dim, eps=1e-6, **dd)
        self.large_kernel = DilatedReparamBlock(dim, kernel_size, deploy=deploy, **dd)
        self.lk_norm = nn.BatchNorm2d(dim, **dd)
        self.se = SEModule(dim, rd_channels=max(16, dim // 8), act_layer=nn.GELU, **dd)
        self.mlp = GrnMlp(dim, int(dim * mlp_ratio), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        # the official res_scale form: the layer scale sits on the shortcut, not on the branch
        self.ls = ChannelAffine(dim, ls_init_value, **dd) if ls_init_value is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_dw(x)
        branch = self.mlp(self.se(self.lk_norm(self.large_kernel(self.norm(x)))))
        return self.ls(x) + self.drop_path(branch)


@opaque_to_tracing  # builds tensors of the map size
def neighborhood_bias(
    table: torch.Tensor, height: int, width: int, kernel_size: int, backend: str | None
) -> torch.Tensor:
    """A ``(groups, 2k-1, 2k-1)`` relative-position table expanded per query with the operator's own (NATTEN) bias
    indexing, ``(1, groups, H, W, k*k)``: the scores of zero queries and keys are exactly the bias."""
    zeros = table.new_zeros(1, table.shape[0], height, width, 1)
    return neighborhood_scores(zeros, zeros, (kernel_size, kernel_size), (1, 1), table, backend)


@opaque_to_tracing  # SymInt arithmetic (torch.sym_*), which TorchScript cannot compile
def contmix_size(height: int, width: int, kernel_size: int) -> tuple[int, int]:
    """The map size ContMix mixes at: the map itself, or, when its short side is below the kernel, the official
    small-map rule ``(k, int(k / h * w))`` if ``h < w`` else ``(int(k / w * h), k)``.

    The rule truncates a float product, which can be one less than exact arithmetic (``k, h, w = 7, 5, 45`` gives
    62, not 63; a square 11 x 11 map with ``k = 15`` becomes 14 x 15), so it is kept as float operations. It is
    written without branches, so that torch.export keeps the sizes symbolic: ``t = max(k, short side)`` is ``k`` on
    small maps and the short side otherwise, where the same expressions give the map itself (``t / t`` is exactly
    1.0), and the ``h < w`` case is selected arithmetically.
    """
    t = torch.sym_max(kernel_size, torch.sym_min(height, width))
    h_short = torch.sym_min(1, torch.sym_max(0, width - height))  # 1 when h < w, else 0
    size_h = h_short * t + (1 - h_short) * torch.sym_int(t / width * height)
    size_w = h_short * torch.sym_int(t / height * width) + (1 - h_short) * t
    return size_h, size_w


@opaque_to_tracing  # compares sizes
def needs_resize(size: tuple[int, int], in_size: tuple[int, int]) -> bool:
    """Whether ContMix resamples: on small maps in eager mode; always when traced (torch.compile / torch.export), where
    comparing symbolic sizes would fix them, and resampling to the same size is the identity (bilinear at scale 1
    samples every pixel at offset 0, an average pool to the same size averages single pixels)."""
    return is_tracing() or size[0] != in_size[0] or size[1] != in_size[1]


def _pool_matrix(in_size: int, out_size: int, like: torch.Tensor) -> torch.Tensor:
    """(out, in) averaging weights of adaptive average pooling along one axis: output ``i`` averages inputs
    ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)`` (exclusive), PyTorch's windows."""
    out_index = torch.arange(out_size, device=like.device)[:, None]
    start = out_index * in_size // out_size
    end = ((out_index + 1) * in_size + out_size - 1) // out_size
    position = torch.arange(in_size, device=like.device)
    inside = (position >= start) & (position < end)
    return inside.to(like.dtype) / (end - start).to(like.dtype)


@opaque_to_tracing  # dispatches on tracing
def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)``; traced, the same windows as two small averaging matmuls built from the
    sizes, so that the input and output sizes stay symbolic (the aten op's decomposition and its ONNX translation need
    static sizes)."""
    if not is_tracing():
        return F.adaptive_avg_pool2d(x, size)
    rows = _pool_matrix(x.shape[-2], size[0], x)
    cols = _pool_matrix(x.shape[-1], size[1], x)
    return torch.matmul(torch.matmul(rows, x), cols.t())


@register_notrace_module  # the small-map rule depends on the map size: a leaf for torch.fx
class ContMixBlock(nn.Module):
    """Focus-Net block: ContMix dynamic convolution on (features, context) followed by a GRN MLP.

    Input and output are the concatenation of ``dim`` feature channels and ``ctx_dim`` context channels. Every block
    but the first of the Focus-Net re-injects the Overview-Net context: ctx = ctx_scale(ctx) + overview_scale(overview).
    """

    def __init__(
        self,
        dim: int,
        ctx_dim: int,
        kernel_size: int,
        small_kernel_size: int = 5,
        num_heads: int = 4,
        mlp_ratio: float = 3.0,
        ls_init_value: float | None = 1.0,
        drop_path: float = 0.0,
        inject_context: bool = True,
        deploy: bool = False,
        kernel_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        # half of the channels use the small kernel, half the large one, each in num_heads groups
        self.num_groups = 2 * num_heads
        if dim % (2 * self.num_groups):
            raise ValueError(f'dim={dim} must be divisible by 4 * num_heads = {2 * self.num_groups}')
        self.dim, self.ctx_dim = dim, ctx_dim
        self.kernel_size, self.small_kernel_size = kernel_size, small_kernel_size
        self.scale = (dim // self.num_groups) ** -0.5
        self.context_pool_size = CONTEXT_POOL_SIZE  # an attribute: TorchScript cannot read module globals
        self.kernel_backend = kernel_backend
        out_dim = dim + ctx_dim

        if inject_context:
            self.ctx_scale = ChannelAffine(ctx_dim, 1.0, **dd)
            self.overview_scale = ChannelAffine(ctx_dim, 1.0, **dd)
        else:
            self.ctx_scale = self.overview_scale = None
        self.conv_dw1 = ResidualConvDw(out_dim, 3, **dd)
        self.norm1 = LayerNorm2d(out_dim, eps=1e-6, **dd)
        self.fusion = nn.Sequential(
            OrderedDict(
                conv_dw=nn.Conv2d(out_dim, out_dim, 3, padding=1, groups=out_dim, **dd),
                bn=nn.BatchNorm2d(out_dim, **dd),
                act=nn.GELU(),
                conv=nn.Conv2d(out_dim, dim, 1, **dd),
                grn=GlobalResponseNorm(dim, channels_last=False, **dd),
            )
        )
        self.query = ConvBn(dim, dim // 2, **dd)
        self.key = ConvBn(ctx_dim, dim // 2, **dd)
        # maps each pixel's affinities to the 49 context regions to its small + large kernel logits
        self.kernel_proj = nn.Linear(CONTEXT_POOL_SIZE**2, small_kernel_size**2 + kernel_size**2, **dd)
        self.rpb_small = nn.Parameter(
            torch.zeros(self.num_groups, 2 * small_kernel_size - 1, 2 * small_kernel_size - 1, **dd)
        )
        self.rpb_large = nn.Parameter(torch.zeros(self.num_groups, 2 * kernel_size - 1, 2 * kernel_size - 1, **dd))
        self.mix_proj = ConvBn(dim, dim, **dd)
        self.lepe = nn.Sequential(
            OrderedDict(
                large_kernel=DilatedReparamBlock(dim, kernel_size, deploy=deploy, **dd),
                bn=nn.BatchNorm2d(dim, **dd),
            )
        )
        self.se = SEModule(dim, rd_channels=max(16, dim // 8), act_layer=nn.GELU, **dd)
        self.gate = ConvBn(dim, dim, act_layer=nn.SiLU, **dd)
        self.proj = nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(dim, **dd), conv=nn.Conv2d(dim, out_dim, 1, **dd)))
        self.conv_dw2 = ResidualConvDw(out_dim, 3, **dd)
        self.norm2 = LayerNorm2d(out_dim, eps=1e-6, **dd)
        self.mlp = GrnMlp(out_dim, int(dim * mlp_ratio), **dd)
        self.ls1 = ChannelAffine(out_dim, ls_init_value, **dd) if ls_init_value is not None else nn.Identity()
        self.ls2 = ChannelAffine(out_dim, ls_init_value, **dd) if ls_init_value is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def _contmix(self, x: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        """Dynamic kernels from (normalised features + context) ``xf`` applied to the features ``x``."""
        height, width = x.shape[-2:]
        in_size = (height, width)
        # official small-map rule: resize so that the short side equals the kernel (see contmix_size), mix there,
        # then average-pool back
        size = contmix_size(height, width, self.kernel_size)
        resize = needs_resize(size, in_size)
        if resize:
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
            xf = F.interpolate(xf, size=size, mode='bilinear', align_corners=False)
            height, width = size
        groups, small, large = self.num_groups, self.small_kernel_size, self.kernel_size
        query = self.query(xf[:, : self.dim]) * self.scale
        pool = self.context_pool_size
        key = self.key(adaptive_avg_pool(xf[:, self.dim :], (pool, pool)))
        # unflatten / flatten, no -1 over the batch: shapes stay inferable for batch 0
        query = query.unflatten(1, (groups, -1)).flatten(3).transpose(-1, -2)  # (B, G, HW, c)
        key = key.unflatten(1, (groups, -1)).flatten(3)  # (B, G, c, 49)
        # (q . k_l) then the 49 -> taps projection, reassociated: q . (sum_l k_l W[t, l]) costs c*T, not 49*(c+T)
        tap_keys = torch.matmul(key, self.kernel_proj.weight.t())  # (B, G, c, T)
        logits = torch.matmul(query, tap_keys) + self.kernel_proj.bias  # (B, G, HW, T)
        logits = logits.unflatten(2, (height, width))
        logits_small, logits_large = logits.split([small * small, large * large], dim=-1)
        backend = self.kernel_backend
        attn_small = (logits_small + neighborhood_bias(self.rpb_small, height, width, small, backend)).softmax(-1)
        attn_large = (logits_large + neighborhood_bias(self.rpb_large, height, width, large, backend)).softmax(-1)
        # values: channels split as (small/large half, group, c)
        value = x.unflatten(1, (2, groups, -1)).permute(1, 0, 2, 4, 5, 3)
        out_small = neighborhood_aggregate(attn_small, value[0], (small, small), (1, 1), backend)
        out_large = neighborhood_aggregate(attn_large, value[1], (large, large), (1, 1), backend)
        out = torch.cat([out_small, out_large], dim=1)  # (B, 2G, H, W, c)
        out = out.permute(0, 1, 4, 2, 3).flatten(1, 2)
        if resize:
            out = adaptive_avg_pool(out, in_size)
        return out

    def forward(self, x: torch.Tensor, overview: torch.Tensor) -> torch.Tensor:
        if self.ctx_scale is not None:
            feat, ctx = x.split([self.dim, self.ctx_dim], dim=1)
            x = torch.cat([feat, self.ctx_scale(ctx) + self.overview_scale(overview)], dim=1)
        x = self.conv_dw1(x)
        shortcut = x
        xf = self.norm1(x)
        feat = self.fusion(xf)
        gate = self.gate(feat)
        lepe = self.lepe(feat)
        mixed = self.mix_proj(self._contmix(feat, xf)) + lepe
        x = self.proj(gate * self.se(mixed))
        x = self.ls1(shortcut) + self.drop_path(x)
        x = self.conv_dw2(x)
        return self.ls2(x) + self.drop_path(self.mlp(self.norm2(x)))


class ContextDownsample(nn.Module):
    """Focus-Net stage 3 -> 4: separate stride-2 conv + BN for the features and for the context stream."""

    def __init__(self, dim: int, out_dim: int, ctx_dim: int, device=None, dtype=None):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.dim = dim
        self.x_proj = ConvBn(dim, out_dim, 3, stride=2, **dd)
        self.h_proj = ConvBn(ctx_dim, ctx_dim, 3, stride=2, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat, ctx = x.split([self.dim, x.shape[1] - self.dim], dim=1)
        return torch.cat([self.x_proj(feat), self.h_proj(ctx)], dim=1)


class BaseStage(nn.Module):
    """Optional stride-2 conv + BN, then RepConv blocks."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x)
            else:
                x = block(x)
        return x


class FocusStage(nn.Module):
    """Optional context downsample, then ContMix blocks fed with the Overview-Net context."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, overview: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, overview)
            else:
                x = block(x, overview)
        return x


class OverLoCK(nn.Module):
    """OverLoCK (Base-Net + Overview-Net + Focus-Net) with the timm model API.

    Args:
        depths: RepConv blocks in Base-Net stages 1-3 and the Overview-Net (stage 4).
        focus_depths: ContMix blocks in Focus-Net stages 3 and 4.
        embed_dims: channels of stages 1-4; the context stream has ``embed_dims[3] // 4`` channels.
        kernel_sizes: large-kernel size per stage (DilatedReparamBlock; in stages 3 / 4 also ContMix's large
            dynamic kernel).
        mlp_ratios / focus_mlp_ratios: MLP expansion of the Base-Net / Focus-Net blocks.
        focus_num_heads: ContMix heads of Focus-Net stages 3 / 4 (2 * heads kernel groups, half small, half large).
        small_kernel_size: ContMix's small dynamic kernel.
        ls_init_values: layer-scale init per stage (None = no layer scale).
        projection_dim: width of the 1x1 conv + BN + SiLU (``conv_head``) that ends ``forward_features`` (the official
            head's pre-pooling projection; ``num_features`` is this width, as in timm's EfficientNet).
        deploy: build the reparameterised form (one large-kernel conv with bias per DilatedReparamBlock).
        use_ds: add the auxiliary Overview-Net classifier (deep supervision); in training mode ``forward`` then
            returns ``(logits, aux_logits)``.
        kernel_backend: backend of the neighbourhood operators (None: ``BACKBONEZOO_KERNEL_BACKEND`` or 'auto').
    """

    def __init__(
        self,
        depths: Sequence[int] = (2, 2, 3, 2),
        focus_depths: Sequence[int] = (6, 2),
        embed_dims: Sequence[int] = (56, 112, 256, 336),
        kernel_sizes: Sequence[int] = (17, 15, 13, 7),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        focus_mlp_ratios: Sequence[float] = (3, 3),
        focus_num_heads: Sequence[int] = (4, 6),
        small_kernel_size: int = 5,
        ls_init_values: Sequence[float | None] = (None, None, 1.0, 1.0),
        projection_dim: int = 1024,
        deploy: bool = True,
        use_ds: bool = False,
        kernel_backend: str | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = 'avg',
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        for name, value, length in (
            ('depths', depths, 4),
            ('embed_dims', embed_dims, 4),
            ('kernel_sizes', kernel_sizes, 4),
            ('mlp_ratios', mlp_ratios, 4),
            ('ls_init_values', ls_init_values, 4),
            ('focus_depths', focus_depths, 2),
            ('focus_mlp_ratios', focus_mlp_ratios, 2),
            ('focus_num_heads', focus_num_heads, 2),
        ):
            if len(value) != length:
                raise ValueError(f'{name}={tuple(value)} must have {length} entries')
        if focus_depths[1] < 1:
            raise ValueError(f'focus_depths={tuple(focus_depths)}: Focus-Net stage 4 needs at least one block')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.min_input_size = MIN_INPUT_SIZE
        self.drop_rate = drop_rate
        self.deploy = deploy
        ctx_dim = embed_dims[3] // 4
        self.embed_dims = tuple(embed_dims)

        self.stem = deep_conv_stem(in_chans, embed_dims[0], **dd)

        num_blocks = sum(depths) + sum(focus_depths)
        dpr = calculate_drop_path_rates(drop_path_rate, num_blocks)  # linear over all blocks, Focus-Net last
        stages, offset = [], 0
        for i in range(4):
            downsample = nn.Identity() if i == 0 else ConvBn(embed_dims[i - 1], embed_dims[i], 3, stride=2, **dd)
            blocks = [
                RepConvBlock(
                    embed_dims[i],
                    kernel_sizes[i],
                    mlp_ratio=mlp_ratios[i],
                    ls_init_value=ls_init_values[i],
                    drop_path=dpr[offset + j],
                    deploy=deploy,
                    **dd,
                )
                for j in range(depths[i])
            ]
            stages.append(BaseStage(downsample, blocks))
            offset += depths[i]
        self.stages = nn.ModuleList(stages)

        self.context_proj = nn.Conv2d(embed_dims[3], ctx_dim, 1, **dd)
        focus_stages = []
        for i, stage_idx in enumerate((2, 3)):
            downsample = nn.Identity() if i == 0 else ContextDownsample(embed_dims[2], embed_dims[3], ctx_dim, **dd)
            blocks = [
                ContMixBlock(
                    embed_dims[stage_idx],
                    ctx_dim,
                    kernel_sizes[stage_idx],
                    small_kernel_size=small_kernel_size,
                    num_heads=focus_num_heads[i],
                    mlp_ratio=focus_mlp_ratios[i],
                    ls_init_value=ls_init_values[stage_idx],
                    drop_path=dpr[offset + j],
                    inject_context=not (i == 0 and j == 0),
                    deploy=deploy,
                    kernel_backend=kernel_backend,
                    **dd,
                )
                for j in range(focus_depths[i])
            ]
            focus_stages.append(FocusStage(downsample, blocks))
            offset += focus_depths[i]
        self.focus_stages = nn.ModuleList(focus_stages)

        self.feature_info = [
            dict(num_chs=embed_dims[0], reduction=4, module='stages.0'),
            dict(num_chs=embed_dims[1], reduction=8, module='stages.1'),
            dict(num_chs=embed_dims[2] + ctx_dim, reduction=16, module='focus_stages.0'),
            dict(num_chs=embed_dims[3] + ctx_dim, reduction=32, module='focus_stages.1'),
        ]
        self.conv_head = ConvBn(embed_dims[3] + ctx_dim, projection_dim, act_layer=nn.SiLU, **dd)
        self.num_features = self.head_hidden_size = projection_dim
        if use_ds:
            self.aux_head = nn.Sequential(
                OrderedDict(
                    norm=nn.BatchNorm2d(embed_dims[3], **dd),
                    pool=SelectAdaptivePool2d(pool_type='avg', flatten=True),
                    fc=nn.Linear(embed_dims[3], num_classes, **dd) if num_classes > 0 else nn.Identity(),
                )
            )
        else:
            self.aux_head = None
        self.head = ClassifierHead(projection_dim, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        if not is_meta_device(device):  # timm's rule: a meta model holds no values to initialise
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
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
            else [(r'^stages\.(\d+)\.downsample', (0,)), (r'^stages\.(\d+)\.blocks\.(\d+)', None)],
            focus=[(r'^context_proj', (0,)), (r'^focus_stages\.(\d+)', None)]
            if coarse
            else [
                (r'^context_proj', (0,)),
                (r'^focus_stages\.(\d+)\.downsample', (0,)),
                (r'^focus_stages\.(\d+)\.blocks\.(\d+)', None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in (*self.stages, *self.focus_stages):
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        dd = get_device_dtype(self)  # the model's, also once the head has no parameters
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool, **dd)
        if self.aux_head is not None:  # the deep-supervision classifier predicts the same classes
            in_features = self.embed_dims[3]
            self.aux_head.fc = nn.Linear(in_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.train(self.training)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every DilatedReparamBlock into one large-kernel conv (training form -> deploy form, same outputs)."""
        for module in self.modules():
            if isinstance(module, DilatedReparamBlock):
                module.reparameterize()
        self.deploy = True

    def _check_input(self, x: torch.Tensor) -> None:
        check_input(
            x,
            self.stem[0].weight,
            'OverLoCK',
            in_chans=self.in_chans,
            min_size=self.min_input_size,
            reason='the stride-32 map needs a pixel',
        )

    def _forward_focus_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Base-Net stage 3 and the Overview-Net: returns (stage-3 features with the upsampled context appended,
        upsampled context, stride-32 context, Overview-Net output)."""
        x = self.stages[2](x)
        overview = self.stages[3](x)
        context = self.context_proj(overview)
        context_up = F.interpolate(context, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return torch.cat([x, context_up], dim=1), context_up, context, overview

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Features at strides 4 / 8 / 16 / 32: Base-Net stages 1-2, then Focus-Net stages 3-4 (features and
        context stream concatenated, as the official dense wrapper takes them before its extra norms). ``norm`` is
        accepted for API compatibility: the model has no final norm."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt={output_fmt!r} is not supported; expected 'NCHW'")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(4, indices)
        # the deepest level this (possibly pruned) model can still produce
        available = len(self.focus_stages) + 1 if self.focus_stages else len(self.stages) - 1
        last = min(max_index if stop_early else 3, available)
        intermediates = []
        x = self.stem(x)
        for i in range(min(last, 1) + 1):
            x = self.stages[i](x)
            if i in take_indices:
                intermediates.append(x)
        if last >= 2:
            x, context_up, context, _ = self._forward_focus_input(x)
            x = self.focus_stages[0](x, context_up)
            if 2 in take_indices:
                intermediates.append(x)
        if last >= 3:
            x = self.focus_stages[1](x, context)
            if 3 in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        if last == 3:
            x = self.conv_head(x)
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the layers not needed for the intermediates at ``indices``."""
        take_indices, max_index = feature_take_indices(4, indices)
        if max_index < 3:
            # Focus-Net stage 4 goes; below index 2 the Overview-Net and Focus-Net stage 3 go too
            self.focus_stages = self.focus_stages[: max(max_index - 1, 0)]
            if max_index < 2:
                self.stages = self.stages[: max_index + 1]
                self.context_proj = nn.Identity()
        if prune_head or max_index < 3:
            self.aux_head = None
            self.conv_head = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            self.head.reset(0, '', in_features=self.num_features)
            self.num_classes = 0
        return take_indices

    def _forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features, Overview-Net output); a model pruned below the Focus-Net has no Overview-Net output."""
        self._check_input(x)
        x = self.stem(x)
        if len(self.focus_stages) == 0:  # pruned to Base-Net stage 1 or 2
            for stage in self.stages:
                x = stage(x)
            return self.conv_head(x), None
        x = self.stages[1](self.stages[0](x))
        x, context_up, context, overview = self._forward_focus_input(x)
        for i, stage in enumerate(self.focus_stages):
            x = stage(x, context_up if i == 0 else context)
        return self.conv_head(x), overview

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_all(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x, overview = self._forward_all(x)
        x = self.forward_head(x)
        if self.aux_head is not None and self.training and overview is not None:
            return x, self.aux_head(overview)
        return x


# --- checkpoint conversion ------------------------------------------------------------------------------------------

# official -> ours, by key prefix; {n} is a number captured from the official name and reused.
_DRB_PREFIXES = (('lk_origin.', 'conv.'), ('origin_bn.', 'bn.'))
_BASE_BLOCK_PREFIXES = (
    ('dwconv.', 'conv_dw.'),
    ('proj.0.', 'norm.'),
    ('proj.1.', 'large_kernel.'),
    ('proj.2.', 'lk_norm.'),
    ('proj.3.proj.1.', 'se.fc1.'),
    ('proj.3.proj.3.', 'se.fc2.'),
    ('proj.4.', 'mlp.fc1.'),
    ('proj.6.', 'mlp.conv_dw.'),
    ('proj.7.gamma', 'mlp.grn.weight'),
    ('proj.7.beta', 'mlp.grn.bias'),
    ('proj.8.', 'mlp.fc2.'),
    ('ls.', 'ls.'),
)
_CONTMIX_BLOCK_PREFIXES = (
    ('x_scale.', 'ctx_scale.'),
    ('h_scale.', 'overview_scale.'),
    ('dwconv1.', 'conv_dw1.'),
    ('norm1.', 'norm1.'),
    ('fusion.0.', 'fusion.conv_dw.'),
    ('fusion.1.', 'fusion.bn.'),
    ('fusion.3.', 'fusion.conv.'),
    ('fusion.4.gamma', 'fusion.grn.weight'),
    ('fusion.4.beta', 'fusion.grn.bias'),
    ('weight_query.0.', 'query.conv.'),
    ('weight_query.1.', 'query.bn.'),
    ('weight_key.1.', 'key.conv.'),
    ('weight_key.2.', 'key.bn.'),
    ('weight_proj.', 'kernel_proj.'),
    ('rpb1', 'rpb_small'),
    ('rpb2', 'rpb_large'),
    ('dyconv_proj.0.', 'mix_proj.conv.'),
    ('dyconv_proj.1.', 'mix_proj.bn.'),
    ('lepe.0.', 'lepe.large_kernel.'),
    ('lepe.1.', 'lepe.bn.'),
    ('se_layer.proj.1.', 'se.fc1.'),
    ('se_layer.proj.3.', 'se.fc2.'),
    ('gate.0.', 'gate.conv.'),
    ('gate.1.', 'gate.bn.'),
    ('proj.0.', 'proj.bn.'),
    ('proj.1.', 'proj.conv.'),
    ('dwconv2.', 'conv_dw2.'),
    ('norm2.', 'norm2.'),
    ('mlp.0.', 'mlp.fc1.'),
    ('mlp.2.', 'mlp.conv_dw.'),
    ('mlp.3.gamma', 'mlp.grn.weight'),
    ('mlp.3.beta', 'mlp.grn.bias'),
    ('mlp.4.', 'mlp.fc2.'),
    ('ls1.', 'ls1.'),
    ('ls2.', 'ls2.'),
)
_TOP_PREFIXES = (
    ('patch_embed1.', 'stem.'),
    ('patch_embed{n}.0.', 'stages.{n-1}.downsample.conv.'),
    ('patch_embed{n}.1.', 'stages.{n-1}.downsample.bn.'),
    ('patch_embedx.x_proj.0.', 'focus_stages.1.downsample.x_proj.conv.'),
    ('patch_embedx.x_proj.1.', 'focus_stages.1.downsample.x_proj.bn.'),
    ('patch_embedx.h_proj.0.', 'focus_stages.1.downsample.h_proj.conv.'),
    ('patch_embedx.h_proj.1.', 'focus_stages.1.downsample.h_proj.bn.'),
    ('high_level_proj.', 'context_proj.'),
    ('aux_head.0.', 'aux_head.norm.'),
    ('aux_head.2.', 'aux_head.fc.'),
    ('head.0.', 'conv_head.conv.'),
    ('head.1.', 'conv_head.bn.'),
    ('head.4.', 'head.fc.'),
)
_BLOCK_SCOPES = (
    # (official scope, our scope, stage offset, table)
    (r'blocks(\d+)\.(\d+)\.', 'stages.{s}.blocks.{i}.', 1, _BASE_BLOCK_PREFIXES),
    (r'sub_blocks(\d+)\.(\d+)\.', 'focus_stages.{s}.blocks.{i}.', 3, _CONTMIX_BLOCK_PREFIXES),
)
_OUR_BLOCK_SCOPES = (
    (r'stages\.(\d+)\.blocks\.(\d+)\.', 'blocks{s}.{i}.', 1, _BASE_BLOCK_PREFIXES),
    (r'focus_stages\.(\d+)\.blocks\.(\d+)\.', 'sub_blocks{s}.{i}.', 3, _CONTMIX_BLOCK_PREFIXES),
)


def _rename_dilated(rest: str, to_official: bool) -> str:
    """Inside a DilatedReparamBlock: lk_origin / origin_bn / dil_{conv,bn}_k{k}_{r} <-> conv / bn / branches."""
    if to_official:
        m = re.match(r'branches\.k(\d+)_d(\d+)\.(conv|bn)\.', rest)
        if m:
            return f'dil_{m.group(3)}_k{m.group(1)}_{m.group(2)}.' + rest[m.end() :]
        pairs = [(b, a) for a, b in _DRB_PREFIXES]
    else:
        m = re.match(r'dil_(conv|bn)_k(\d+)_(\d+)\.', rest)
        if m:
            return f'branches.k{m.group(2)}_d{m.group(3)}.{m.group(1)}.' + rest[m.end() :]
        pairs = list(_DRB_PREFIXES)
    for src, dst in pairs:
        if rest.startswith(src):
            return dst + rest[len(src) :]
    return rest


def _rename_in_block(rest: str, table: tuple[tuple[str, str], ...], to_official: bool) -> str | None:
    for official, ours in table:
        src, dst = (ours, official) if to_official else (official, ours)
        if rest.startswith(src):
            tail = rest[len(src) :]
            if ours.endswith('large_kernel.'):
                tail = _rename_dilated(tail, to_official)
            return dst + tail
    return None


def convert_key(key: str, to_official: bool = False) -> str:
    """Rename one state-dict key between the official layout and ours (``to_official`` for the inverse).

    Keys that match no rule come back unchanged, so the strict load names them.
    """
    scopes = _OUR_BLOCK_SCOPES if to_official else _BLOCK_SCOPES
    for pattern, template, offset, table in scopes:
        m = re.match(pattern, key)
        if m:
            stage, index = int(m.group(1)), int(m.group(2))
            stage = stage + offset if to_official else stage - offset
            renamed = _rename_in_block(key[m.end() :], table, to_official)
            if renamed is None:
                return key
            return template.format(s=stage, i=index) + renamed
    for official, ours in _TOP_PREFIXES:
        if '{n}' in official:
            # downsamplers between Base-Net stages: patch_embed{n} <-> stages.{n-1}.downsample
            pat_src = ours.replace('.', r'\.').replace('{n-1}', r'(\d+)') if to_official else None
            if to_official:
                m = re.match(pat_src, key)
                if m:
                    return official.replace('{n}', str(int(m.group(1)) + 1)) + key[m.end() :]
            else:
                m = re.match(official.replace('.', r'\.').replace('{n}', r'([2-4])'), key)
                if m:
                    return ours.replace('{n-1}', str(int(m.group(1)) - 1)) + key[m.end() :]
            continue
        src, dst = (ours, official) if to_official else (official, ours)
        if key.startswith(src):
            return dst + key[len(src) :]
    return key


def _fuse_dilated_in_state_dict(state_dict: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Fuse training-form DilatedReparamBlocks of a checkpoint for a deploy-form model."""
    prefixes = sorted({k[: k.index('branches.')] for k in state_dict if '.large_kernel.branches.' in k})
    for prefix in prefixes:
        if f'{prefix}conv.bias' not in model_keys or f'{prefix}bn.weight' in model_keys:
            continue  # the model is in training form here: keep the branches
        block = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if 'conv.bias' in block:
            raise ValueError(f'checkpoint block {prefix!r} has both a fused conv bias and training-form branches')
        weight, bias = fuse_dilated_reparam(block)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
        state_dict[f'{prefix}conv.weight'] = weight
        state_dict[f'{prefix}conv.bias'] = bias
    return state_dict


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: OverLoCK) -> dict[str, torch.Tensor]:
    """Convert an official OverLoCK checkpoint (training form ``*_in1k_224.pth`` or reparameterised
    ``*_reparam.pth``) or one in our layout to ``model``'s layout.

    A training-form file is fused on the fly when ``model`` is in deploy form. A reparameterised file cannot be
    un-fused: loading it into a training-form model (``deploy=False``) raises a ValueError. The auxiliary Overview-Net
    head is dropped when ``model`` has none, and re-initialised when its class count differs from the file's.
    Unknown keys are kept, so the strict load names them.
    """
    state_dict = state_dict.get('state_dict', state_dict)
    if not any(k.startswith(('stages.', 'focus_stages.')) for k in state_dict):
        state_dict = {convert_key(k): v for k, v in state_dict.items()}
    model_state = model.state_dict()
    model_keys = set(model_state)
    state_dict = _fuse_dilated_in_state_dict(dict(state_dict), model_keys)

    fused_in_file = [k for k in state_dict if k.endswith('large_kernel.conv.bias') and k not in model_keys]
    if fused_in_file and any(k.endswith('large_kernel.bn.weight') for k in model_keys):
        raise ValueError(
            f'the checkpoint is reparameterised (e.g. {fused_in_file[0]!r}) but the model is in training form '
            '(deploy=False); build it with deploy=True or load the training-form checkpoint'
        )
    out = {}
    for key, value in state_dict.items():
        if key.startswith('aux_head.') and model.aux_head is None:
            continue
        target = model_state.get(key)
        if target is not None and value.shape != target.shape:
            if value.numel() == target.numel():
                value = value.reshape(target.shape)  # layer scale / GRN / 1x1-conv-as-linear storage
            elif key.startswith('aux_head.fc.'):
                value = target.clone()  # a different class count: the training-only aux classifier starts fresh
        out[key] = value
    return out


# --- registration ---------------------------------------------------------------------------------------------------


def _create_overlock(variant: str, pretrained: bool = False, **kwargs) -> OverLoCK:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        OverLoCK,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(name: str, **kwargs) -> dict[str, Any]:
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
        'first_conv': 'stem.0',
        'classifier': 'head.fc',
        **pretrained_cfg(name),
        **kwargs,
    }


def _variant_cfgs(name: str, crop_pct: float) -> dict[str, dict[str, Any]]:
    # both official files load into the default (deploy-form) model; the first one also into deploy=False
    tags = (f'overlock_{name}.in1k', f'overlock_{name}.in1k_reparam')
    return {tag: _cfg(tag, crop_pct=crop_pct) for tag in tags}


default_cfgs = generate_default_cfgs(
    {
        **_variant_cfgs('xt', 0.925),
        **_variant_cfgs('t', 0.95),
        **_variant_cfgs('s', 0.95),
        **_variant_cfgs('b', 0.975),
    }
)


@register_model
def overlock_xt(pretrained: bool = False, **kwargs) -> OverLoCK:
    model_args = dict(
        depths=(2, 2, 3, 2),
        focus_depths=(6, 2),
        embed_dims=(56, 112, 256, 336),
        kernel_sizes=(17, 15, 13, 7),
        focus_num_heads=(4, 6),
    )
    return _create_overlock('overlock_xt', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def overlock_t(pretrained: bool = False, **kwargs) -> OverLoCK:
    model_args = dict(
        depths=(4, 4, 6, 2),
        focus_depths=(12, 2),
        embed_dims=(64, 128, 256, 512),
        kernel_sizes=(17, 15, 13, 7),
        focus_num_heads=(4, 8),
    )
    return _create_overlock('overlock_t', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def overlock_s(pretrained: bool = False, **kwargs) -> OverLoCK:
    model_args = dict(
        depths=(6, 6, 8, 3),
        focus_depths=(16, 3),
        embed_dims=(64, 128, 320, 512),
        kernel_sizes=(17, 15, 13, 7),
        focus_num_heads=(8, 16),
    )
    return _create_overlock('overlock_s', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def overlock_b(pretrained: bool = False, **kwargs) -> OverLoCK:
    model_args = dict(
        depths=(8, 8, 10, 4),
        focus_depths=(20, 4),
        embed_dims=(80, 160, 384, 576),
        kernel_sizes=(17, 15, 13, 7),
        focus_num_heads=(6, 9),
    )
    return _create_overlock('overlock_b', pretrained=pretrained, **dict(model_args, **kwargs))
