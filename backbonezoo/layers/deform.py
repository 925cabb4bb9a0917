"""Deformable convolution (v1 / v2) as ``grid_sample`` and one matmul: ``torchvision.ops.deform_conv2d``'s semantics.

torchvision's CPU kernel is a scalar loop over every output position, tap and channel (and it reads out of bounds,
crashing the process, when an offset is NaN). :func:`deform_conv2d_grid` computes the same function with tensor ops:

1. sampling positions ``p = p_out * stride - padding + tap * dilation + offset`` for every offset group, tap and
   output position (offset channel ``2 * (g * kh * kw + k)`` is the row offset of tap ``k`` in offset group ``g``,
   the next one its column offset);
2. bilinear sampling with torchvision's border rule, which is ``grid_sample``'s ``padding_mode='zeros'``: the map is
   surrounded by zeros, so a position with ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W`` samples zero and, inside
   that band, corners outside the map count as zeros. One ``grid_sample`` call samples every tap (the modulation
   mask of v2 multiplies the samples);
3. the sampled columns ``(B, C * kh * kw, Ho * Wo)`` times the flattened weight, per group, plus the bias.

Gradients come from autograd and equal torchvision's. Non-finite offsets never index out of bounds: an infinite
offset samples zero (outside the map), a NaN offset gives NaN at that output position.

:class:`DeformConv2d` is ``torchvision.ops.DeformConv2d`` (same parameters, names and initialisation) built with
timm's ``device`` / ``dtype`` arguments and computing through :func:`deform_conv2d`.

:func:`deform_conv2d` picks the implementation: torchvision's operator on CUDA and while a graph is captured or the
operators are watched (``torch.jit.trace``, ``torch.export`` / ONNX, a ``TorchDispatchMode`` such as the FLOP counter:
they know it as one node), the grid formulation otherwise (CPU eager, TorchScript's Python calls,
``torch.compile``); ``backend='torchvision'`` / ``'torch'`` forces one. On CPU, torchvision's operator first gets NaN
offsets moved outside the map, so that it cannot crash either.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tracing import opaque_to_tracing

__all__ = ['DEFORM_BACKENDS', 'DeformConv2d', 'deform_conv2d', 'deform_conv2d_grid']

DEFORM_BACKENDS = ('auto', 'torch', 'torchvision')


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f'deform_conv2d: {name}={value!r}, expected an int or a pair of ints')
    return pair


def _check_shapes(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Named errors for inconsistent arguments; returns (groups, offset_groups, out_h, out_w)."""
    if input.ndim != 4 or offset.ndim != 4 or weight.ndim != 4:
        raise ValueError(
            f'deform_conv2d: expected 4-D input, offset and weight, got {tuple(input.shape)}, {tuple(offset.shape)}, '
            f'{tuple(weight.shape)}'
        )
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f'deform_conv2d: stride={stride}, padding={padding}, dilation={dilation} out of range')
    batch, channels, height, width = input.shape
    c_out, c_group, kh, kw = weight.shape
    if c_group == 0 or channels % c_group or c_out % (channels // c_group):
        raise ValueError(
            f'deform_conv2d: weight {tuple(weight.shape)} does not fit {channels} input channels in equal groups'
        )
    groups = channels // c_group
    taps = kh * kw
    if offset.shape[1] == 0 or offset.shape[1] % (2 * taps) or channels % (offset.shape[1] // (2 * taps)):
        raise ValueError(
            f'deform_conv2d: offset has {offset.shape[1]} channels; expected 2 * {kh}x{kw} per offset group, with the '
            f'offset groups dividing the {channels} input channels'
        )
    offset_groups = offset.shape[1] // (2 * taps)
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f'deform_conv2d: a {height}x{width} input is smaller than the {kh}x{kw} (dilated) kernel')
    if offset.shape[0] != batch or tuple(offset.shape[2:]) != (out_h, out_w):
        raise ValueError(
            f'deform_conv2d: offset {tuple(offset.shape)} does not match batch {batch} and output {out_h}x{out_w}'
        )
    if mask is not None and tuple(mask.shape) != (batch, offset_groups * taps, out_h, out_w):
        raise ValueError(
            f'deform_conv2d: mask {tuple(mask.shape)}, expected {(batch, offset_groups * taps, out_h, out_w)}'
        )
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f'deform_conv2d: bias {tuple(bias.shape)}, expected ({c_out},)')
    return groups, offset_groups, out_h, out_w


def deform_conv2d_grid(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` (same arguments, same result) as ``grid_sample`` and a matmul; see the module
    docstring. Returns NCHW in channels-last memory (the matmul's natural layout) when ``groups`` is 1."""
    stride, padding, dilation = _pair(stride, 'stride'), _pair(padding, 'padding'), _pair(dilation, 'dilation')
    groups, offset_groups, out_h, out_w = _check_shapes(input, offset, weight, bias, mask, stride, padding, dilation)
    batch, channels, height, width = input.shape
    c_out, c_group, kh, kw = weight.shape
    taps, per_offset_group = kh * kw, channels // offset_groups
    dtype, device = offset.dtype, offset.device

    # sampling positions (B, offset groups, taps, Ho, Wo): the offsets' own layout
    off = offset.reshape(batch, offset_groups, taps, 2, out_h, out_w)
    tap_y = (torch.arange(kh, device=device, dtype=dtype) * dilation[0]).repeat_interleave(kw).view(taps, 1, 1)
    tap_x = (torch.arange(kw, device=device, dtype=dtype) * dilation[1]).repeat(kh).view(taps, 1, 1)
    base_y = (torch.arange(out_h, device=device, dtype=dtype) * stride[0] - padding[0]).view(out_h, 1)
    base_x = torch.arange(out_w, device=device, dtype=dtype) * stride[1] - padding[1]
    y = off[:, :, :, 0] + (base_y + tap_y)
    x = off[:, :, :, 1] + (base_x + tap_x)
    # outside the band (-1, H) x (-1, W) every corner is a zero: clamping there keeps the value (zero) and the
    # gradient (zero), and makes infinite offsets finite; NaN stays NaN (grid_sample then gives NaN, safely).
    # Pixel p is grid coordinate (2p + 1) / size - 1 with align_corners=False (also for a size of 1).
    grid_y = (2 * y.clamp(-1, height) + 1) / height - 1
    grid_x = (2 * x.clamp(-1, width) + 1) / width - 1
    grid = torch.stack((grid_x, grid_y), dim=-1).view(batch * offset_groups, taps * out_h, out_w, 2)
    # grid_sample is bilinear interpolation with zeros outside the map: torchvision's rule, corner by corner
    planes = input.reshape(batch * offset_groups, per_offset_group, height, width)
    cols = F.grid_sample(planes, grid.to(input.dtype), mode='bilinear', padding_mode='zeros', align_corners=False)
    cols = cols.reshape(batch, offset_groups, per_offset_group, taps, out_h * out_w)
    if mask is not None:
        cols = cols * mask.reshape(batch, offset_groups, 1, taps, out_h * out_w).to(cols.dtype)
    # columns (B, groups, C / groups * taps, Ho * Wo): the weight's (C / groups, kh, kw) order, so a matmul per group
    cols = cols.reshape(batch, groups, c_group * taps, out_h * out_w)
    w = weight.reshape(groups, c_out // groups, c_group * taps)
    # transposed product: (B, groups, Ho * Wo, C_out / groups), channels-last output without a copy when groups = 1
    out = cols.transpose(-1, -2) @ w.transpose(-1, -2)
    out = out.permute(0, 2, 1, 3).reshape(batch, out_h, out_w, c_out)
    if bias is not None:
        out = out + bias
    return out.permute(0, 3, 1, 2)


def _dispatch_mode_active() -> bool:
    """A ``TorchDispatchMode`` (e.g. ``torch.utils.flop_counter.FlopCounterMode``) is watching the operators: it then
    sees one ``torchvision::deform_conv2d`` with its FLOP formula, not a grid sample and a matmul."""
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode
    except ImportError:  # private API moved: the counters then see the formulation's ops
        return False
    return _get_current_dispatch_mode() is not None


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` through the backend of choice (``None`` / 'auto', 'torch', 'torchvision').

    'auto': torchvision's operator for CUDA tensors, under ``torch.jit.trace`` / ``torch.export`` and while a
    ``TorchDispatchMode`` watches (one ``deform_conv2d`` node: ONNX DeformConv, FLOP counters), the grid formulation
    otherwise (CPU eager and ``torch.compile``). Non-finite offsets never crash: NaN gives NaN ('torch') or samples
    zero (torchvision on CPU).
    """
    backend = backend or 'auto'
    if backend not in DEFORM_BACKENDS:
        raise ValueError(f'deform_conv2d: backend={backend!r}, expected one of {DEFORM_BACKENDS}')
    if backend == 'auto':
        if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
            backend = 'torch'  # compiles into the graph (torchvision's operator would be an opaque call)
        else:
            one_node = torch.jit.is_tracing() or torch.compiler.is_exporting() or _dispatch_mode_active()
            backend = 'torchvision' if input.is_cuda or one_node else 'torch'
    if backend == 'torch':
        return deform_conv2d_grid(input, offset, weight, bias, stride, padding, dilation, mask)
    from torchvision.ops import deform_conv2d as tv_deform_conv2d

    if not input.is_cuda:
        # torchvision's CPU kernel turns a NaN position into an out-of-bounds read (a segfault): move NaN offsets
        # far outside the map, where it samples zero without indexing (``!=``, ``where``: free for FLOP counters)
        offset = torch.where(offset != offset, torch.full_like(offset, -1e30), offset)
    stride, padding, dilation = _pair(stride, 'stride'), _pair(padding, 'padding'), _pair(dilation, 'dilation')
    return tv_deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)


@opaque_to_tracing  # dispatches on device / capture mode in Python, formats errors
def _deform_conv2d_call(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    mask: torch.Tensor | None,
    backend: str | None,
) -> torch.Tensor:
    return deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask, backend)


class DeformConv2d(nn.Module):
    """``torchvision.ops.DeformConv2d`` with ``device`` / ``dtype`` (built in place, on the meta device too) and a
    ``backend`` for :func:`deform_conv2d`. Same ``weight`` / ``bias`` names and shapes, same initialisation (Kaiming
    uniform weight, uniform bias), so checkpoints and seeded models carry over unchanged."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f'DeformConv2d: in_channels={in_channels} and out_channels={out_channels} must be divisible by '
                f'groups={groups}'
            )
        if backend not in (None, *DEFORM_BACKENDS):
            raise ValueError(f'DeformConv2d: backend={backend!r}, expected None or one of {DEFORM_BACKENDS}')
        self.in_channels, self.out_channels, self.groups, self.backend = in_channels, out_channels, groups, backend
        self.kernel_size = _pair(kernel_size, 'kernel_size')
        self.stride, self.padding = _pair(stride, 'stride'), _pair(padding, 'padding')
        self.dilation = _pair(dilation, 'dilation')
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **dd))
        self.bias = nn.Parameter(torch.empty(out_channels, **dd)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return _deform_conv2d_call(
            input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask, self.backend
        )

    def extra_repr(self) -> str:
        return (
            f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
            f'padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}'
        )
