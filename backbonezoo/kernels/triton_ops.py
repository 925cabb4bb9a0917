"""The CUDA implementations of the registered operators: ``torch.library.triton_op`` on the plain Triton launchers.

``ops.py`` registers each kernel's CPU operator (``torch.ops.backbonezoo.local_attention`` ...: a ``custom_op`` whose
implementation is the fast PyTorch path). A ``triton_op`` has one implementation for every device and is traced
*into* by torch.compile (AOTAutograd decomposes it into its ``torch.library.wrap_triton`` launches, so Inductor sees
and schedules the Triton kernels themselves); a CPU ``custom_op`` must stay opaque. So each kernel's CUDA side is a
second operator, ``torch.ops.backbonezoo.<op>_triton``, which the public functions call for ``backend='triton'`` (the
default for CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``, for testing):

=============================  ===========================================  =========================================
forward (``triton_op``)        returns                                      backward (``triton_op``, used by
                                                                            ``register_autograd``)
=============================  ===========================================  =========================================
``local_attention_triton``     ``(out, lse)``                               ``local_attention_triton_backward``
``local_scores_triton``        ``scores``                                   ``local_scores_triton_backward``
``local_aggregate_triton``     ``out``                                      ``local_aggregate_triton_backward``
``routing_attention_triton``   ``(out, lse)``                               ``routing_attention_triton_backward``
``selective_scan_triton``      ``(y, states)``                              ``selective_scan_triton_backward``
``selective_scan_states_...``  ``states``                                   ``selective_scan_states_triton_backward``
=============================  ===========================================  =========================================

Every one of them: a schema inferred from the annotations, the function itself as fake implementation (the launches
are recorded, not run, on fake tensors: shapes on ``device='cuda'`` need no GPU), a FLOP formula with the CPU
operator's count (FLOPs = 2 x MACs, the papers' MACs), and ``torch.library.opcheck``-clean registrations.

What a backward costs (no atomics anywhere: every gradient is written once by one program, bitwise repeatable):

* attention (local, routing): the forward saves ``out`` and the float32 log-sum-exp ``lse`` (float64 for float64
  inputs), ``4 * B * heads * H * W`` bytes; the backward recomputes the probabilities from ``lse`` inside two kernels
  (dQ over each query tile's keys; dK / dV over each key tile's queries), about 2.5x the forward's tensor-core work,
  plus ``delta = rowsum(dO * O)`` in PyTorch. Routing also builds the inverse routes (a stable sort of ``B * R *
  topk`` ints). A bias gradient is the per-(query, slot) logit gradient, written once per entry by the dQ kernel
  (an extra ``(B, heads, H, W, K)`` float32 buffer, only when the bias needs a gradient), then reduced
  deterministically by dense ops in PyTorch: a per-query bias by a sum over its broadcast axes, a relative-position
  table by a batch sum and two one-hot contractions (``triton_local._table_grad``). Not inside the kernel: one
  table entry collects terms from every query tile of every batch element (all of the map for the shifted border's
  edge entries), so an in-kernel reduction needs atomics (the run-to-run nondeterminism this backward avoids) or a
  second pass over per-tile partials, which is what the contraction is.
* ``local_scores`` / ``local_aggregate``: two gather kernels (one per input gradient), each about the forward's work;
  nothing recomputed.
* selective scan: the forward saves the states (they are an output); the backward recomputes the discretisation
  (``exp(dt * A)``, elementwise), runs the reverse scan kernel once and reduces the parameter gradients in PyTorch.

The reference backend (``backend='reference'``) is the one specification: the forward and every gradient here are
tested against it (``tests/test_kernels_triton.py``, under the interpreter; on a GPU ``gpu/gpu_check.sh``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.library import triton_op
from torch.utils.flop_counter import register_flop_formula

from ._geometry import Geometry
from .ops import _local_macs, _optional, _routing_macs, _scan_macs  # one FLOP convention for both devices
from .triton_local import aggregate_bwd, aggregate_fwd, attention_bwd, attention_fwd, scores_bwd, scores_fwd
from .triton_routing import routing_bwd, routing_fwd
from .triton_scan import scan_bwd, scan_fwd

__all__ = ['local_aggregate', 'local_attention', 'local_scores', 'routing_attention', 'selective_scan']

_NS = 'backbonezoo'
_OPS = torch.ops.backbonezoo


def _geometry(x: torch.Tensor, kernel_size, stride, dilation, border: str) -> Geometry:
    return Geometry(x.shape[2], x.shape[3], tuple(kernel_size), tuple(stride), tuple(dilation), border)


def _kind(bias: torch.Tensor | None) -> str | None:
    if bias is None:
        return None
    return 'table' if bias.dim() == 3 else 'query'


def _grad_or_empty(grad: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor:
    """An operator returns tensors only: an empty placeholder where a gradient is not computed."""
    return ref.new_empty(0) if grad is None else grad


# ---------------------------------------------------------------------------------------------------------------------
# local_attention


@triton_op(f'{_NS}::local_attention_triton', mutates_args=())
def _local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out (B, heads, H, W, d_v), lse (B, heads, H, W))`` of local attention: the arguments of
    ``torch.ops.backbonezoo.local_attention`` (q, k ``(B, heads, H, W, d_qk)``, v ``(B, heads, H, W, d_v)``, bias None /
    a table ``(heads, 2kh-1, 2kw-1)`` / a 5-D per-query bias, the geometry as pairs, a border name, the logit scale);
    ``lse`` is the log-sum-exp of each query's logits (float32; float64 for float64 inputs), kept for the backward."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    return attention_fwd(q, k, v, geo, bias, _kind(bias), scale)


@triton_op(f'{_NS}::local_attention_triton_backward', mutates_args=())
def _local_attention_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
    need_bias_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv, dbias)`` of ``local_attention_triton`` from the output gradient ``grad`` and the forward's
    ``out`` / ``lse``; ``dbias`` is empty without a bias or when ``need_bias_grad`` is False."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    kind = _kind(bias)
    dq, dk, dv, dbias = attention_bwd(grad, q, k, v, out, lse, geo, bias, kind, scale, need_bias_grad)
    return dq, dk, dv, _grad_or_empty(dbias, q)


def _attention_setup(ctx, inputs, output):
    q, k, v, bias, *ctx.geometry = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, bias, out, lse)


def _attention_backward(ctx, grad, _grad_lse):
    q, k, v, bias, out, lse = ctx.saved_tensors
    need = bias is not None and ctx.needs_input_grad[3]
    dq, dk, dv, db = _OPS.local_attention_triton_backward(grad, q, k, v, out, lse, bias, *ctx.geometry, need)
    return dq, dk, dv, (db if need else None), None, None, None, None, None


_local_attention.register_autograd(_attention_backward, setup_context=_attention_setup)


def local_attention(q, k, v, geo, bias, kind, scale) -> torch.Tensor:
    """The public function's CUDA path: ``local_attention_triton`` (checked arguments, a ``Geometry``)."""
    return _OPS.local_attention_triton(q, k, v, bias, *_geometry_args(geo), float(scale))[0]


def _geometry_args(geo: Geometry) -> tuple[list, list, list, str]:
    return list(geo.kernel), list(geo.stride), list(geo.dilation), geo.border


# ---------------------------------------------------------------------------------------------------------------------
# local_scores


@triton_op(f'{_NS}::local_scores_triton', mutates_args=())
def _local_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
) -> torch.Tensor:
    """Window logits ``scale * q . k + bias``, ``(B, heads, H, W, kh*kw)`` (arguments of ``local_scores``)."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    return scores_fwd(q, k, geo, bias, _kind(bias), scale)


@triton_op(f'{_NS}::local_scores_triton_backward', mutates_args=())
def _local_scores_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
    need_bias_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dbias)`` of ``local_scores_triton`` (``dbias`` empty when not computed)."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    dq, dk, dbias = scores_bwd(grad, q, k, geo, bias, _kind(bias), scale, need_bias_grad)
    return dq, dk, _grad_or_empty(dbias, q)


def _scores_setup(ctx, inputs, output):
    q, k, bias, *ctx.geometry = inputs
    ctx.save_for_backward(q, k, bias)


def _scores_backward(ctx, grad):
    q, k, bias = ctx.saved_tensors
    need = bias is not None and ctx.needs_input_grad[2]
    dq, dk, db = _OPS.local_scores_triton_backward(grad, q, k, bias, *ctx.geometry, need)
    return dq, dk, (db if need else None), None, None, None, None, None


_local_scores.register_autograd(_scores_backward, setup_context=_scores_setup)


def local_scores(q, k, geo, bias, kind, scale) -> torch.Tensor:
    return _OPS.local_scores_triton(q, k, bias, *_geometry_args(geo), float(scale))


# ---------------------------------------------------------------------------------------------------------------------
# local_aggregate


@triton_op(f'{_NS}::local_aggregate_triton', mutates_args=())
def _local_aggregate(
    attn: torch.Tensor, v: torch.Tensor, kernel_size: list[int], stride: list[int], dilation: list[int], border: str
) -> torch.Tensor:
    """``sum_j attn[..., j] * v[key_j]``, ``(B, heads, H, W, d_v)`` (arguments of ``local_aggregate``)."""
    return aggregate_fwd(attn, v, _geometry(v, kernel_size, stride, dilation, border))


@triton_op(f'{_NS}::local_aggregate_triton_backward', mutates_args=())
def _local_aggregate_backward(
    grad: torch.Tensor,
    attn: torch.Tensor,
    v: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dattn, dv)`` of ``local_aggregate_triton``."""
    return aggregate_bwd(grad, attn, v, _geometry(v, kernel_size, stride, dilation, border))


def _aggregate_setup(ctx, inputs, output):
    attn, v, *ctx.geometry = inputs
    ctx.save_for_backward(attn, v)


def _aggregate_backward(ctx, grad):
    attn, v = ctx.saved_tensors
    dattn, dv = _OPS.local_aggregate_triton_backward(grad, attn, v, *ctx.geometry)
    return dattn, dv, None, None, None, None


_local_aggregate.register_autograd(_aggregate_backward, setup_context=_aggregate_setup)


def local_aggregate(attn, v, geo) -> torch.Tensor:
    return _OPS.local_aggregate_triton(attn, v, *_geometry_args(geo))


# ---------------------------------------------------------------------------------------------------------------------
# routing_attention


@triton_op(f'{_NS}::routing_attention_triton', mutates_args=())
def _routing_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    grid: list[int],
    size: list[int],
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out (B, heads, H, W, d_v), lse (B, heads, H, W))`` of the token attention over the routes ``index (B, R,
    topk)`` int64: ``grid`` regions per side, ``size`` tokens per region side (the map may be smaller than ``grid *
    size``: zero padding bottom / right, taking part in the softmax)."""
    return routing_fwd(q, k, v, index, tuple(grid), tuple(size), scale)


@triton_op(f'{_NS}::routing_attention_triton_backward', mutates_args=())
def _routing_attention_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    index: torch.Tensor,
    grid: list[int],
    size: list[int],
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv)`` of ``routing_attention_triton`` from the output gradient and the forward's ``out`` / ``lse``."""
    return routing_bwd(grad, q, k, v, out, lse, index, tuple(grid), tuple(size), scale)


def _routing_setup(ctx, inputs, output):
    q, k, v, index, *ctx.geometry = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, index, out, lse)


def _routing_backward(ctx, grad, _grad_lse):
    q, k, v, index, out, lse = ctx.saved_tensors
    dq, dk, dv = _OPS.routing_attention_triton_backward(grad, q, k, v, out, lse, index, *ctx.geometry)
    return dq, dk, dv, None, None, None, None


_routing_attention.register_autograd(_routing_backward, setup_context=_routing_setup)


def routing_attention(q, k, v, index, grid, size, scale) -> torch.Tensor:
    """The public function's CUDA path: ``routing_attention_triton`` (checked arguments)."""
    return _OPS.routing_attention_triton(q, k, v, index, list(grid), list(size), float(scale))[0]


# ---------------------------------------------------------------------------------------------------------------------
# selective_scan: discretisation and readout in PyTorch around the scan kernel, a hand-written backward.


def _compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _discretise(u, delta, A, B, delta_bias, delta_softplus: bool, dtype):
    """``(x, dt4, u4, A5, B5, a, b)``: the pre-softplus ``x = delta + delta_bias`` ``(batch, dim, L)``, the step ``dt``
    and ``u`` as ``(batch, groups, dim / groups, 1, L)``, ``A`` as ``(1, groups, dim / groups, d_state, 1)``, ``B`` as
    ``(batch, groups, 1, d_state, L)``, and the recurrence's ``a = exp(dt A)``, ``b = dt B u`` (the scan's shape)."""
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    x = delta.to(dtype)
    if delta_bias is not None:
        x = x + delta_bias.to(dtype)[:, None]
    dt = F.softplus(x, threshold=20.0) if delta_softplus else x
    dt4 = dt.view(batch, groups, dim // groups, 1, length)
    u4 = u.to(dtype).view(batch, groups, dim // groups, 1, length)
    A5 = A.to(dtype).view(1, groups, dim // groups, d_state, 1)
    B5 = B.to(dtype).unsqueeze(2)
    a = torch.exp(dt4 * A5)
    b = (dt4 * u4) * B5
    return x, dt4, u4, A5, B5, a, b


def _scan_forward(u, delta, A, B, C, D, delta_bias, delta_softplus):
    dtype = _compute_dtype(u, delta, A, B, C, D, delta_bias)
    batch, dim, length = u.shape
    with torch.autocast(u.device.type, enabled=False):
        _, _, u4, _, _, a, b = _discretise(u, delta, A, B, delta_bias, delta_softplus, dtype)
        states = scan_fwd(a.contiguous(), b.contiguous())  # (batch, groups, dim / groups, d_state, L)
        y = None
        if C is not None:
            y = (states * C.to(dtype).unsqueeze(2)).sum(3).reshape(batch, dim, length)
            if D is not None:
                y = y + D.to(dtype)[:, None] * u.to(dtype)
    return y, states.reshape(batch, dim, A.shape[1], length)


def _scan_backward(grad_y, grad_states, u, delta, A, B, C, D, delta_bias, delta_softplus, states):
    """Gradients of every input of the selective scan (None for absent ones), each in its input's dtype."""
    dtype = states.dtype
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per = dim // groups
    with torch.autocast(u.device.type, enabled=False):
        x, dt4, u4, A5, B5, a, _ = _discretise(u, delta, A, B, delta_bias, delta_softplus, dtype)
        h = states.view(batch, groups, per, d_state, length)
        gh = grad_states.to(dtype).view(batch, groups, per, d_state, length)
        gy4 = None
        if C is not None:
            gy4 = grad_y.to(dtype).view(batch, groups, per, 1, length)
            gh = gh + gy4 * C.to(dtype).unsqueeze(2)
        grad_a, grad_b = scan_bwd(gh.contiguous(), a.contiguous(), h.contiguous())  # the reverse scan kernel
        g_exp = grad_a * a  # d/d(dt * A)
        g_dt = (g_exp * A5).sum(3, keepdim=True) + (grad_b * u4 * B5).sum(3, keepdim=True)
        dA = (g_exp * dt4).sum((0, 4)).reshape(dim, d_state)
        du = (grad_b * dt4 * B5).sum(3).reshape(batch, dim, length)
        dB = (grad_b * dt4 * u4).sum(2)
        dC = dD = None
        if C is not None:
            dC = (gy4 * h).sum(2)
            if D is not None:
                gy = grad_y.to(dtype)
                du = du + D.to(dtype)[:, None] * gy
                dD = (gy * u.to(dtype)).sum((0, 2))
        g_dt = g_dt.reshape(batch, dim, length)
        if delta_softplus:  # softplus' gradient; linear above the threshold (as F.softplus)
            g_dt = torch.where(x > 20.0, g_dt, g_dt * torch.sigmoid(x))
        d_bias = g_dt.sum((0, 2)) if delta_bias is not None else None
    grads = (du, g_dt, dA, dB, dC, dD, d_bias)
    refs = (u, delta, A, B, C, D, delta_bias)
    return [None if g is None else g.to(r.dtype) for g, r in zip(grads, refs)]


@triton_op(f'{_NS}::selective_scan_triton', mutates_args=())
def _selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y (batch, dim, L), states (batch, dim, d_state, L))`` of the selective scan (the arguments of
    ``torch.ops.backbonezoo.selective_scan``: u, delta ``(batch, dim, L)``, A ``(dim, d_state)``, B / C ``(batch,
    groups, d_state, L)``, D / delta_bias ``(dim,)`` or None, softplus on ``delta + delta_bias``)."""
    return _scan_forward(u, delta, A, B, C, D, delta_bias, delta_softplus)


@triton_op(f'{_NS}::selective_scan_triton_backward', mutates_args=())
def _selective_scan_backward(
    grad_y: torch.Tensor,
    grad_states: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    states: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(du, ddelta, dA, dB, dC, dD, ddelta_bias)`` of ``selective_scan_triton`` (empty for a None input), from the
    output gradients and the forward's ``states``."""
    grads = _scan_backward(grad_y, grad_states, u, delta, A, B, C, D, delta_bias, delta_softplus, states)
    return tuple(_grad_or_empty(g, u) for g in grads)


def _scan_setup(ctx, inputs, output):
    *tensors, ctx.softplus = inputs
    ctx.save_for_backward(*tensors, output[1])


def _scan_autograd(ctx, grad_y, grad_states):
    u, delta, A, B, C, D, delta_bias, states = ctx.saved_tensors
    grads = _OPS.selective_scan_triton_backward(grad_y, grad_states, u, delta, A, B, C, D, delta_bias, ctx.softplus,
                                                states)  # fmt: skip
    return (*(_optional(g, x) for g, x in zip(grads, (u, delta, A, B, C, D, delta_bias))), None)


_selective_scan.register_autograd(_scan_autograd, setup_context=_scan_setup)


@triton_op(f'{_NS}::selective_scan_states_triton', mutates_args=())
def _selective_scan_states(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> torch.Tensor:
    """The hidden states ``(batch, dim, d_state, L)`` of the selective scan without a readout (A2Mamba's state
    mode): the arguments of ``torch.ops.backbonezoo.selective_scan_states``."""
    return _scan_forward(u, delta, A, B, None, None, delta_bias, delta_softplus)[1]


@triton_op(f'{_NS}::selective_scan_states_triton_backward', mutates_args=())
def _selective_scan_states_backward(
    grad: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    states: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(du, ddelta, dA, dB, ddelta_bias)`` of ``selective_scan_states_triton`` (empty for a None input)."""
    du, ddelta, dA, dB, _, _, db = _scan_backward(None, grad, u, delta, A, B, None, None, delta_bias, delta_softplus,
                                                  states)  # fmt: skip
    return tuple(_grad_or_empty(g, u) for g in (du, ddelta, dA, dB, db))


def _states_setup(ctx, inputs, output):
    *tensors, ctx.softplus = inputs
    ctx.save_for_backward(*tensors, output)


def _states_autograd(ctx, grad):
    u, delta, A, B, delta_bias, states = ctx.saved_tensors
    grads = _OPS.selective_scan_states_triton_backward(grad, u, delta, A, B, delta_bias, ctx.softplus, states)
    return (*(_optional(g, x) for g, x in zip(grads, (u, delta, A, B, delta_bias))), None)


_selective_scan_states.register_autograd(_states_autograd, setup_context=_states_setup)


def selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus: bool):
    """The public function's CUDA path: ``(y, states)`` (``y`` None in the state mode, ``C`` None)."""
    if C is None:
        return None, _OPS.selective_scan_states_triton(u, delta, A, B, delta_bias, bool(delta_softplus))
    return _OPS.selective_scan_triton(u, delta, A, B, C, D, delta_bias, bool(delta_softplus))


# ---------------------------------------------------------------------------------------------------------------------
# FLOP formulas: the CPU operators' counts (ops.py), FLOPs = 2 x MACs.


@register_flop_formula(_OPS.local_attention_triton)
def _(q, k, v, bias, kernel_size, *args, out_shape=None, **kwargs):
    return 2 * _local_macs(q, kernel_size, q[-1] + v[-1])


@register_flop_formula(_OPS.local_attention_triton_backward)
def _(grad, q, k, v, out, lse, bias, kernel_size, *args, out_shape=None, **kwargs):
    return 4 * _local_macs(q, kernel_size, q[-1] + v[-1])


@register_flop_formula(_OPS.local_scores_triton)
def _(q, k, bias, kernel_size, *args, out_shape=None, **kwargs):
    return 2 * _local_macs(q, kernel_size, q[-1])


@register_flop_formula(_OPS.local_scores_triton_backward)
def _(grad, q, k, bias, kernel_size, *args, out_shape=None, **kwargs):
    return 4 * _local_macs(q, kernel_size, q[-1])


@register_flop_formula(_OPS.local_aggregate_triton)
def _(attn, v, *args, out_shape=None, **kwargs):
    return 2 * math.prod(attn) * v[-1]


@register_flop_formula(_OPS.local_aggregate_triton_backward)
def _(grad, attn, v, *args, out_shape=None, **kwargs):
    return 4 * math.prod(attn) * v[-1]


@register_flop_formula(_OPS.routing_attention_triton)
def _(q, k, v, index, grid, size, *args, out_shape=None, **kwargs):
    return 2 * _routing_macs(q, v, index, size)


@register_flop_formula(_OPS.routing_attention_triton_backward)
def _(grad, q, k, v, out, lse, index, grid, size, *args, out_shape=None, **kwargs):
    return 4 * _routing_macs(q, v, index, size)


@register_flop_formula(_OPS.selective_scan_triton)
def _(u, delta, A, *args, out_shape=None, **kwargs):
    return 2 * _scan_macs(u, A, True)


@register_flop_formula(_OPS.selective_scan_triton_backward)
def _(grad_y, grad_states, u, delta, A, *args, out_shape=None, **kwargs):
    return 4 * _scan_macs(u, A, True)


@register_flop_formula(_OPS.selective_scan_states_triton)
def _(u, delta, A, *args, out_shape=None, **kwargs):
    return 2 * _scan_macs(u, A, False)


@register_flop_formula(_OPS.selective_scan_states_triton_backward)
def _(grad, u, delta, A, *args, out_shape=None, **kwargs):
    return 4 * _scan_macs(u, A, False)
