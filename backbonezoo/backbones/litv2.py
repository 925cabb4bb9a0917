"""LITv2: Fast Vision Transformers with HiLo Attention.

Paper: https://arxiv.org/abs/2205.13213 (Pan, Cai, Zhuang, NeurIPS 2022).
Official code (Apache-2.0): https://github.com/ziplab/LITv2

A four-stage ViT with strides 4 / 8 / 16 / 32. Stages 1-2 are attention-free "ConvFFN" blocks, stages 3-4 add HiLo
attention: ``hifi_heads`` heads attend inside non-overlapping ``window_size`` windows (blocked window attention from
``backbonezoo.kernels``), the other heads attend from every token to ``window_size``-average-pooled keys and values
(SDPA). With ``window_size=1`` (stage 4) HiLo is plain multi-head self-attention. Stages are joined by deformable token
merging: a 2x2 stride-2 deformable convolution (``torchvision.ops.deform_conv2d``'s function, exactly the official
CUDA-only DCN extension; on CPU computed as grid-sample + matmul by ``backbonezoo.layers.deform_conv2d``, torchvision's
operator on CUDA), BatchNorm and GELU. There is no position embedding. Non-finite activations propagate as NaN
(torchvision's CPU kernel would crash on NaN offsets); an empty batch gives an empty output.

Any input size of at least 32 runs, the way the official dense backbone runs it: the stem pads the image to a
multiple of 4 (right / bottom), HiLo pads each map to a multiple of its window with zeros after ``norm1`` and crops
after (padded keys / values are the projection biases, as in the official code), and token merging floors odd sizes
(the last row / column is dropped). Multiples of 32 need neither padding nor flooring.

Tensors inside the stages are NHWC; ``forward_features`` and the intermediates are NCHW.
"""

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    ClassifierHead,
    DropPath,
    calculate_drop_path_rates,
    get_device_dtype,
    is_meta_device,
    register_notrace_module,
    to_2tuple,
    trunc_normal_,
)
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from backbonezoo.kernels import local_attention
from backbonezoo.layers import DEFORM_BACKENDS, DeformConv2d, check_input, deform_conv2d, opaque_to_tracing

__all__ = ['LITv2', 'HiLoAttention', 'DeformableTokenMerging', 'checkpoint_filter_fn']

MIN_INPUT_SIZE = 32  # a 32x32 image leaves a 1x1 map in stage 4


@register_notrace_module  # branches on the input size (padding): a leaf for torch.fx
class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` conv + LayerNorm; pads the image to a multiple of ``patch_size``. NCHW -> NHWC."""

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int = 4,
        norm_layer: Callable[..., nn.Module] | None = nn.LayerNorm,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.patch_size = to_2tuple(patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size, **dd)
        self.norm = norm_layer(embed_dim, **dd) if norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = -x.shape[-2] % self.patch_size[0]
        pad_w = -x.shape[-1] % self.patch_size[1]
        if torch.compiler.is_compiling() or pad_h or pad_w:  # no branch on symbolic sizes: keeps H, W dynamic
            x = F.pad(x, (0, pad_w, 0, pad_h))
        # contiguous NHWC from here on: LayerNorm and the residual adds would otherwise copy in every block
        return self.norm(self.proj(x).permute(0, 2, 3, 1).contiguous())


class ConvMlp(nn.Module):
    """FFN with a 3x3 depthwise conv between fc1 and the activation (the official ``DWMlp``). NHWC in and out."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.fc1 = nn.Linear(dim, hidden_dim, **dd)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim, **dd)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim, **dd)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        # NHWC viewed as a channels-last NCHW tensor: the depthwise conv runs without a layout copy
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = self.drop1(self.act(x))
        return self.drop2(self.fc2(x))


@opaque_to_tracing  # dispatches in Python (backbonezoo.kernels)
def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window_size: int, scale: float, backend: str | None
) -> torch.Tensor:
    """Attention inside non-overlapping ``window_size`` windows, (B, heads, H, W, head_dim) in and out."""
    return local_attention(q, k, v, window_size, stride=window_size, border='zero', scale=scale, backend=backend)


@register_notrace_module  # branches on the map size (padding): a leaf for torch.fx
class HiLoAttention(nn.Module):
    """HiLo attention on an NHWC map.

    ``int(num_heads * alpha)`` Lo-Fi heads attend from every token to ``window_size``-average-pooled keys / values;
    the remaining Hi-Fi heads attend inside non-overlapping ``window_size`` windows. Each branch has its own output
    projection; outputs are concatenated Hi-Fi first. ``window_size=1`` gives every head to Lo-Fi without pooling
    (plain multi-head self-attention).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 2,
        alpha: float = 0.9,
        qkv_bias: bool = True,
        kernel_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % num_heads:
            raise ValueError(f'HiLoAttention: dim={dim} must be divisible by num_heads={num_heads}')
        if window_size < 1:
            raise ValueError(f'HiLoAttention: window_size={window_size}, expected >= 1')
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'HiLoAttention: alpha={alpha}, expected a fraction in [0, 1]')
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.scale = self.head_dim**-0.5
        self.kernel_backend = kernel_backend
        # the official split truncates: alpha 0.9 of 12 heads is 10 Lo-Fi heads
        self.lofi_heads = num_heads if window_size == 1 else int(num_heads * alpha)
        self.hifi_heads = num_heads - self.lofi_heads
        lofi_dim, hifi_dim = self.lofi_heads * self.head_dim, self.hifi_heads * self.head_dim
        # a branch without heads has None projections: TorchScript then compiles its code out
        self.l_q = self.l_kv = self.l_proj = self.h_qkv = self.h_proj = None
        if self.lofi_heads:
            self.l_q = nn.Linear(dim, lofi_dim, bias=qkv_bias, **dd)
            self.l_kv = nn.Linear(dim, 2 * lofi_dim, bias=qkv_bias, **dd)
            self.l_proj = nn.Linear(lofi_dim, lofi_dim, **dd)
        if self.hifi_heads:
            self.h_qkv = nn.Linear(dim, 3 * hifi_dim, bias=qkv_bias, **dd)
            self.h_proj = nn.Linear(hifi_dim, hifi_dim, **dd)

    def _hifi(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        qkv = self.h_qkv(x).view(B, H, W, 3, self.hifi_heads, self.head_dim).permute(3, 0, 4, 1, 2, 5)
        q, k, v = qkv.unbind(0)
        x = window_attention(q, k, v, self.window_size, self.scale, self.kernel_backend)
        return self.h_proj(x.permute(0, 2, 3, 1, 4).flatten(3))  # no -1 in shapes: batch 0 must work

    def _lofi(self, x: torch.Tensor, x_padded: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        q = self.l_q(x).view(B, H * W, self.lofi_heads, self.head_dim).transpose(1, 2)
        if self.window_size > 1:
            # pooling commutes with the affine l_kv, so pool first; the padded zeros are averaged in (official)
            ws = self.window_size
            x_padded = F.avg_pool2d(x_padded.permute(0, 3, 1, 2), ws, ws).permute(0, 2, 3, 1)
        kv = self.l_kv(x_padded.flatten(1, 2)).unflatten(-1, (2, self.lofi_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.l_proj(x.transpose(1, 2).reshape(B, H, W, self.lofi_heads * self.head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1:3]
        pad_h, pad_w = -H % self.window_size, -W % self.window_size
        # zeros after the norm and before the projections: padded keys / values are the projection biases (official)
        needs_pad = torch.compiler.is_compiling() or pad_h or pad_w  # no branch on symbolic sizes when traced
        x_padded = F.pad(x, (0, 0, 0, pad_w, 0, pad_h)) if needs_pad else x
        outs = []
        if self.h_qkv is not None:
            outs.append(self._hifi(x_padded)[:, :H, :W])
        if self.l_q is not None:
            outs.append(self._lofi(x, x_padded))
        return torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]


class LITv2Block(nn.Module):
    """Pre-norm HiLo attention (stages with attention only) + pre-norm ConvMlp, both residual. NHWC."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        use_attn: bool = True,
        window_size: int = 2,
        alpha: float = 0.9,
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
        if use_attn:
            self.norm1 = norm_layer(dim, **dd)
            self.attn = HiLoAttention(dim, num_heads, window_size, alpha, qkv_bias, kernel_backend, **dd)
        else:
            self.norm1 = self.attn = None  # ConvFFN block (official): no attention and no norm1
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer, proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@opaque_to_tracing  # dispatches on device / capture mode in Python (backbonezoo.layers.deform_conv2d)
def deformable_conv(
    x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int, backend: str | None
) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d(x, offset, weight, bias, stride)`` through ``backbonezoo.layers``: the
    grid-sample formulation on CPU, torchvision's operator on CUDA and in captured graphs (or as forced)."""
    return deform_conv2d(x, offset, weight, bias, stride=stride, backend=backend)


@register_notrace_module  # picks the compute dtype from the input: a leaf for torch.fx
class DeformableTokenMerging(nn.Module):
    """2x2 stride-2 deformable conv (offsets from a 2x2 stride-2 conv) + BatchNorm + GELU; halves H and W (floors odd
    sizes, like the official code). NHWC in and out.

    ``deform_backend``: 'torch' (grid-sample + matmul, exact, any device), 'torchvision' (its operator) or None /
    'auto' (torchvision on CUDA and in captured graphs, 'torch' otherwise); see ``backbonezoo.layers.deform_conv2d``.
    ``conv`` is ``backbonezoo.layers.DeformConv2d`` (torchvision's module and parameter names, the official ones).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        deform_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if deform_backend not in (None, *DEFORM_BACKENDS):
            raise ValueError(f'LITv2: deform_backend={deform_backend!r}, expected None or one of {DEFORM_BACKENDS}')
        self.deform_backend = deform_backend
        # deformable conv v1, one offset group: channel 2k is the row offset of tap k, 2k+1 its column offset
        self.conv_offset = nn.Conv2d(in_dim, 2 * 2 * 2, kernel_size=2, stride=2, **dd)
        self.conv = DeformConv2d(in_dim, out_dim, kernel_size=2, stride=2, bias=True, backend=deform_backend, **dd)
        self.norm = nn.BatchNorm2d(out_dim, **dd)
        self.act = act_layer()
        if not is_meta_device(device):
            # official init: zero offsets, so training starts from a plain 2x2 stride-2 conv
            nn.init.zeros_(self.conv_offset.weight)
            nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        offset = self.conv_offset(x)
        # torchvision's deform_conv2d has no bfloat16 kernels (and no float16 on CPU), and low-precision sampling
        # positions would be coarse: low precision (bf16 models, autocast's bf16 offsets) runs in float32, as the
        # official DCN extension (float / double only) would under AMP
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        weight, bias = self.conv.weight.to(dtype), self.conv.bias.to(dtype)
        out = deformable_conv(x.to(dtype), offset.to(dtype), weight, bias, self.conv.stride[0], self.deform_backend)
        # the 'torch' formulation returns channels-last memory: the permute back to NHWC is then free
        return self.act(self.norm(out.to(x.dtype))).permute(0, 2, 3, 1).contiguous()  # see PatchEmbed


class LITv2Stage(nn.Module):
    """Optional token merging (stages 2-4), then ``depth`` blocks. NHWC."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        downsample: bool,
        use_attn: bool,
        window_size: int,
        alpha: float,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        drop_path: Sequence[float] | float = 0.0,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        kernel_backend: str | None = None,
        deform_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grad_checkpointing = False
        if downsample:
            self.downsample = DeformableTokenMerging(in_dim, dim, act_layer, deform_backend, **dd)
        else:
            self.downsample = nn.Identity()
        drop_path = drop_path if isinstance(drop_path, Sequence) else [drop_path] * depth
        self.blocks = nn.Sequential(
            *[
                LITv2Block(
                    dim,
                    num_heads,
                    use_attn=use_attn,
                    window_size=window_size,
                    alpha=alpha,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_drop=proj_drop,
                    drop_path=drop_path[i],
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


class LITv2(nn.Module):
    """LITv2 with the timm model API.

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0: no classifier).
        global_pool: 'avg' (official), 'max', ... or '' for no pooling.
        embed_dim: stage-1 width; stage ``i`` has ``embed_dim * 2**i`` channels.
        depths: blocks per stage.
        num_heads: attention heads per stage (unused in stages without attention).
        window_sizes: HiLo window per stage (the paper's ``s``; 1 = plain self-attention, unused without attention).
        use_attn: which stages have HiLo attention (official ``has_msa``); the others are ConvFFN stages.
        alpha: fraction of each HiLo's heads given to Lo-Fi (truncated: ``int(num_heads * alpha)``).
        mlp_ratio: FFN hidden width / width.
        qkv_bias: bias on the q / kv / qkv projections.
        patch_size: stem conv kernel and stride.
        drop_rate: dropout before the classifier.
        proj_drop_rate: dropout inside the FFNs (the official ``drop_rate``).
        drop_path_rate: stochastic depth, linear over all blocks.
        kernel_backend: backend of the Hi-Fi window attention (``backbonezoo.kernels``); None = automatic.
        deform_backend: backend of the token mergings' deformable convs (``backbonezoo.layers.deform_conv2d``:
            'torch' or 'torchvision'); None = automatic (torchvision's operator on CUDA, 'torch' on CPU).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = 'avg',
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_sizes: Sequence[int] = (0, 0, 2, 1),
        use_attn: Sequence[bool] = (False, False, True, True),
        alpha: float = 0.9,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        patch_size: int = 4,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        kernel_backend: str | None = None,
        deform_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        num_stages = len(depths)
        for arg, value in (('num_heads', num_heads), ('window_sizes', window_sizes), ('use_attn', use_attn)):
            if len(value) != num_stages:
                raise ValueError(f'LITv2: {arg}={tuple(value)} must have one entry per stage ({num_stages} stages)')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.min_input_size = patch_size * 2 ** (num_stages - 1)
        dims = [int(embed_dim * 2**i) for i in range(num_stages)]
        self.num_features = self.head_hidden_size = dims[-1]

        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, norm_layer, **dd)
        dpr = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)  # linear over all blocks
        self.feature_info = []
        stages = []
        for i in range(num_stages):
            stages.append(
                LITv2Stage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depths[i],
                    num_heads[i],
                    downsample=i > 0,
                    use_attn=bool(use_attn[i]),
                    window_size=window_sizes[i],
                    alpha=alpha,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_drop=proj_drop_rate,
                    drop_path=dpr[i],
                    norm_layer=norm_layer,
                    act_layer=act_layer,
                    kernel_backend=kernel_backend,
                    deform_backend=deform_backend,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=dims[i], reduction=patch_size * 2**i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.norm = norm_layer(self.num_features, **dd)
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        if not is_meta_device(device):  # timm's rule: a meta model holds no values to initialise
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # official: trunc-normal Linear, fan-out normal depthwise conv, framework defaults elsewhere
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, ConvMlp):
            fan_out = module.dwconv.kernel_size[0] * module.dwconv.kernel_size[1] * module.dwconv.out_channels
            nn.init.normal_(module.dwconv.weight, 0.0, math.sqrt(2.0 / (fan_out // module.dwconv.groups)))
            nn.init.zeros_(module.dwconv.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r'^patch_embed',
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
            self.patch_embed.proj.weight,
            'LITv2',
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
        """Stage outputs (NCHW, before the next stage's token merging), optionally with the final features.

        Args:
            x: input images (B, C, H, W).
            indices: last n stages if int, all if None, else the listed stage indices.
            norm: apply the final norm to the last stage's intermediate.
            stop_early: stop after the last wanted stage.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the intermediates.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"LITv2: output_fmt={output_fmt!r}, only 'NCHW' is supported")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: max_index + 1]
        last = len(self.stages) - 1
        intermediates = []
        x = self.patch_embed(x)
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
        x = self.patch_embed(x)
        x = self.stages(x)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# official key -> ours; ``layers.i.downsample`` (end of stage i) is our ``stages.(i+1).downsample`` (start of stage i+1)
_KEY_RULES = (
    (
        re.compile(r'^layers\.(\d+)\.downsample\.dconv\.conv_offset\.'),
        lambda m: f'stages.{int(m[1]) + 1}.downsample.conv_offset.',
    ),
    (re.compile(r'^layers\.(\d+)\.downsample\.dconv\.'), lambda m: f'stages.{int(m[1]) + 1}.downsample.conv.'),
    (re.compile(r'^layers\.(\d+)\.downsample\.norm_layer\.'), lambda m: f'stages.{int(m[1]) + 1}.downsample.norm.'),
    (re.compile(r'^layers\.(\d+)\.blocks\.'), lambda m: f'stages.{m[1]}.blocks.'),
    (re.compile(r'\.mlp\.dwconv\.dwconv\.'), lambda m: '.mlp.dwconv.'),
    (re.compile(r'^head\.(weight|bias)$'), lambda m: f'head.fc.{m[1]}'),
)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Convert an official LITv2 checkpoint (classification, or a dense backbone with its prefix stripped) to our
    layout. Our own layout passes through unchanged; keys no rule knows (e.g. the dense wrappers' ``norm0..3``) are
    kept so that a strict load names them."""
    out = {}
    for key, value in state_dict.items():
        for pattern, replace in _KEY_RULES:
            key = pattern.sub(replace, key)
        out[key] = value
    return out


def _create_litv2(variant: str, pretrained: bool = False, **kwargs: Any) -> LITv2:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        LITv2,
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
        'crop_pct': 0.875,
        'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj',
        'classifier': 'head.fc',
        **pretrained_cfg(name),
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        'litv2_small.in1k': _cfg('litv2_small.in1k'),
        'litv2_medium.in1k': _cfg('litv2_medium.in1k'),
        'litv2_base.in1k': _cfg('litv2_base.in1k'),
        # fine-tuned at 384 and evaluated without a centre crop (official TEST.CROP False)
        'litv2_base_384.in1k': _cfg('litv2_base_384.in1k', input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0),
    }
)


@register_model
def litv2_small(pretrained: bool = False, **kwargs: Any) -> LITv2:
    model_args = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2)
    return _create_litv2('litv2_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def litv2_medium(pretrained: bool = False, **kwargs: Any) -> LITv2:
    model_args = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3)
    return _create_litv2('litv2_medium', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def litv2_base(pretrained: bool = False, **kwargs: Any) -> LITv2:
    model_args = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5)
    return _create_litv2('litv2_base', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def litv2_base_384(pretrained: bool = False, **kwargs: Any) -> LITv2:
    model_args = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5)
    return _create_litv2('litv2_base_384', pretrained=pretrained, **dict(model_args, **kwargs))
