"""A2Mamba: Attention-augmented State Space Models for Visual Recognition (arXiv 2507.16624).

A four-stage hybrid (strides 4 / 8 / 16 / 32) whose token mixer, MASS, runs neighbourhood attention on two head
halves (dilation 1, then ``min(H // window, window)`` per axis, cascaded: the dilated half attends over the local
half's output plus its own values), then a one-direction selective scan with ``d_state = 1`` (A2SSM) whose hidden
states are re-aggregated by the same attention maps. Stage 4 replaces the scan by global attention with a learned
``(1, heads, N, N)`` bias.

Re-implemented from the paper (official code: https://github.com/LMMMEng/A2Mamba, no license file);
``checkpoint_filter_fn`` loads the official checkpoints. Differences in layout, not in math:

* The official ``rpb.0`` / ``rpb.1`` are one tied parameter: here a single ``rpb`` serves both head halves, loaded
  from ``rpb.1`` (the key that wins when the official model loads a file). ``rpb.2`` is ``global_rpb``.
* ``rope.angle`` is a persistent buffer, loaded from the checkpoint (never recomputed).
* LayerScale is stored as ``(C,)`` weight + bias instead of ``(C, 1, 1, 1)`` depthwise kernels. The official
  ``classifier`` (1x1 conv + BN + SiLU, pool, 1x1 conv) is ``conv_head`` (ending ``forward_features``, as in timm's
  EfficientNet) and ``head`` (timm's ClassifierHead; its ``fc`` is a Linear).

Input sizes: every stage needs a map at least as large as its window (11 / 9 / 7 / 7 for the released variants), so
inputs must be >= 193 px per side (``ceil(H / 32) >= 7``); smaller ones raise a ValueError. The dilation of the second
head half follows the map size, so each input size has its own receptive pattern (as in the official model). At
sizes other than ``img_size`` the stage-4 bias is resized the official way, bicubically as an ``(N, N)`` image
(``F.interpolate(..., mode='bicubic', align_corners=False)``), so outputs match the official model at every size.

Kernels: each head half's map is made once by ``backbonezoo.kernels.local_probs`` and applied twice (to the values,
then to the SSM's hidden states) by ``local_aggregate_probs``, in the fast path's own tiled layout. Dynamic-H/W export
works: dilations, scan lengths and the stage-4 bias size stay symbolic.
"""

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    ClassifierHead,
    ConvNormAct,
    DropPath,
    LayerNorm2d,
    calculate_drop_path_rates,
    get_device_dtype,
    is_meta_device,
    register_notrace_module,
    to_2tuple,
    trunc_normal_,
)
from timm.layers.pos_embed_sincos import apply_rot_embed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint

from backbonezoo.kernels import selective_scan
from backbonezoo.layers import (
    ChannelAffine,
    check_input,
    deep_conv_stem,
    neighborhood_aggregate,
    neighborhood_aggregate_probs,
    neighborhood_probs,
    neighborhood_scores,
    opaque_to_tracing,
    size_oblivious,
)

__all__ = ['A2Mamba', 'checkpoint_filter_fn']

_LayerNorm2d = partial(LayerNorm2d, eps=1e-6)


@opaque_to_tracing  # a Python function of the map size
def _dilation_for(size: tuple[int, int], window: tuple[int, int]) -> tuple[int, int]:
    """Dilation of the second head half: ``min(size // window, window)`` per axis (the official rule).

    ``torch.sym_min`` is ``min`` for ints; for the symbolic sizes of a dynamic-shape export it stays an expression
    (Python's ``min`` would compare, i.e. guard on the traced size) and the kernels' index tables follow it.
    """
    return torch.sym_min(size[0] // window[0], window[0]), torch.sym_min(size[1] // window[1], window[1])


# The scan dispatches in Python: scripted / fx-traced models call it through this opaque wrapper.
@opaque_to_tracing
def scan_hidden_states(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    delta_bias: torch.Tensor,
    backend: str | None,
) -> torch.Tensor:
    """:func:`backbonezoo.kernels.selective_scan` in state mode: every hidden state, ``(B, C, d_state, L)`` float32."""
    if u.is_meta:  # shape-only forward (timm builds models on the meta device): the scan's autocast guard rejects it
        shape = (u.shape[0], u.shape[1], A.shape[1], u.shape[2])
        return u.new_empty(shape, dtype=torch.promote_types(u.dtype, torch.float32))
    return selective_scan(u, delta, A, B, delta_bias=delta_bias, delta_softplus=True, backend=backend)


@opaque_to_tracing  # a context manager inside: TorchScript keeps it in Python
def _states_per_head_half(states: torch.Tensor, half: int, head_dim: int, height: int, width: int) -> torch.Tensor:
    """``(B, C, 1, L)`` scan states as ``(2, B, half, H, W, head_dim)``: the two head halves, each in map layout.

    Symbolic sizes: the view splits L into a map of at least the window per side (checked on the input), so its
    layout questions (is H or W 1?) are answered size-obliviously instead of pinning an exported graph.
    """
    with size_oblivious(not isinstance(height, int) or not isinstance(width, int)):
        return states.view(states.shape[0], 2, half, head_dim, height, width).permute(1, 0, 2, 4, 5, 3)


def resize_global_bias(bias: torch.Tensor, length: int) -> torch.Tensor:
    """The stage-4 ``(1, heads, N, N)`` bias for ``length`` tokens: resized as an image, the official way.

    Always resized, also to its own size: bicubic interpolation at scale 1 (``align_corners=False``) samples every
    pixel at offset 0, where the cubic weights are exactly (0, 1, 0, 0), so it returns the bias bit for bit (what the
    official code's skipped resize gives), and a traced graph keeps ``length`` symbolic instead of specialising to
    the traced size through the comparison.
    """
    return F.interpolate(bias, size=(length, length), mode='bicubic', align_corners=False)


class RotaryEmbedding2d(nn.Module):
    """2-D RoPE tables: the first half of the rotated pairs turns with the row index, the second with the column.

    ``angle`` (head_dim / 2,) is a persistent buffer: official checkpoints carry it and whatever they hold is used.
    """

    def __init__(self, head_dim: int, device=None, dtype=None):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f'RotaryEmbedding2d: head_dim={head_dim} must be a multiple of 4 (row and column pairs)')
        angle = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 4, device=device, dtype=dtype))
        self.register_buffer('angle', angle.repeat_interleave(2))

    def forward(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sin, cos)``, each ``(H, W, head_dim)``."""
        rows = torch.arange(height, device=self.angle.device, dtype=self.angle.dtype)[:, None] * self.angle
        cols = torch.arange(width, device=self.angle.device, dtype=self.angle.dtype)[:, None] * self.angle
        half = self.angle.shape[0]
        phase = torch.cat([rows[:, None].expand(-1, width, half), cols[None].expand(height, -1, half)], dim=-1)
        return phase.sin(), phase.cos()


class A2SSM(nn.Module):
    """Attention-augmented SSM: d_state-1 selective scan whose hidden states are re-aggregated by the MASS maps."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        d_conv: int = 5,
        kernel_backend: str | None = None,
        scan_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.kernel_backend = kernel_backend
        self.scan_backend = scan_backend
        self.dt_rank = math.ceil(dim / 16)
        self.conv2d = nn.Conv2d(dim, dim, d_conv, padding=d_conv // 2, groups=dim, **dd)
        self.act = nn.SiLU()
        self.x_proj_weight = nn.Parameter(torch.empty(self.dt_rank + 2, dim, **dd))
        self.dt_projs_weight = nn.Parameter(torch.empty(dim, self.dt_rank, **dd))
        self.dt_projs_bias = nn.Parameter(torch.empty(dim, **dd))
        self.A_logs = nn.Parameter(torch.zeros(dim, 1, **dd))  # log(1): the S4D-real init for d_state 1
        self.Ds = nn.Parameter(torch.ones(dim, **dd))
        self.state_fusion = nn.Conv2d(num_heads, num_heads, 1, **dd)
        if not is_meta_device(device):
            self.init_weights()

    @torch.no_grad()
    def init_weights(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """Mamba's init: dt bias so that softplus(bias) is log-uniform in [dt_min, dt_max]."""
        dim = self.Ds.shape[0]
        nn.init.kaiming_uniform_(self.x_proj_weight, a=math.sqrt(5))
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_projs_weight, -std, std)
        dt = torch.exp(
            torch.rand(dim, device=self.Ds.device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_logs.zero_()
        self.Ds.fill_(1.0)

    def forward(
        self,
        x: torch.Tensor,
        attn1: torch.Tensor,
        attn2: torch.Tensor,
        window_size: tuple[int, int],
        dilation: tuple[int, int],
        prepared: bool = False,
    ) -> torch.Tensor:
        """``attn1`` / ``attn2``: the mixer's softmaxed maps, from ``local_probs`` when ``prepared``, else in window
        layout."""
        batch, dim, height, width = x.shape
        length = height * width
        u = self.act(self.conv2d(x)).flatten(2)  # (B, C, L), raster order
        # bmm over the expanded weight: matmul would fold (B, C, L) into rows, a reshape that asks whether L is 1
        x_dbl = torch.bmm(self.x_proj_weight.expand(batch, -1, -1), u)
        dts, b_ssm, c_ssm = torch.split(x_dbl, [self.dt_rank, 1, 1], dim=1)
        dts = torch.bmm(self.dt_projs_weight.expand(batch, -1, -1), dts)
        # The official model runs the SSM readout in float32, also under autocast; here in the parameters' dtype
        # (float32 unless the model itself was converted, e.g. to bfloat16: then the scan's states are cast to it).
        dtype = self.Ds.dtype
        states = scan_hidden_states(
            u, dts, -torch.exp(self.A_logs.float()), b_ssm, self.dt_projs_bias.float(), self.scan_backend
        ).to(dtype)  # (B, C, 1, L)
        # Channels are (head half, head, head_dim) like q / k / v; aggregate each half with its attention map.
        half, head_dim = self.num_heads // 2, dim // self.num_heads
        states = _states_per_head_half(states, half, head_dim, height, width)
        # The first half aggregates with dilation 1 whatever its attention used (the official code hard-codes it).
        attn1, attn2, backend = attn1.to(states.dtype), attn2.to(states.dtype), self.kernel_backend
        if prepared:
            states1 = neighborhood_aggregate_probs(attn1, states[0], window_size, (1, 1), backend)
            states2 = neighborhood_aggregate_probs(attn2, states[1], window_size, dilation, backend)
        else:
            states1 = neighborhood_aggregate(attn1, states[0], window_size, (1, 1), backend)
            states2 = neighborhood_aggregate(attn2, states[1], window_size, dilation, backend)
        states = torch.cat([states1, states2], dim=1).permute(0, 1, 4, 2, 3)
        states = self.state_fusion(states.reshape(batch, self.num_heads, head_dim, length)).flatten(1, 2)
        # autocast leaves elementwise ops in their input dtype
        out = states.to(dtype) * c_ssm.to(dtype) + u.to(dtype) * self.Ds[:, None]
        return out.view(batch, dim, height, width)


@register_notrace_module  # float32 regions under autocast and size-dependent kernel arguments: a leaf for torch.fx
class MASS(nn.Module):
    """Multi-scale attention-augmented SSM token mixer (the official ``Attention`` class)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int | tuple[int, int] = 7,
        window_dilation: int | tuple[int, int] = 1,
        global_mode: bool = False,
        global_size: tuple[int, int] = (7, 7),
        kernel_backend: str | None = None,
        scan_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.kernel_backend = kernel_backend
        if num_heads % 2 or dim % num_heads:
            raise ValueError(f'MASS: num_heads={num_heads} must be even and divide dim={dim}')
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window_size = to_2tuple(window_size)
        self.window_dilation = to_2tuple(window_dilation)
        self.global_mode = global_mode
        self.global_size = tuple(global_size)

        self.qkv = nn.Conv2d(dim, dim * 3, 1, **dd)
        self.gate = nn.Sequential(nn.Conv2d(dim, dim, 1, **dd), nn.BatchNorm2d(dim, **dd), nn.SiLU())
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, **dd)
        self.norm = _LayerNorm2d(dim, **dd)
        self.proj = nn.Sequential(_LayerNorm2d(dim, **dd), nn.Conv2d(dim, dim, 1, **dd))
        # One relative-position table for both head halves (the official rpb.0 / rpb.1 are the same Parameter).
        wh, ww = self.window_size
        self.rpb = nn.Parameter(torch.zeros(num_heads // 2, 2 * wh - 1, 2 * ww - 1, **dd))
        # the branch a mixer does not use is None, so TorchScript compiles it out
        self.global_rpb = self.ssm = None
        if global_mode:
            tokens = self.global_size[0] * self.global_size[1]
            self.global_rpb = nn.Parameter(torch.zeros(1, num_heads, tokens, tokens, **dd))
        else:
            self.ssm = A2SSM(dim, num_heads, kernel_backend=kernel_backend, scan_backend=scan_backend, **dd)

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        batch, dim, height, width = x.shape
        window = self.window_size
        dilation = _dilation_for((height, width), window)
        gate = self.gate(x)
        qkv = self.qkv(x)
        lepe = self.lepe(qkv[:, 2 * dim :])
        q, k, v = qkv.view(batch, 3, self.num_heads, self.head_dim, height, width).permute(1, 0, 2, 4, 5, 3).unbind(0)
        q = apply_rot_embed(q, sin, cos) * self.scale
        k = apply_rot_embed(k, sin, cos)

        half = self.num_heads // 2
        rpb = self.rpb.to(q.dtype)
        q1, q2 = q[:, :half], q[:, half:]
        k1, k2 = k[:, :half], k[:, half:]
        v1, v2 = v[:, :half], v[:, half:]
        backend = self.kernel_backend
        # The SSM applies both maps again, to its hidden states: kept in the kernels' reusable layout (local_probs),
        # unless half 1 attends with a dilation, which the SSM's dilation-1 aggregation does not share.
        prepared = self.window_dilation == (1, 1)
        if prepared:
            attn1 = neighborhood_probs(q1, k1, window, self.window_dilation, rpb, backend)
            v1 = neighborhood_aggregate_probs(attn1, v1, window, self.window_dilation, backend)
            attn2 = neighborhood_probs(q2, k2, window, dilation, rpb, backend)
            v2 = neighborhood_aggregate_probs(attn2, v1 + v2, window, dilation, backend)  # cascade: sees v1'
        else:
            attn1 = neighborhood_scores(q1, k1, window, self.window_dilation, rpb, backend).softmax(-1)
            v1 = neighborhood_aggregate(attn1, v1, window, self.window_dilation, backend)
            attn2 = neighborhood_scores(q2, k2, window, dilation, rpb, backend).softmax(-1)
            v2 = neighborhood_aggregate(attn2, v1 + v2, window, dilation, backend)  # cascade: sees v1'
        y = torch.cat([v1, v2], dim=1)  # (B, heads, H, W, head_dim)

        if self.global_rpb is not None:
            # Global attention over all tokens, the NA output as values, plus the learned (resized) bias.
            length = height * width
            y = F.scaled_dot_product_attention(
                q.reshape(batch, self.num_heads, length, self.head_dim),
                k.reshape(batch, self.num_heads, length, self.head_dim),
                y.reshape(batch, self.num_heads, length, self.head_dim),
                attn_mask=resize_global_bias(self.global_rpb, length).to(q.dtype),
                scale=1.0,  # q is already scaled
            )
            # contiguous first: whether the reshape is a view depends on the SDPA kernel's output strides, and an
            # exported graph that recorded a view no longer holds once the ONNX exporter decomposes SDPA
            y = y.transpose(-1, -2).contiguous().reshape(batch, dim, height, width)
        elif self.ssm is not None:
            y = y.permute(0, 1, 4, 2, 3).reshape(batch, dim, height, width)
            y = self.ssm(y, attn1, attn2, window, dilation, prepared)

        y = self.norm(y) + lepe
        # The official gate product and projection run in float32 also under autocast (the parameters' dtype here,
        # float32 unless the model itself was converted). TorchScript's autocast needs a constant device (scripted
        # models run as cast); the meta device has no autocast.
        dtype = self.rpb.dtype
        if torch.jit.is_scripting() or x.is_meta:
            return self.proj(y.to(dtype) * gate.to(dtype))
        with torch.autocast(x.device.type, enabled=False):
            return self.proj(y.to(dtype) * gate.to(dtype))


class ConvMlp(nn.Module):
    """1x1 -> GELU -> residual depthwise 3x3 -> 1x1."""

    def __init__(self, dim: int, hidden_dim: int, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1, **dd)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim, **dd)
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))
        x = x + self.dwconv(x)
        return self.fc2(x)


class A2MambaBlock(nn.Module):
    """cpe -> MASS -> cpe -> MLP, with LayerScale on the branch (``layer_scale``) or on the shortcut (``res_scale``)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        window_dilation: int = 1,
        global_mode: bool = False,
        global_size: tuple[int, int] = (7, 7),
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale: bool = False,
        res_scale: bool = False,
        ls_init_value: float = 1.0,
        kernel_backend: str | None = None,
        scan_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.res_scale = res_scale
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.norm1 = _LayerNorm2d(dim, **dd)
        self.token_mixer = MASS(
            dim,
            num_heads,
            window_size,
            window_dilation,
            global_mode,
            global_size,
            kernel_backend=kernel_backend,
            scan_backend=scan_backend,
            **dd,
        )
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.norm2 = _LayerNorm2d(dim, **dd)
        self.mlp = ConvMlp(dim, int(mlp_ratio * dim), **dd)
        scaled = layer_scale or res_scale
        self.ls1 = ChannelAffine(dim, ls_init_value, **dd) if scaled else nn.Identity()
        self.ls2 = ChannelAffine(dim, ls_init_value, **dd) if scaled else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        x = x + self.cpe1(x)
        if self.res_scale:
            x = self.ls1(x) + self.drop_path(self.token_mixer(self.norm1(x), sin, cos))
            x = x + self.cpe2(x)
            return self.ls2(x) + self.drop_path(self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.ls1(self.token_mixer(self.norm1(x), sin, cos)))
        x = x + self.cpe2(x)
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class A2MambaStage(nn.Module):
    """Optional stride-2 downsample (conv 3x3 + BN), the stage's RoPE tables, then the blocks."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        downsample: bool,
        drop_path: list[float],
        window_dilation: int = 1,
        global_mode: bool = False,
        global_size: tuple[int, int] = (7, 7),
        mlp_ratio: float = 4.0,
        layer_scale: bool = False,
        res_scale: bool = False,
        ls_init_value: float = 1.0,
        kernel_backend: str | None = None,
        scan_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.grad_checkpointing = False
        if downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_dim, dim, 3, stride=2, padding=1, bias=False, **dd), nn.BatchNorm2d(dim, **dd)
            )
        else:
            self.downsample = nn.Identity()
        self.rope = RotaryEmbedding2d(dim // num_heads, **dd)
        self.blocks = nn.ModuleList(
            A2MambaBlock(
                dim,
                num_heads,
                window_size,
                window_dilation=window_dilation,
                global_mode=global_mode,
                global_size=global_size,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path[i],
                layer_scale=layer_scale,
                res_scale=res_scale,
                ls_init_value=ls_init_value,
                kernel_backend=kernel_backend,
                scan_backend=scan_backend,
                **dd,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        sin, cos = self.rope(x.shape[2], x.shape[3])
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, sin, cos, use_reentrant=False)
            else:
                x = block(x, sin, cos)
        return x


def _min_input_size(window_sizes: tuple[int, ...]) -> int:
    """Smallest side whose stage maps (ceil halvings: stride-2 convs with padding 1) hold every stage's window."""
    size = 1
    while True:
        side, ok = -(-size // 4), True
        for i, window in enumerate(window_sizes):
            side = side if i == 0 else -(-side // 2)
            ok = ok and side >= window
        if ok:
            return size
        size += 1


class A2Mamba(nn.Module):
    """A2Mamba classification model with timm's API (see the module docstring).

    ``kernel_backend`` / ``scan_backend`` force the backend of the neighbourhood operators / the selective scan
    (None: ``BACKBONEZOO_KERNEL_BACKEND`` or 'auto'; see ``backbonezoo.kernels``).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = 'avg',
        embed_dims: tuple[int, ...] = (64, 128, 256, 512),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 8, 16),
        window_size: tuple[int, ...] = (11, 9, 7, 7),
        window_dilation: tuple[int, ...] = (1, 1, 1, 1),
        mlp_ratios: tuple[float, ...] = (4, 4, 4, 4),
        layer_scales: tuple[bool, ...] = (False, False, False, False),
        res_scales: tuple[bool, ...] = (False, False, False, False),
        ls_init_values: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
        projection: int = 1024,
        img_size: int | tuple[int, int] = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        kernel_backend: str | None = None,
        scan_backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        num_stages = len(depths)
        for name, value in (('embed_dims', embed_dims), ('num_heads', num_heads), ('window_size', window_size)):
            if len(value) != num_stages:
                raise ValueError(f'A2Mamba: {name}={value} must have one entry per stage ({num_stages}, from depths)')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.window_size = tuple(window_size)
        self.min_input_size = _min_input_size(self.window_size)
        img_size = to_2tuple(img_size)

        self.stem = deep_conv_stem(in_chans, embed_dims[0], **dd)

        dpr = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)  # linear over all blocks
        stages, self.feature_info = [], []
        for i in range(num_stages):
            reduction = 4 * 2**i
            stages.append(
                A2MambaStage(
                    embed_dims[max(i - 1, 0)],
                    embed_dims[i],
                    depths[i],
                    num_heads[i],
                    window_size[i],
                    downsample=i > 0,
                    drop_path=dpr[i],
                    window_dilation=window_dilation[i],
                    global_mode=i == num_stages - 1,
                    global_size=(img_size[0] // reduction, img_size[1] // reduction),
                    mlp_ratio=mlp_ratios[i],
                    layer_scale=layer_scales[i],
                    res_scale=res_scales[i],
                    ls_init_value=ls_init_values[i],
                    kernel_backend=kernel_backend,
                    scan_backend=scan_backend,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)

        # The official classifier's 1x1 conv + BN + SiLU before pooling ends forward_features here (as timm's
        # EfficientNet conv_head), so num_features is its width and the head is timm's pool + dropout + fc.
        self.conv_head = ConvNormAct(embed_dims[-1], projection, 1, bias=True, act_layer=nn.SiLU, **dd)
        self.num_features = self.head_hidden_size = projection
        self.head = ClassifierHead(projection, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        if not is_meta_device(device):  # timm's rule: a meta model holds no values to initialise
            self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The official init: truncated normal (std 0.02) convs / linears, unit norms, zero biases and rpb."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, A2SSM):
                module.init_weights()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        # Mamba's convention (the official A_logs / Ds carry _no_weight_decay).
        return {n for n, _ in self.named_parameters() if n.endswith(('.A_logs', '.Ds'))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)'
            if coarse
            else [(r'^stages\.(\d+)\.downsample', (0,)), (r'^stages\.(\d+)\.blocks\.(\d+)', None)],
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
        reason = f'each stage map must hold its window, window_size={list(self.window_size)}, strides 4-32'
        check_input(
            x, self.stem[0].weight, 'A2Mamba', in_chans=self.in_chans, min_size=self.min_input_size, reason=reason
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
        """Stage outputs (strides 4 / 8 / 16 / 32, no extra norms: ``norm`` has nothing to apply); the final output
        is ``forward_features``' (after ``conv_head``)."""
        if output_fmt != 'NCHW':
            raise ValueError(f"A2Mamba.forward_intermediates: output_fmt={output_fmt!r}; only 'NCHW' is supported")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self.stem(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return self.conv_head(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        if prune_head or max_index < len(self.feature_info) - 1:
            # conv_head is sized for the last stage: without the head, features end at the last kept stage
            self.conv_head = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            self.head = ClassifierHead(self.num_features, 0, pool_type='', **get_device_dtype(self))
            self.num_classes = 0
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.conv_head(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _map_official_key(key: str) -> str:
    """One official key -> ours (keys that are not official are returned unchanged)."""
    parts = key.split('.')
    if parts[0] == 'patch_embed':
        return '.'.join(['stem', *parts[1:]])
    if parts[0] == 'classifier' and len(parts) == 3:
        sub = {'0': 'conv_head.conv', '1': 'conv_head.bn', '4': 'head.fc'}.get(parts[1])
        return f'{sub}.{parts[2]}' if sub else key
    if parts[0] == 'layers' and len(parts) > 2 and parts[1].isdigit():
        index = int(parts[1])
        if index % 2:  # downsampler after stage index // 2 = start of the next stage
            return '.'.join(['stages', str(index // 2 + 1), 'downsample', *parts[2:]])
        rest = '.'.join(parts[2:])
        rest = rest.replace('.layer_scale1.', '.ls1.').replace('.layer_scale2.', '.ls2.')
        rest = rest.replace('.token_mixer.rpb.1', '.token_mixer.rpb')
        rest = rest.replace('.token_mixer.rpb.2', '.token_mixer.global_rpb')
        return f'stages.{index // 2}.{rest}'
    return key


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: A2Mamba) -> dict[str, torch.Tensor]:
    """Official A2Mamba checkpoints (bare or under 'state_dict') -> this model; our own layout passes through.

    The official ``rpb.0`` and ``rpb.1`` are one tied parameter; the value of ``rpb.1`` is what the official model
    ends up with on load, so that is the one kept (``rpb.0`` is dropped when ``rpb.1`` is present). Unknown keys
    are left in place for the strict check to name.
    """
    if 'stem.0.weight' in state_dict or not any(k.startswith(('patch_embed.', 'layers.')) for k in state_dict):
        return dict(state_dict)
    model_sd = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        if key.endswith('.token_mixer.rpb.0'):
            if key[:-1] + '1' in state_dict:
                continue
            key = key[:-1] + '1'  # only rpb.0 present: it is the shared table
        new_key = _map_official_key(key)
        target = model_sd.get(new_key)
        if target is not None and target.shape != value.shape and target.numel() == value.numel():
            value = value.reshape(target.shape)  # (C, 1, 1, 1) LayerScale kernels, (N, C, 1, 1) classifier conv
        out[new_key] = value
    return out


def _create_a2mamba(variant: str, pretrained: bool = False, **kwargs) -> A2Mamba:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        A2Mamba,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(name: str, **kwargs) -> dict:
    # url / hf_hub_id, license, paper and origin: the zoo record (backbonezoo/zoo), never restated here
    from backbonezoo.zoo import pretrained_cfg

    return {
        'num_classes': 1000,
        'input_size': (3, 224, 224),
        'min_input_size': (3, 193, 193),
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


default_cfgs = generate_default_cfgs(
    {
        'a2mamba_nano.in1k': _cfg('a2mamba_nano.in1k'),
        'a2mamba_tiny.in1k': _cfg('a2mamba_tiny.in1k'),
        'a2mamba_small.in1k': _cfg('a2mamba_small.in1k'),
        'a2mamba_base.in1k': _cfg('a2mamba_base.in1k', crop_pct=0.95),
        'a2mamba_large.in1k': _cfg('a2mamba_large.in1k', crop_pct=0.975),
    }
)


@register_model
def a2mamba_nano(pretrained: bool = False, **kwargs) -> A2Mamba:
    model_args = dict(
        embed_dims=(32, 64, 128, 192), depths=(2, 2, 8, 2), num_heads=(2, 2, 4, 8), mlp_ratios=(4, 4, 3, 3)
    )
    return _create_a2mamba('a2mamba_nano', pretrained, **dict(model_args, **kwargs))


@register_model
def a2mamba_tiny(pretrained: bool = False, **kwargs) -> A2Mamba:
    model_args = dict(
        embed_dims=(48, 96, 256, 448), depths=(2, 2, 10, 2), num_heads=(2, 4, 8, 16), mlp_ratios=(4, 4, 3, 3)
    )
    return _create_a2mamba('a2mamba_tiny', pretrained, **dict(model_args, **kwargs))


@register_model
def a2mamba_small(pretrained: bool = False, **kwargs) -> A2Mamba:
    model_args = dict(
        embed_dims=(64, 128, 320, 512),
        depths=(2, 4, 12, 4),
        num_heads=(2, 4, 10, 16),
        mlp_ratios=(4, 4, 3, 3),
        res_scales=(False, False, True, True),
    )
    return _create_a2mamba('a2mamba_small', pretrained, **dict(model_args, **kwargs))


@register_model
def a2mamba_base(pretrained: bool = False, **kwargs) -> A2Mamba:
    model_args = dict(
        embed_dims=(96, 192, 384, 512),
        depths=(4, 6, 12, 6),
        num_heads=(4, 8, 12, 16),
        mlp_ratios=(4, 4, 3.75, 3.75),
        layer_scales=(True, True, True, True),
        ls_init_values=(1.0, 1.0, 1e-6, 1e-6),
    )
    return _create_a2mamba('a2mamba_base', pretrained, **dict(model_args, **kwargs))


@register_model
def a2mamba_large(pretrained: bool = False, **kwargs) -> A2Mamba:
    model_args = dict(
        embed_dims=(96, 192, 448, 672),
        depths=(4, 6, 18, 6),
        num_heads=(4, 8, 16, 24),
        mlp_ratios=(4, 4, 4, 4),
        layer_scales=(True, True, True, True),
        ls_init_values=(1.0, 1.0, 1e-6, 1e-6),
    )
    return _create_a2mamba('a2mamba_large', pretrained, **dict(model_args, **kwargs))
