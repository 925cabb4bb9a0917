"""The kernels as registered PyTorch operators: ``torch.ops.backbonezoo.*``.

Each public kernel has a CPU operator here and a CUDA operator in ``triton_ops.py``:

* here, ``local_attention``, ``local_scores``, ``local_aggregate``, ``local_probs``, ``local_aggregate_probs``,
  ``routing_attention``, ``selective_scan``, ``selective_scan_states``: ``torch.library.custom_op``s whose
  implementation is the fast PyTorch path (``backends/local_torch.py``, ``routing._routing_attention_torch``,
  ``scan.scan_impl``), for the ``'torch'`` backend (the default on CPU; on a CUDA tensor it runs the same PyTorch
  path), opaque to torch.compile;
* in ``triton_ops.py`` (registered when triton is importable, i.e. on import of ``backbonezoo.kernels``),
  ``<op>_triton`` and ``<op>_triton_backward``: ``torch.library.triton_op``s on the plain Triton launchers, for the
  ``'triton'`` backend (the default for CUDA tensors). torch.compile traces into them and Inductor sees the Triton
  kernels (``triton_kernel_wrapper_functional`` nodes); ``torch.export`` keeps them as one node each. They are
  separate operators because a triton_op has one implementation for every device and would be traced into on CPU
  too. That module's docstring says what each backward costs.

Each CPU operator has

* a fake implementation (output shapes from input shapes, symbolic sizes included), so ``torch.compile`` and
  ``torch.export`` trace each call as one node;
* a registered autograd formula: the backward is a registered operator too (``*_backward``), whose implementation
  re-runs the forward path under autograd and takes its vector-Jacobian product (the hand-written backwards of the
  shifted-views path and of the scan are what runs there). Cost: one more forward (the recompute) plus the backward
  of the PyTorch path; nothing but the inputs is saved. Double backward is not supported;
* a FLOP formula (``torch.utils.flop_counter.register_flop_formula``) in the papers' convention, reported as FLOPs =
  2 x MACs like every torch formula: ``backbonezoo.flops`` counts with them (the CUDA operators register the same);
* no ONNX translation: while ``torch.onnx.export`` runs, the public functions take the fast PyTorch path directly
  (:func:`enabled`), as traceable Python, dynamic sizes included.

The public functions in ``local.py`` / ``routing.py`` / ``scan.py`` check the arguments, pick the backend and call
the CPU operators for ``'torch'`` on CPU and the CUDA operators for ``'triton'``; the reference backend stays a plain
Python path, the one specification every backend is tested against. Operator arguments are the geometry as plain
ints / strs / floats (``geometry_args``).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Sequence

import torch
from torch.library import custom_op
from torch.utils.flop_counter import register_flop_formula

from . import routing as _routing
from . import scan as _scan
from ._backend import triton_available
from ._geometry import Geometry
from .backends import local_tiled, local_torch

__all__ = [
    'enabled',
    'geometry_args',
    'local_aggregate',
    'local_aggregate_probs',
    'local_attention',
    'local_probs',
    'local_scores',
    'routing_attention',
    'selective_scan',
    'selective_scan_states',
]

_NS = 'backbonezoo'


def geometry_args(geo: Geometry) -> tuple[list, list, list, str]:
    """``(kernel_size, stride, dilation, border)`` as operator arguments."""
    return list(geo.kernel), list(geo.stride), list(geo.dilation), geo.border


def _geometry(x: torch.Tensor, kernel_size, stride, dilation, border: str) -> Geometry:
    return Geometry(x.shape[2], x.shape[3], tuple(kernel_size), tuple(stride), tuple(dilation), border)


def _kind(bias: torch.Tensor | None) -> str | None:
    if bias is None:
        return None
    return 'table' if bias.dim() == 3 else 'query'


def _local_path(device: torch.device):
    """The implementation module: the fast PyTorch path on every device (Triton runs as ``triton_ops.py``)."""
    return local_torch


def _fresh(x: torch.Tensor) -> torch.Tensor:
    """An operator's output must be its own contiguous tensor (the layout the fake implementation promises)."""
    return x.contiguous()


# ---------------------------------------------------------------------------------------------------------------------
# Backward through the forward path: a vector-Jacobian product inside an operator's kernel.

_AUTOGRAD_KEYS = tuple(
    getattr(torch._C.DispatchKey, name)
    for name in ('ADInplaceOrView', 'AutogradFunctionality', 'AutogradCPU', 'AutogradCUDA', 'AutogradOther')
    if hasattr(torch._C.DispatchKey, name)
)


@contextlib.contextmanager
def _autograd_inside_kernel():
    """Re-enable autograd inside an operator's kernel: the dispatcher runs kernels below the autograd keys (excluded
    in the thread-local key set for the duration of the call), so a graph recorded there would stay empty."""
    include = torch._C._dispatch_tls_local_include_set()
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for key in _AUTOGRAD_KEYS:
        exclude = exclude.remove(key)
    with torch._C._ForceDispatchKeyGuard(include, exclude), torch.enable_grad():
        yield


def _vjp(forward: Callable, inputs: Sequence[torch.Tensor | None], grads: Sequence[torch.Tensor]) -> list:
    """Gradients of ``forward(*inputs)`` (a tensor or a tuple) against ``grads``, one per input: zeros for inputs
    the outputs do not depend on, an empty tensor for None and integer inputs."""
    with _autograd_inside_kernel():
        leaves = [x.detach().requires_grad_() if _differentiable(x) else x for x in inputs]
        outputs = forward(*leaves)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        pairs = [(o, g) for o, g in zip(outputs, grads) if o is not None and o.requires_grad]
        wrt = [x for x in leaves if _differentiable(x)]
        found = torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True)
    found = iter(found)
    result = []
    seen = {t.untyped_storage().data_ptr() for t in (*inputs, *grads) if isinstance(t, torch.Tensor)}
    for x in leaves:
        if _differentiable(x):
            grad = next(found)
            grad = torch.zeros_like(x) if grad is None else grad
            if grad.untyped_storage().data_ptr() in seen or grad.stride() != x.stride():
                # a gradient passed through (e.g. a bias'): outputs own their memory; and the fake implementation's
                # layout, the input's (empty_like), is what compiled graphs view the gradient as
                grad = torch.empty_like(x).copy_(grad)
            seen.add(grad.untyped_storage().data_ptr())
            result.append(grad)
        else:
            result.append(_nothing(x))
    return result


def _differentiable(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _nothing(ref: torch.Tensor | None) -> torch.Tensor:
    """The placeholder gradient of a None / integer input (an operator returns tensors only)."""
    device = ref.device if isinstance(ref, torch.Tensor) else 'cpu'
    return torch.empty(0, device=device)


def _fake_grads(*inputs: torch.Tensor | None) -> list:
    return [torch.empty_like(x) if _differentiable(x) else _nothing(x) for x in inputs]


def _optional(grad: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor | None:
    return grad if _differentiable(ref) else None


def enabled() -> bool:
    """Whether the public functions call the registered operators: not while ``torch.onnx.export`` runs (the ONNX
    exporter has no translation for them: it traces the fast PyTorch path instead, dynamic sizes included)."""
    onnx = sys.modules.get('torch.onnx')
    return onnx is None or not onnx.is_in_onnx_export()


# ---------------------------------------------------------------------------------------------------------------------
# local_attention


@custom_op(f'{_NS}::local_attention', mutates_args=())
def local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
) -> torch.Tensor:
    """``softmax(scale * q . k_window + bias) @ v_window`` (``backbonezoo.kernels.local_attention``, checked
    arguments): q, k ``(B, heads, H, W, d_qk)``, v ``(B, heads, H, W, d_v)``, bias None / a table
    ``(heads, 2kh-1, 2kw-1)`` / 5-D per-query, the geometry as pairs and a border name."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    return _fresh(_local_path(q.device).attention(q, k, v, geo, bias, _kind(bias), scale))


@local_attention.register_fake
def _(q, k, v, bias, kernel_size, stride, dilation, border, scale):
    return q.new_empty(*q.shape[:4], v.shape[-1])


@custom_op(f'{_NS}::local_attention_backward', mutates_args=())
def local_attention_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
) -> list[torch.Tensor]:
    """``[dq, dk, dv, dbias]`` of :func:`local_attention` (``dbias`` empty without a bias)."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    path = _local_path(q.device)
    return _vjp(lambda q, k, v, b: path.attention(q, k, v, geo, b, _kind(b), scale), (q, k, v, bias), (grad,))


@local_attention_backward.register_fake
def _(grad, q, k, v, bias, kernel_size, stride, dilation, border, scale):
    return _fake_grads(q, k, v, bias)


def _local_attention_setup(ctx, inputs, output):
    q, k, v, bias, *ctx.geometry = inputs
    ctx.save_for_backward(q, k, v, bias)


def _local_attention_backward(ctx, grad):
    q, k, v, bias = ctx.saved_tensors
    dq, dk, dv, db = local_attention_backward(grad, q, k, v, bias, *ctx.geometry)
    return dq, dk, dv, _optional(db, bias), None, None, None, None, None


local_attention.register_autograd(_local_attention_backward, setup_context=_local_attention_setup)


def _local_macs(q, kernel_size, depth: int) -> int:
    """Every query meets kh * kw window slots, ``depth`` MACs each (the Triton operators count the same)."""
    return math.prod(q[:-1]) * math.prod(kernel_size) * depth


@register_flop_formula(torch.ops.backbonezoo.local_attention)
def _(q, k, v, bias, kernel_size, stride, dilation, border, scale, *args, out_shape=None, **kwargs):
    """Every query attends kh * kw keys: d_qk + d_v MACs per (query, key)."""
    return 2 * _local_macs(q, kernel_size, q[-1] + v[-1])


@register_flop_formula(torch.ops.backbonezoo.local_attention_backward)
def _(grad, q, k, v, bias, kernel_size, stride, dilation, border, scale, *args, out_shape=None, **kwargs):
    """Twice the forward (dq, dk from the logits' gradient; dv, dattn from the output's)."""
    return 4 * _local_macs(q, kernel_size, q[-1] + v[-1])


# ---------------------------------------------------------------------------------------------------------------------
# local_scores


@custom_op(f'{_NS}::local_scores', mutates_args=())
def local_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
) -> torch.Tensor:
    """Window logits ``scale * q . k + bias``, ``(B, heads, H, W, kh*kw)`` (``backbonezoo.kernels.local_scores``)."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    return _fresh(_local_path(q.device).scores(q, k, geo, bias, _kind(bias), scale))


@local_scores.register_fake
def _(q, k, bias, kernel_size, stride, dilation, border, scale):
    return q.new_empty(*q.shape[:4], math.prod(kernel_size))


@custom_op(f'{_NS}::local_scores_backward', mutates_args=())
def local_scores_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
) -> list[torch.Tensor]:
    """``[dq, dk, dbias]`` of :func:`local_scores`."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    path = _local_path(q.device)
    return _vjp(lambda q, k, b: path.scores(q, k, geo, b, _kind(b), scale), (q, k, bias), (grad,))


@local_scores_backward.register_fake
def _(grad, q, k, bias, kernel_size, stride, dilation, border, scale):
    return _fake_grads(q, k, bias)


def _local_scores_setup(ctx, inputs, output):
    q, k, bias, *ctx.geometry = inputs
    ctx.save_for_backward(q, k, bias)


def _local_scores_backward(ctx, grad):
    q, k, bias = ctx.saved_tensors
    dq, dk, db = local_scores_backward(grad, q, k, bias, *ctx.geometry)
    return dq, dk, _optional(db, bias), None, None, None, None, None


local_scores.register_autograd(_local_scores_backward, setup_context=_local_scores_setup)


def _scores_flops(q, k, bias, kernel_size, stride, dilation, border, scale, *args, out_shape=None, **kwargs):
    """One d_qk dot product per (query, window slot), whatever the layout of the maps (scores and probs)."""
    return 2 * _local_macs(q, kernel_size, q[-1])


def _scores_backward_flops(grad, q, k, bias, kernel_size, stride, dilation, border, scale, *args, **kwargs):
    return 4 * _local_macs(q, kernel_size, q[-1])


register_flop_formula(torch.ops.backbonezoo.local_scores)(_scores_flops)
register_flop_formula(torch.ops.backbonezoo.local_scores_backward)(_scores_backward_flops)


# ---------------------------------------------------------------------------------------------------------------------
# local_aggregate


@custom_op(f'{_NS}::local_aggregate', mutates_args=())
def local_aggregate(
    attn: torch.Tensor, v: torch.Tensor, kernel_size: list[int], stride: list[int], dilation: list[int], border: str
) -> torch.Tensor:
    """``sum_j attn[..., j] * v[key_j]``, ``(B, heads, H, W, d_v)`` (``backbonezoo.kernels.local_aggregate``)."""
    geo = _geometry(v, kernel_size, stride, dilation, border)
    return _fresh(_local_path(v.device).aggregate(attn, v, geo))


@local_aggregate.register_fake
def _(attn, v, kernel_size, stride, dilation, border):
    return v.new_empty(v.shape)


@custom_op(f'{_NS}::local_aggregate_backward', mutates_args=())
def local_aggregate_backward(
    grad: torch.Tensor,
    attn: torch.Tensor,
    v: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
) -> list[torch.Tensor]:
    """``[dattn, dv]`` of :func:`local_aggregate`."""
    geo = _geometry(v, kernel_size, stride, dilation, border)
    path = _local_path(v.device)
    return _vjp(lambda a, v: path.aggregate(a, v, geo), (attn, v), (grad,))


@local_aggregate_backward.register_fake
def _(grad, attn, v, kernel_size, stride, dilation, border):
    return _fake_grads(attn, v)


def _local_aggregate_setup(ctx, inputs, output):
    attn, v, *ctx.geometry = inputs
    ctx.save_for_backward(attn, v)


def _local_aggregate_backward(ctx, grad):
    attn, v = ctx.saved_tensors
    da, dv = local_aggregate_backward(grad, attn, v, *ctx.geometry)
    return da, dv, None, None, None, None


local_aggregate.register_autograd(_local_aggregate_backward, setup_context=_local_aggregate_setup)


@register_flop_formula(torch.ops.backbonezoo.local_aggregate)
def _(attn, v, kernel_size, stride, dilation, border, *args, out_shape=None, **kwargs):
    """One d_v product per (query, window slot)."""
    return 2 * math.prod(attn) * v[-1]


@register_flop_formula(torch.ops.backbonezoo.local_aggregate_backward)
def _(grad, attn, v, kernel_size, stride, dilation, border, *args, out_shape=None, **kwargs):
    return 4 * math.prod(attn) * v[-1]


# ---------------------------------------------------------------------------------------------------------------------
# local_probs / local_aggregate_probs: the tiled layout (CPU only; eager sizes, see local.local_probs)


@custom_op(f'{_NS}::local_probs', mutates_args=(), device_types='cpu')
def local_probs(
    q: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
) -> torch.Tensor:
    """Softmaxed window logits in the tiled layout ``(B, heads, tiles, T, R)`` (``kernels.local_probs``)."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    return _fresh(local_torch.probs(q, k, geo, bias, _kind(bias), scale))


@local_probs.register_fake
def _(q, k, bias, kernel_size, stride, dilation, border, scale):
    geo = _geometry(q, kernel_size, stride, dilation, border)
    return q.new_empty(local_tiled.probs_shape(geo, *q.shape[:2]))


@custom_op(f'{_NS}::local_probs_backward', mutates_args=(), device_types='cpu')
def local_probs_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
    scale: float,
) -> list[torch.Tensor]:
    """``[dq, dk, dbias]`` of :func:`local_probs`."""
    geo = _geometry(q, kernel_size, stride, dilation, border)
    return _vjp(lambda q, k, b: local_torch.probs(q, k, geo, b, _kind(b), scale), (q, k, bias), (grad,))


@local_probs_backward.register_fake
def _(grad, q, k, bias, kernel_size, stride, dilation, border, scale):
    return _fake_grads(q, k, bias)


def _local_probs_backward(ctx, grad):
    q, k, bias = ctx.saved_tensors
    dq, dk, db = local_probs_backward(grad, q, k, bias, *ctx.geometry)
    return dq, dk, _optional(db, bias), None, None, None, None, None


local_probs.register_autograd(_local_probs_backward, setup_context=_local_scores_setup)


register_flop_formula(torch.ops.backbonezoo.local_probs)(_scores_flops)
register_flop_formula(torch.ops.backbonezoo.local_probs_backward)(_scores_backward_flops)


@custom_op(f'{_NS}::local_aggregate_probs', mutates_args=(), device_types='cpu')
def local_aggregate_probs(
    probs: torch.Tensor, v: torch.Tensor, kernel_size: list[int], stride: list[int], dilation: list[int], border: str
) -> torch.Tensor:
    """:func:`local_aggregate` of maps from :func:`local_probs`: ``(B, heads, H, W, d_v)``."""
    geo = _geometry(v, kernel_size, stride, dilation, border)
    return _fresh(local_torch.aggregate_probs(probs, v, geo))


@local_aggregate_probs.register_fake
def _(probs, v, kernel_size, stride, dilation, border):
    return v.new_empty(v.shape)


@custom_op(f'{_NS}::local_aggregate_probs_backward', mutates_args=(), device_types='cpu')
def local_aggregate_probs_backward(
    grad: torch.Tensor,
    probs: torch.Tensor,
    v: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    border: str,
) -> list[torch.Tensor]:
    """``[dprobs, dv]`` of :func:`local_aggregate_probs`."""
    geo = _geometry(v, kernel_size, stride, dilation, border)
    return _vjp(lambda p, v: local_torch.aggregate_probs(p, v, geo), (probs, v), (grad,))


@local_aggregate_probs_backward.register_fake
def _(grad, probs, v, kernel_size, stride, dilation, border):
    return _fake_grads(probs, v)


def _local_aggregate_probs_backward(ctx, grad):
    probs, v = ctx.saved_tensors
    dp, dv = local_aggregate_probs_backward(grad, probs, v, *ctx.geometry)
    return dp, dv, None, None, None, None


local_aggregate_probs.register_autograd(_local_aggregate_probs_backward, setup_context=_local_aggregate_setup)


@register_flop_formula(torch.ops.backbonezoo.local_aggregate_probs)
def _(probs, v, kernel_size, stride, dilation, border, *args, out_shape=None, **kwargs):
    """One d_v product per (query, window slot)."""
    return 2 * math.prod(v) * math.prod(kernel_size)


@register_flop_formula(torch.ops.backbonezoo.local_aggregate_probs_backward)
def _(grad, probs, v, kernel_size, stride, dilation, border, *args, out_shape=None, **kwargs):
    return 4 * math.prod(v) * math.prod(kernel_size)


# ---------------------------------------------------------------------------------------------------------------------
# routing_attention


def _routing_path(device: torch.device) -> str:
    return 'torch'  # on every device (Triton runs as triton_ops.routing_attention_triton)


def _token_major(out: torch.Tensor) -> torch.Tensor:
    """``(B, heads, H, W, d)`` as a permuted view of contiguous ``(B, H, W, heads, d)`` memory (callers merge the
    heads for free), the layout the fake implementation promises."""
    return out.permute(0, 2, 3, 1, 4).contiguous().permute(0, 3, 1, 2, 4)


@custom_op(f'{_NS}::routing_attention', mutates_args=())
def routing_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    grid: list[int],
    size: list[int],
    pad: list[int],
    scale: float,
) -> torch.Tensor:
    """Token attention over the routed regions (``backbonezoo.kernels.routing_attention`` with its routes
    ``index (B, R, topk)`` int64): ``grid`` regions per side, ``size`` tokens per region side, ``pad`` the
    bottom / right zero padding."""
    out = _routing.routing_impl(q, k, v, index, tuple(grid), tuple(size), tuple(pad), scale, _routing_path(q.device))
    return _token_major(out)


@routing_attention.register_fake
def _(q, k, v, index, grid, size, pad, scale):
    b, heads, height, width, _ = q.shape
    return q.new_empty(b, height, width, heads, v.shape[-1]).permute(0, 3, 1, 2, 4)


@custom_op(f'{_NS}::routing_attention_backward', mutates_args=())
def routing_attention_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    grid: list[int],
    size: list[int],
    pad: list[int],
    scale: float,
) -> list[torch.Tensor]:
    """``[dq, dk, dv]`` of :func:`routing_attention`."""
    path = _routing_path(q.device)
    geometry = tuple(grid), tuple(size), tuple(pad)
    return _vjp(lambda q, k, v: _routing.routing_impl(q, k, v, index, *geometry, scale, path), (q, k, v), (grad,))


@routing_attention_backward.register_fake
def _(grad, q, k, v, index, grid, size, pad, scale):
    return _fake_grads(q, k, v)


def _routing_setup(ctx, inputs, output):
    q, k, v, index, *ctx.geometry = inputs
    ctx.save_for_backward(q, k, v, index)


def _routing_backward(ctx, grad):
    q, k, v, index = ctx.saved_tensors
    dq, dk, dv = routing_attention_backward(grad, q, k, v, index, *ctx.geometry)
    return dq, dk, dv, None, None, None, None, None


routing_attention.register_autograd(_routing_backward, setup_context=_routing_setup)


def _routing_macs(q, v, index, size) -> int:
    """Each (padded) query token attends topk regions of rh * rw tokens: d_qk + d_v MACs per (query, key)."""
    batch, heads = q[0], q[1]
    regions, topk = index[1], index[2]
    tokens = regions * size[0] * size[1]
    return batch * heads * tokens * topk * size[0] * size[1] * (q[-1] + v[-1])


@register_flop_formula(torch.ops.backbonezoo.routing_attention)
def _(q, k, v, index, grid, size, pad, scale, *args, out_shape=None, **kwargs):
    return 2 * _routing_macs(q, v, index, size)


@register_flop_formula(torch.ops.backbonezoo.routing_attention_backward)
def _(grad, q, k, v, index, grid, size, pad, scale, *args, out_shape=None, **kwargs):
    return 4 * _routing_macs(q, v, index, size)


# ---------------------------------------------------------------------------------------------------------------------
# selective_scan


def _scan_path(device: torch.device) -> str:
    return 'torch'  # on every device (Triton runs as triton_ops.selective_scan[_states]_triton)


def _scan_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


@custom_op(f'{_NS}::selective_scan', mutates_args=())
def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba's selective scan with the C readout (``backbonezoo.kernels.selective_scan``, checked arguments, ``B`` /
    ``C`` as ``(batch, groups, d_state, L)``): ``(y (batch, dim, L), states (batch, dim, d_state, L))``."""
    y, states = _scan.scan_impl(u, delta, A, B, C, D, delta_bias, delta_softplus, _scan_path(u.device))
    return y.contiguous(), states.contiguous()


@selective_scan.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus):
    dtype = _scan_dtype(u, delta, A, B, C, D, delta_bias)
    batch, dim, length = u.shape
    return u.new_empty(batch, dim, length, dtype=dtype), u.new_empty(batch, dim, A.shape[1], length, dtype=dtype)


@custom_op(f'{_NS}::selective_scan_backward', mutates_args=())
def selective_scan_backward(
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
) -> list[torch.Tensor]:
    """``[du, ddelta, dA, dB, dC, dD, ddelta_bias]`` of :func:`selective_scan` (empty for a None input)."""
    path = _scan_path(u.device)
    return _vjp(
        lambda u, d, a, b, c, dd, db: _scan.scan_impl(u, d, a, b, c, dd, db, delta_softplus, path),
        (u, delta, A, B, C, D, delta_bias),
        (grad_y, grad_states),
    )


@selective_scan_backward.register_fake
def _(grad_y, grad_states, u, delta, A, B, C, D, delta_bias, delta_softplus):
    return _fake_grads(u, delta, A, B, C, D, delta_bias)


def _scan_setup(ctx, inputs, output):
    *tensors, ctx.softplus = inputs
    ctx.save_for_backward(*tensors)


def _scan_backward(ctx, grad_y, grad_states):
    u, delta, A, B, C, D, delta_bias = ctx.saved_tensors
    grads = selective_scan_backward(grad_y, grad_states, u, delta, A, B, C, D, delta_bias, ctx.softplus)
    return (*(_optional(g, x) for g, x in zip(grads, (u, delta, A, B, C, D, delta_bias))), None)


selective_scan.register_autograd(_scan_backward, setup_context=_scan_setup)


@custom_op(f'{_NS}::selective_scan_states', mutates_args=())
def selective_scan_states(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> torch.Tensor:
    """The hidden states ``(batch, dim, d_state, L)`` of the selective scan (``C=None``: A2Mamba's state mode)."""
    return _scan.scan_impl(u, delta, A, B, None, None, delta_bias, delta_softplus, _scan_path(u.device))[1].contiguous()


@selective_scan_states.register_fake
def _(u, delta, A, B, delta_bias, delta_softplus):
    batch, dim, length = u.shape
    return u.new_empty(batch, dim, A.shape[1], length, dtype=_scan_dtype(u, delta, A, B, delta_bias))


@custom_op(f'{_NS}::selective_scan_states_backward', mutates_args=())
def selective_scan_states_backward(
    grad: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> list[torch.Tensor]:
    """``[du, ddelta, dA, dB, ddelta_bias]`` of :func:`selective_scan_states`."""
    path = _scan_path(u.device)
    return _vjp(
        lambda u, d, a, b, db: _scan.scan_impl(u, d, a, b, None, None, db, delta_softplus, path)[1],
        (u, delta, A, B, delta_bias),
        (grad,),
    )


@selective_scan_states_backward.register_fake
def _(grad, u, delta, A, B, delta_bias, delta_softplus):
    return _fake_grads(u, delta, A, B, delta_bias)


def _states_backward(ctx, grad):
    u, delta, A, B, delta_bias = ctx.saved_tensors
    grads = selective_scan_states_backward(grad, u, delta, A, B, delta_bias, ctx.softplus)
    return (*(_optional(g, x) for g, x in zip(grads, (u, delta, A, B, delta_bias))), None)


selective_scan_states.register_autograd(_states_backward, setup_context=_scan_setup)


def _scan_macs(u, A, readout: bool) -> int:
    """The official A2Mamba / VMamba count: 9 * B * L * D * N with the C readout, 7 * B * L * D * N without."""
    batch, dim, length = u
    return (9 if readout else 7) * batch * length * dim * A[-1]


@register_flop_formula(torch.ops.backbonezoo.selective_scan)
def _(u, delta, A, B, C, D, delta_bias, delta_softplus, *args, out_shape=None, **kwargs):
    return 2 * _scan_macs(u, A, True)


@register_flop_formula(torch.ops.backbonezoo.selective_scan_states)
def _(u, delta, A, B, delta_bias, delta_softplus, *args, out_shape=None, **kwargs):
    return 2 * _scan_macs(u, A, False)


@register_flop_formula(torch.ops.backbonezoo.selective_scan_backward)
def _(grad_y, grad_states, u, delta, A, B, C, D, delta_bias, delta_softplus, *args, out_shape=None, **kwargs):
    return 4 * _scan_macs(u, A, True)


@register_flop_formula(torch.ops.backbonezoo.selective_scan_states_backward)
def _(grad, u, delta, A, B, delta_bias, delta_softplus, *args, out_shape=None, **kwargs):
    return 4 * _scan_macs(u, A, False)


if triton_available():  # the CUDA operators (torch.library.triton_op): registered with the CPU ones
    from . import triton_ops  # noqa: E402, F401
