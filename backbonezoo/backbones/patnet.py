"""PATNet: partial convolution meets visual attention.

Paper: "Partial Convolution Meets Visual Attention", Haiduo Huang et al., 2025 (arXiv:2503.03148); extended as
"Partial Channel Network: Compute Fewer, Perform Better" (arXiv:2502.01303). Official code (PAT blocks):
https://github.com/haiduo/PartialNet (MIT). Written from the papers and the official model's behaviour; equivalence
is proven by the parity fixture in ``tests/fixtures/parity/patnet``.

A FasterNet-style four-stage ConvNet (strides 4-32, BatchNorm). Each block runs a 3x3 partial convolution on a
quarter of the channels and a cheap attention branch on the other three quarters:

- PAT_ch (stages 1-3): Gaussian channel attention, a gate from each channel's spatial mean and (unbiased) standard
  deviation through a dense (1, 2) convolution, BN and hard-sigmoid, followed by BN.
- PAT_sf (stage 4): multi-head self-attention over all tokens with an iRPE bias (Euclidean distance buckets).
- PAT_sp (optional, at the end of every MLP): a one-channel spatial gate on the first half of the channels.

Variants follow the official repository's classification configurations (``cfg/PartialNet_*.yaml``), where PAT_sp
is on only for t1; the repository's detection backbones use FasterNet's shapes with PAT_sp on: they are registered
as ``patnet_det_s`` / ``_m`` / ``_l``. The iRPE bucket ids are computed in the graph from the feature size (no
Python-side cache), so the model scripts, traces and exports at any resolution.
"""

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    LayerNorm2d,
    SelectAdaptivePool2d,
    calculate_drop_path_rates,
    get_device_dtype,
    register_notrace_function,
    trunc_normal_,
)
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from backbonezoo.layers import check_input
from backbonezoo.layers.attention import dense_attention

__all__ = ['PATNet', 'checkpoint_filter_fn']

# iRPE "euc" bucketing with ratio 20: alpha 20, beta 40, gamma 160 (the official configuration).
RPE_BETA = 40


@register_notrace_function
def irpe_bucket_ids(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(L, L) bucket ids of iRPE's Euclidean piecewise index for an ``height x width`` token grid.

    d = round(||p_i - p_j||); id = d for d <= alpha, else round(alpha + ln(d / alpha) / ln(gamma / alpha) *
    (beta - alpha)) clipped at beta; shifted by beta (distances are non-negative, so only ids beta..2 beta occur).
    Computed in float32 like the official code so the rounding agrees.
    """
    alpha, beta, gamma = 20.0, 40, 160.0  # locals, not globals: TorchScript cannot read global floats
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    dy = (ys[:, None, None, None] - ys[None, None, :, None]).expand(height, width, height, width)
    dx = (xs[None, :, None, None] - xs[None, None, None, :]).expand(height, width, height, width)
    dist = (dy * dy + dx * dx).float().sqrt().round()
    far = alpha + torch.log(dist.clamp(min=1.0) / alpha) / math.log(gamma / alpha) * (beta - alpha)
    ids = torch.where(dist <= alpha, dist, far.round().clamp(max=beta))
    return ids.long().reshape(height * width, height * width) + beta


class IRPEAttention(nn.Module):
    """Multi-head self-attention over all tokens of an NCHW map, with a per-head iRPE bias on the logits."""

    def __init__(
        self, dim: int, num_heads: int, attn_drop: float = 0.1, proj_drop: float = 0.1, device=None, dtype=None
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % num_heads:
            raise ValueError(f'dim={dim} must be divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False, **dd)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * RPE_BETA + 1, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).reshape(B, H * W, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.rpe_table[:, irpe_bucket_ids(H, W, x.device)].to(q.dtype)
        out = dense_attention(q, k, v, attn_mask=bias.unsqueeze(0), dropout_p=self.attn_drop if self.training else 0.0)
        # heads merged by concatenation, not transpose + reshape: with symbolic sizes (torch.export / ONNX) the
        # reshape of the transposed tensor fails to decide whether it can be a view
        out = self.proj(torch.cat(out.unbind(1), dim=-1)).transpose(1, 2).reshape(B, C, H, W)
        # dropout after the layout change (the same mask: it is drawn in memory order), so that its backward gets
        # the NCHW gradient as it is; before it, the gradient arrives transposed, the CPU kernel keeps those
        # strides while the meta kernel aot_autograd traces with says contiguous, and the compiled backward's
        # view of it fails
        return self.proj_drop(out)


class GaussianChannelGate(nn.Module):
    """PAT_ch's gate: channel statistics (mean, unbiased std over HW) -> dense (1, 2) conv -> BN -> hard-sigmoid."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.stats_conv = nn.Conv2d(dim, dim, kernel_size=(1, 2), bias=False, **dd)
        self.bn = nn.BatchNorm2d(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2).float()  # statistics in float32: the std loses precision in half types
        mean = flat.mean(-1, keepdim=True)
        # unbiased std as a two-pass norm: the same value as ``flat.std(-1)`` (NaN for one pixel) and on CPU about
        # 10x faster than ``aten::std`` (which was 15 % of PATNet-T0's forward at batch 16)
        std = torch.linalg.vector_norm(flat - mean, dim=-1) / (flat.shape[-1] - 1) ** 0.5
        stats = torch.stack((mean.squeeze(-1), std), dim=-1).unsqueeze(2).to(x.dtype)  # (B, C, 1, 2)
        return x * F.hardsigmoid(self.bn(self.stats_conv(stats)))


class PartialMixer(nn.Module):
    """3x3 conv on the first C // n_div channels; PAT_ch ('channel') or PAT_sf ('self') on the rest."""

    def __init__(self, dim: int, n_div: int, attention: str, num_heads: int = 4, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv_dim = dim // n_div
        self.attn_dim = dim - self.conv_dim
        self.attention = attention
        self.partial_conv3 = nn.Conv2d(self.conv_dim, self.conv_dim, 3, 1, 1, bias=False, **dd)
        if attention == 'channel':
            self.attn = GaussianChannelGate(self.attn_dim, **dd)
            self.norm = nn.BatchNorm2d(self.attn_dim, **dd)
        elif attention == 'self':
            self.norm = LayerNorm2d(self.attn_dim, **dd)
            self.attn = IRPEAttention(self.attn_dim, num_heads, **dd)
        else:
            raise ValueError(f"attention={attention!r}: expected 'channel' or 'self'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.conv_dim, self.attn_dim], dim=1)
        if self.attention == 'channel':
            x2 = self.norm(self.attn(x2))
        else:
            x2 = self.attn(self.norm(x2))
        return torch.cat((self.partial_conv3(x1), x2), dim=1)


class PartialSpatialGate(nn.Module):
    """PAT_sp: a one-channel hard-sigmoid gate (then BN) on the first C - C // 2 channels; BN + 1x1 conv on the
    last C // 2."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv_dim = dim // 2
        self.gate_dim = dim - self.conv_dim
        self.conv = nn.Conv2d(self.conv_dim, self.conv_dim, 1, bias=False, **dd)
        self.conv_attn = nn.Conv2d(self.gate_dim, 1, 1, bias=False, **dd)
        self.norm = nn.BatchNorm2d(self.gate_dim, **dd)
        self.norm2 = nn.BatchNorm2d(self.conv_dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.gate_dim, self.conv_dim], dim=1)
        x1 = self.norm(x1 * F.hardsigmoid(self.conv_attn(x1)))
        return torch.cat((x1, self.conv(self.norm2(x2))), dim=1)


class PATBlock(nn.Module):
    """Stages 1-3: x + MLP(mixer(x)) (the mixer replaces x); stage 4: x + mixer(x), then + MLP."""

    def __init__(
        self,
        dim: int,
        n_div: int,
        mlp_ratio: float,
        attention: str,
        spatial_gate: bool,
        act_layer: type[nn.Module],
        num_heads: int = 4,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.mixer_residual = attention == 'self'
        self.spatial_mixing = PartialMixer(dim, n_div, attention, num_heads, **dd)
        hidden = int(dim * mlp_ratio)
        layers = [
            nn.Conv2d(dim, hidden, 1, bias=False, **dd),
            nn.BatchNorm2d(hidden, **dd),
            act_layer(),
            nn.Conv2d(hidden, dim, 1, bias=False, **dd),
        ]
        if spatial_gate:
            layers.append(PartialSpatialGate(dim, **dd))
        self.mlp = nn.Sequential(*layers)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mixer_residual:
            x = x + self.spatial_mixing(x)
            return x + self.drop_path(self.mlp(x))
        return x + self.drop_path(self.mlp(self.spatial_mixing(x)))


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch_size: int = 4, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size, bias=False, **dd)
        self.norm = nn.BatchNorm2d(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, patch_size: int = 2, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.reduction = nn.Conv2d(dim, 2 * dim, patch_size, patch_size, bias=False, **dd)
        self.norm = nn.BatchNorm2d(2 * dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))


class PATStage(nn.Module):
    def __init__(
        self, dim: int, depth: int, downsample: bool, drop_path: list[float], device=None, dtype=None, **block_kwargs
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grad_checkpointing = False
        self.downsample = PatchMerging(dim // 2, **dd) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *[PATBlock(dim, drop_path=drop_path[i], **dd, **block_kwargs) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class PATNet(nn.Module):
    """PATNet.

    Args:
        embed_dim: stage-1 width (stage i: embed_dim * 2**i).
        depths: blocks per stage.
        mlp_ratio: MLP hidden ratio; n_div: 1 / n_div of the channels get the partial 3x3 conv.
        feature_dim: width of the 1x1 conv after pooling (the head's pre-logits).
        spatial_gate: PAT_sp at the end of every MLP.
        num_heads: heads of the stage-4 self-attention (4 in every official configuration).
        act_layer: 'gelu' or 'relu'.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = 'avg',
        embed_dim: int = 32,
        depths: tuple[int, ...] = (1, 2, 8, 2),
        mlp_ratio: float = 2.0,
        n_div: int = 4,
        feature_dim: int = 1280,
        spatial_gate: bool = False,
        num_heads: int = 4,
        act_layer: str = 'gelu',
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        acts = {'gelu': nn.GELU, 'relu': partial(nn.ReLU, inplace=True)}
        if act_layer not in acts:
            raise ValueError(f"act_layer={act_layer!r}: expected 'gelu' or 'relu'")
        act = acts[act_layer]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        num_stages = len(depths)
        self.min_input_size = 2 ** (num_stages + 1)

        self.patch_embed = PatchEmbed(in_chans, embed_dim, **dd)
        rates = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)  # linear over all blocks
        stages, self.feature_info = [], []
        for i, depth in enumerate(depths):
            dim = embed_dim * 2**i
            stages.append(
                PATStage(
                    dim,
                    depth,
                    downsample=i > 0,
                    drop_path=rates[i],
                    n_div=n_div,
                    mlp_ratio=mlp_ratio,
                    attention='self' if i == num_stages - 1 else 'channel',
                    spatial_gate=spatial_gate,
                    act_layer=act,
                    num_heads=num_heads,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=dim, reduction=4 * 2**i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.num_features = embed_dim * 2 ** (num_stages - 1)
        self.head_hidden_size = feature_dim
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.conv_head = nn.Conv2d(self.num_features, feature_dim, 1, bias=False, **dd)
        self.act = act()
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self.classifier = nn.Linear(feature_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        if self.patch_embed.proj.weight.device.type != 'meta':  # nothing to initialise on the meta device
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r'^patch_embed',
            blocks=r'^stages\.(\d+)'
            if coarse
            else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^conv_head', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        dd = get_device_dtype(self)  # the new layers follow the model's device, dtype and mode
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool).train(self.training)
            self.flatten = (nn.Flatten(1) if global_pool else nn.Identity()).train(self.training)
        classifier = nn.Linear(self.head_hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.classifier = classifier.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ):
        """Stage outputs (strides 4 / 8 / 16 / 32) as NCHW maps; ``norm`` has no effect (no final norm)."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt={output_fmt!r}: only 'NCHW' is supported")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        check_input(x, self.patch_embed.proj.weight, 'PATNet', in_chans=self.in_chans, min_size=self.min_input_size)
        x = self.patch_embed(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
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
            self.num_features = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            # the pre-logits conv is part of the head
            self.conv_head = nn.Identity()
            self.act = nn.Identity()
            self.head_hidden_size = self.num_features
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.patch_embed.proj.weight, 'PATNet', in_chans=self.in_chans, min_size=self.min_input_size)
        return self.stages(self.patch_embed(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.act(self.conv_head(self.global_pool(x))))
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _official_key(key: str) -> str:
    """One official (haiduo/PartialNet) key in our layout; unknown keys come back unchanged."""
    if key.startswith('avgpool_pre_head.1.'):
        return 'conv_head.' + key.rsplit('.', 1)[1]
    if key.startswith('head.'):
        return 'classifier.' + key.split('.', 1)[1]
    if key.startswith('stages.'):
        _, index, rest = key.split('.', 2)
        index = int(index)
        if index % 2:  # merging layer between official stages: opens our next stage
            return f'stages.{(index + 1) // 2}.downsample.{rest}'
        rest = rest.replace('.spatial_mixing.attn.cfc1.', '.spatial_mixing.attn.stats_conv.')
        rest = rest.replace('.spatial_mixing.attn.rpe_k.lookup_table_bias', '.spatial_mixing.attn.rpe_table')
        return f'stages.{index // 2}.{rest}'
    return key


def checkpoint_filter_fn(state_dict: dict, model: PATNet) -> dict:
    """Convert an official PartialNet / PATNet state dict (bare, or Lightning's ``model.``-prefixed) to ours.

    The dense wrapper's output norms (``norm0/2/4/6``) are not part of the classification model and are dropped.
    Our own layout passes through.
    """
    if state_dict and all(k.startswith('model.') for k in state_dict):  # PyTorch-Lightning checkpoint
        state_dict = {k[len('model.') :]: v for k, v in state_dict.items()}
    if not any(k.startswith(('head.', 'avgpool_pre_head.', 'stages.1.reduction.')) for k in state_dict):
        return dict(state_dict)  # already ours
    out = {}
    for key, value in state_dict.items():
        if key.split('.')[0] in ('norm0', 'norm2', 'norm4', 'norm6'):
            continue
        out[_official_key(key)] = value
    return out


def _create_patnet(variant: str, pretrained: bool = False, **kwargs) -> PATNet:
    return build_model_with_cfg(
        PATNet,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'),
        **kwargs,
    )


def _cfg(name: str, **kwargs) -> dict:
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
        'first_conv': 'patch_embed.proj',
        'classifier': 'classifier',
        **pretrained_cfg(name),
        **kwargs,
    }


# No official weights are public (haiduo/PartialNet#3): official-layout files load through
# pretrained_cfg_overlay=dict(file=...).
default_cfgs = generate_default_cfgs(
    {
        'patnet_t0.untrained': _cfg('patnet_t0.untrained'),
        'patnet_t1.untrained': _cfg('patnet_t1.untrained'),
        'patnet_t2.untrained': _cfg('patnet_t2.untrained'),
        'patnet_s.untrained': _cfg('patnet_s.untrained'),
        'patnet_m.untrained': _cfg('patnet_m.untrained'),
        'patnet_l.untrained': _cfg('patnet_l.untrained'),
        'patnet_det_s.untrained': _cfg('patnet_det_s.untrained'),
        'patnet_det_m.untrained': _cfg('patnet_det_m.untrained'),
        'patnet_det_l.untrained': _cfg('patnet_det_l.untrained'),
    }
)


@register_model
def patnet_t0(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=32, depths=(1, 2, 8, 2), act_layer='gelu', drop_path_rate=0.0)
    return _create_patnet('patnet_t0', pretrained, **dict(model_args, **kwargs))


@register_model
def patnet_t1(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=48, depths=(1, 2, 8, 2), act_layer='gelu', spatial_gate=True, drop_path_rate=0.02)
    return _create_patnet('patnet_t1', pretrained, **dict(model_args, **kwargs))


@register_model
def patnet_t2(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=64, depths=(2, 2, 6, 4), act_layer='relu', drop_path_rate=0.05)
    return _create_patnet('patnet_t2', pretrained, **dict(model_args, **kwargs))


@register_model
def patnet_s(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=96, depths=(2, 2, 9, 4), act_layer='relu', drop_path_rate=0.1)
    return _create_patnet('patnet_s', pretrained, **dict(model_args, **kwargs))


@register_model
def patnet_m(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=128, depths=(2, 3, 16, 4), act_layer='relu', drop_path_rate=0.2)
    return _create_patnet('patnet_m', pretrained, **dict(model_args, **kwargs))


@register_model
def patnet_l(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=160, depths=(2, 3, 20, 4), act_layer='relu', drop_path_rate=0.3)
    return _create_patnet('patnet_l', pretrained, **dict(model_args, **kwargs))


@register_model
def patnet_det_s(pretrained: bool = False, **kwargs) -> PATNet:
    """The official detection backbone PartialNet_s (FasterNet-S shapes, PAT_sp on)."""
    model_args = dict(embed_dim=128, depths=(1, 2, 13, 2), act_layer='relu', spatial_gate=True, drop_path_rate=0.1)
    return _create_patnet('patnet_det_s', pretrained, **dict(model_args, **kwargs))


@register_model
def patnet_det_m(pretrained: bool = False, **kwargs) -> PATNet:
    """The official detection backbone PartialNet_m (FasterNet-M shapes, PAT_sp on)."""
    model_args = dict(embed_dim=144, depths=(3, 4, 18, 3), act_layer='relu', spatial_gate=True, drop_path_rate=0.2)
    return _create_patnet('patnet_det_m', pretrained, **dict(model_args, **kwargs))


@register_model
def patnet_det_l(pretrained: bool = False, **kwargs) -> PATNet:
    """The official detection backbone PartialNet_l (FasterNet-L shapes, PAT_sp on)."""
    model_args = dict(embed_dim=192, depths=(3, 4, 18, 3), act_layer='relu', spatial_gate=True, drop_path_rate=0.3)
    return _create_patnet('patnet_det_l', pretrained, **dict(model_args, **kwargs))
