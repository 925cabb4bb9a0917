"""Counting a model's multiply-accumulates (the "FLOPs" of vision papers).

Convention (the one papers and fvcore use): **one fused multiply-add = one MAC**, reported per image as
GMACs. Counted: convolutions, linear layers, matmuls / einsums, attention products (``q @ k^T`` and ``attn @ v``,
including ``scaled_dot_product_attention`` and the ``backbonezoo.kernels`` operators), deformable convolutions,
selective scans (9 * B * L * D * N, 7 * B * L * D * N without the C readout: the VMamba / A2Mamba count) and
norms as fvcore counts them (BatchNorm in eval: 1 per element, 2 with affine; LayerNorm / GroupNorm: 4 per
element, 5 with affine). **Not** counted: elementwise ops, activations, softmax, pooling except adaptive-average,
top-k, gathers and index shuffles. ``FlopCount.gmacs_bn_folded`` drops the BatchNorm term: that is what a model
with BatchNorm folded into the preceding conv / linear (the deploy form most papers count) gives.

Counting traces the model once with fvcore's ``FlopCountAnalysis``; ops fvcore has no handle for are counted by
the handles in this module's registry (``register_flop_handle``), and whatever is still uncounted is listed in
``FlopCount.skipped`` so a missing handle shows instead of silently lowering the total. A model that cannot be
jit-traced is counted at the dispatcher (``torch.utils.flop_counter``) with the same convention.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import math
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    'CONVENTION',
    'FlopCount',
    'count_flops',
    'flop_handles',
    'register_flop_handle',
    'register_function_flop_handle',
    'register_module_flop_handle',
    'unregister_flop_handle',
]

CONVENTION = (
    '1 multiply-accumulate = 1 MAC (the "FLOPs" of papers, fvcore convention); convs, linears, matmuls, '
    'attention products (incl. backbonezoo kernels, SDPA, deformable conv), selective scans (9 BLDN, 7 BLDN '
    'without readout) and norms counted; elementwise ops, activations and softmax not counted; batch 1, eval mode'
)

# A handle maps the traced node's inputs and outputs (``torch._C.Value``) to a MAC count (or a Counter by name).
Handle = Callable[[list, list], Any]

# Ops that cost nothing under the convention: seeing them uncounted is expected, not a missing handle.
_FREE_BY_CONVENTION = tuple(
    """
    aten::add* aten::sub* aten::mul* aten::div* aten::rsub aten::neg aten::pow aten::sqrt aten::rsqrt aten::exp
    aten::log aten::sin aten::cos aten::abs aten::sign aten::reciprocal aten::softmax aten::_softmax
    aten::log_softmax aten::sigmoid* aten::tanh* aten::relu* aten::gelu* aten::silu* aten::hardswish*
    aten::hardsigmoid* aten::hardtanh* aten::leaky_relu* aten::elu* aten::mish* aten::softplus aten::erf
    aten::clamp* aten::where aten::mean aten::sum aten::amax aten::topk aten::sort aten::argsort aten::gather
    aten::scatter* aten::index_select aten::take_along_dim aten::roll aten::flip aten::repeat* aten::unfold
    aten::im2col aten::col2im aten::pad aten::reflection_pad* aten::replicate_pad* aten::*pool* aten::pixel_shuffle
    aten::pixel_unshuffle aten::channel_shuffle aten::upsample* aten::interpolate aten::tile aten::norm
    aten::linalg_vector_norm aten::var* aten::std* aten::cumsum aten::ones* aten::rand* aten::bernoulli*
    aten::feature_dropout aten::alpha_dropout aten::lt aten::le aten::ne aten::min aten::maximum aten::minimum
    aten::numel aten::type_as aten::masked_* aten::new_* aten::fill* aten::zero_ aten::t aten::movedim
    aten::unflatten aten::view_as aten::reshape_as aten::expand_as aten::split* aten::tensor_split aten::unsafe_*
    aten::diag* aten::tril* aten::triu* aten::linspace aten::meshgrid aten::scalar* aten::floor* aten::ceil
    aten::round aten::trunc aten::frac aten::remainder aten::fmod aten::logical_* aten::bitwise_* aten::resolve_*
    aten::alias aten::lift* aten::clone aten::detach* aten::as_strided aten::select* aten::slice* aten::index*
    aten::stack aten::chunk aten::narrow* aten::squeeze* aten::unsqueeze* aten::permute aten::transpose* aten::view
    aten::reshape aten::flatten aten::contiguous aten::to aten::_to_copy aten::copy* aten::empty* aten::zeros*
    aten::full* aten::arange aten::cat aten::expand aten::dropout aten::size aten::Int aten::ScalarImplicit aten::eq
    aten::ge aten::gt aten::max
    """.split()
)


# ----------------------------------------------------------------------------------------------- value helpers
def shape_of(value: Any) -> list[int] | None:
    """The static shape of a traced tensor value, or None when it is not a complete tensor."""
    if value.isCompleteTensor():
        return list(value.type().sizes())
    return None


def constant_of(value: Any) -> Any:
    """The constant a traced value holds (ints, lists of ints, bools, None), or None."""
    try:
        return value.toIValue()
    except RuntimeError:
        return None


def python_op_scalars(outputs: list) -> list:
    """The non-tensor arguments of a ``prim::PythonOp`` (custom autograd Function) node, in call order."""
    node = outputs[0].node()
    try:
        return list(node.scalar_args())
    except (AttributeError, RuntimeError):
        return []


def _pair_product(value: Any) -> int | None:
    """kh * kw from an int or an (h, w) pair, None when ``value`` is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0] * value[1]
    return None


def _tensor_shapes(values: list) -> list[list[int]]:
    return [s for s in (shape_of(v) for v in values if v.type().kind() == 'TensorType') if s is not None]


# ----------------------------------------------------------------------------------------------- handles
def sdpa_flop(inputs: list, outputs: list) -> int:
    """``scaled_dot_product_attention(q (..., L, E), k (..., S, E), v (..., S, Ev))``: L*S*E + L*S*Ev per batch."""
    q, k, v = (shape_of(x) for x in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def deform_conv2d_flop(inputs: list, outputs: list) -> int:
    """Deformable convolution: out_h * out_w * Cout * Cin / groups * kh * kw per image (the sampling is free).

    Works for ``torchvision::deform_conv2d(input, weight, offset, mask, ...)`` and for custom autograd Functions
    (mmcv / DCN extensions) whose tensor inputs include a 4-D weight of shape (Cout, Cin / groups, kh, kw).
    """
    out = shape_of(outputs[0])
    c_out = out[1]
    weights = [s for s in _tensor_shapes(inputs[1:]) if len(s) == 4 and s[0] == c_out]
    if not weights:
        raise ValueError(f'deform_conv2d handle: no (Cout={c_out}, Cin/g, kh, kw) weight among the inputs')
    # The offsets / mask also have dim 0 == batch; when batch == Cout the weight is the one with a small kernel.
    weight = min(weights, key=lambda s: (s[2] * s[3], s[1]))
    return math.prod(out) * math.prod(weight[1:])


def _kernel_area(inputs: list, outputs: list, skip_tensors: int) -> int | None:
    """The window area kh*kw of a local-attention call: the first int / pair argument after the tensors."""
    candidates = [constant_of(v) for v in inputs[skip_tensors:]] + python_op_scalars(outputs)
    for value in candidates:
        area = _pair_product(value)
        if area is not None:
            return area
    return None


def local_scores_flop(inputs: list, outputs: list) -> int:
    """``local_scores(q, k, kernel_size) -> (B, heads, H, W, kh*kw)``: one d_qk dot product per window slot."""
    q = shape_of(inputs[0])
    return math.prod(shape_of(outputs[0])) * q[-1]


def local_aggregate_flop(inputs: list, outputs: list) -> int:
    """``local_aggregate(attn (B, heads, H, W, kh*kw), v (..., d_v))``: one d_v product per window slot."""
    attn, v = shape_of(inputs[0]), shape_of(inputs[1])
    return math.prod(attn) * v[-1]


def local_attention_flop(inputs: list, outputs: list) -> int:
    """``local_attention(q, k, v, kernel_size, ...)``: per query kh*kw keys, d_qk + d_v MACs each.

    The window area comes from the ``kernel_size`` argument; when the trace hides it, from a relative-position
    table ``(heads, 2kh-1, 2kw-1)`` or a per-query bias ``(..., kh*kw)`` among the inputs.
    """
    q, v = shape_of(inputs[0]), shape_of(inputs[2])
    area = _kernel_area(inputs, outputs, skip_tensors=3)
    if area is None:
        for shape in _tensor_shapes(inputs[3:]):
            if len(shape) == 3 and shape[1] % 2 == 1 and shape[2] % 2 == 1:
                area = ((shape[1] + 1) // 2) * ((shape[2] + 1) // 2)
            elif len(shape) == 5:
                area = shape[-1]
            if area is not None:
                break
    if area is None:
        raise ValueError('local_attention handle: could not find kernel_size among the traced arguments')
    return math.prod(q[:-1]) * area * (q[-1] + v[-1])


def selective_scan_flop(inputs: list, outputs: list) -> int:
    """Selective scan ``(u (B, D, L), delta, A (D, N), B, C, ...)``: 9 * B * L * D * N (the VMamba / A2Mamba count)."""
    u, a = shape_of(inputs[0]), shape_of(inputs[2])
    batch, channels, length = u[0], u[1], math.prod(u[2:])
    return 9 * batch * length * channels * a[-1]


_DEFAULT_HANDLES: dict[str, Handle] = {
    'aten::scaled_dot_product_attention': sdpa_flop,
    'torchvision::deform_conv2d': deform_conv2d_flop,
    'prim::PythonOp.*DeformConv*': deform_conv2d_flop,
    # backbonezoo.kernels operators: as custom ops (torch.library) or as custom autograd Functions.
    'backbonezoo::local_scores*': local_scores_flop,
    'backbonezoo::local_aggregate*': local_aggregate_flop,
    'backbonezoo::local_attention*': local_attention_flop,
    'backbonezoo::selective_scan*': selective_scan_flop,
    'prim::PythonOp.*LocalScores*': local_scores_flop,
    'prim::PythonOp.*LocalAggregate*': local_aggregate_flop,
    'prim::PythonOp.*LocalAttention*': local_attention_flop,
    'prim::PythonOp.*SelectiveScan*': selective_scan_flop,
    # NATTEN's own names, for official models run with natten installed.
    'prim::PythonOp.*NeighborhoodAttention2DQK*': local_scores_flop,
    'prim::PythonOp.*NeighborhoodAttention2DAV*': local_aggregate_flop,
}
_HANDLES: dict[str, Handle] = dict(_DEFAULT_HANDLES)


def register_flop_handle(op_name: str, handle: Handle | None) -> None:
    """Count ``op_name`` with ``handle(inputs, outputs) -> MACs`` for the whole batch (``None``: count it as 0).

    ``op_name`` is the traced node kind: ``'aten::...'``, ``'<namespace>::<op>'`` for ``torch.library`` custom ops,
    or ``'prim::PythonOp.<FunctionClassName>'`` for custom autograd Functions; fnmatch patterns (``*``) are allowed.
    ``inputs`` / ``outputs`` are ``torch._C.Value``s: use :func:`shape_of`, :func:`constant_of` and
    :func:`python_op_scalars` to read them. A later registration of the same name replaces the earlier one.
    """
    if not isinstance(op_name, str) or not op_name:
        raise ValueError(f'register_flop_handle: op_name must be a non-empty string, got {op_name!r}')
    if handle is not None and not callable(handle):
        raise TypeError(f'register_flop_handle: handle for {op_name!r} must be callable or None, got {handle!r}')
    _HANDLES[op_name] = handle if handle is not None else (lambda inputs, outputs: 0)


def unregister_flop_handle(op_name: str) -> None:
    """Remove a registered handle (a default one comes back if ``op_name`` had one)."""
    if op_name not in _HANDLES:
        raise KeyError(f'unregister_flop_handle: no handle registered for {op_name!r}; have {sorted(_HANDLES)}')
    if op_name in _DEFAULT_HANDLES:
        _HANDLES[op_name] = _DEFAULT_HANDLES[op_name]
    else:
        del _HANDLES[op_name]


_MODULE_HANDLES: dict[type, Callable[[torch.nn.Module, tuple, Any], float]] = {}


def register_module_flop_handle(
    module_type: type, handle: Callable[[torch.nn.Module, tuple, Any], float] | None
) -> None:
    """Add ``handle(module, inputs, output) -> MACs`` (whole batch) for every ``module_type`` instance.

    For work that is not one traced op: e.g. a selective scan written as elementwise torch ops, which fvcore
    does not count at all. The MACs are added on top of whatever fvcore counts inside the module (so count only
    what fvcore misses) and appear in ``by_operator`` as ``'module:<ClassName>'``. ``None`` removes the handle.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, torch.nn.Module)):
        raise TypeError(f'register_module_flop_handle: module_type must be an nn.Module subclass, got {module_type!r}')
    if handle is None:
        _MODULE_HANDLES.pop(module_type, None)
    elif not callable(handle):
        raise TypeError(f'register_module_flop_handle: handle for {module_type.__name__} must be callable or None')
    else:
        _MODULE_HANDLES[module_type] = handle


def _pair_of(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, torch.SymInt)) else (int(value[0]), int(value[1]))


def _selective_scan_macs(call: dict, result: Any) -> float:
    """The official A2Mamba / VMamba count: 9 * B * L * D * N with the C readout, 7 * B * L * D * N without."""
    batch, channels, length = call['u'].shape
    d_state = call['A'].shape[-1]
    return (9 if call.get('C') is not None else 7) * batch * length * channels * d_state


def _local_scores_macs(call: dict, result: Any) -> float:
    """One d_qk dot product per (query, window slot)."""
    return result.numel() * call['q'].shape[-1]


def _local_aggregate_macs(call: dict, result: Any) -> float:
    """One d_v product per (query, window slot)."""
    return call['attn'].numel() * call['v'].shape[-1]


def _local_probs_macs(call: dict, result: Any) -> float:
    """One d_qk dot product per (query, window slot), whatever layout the maps are returned in."""
    q = call['q']
    kh, kw = _pair_of(call['kernel_size'])
    return q[..., 0].numel() * kh * kw * q.shape[-1]


def _local_aggregate_probs_macs(call: dict, result: Any) -> float:
    """One d_v product per (query, window slot)."""
    v = call['v']
    kh, kw = _pair_of(call['kernel_size'])
    return v[..., 0].numel() * kh * kw * v.shape[-1]


def _local_attention_macs(call: dict, result: Any) -> float:
    """Every query attends kh * kw keys: d_qk + d_v MACs per (query, key)."""
    q, v = call['q'], call['v']
    kh, kw = _pair_of(call['kernel_size'])
    return q[..., 0].numel() * kh * kw * (q.shape[-1] + v.shape[-1])


def _routing_grid(call: dict) -> tuple[int, int, int, int]:
    height, width = call['q'].shape[2], call['q'].shape[3]
    if call.get('region_size') is not None:
        rh, rw = _pair_of(call['region_size'])
        return -(-height // rh), -(-width // rw), rh, rw
    gh, gw = _pair_of(call['num_regions'])
    return gh, gw, height // gh, width // gw


def _region_routing_macs(call: dict, result: Any) -> float:
    """Region-level routing: (mean q region) . (mean k region) over heads * d_qk for every region pair."""
    gh, gw, _, _ = _routing_grid(call)
    q = call['q']
    return q.shape[0] * (gh * gw) ** 2 * q.shape[1] * q.shape[-1]


def _routing_attention_macs(call: dict, result: Any) -> float:
    """Each (padded) query token attends topk * region tokens keys; plus the routing when it is computed here."""
    gh, gw, rh, rw = _routing_grid(call)
    q, v = call['q'], call['v']
    batch, heads = q.shape[0], q.shape[1]
    tokens = gh * gw * rh * rw
    macs = batch * heads * tokens * call['topk'] * rh * rw * (q.shape[-1] + v.shape[-1])
    if call.get('index') is None:
        macs += _region_routing_macs(call, None)
    return macs


# Operators counted from their arguments rather than from how they happen to be computed: the fast paths trade
# MACs for speed (a banded matmul, chunked gathers) and a scan runs as elementwise ops, so counting the traced
# implementation would measure the implementation, not the architecture. Keyed by (module, function name).
_FUNCTION_HANDLES: dict[tuple[str, str], Callable[[dict, Any], float]] = {
    ('backbonezoo.kernels', 'selective_scan'): _selective_scan_macs,
    ('backbonezoo.kernels', 'local_scores'): _local_scores_macs,
    ('backbonezoo.kernels', 'local_aggregate'): _local_aggregate_macs,
    ('backbonezoo.kernels', 'local_attention'): _local_attention_macs,
    ('backbonezoo.kernels', 'local_probs'): _local_probs_macs,
    ('backbonezoo.kernels', 'local_aggregate_probs'): _local_aggregate_probs_macs,
    ('backbonezoo.kernels.routing', 'region_routing'): _region_routing_macs,
    ('backbonezoo.kernels.routing', 'routing_attention'): _routing_attention_macs,
}


def register_function_flop_handle(module: str, name: str, handle: Callable[[dict, Any], float] | None) -> None:
    """Count calls of the function ``module.name`` as ``handle(call, result) -> MACs`` (whole batch).

    ``call`` maps the function's parameter names to the arguments of the call (defaults filled in). While
    counting, every module-level reference to that function object (``from x import f`` copies included) is
    wrapped and runs **outside** the trace, so only the handle's figure counts (nested registered calls are
    not counted again); the MACs appear in ``by_operator`` under ``name``. ``None`` removes the handle.
    """
    if handle is None:
        _FUNCTION_HANDLES.pop((module, name), None)
    elif not callable(handle):
        raise TypeError(f'register_function_flop_handle: handle for {module}.{name} must be callable or None')
    else:
        _FUNCTION_HANDLES[(module, name)] = handle


@contextlib.contextmanager
def _untraced():
    """Run a block invisibly to the jit tracer and to dispatch modes (torch.utils.flop_counter)."""
    from torch.utils._python_dispatch import _disable_current_modes

    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        with _disable_current_modes():
            yield
    finally:
        torch._C._set_tracing_state(state)


def _tie_to_inputs(result: Any, inputs) -> Any:
    """Make an output computed outside the trace depend on the call's inputs again (a free ``+ 0 * x[0]``).

    Without it the tracer sees no consumer of the inputs and dead-code elimination drops the layers that made
    them (e.g. the q / k / v projection), so fvcore would not count those either.
    """
    if torch._C._get_tracing_state() is None:
        return result
    tensors = [t for t in inputs if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()]
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    slot = next((i for i, t in enumerate(outputs) if isinstance(t, torch.Tensor) and t.is_floating_point()), None)
    if not tensors or slot is None:
        return result
    anchor = sum(t.reshape(-1)[0].to(outputs[slot].dtype) for t in tensors) * 0
    outputs[slot] = outputs[slot] + anchor
    return type(result)(outputs) if isinstance(result, (tuple, list)) else outputs[0]


@contextlib.contextmanager
def _counting_functions(counts: Counter):
    """Wrap the registered functions wherever a loaded module refers to them, restoring them on exit."""
    import inspect

    patched = []
    depth = [0]  # the outermost registered call counts; the registered calls it makes itself do not
    try:
        for (module_name, name), handle in _FUNCTION_HANDLES.items():
            try:
                target = getattr(importlib.import_module(module_name), name)
            except (ImportError, AttributeError):
                continue
            signature = inspect.signature(target)

            def wrapper(*args, _target=target, _handle=handle, _name=name, _signature=signature, **kwargs):
                if depth[0]:
                    return _target(*args, **kwargs)
                depth[0] += 1
                try:
                    with _untraced():
                        result = _target(*args, **kwargs)
                finally:
                    depth[0] -= 1
                bound = _signature.bind(*args, **kwargs)
                bound.apply_defaults()
                counts[_name] += float(_handle(dict(bound.arguments), result))  # sizes are tensors under the tracer
                return _tie_to_inputs(result, bound.arguments.values())

            for module in list(sys.modules.values()):
                namespace = getattr(module, '__dict__', None)
                if not isinstance(namespace, dict):
                    continue
                for attr, value in list(namespace.items()):
                    if value is target:
                        namespace[attr] = wrapper
                        patched.append((namespace, attr, target))
        yield
    finally:
        for namespace, attr, target in patched:
            namespace[attr] = target


def flop_handles() -> dict[str, Handle]:
    """The handles used on top of fvcore's own, by op name or pattern."""
    return dict(_HANDLES)


class _HandleTable(dict):
    """fvcore's op-handle table with fnmatch fallback, so one pattern covers e.g. every ``prim::PythonOp.*X*``."""

    def __init__(self, exact: dict, patterns: dict):
        super().__init__(exact)
        self._patterns = patterns

    def _match(self, kind: str) -> Handle | None:
        for pattern, handle in self._patterns.items():
            if fnmatch.fnmatchcase(kind, pattern):
                return handle
        return None

    def __contains__(self, kind: object) -> bool:
        return super().__contains__(kind) or (isinstance(kind, str) and self._match(kind) is not None)

    def __getitem__(self, kind: str) -> Handle:
        if super().__contains__(kind):
            return super().__getitem__(kind)
        handle = self._match(kind)
        if handle is None:
            raise KeyError(kind)
        return handle


# ----------------------------------------------------------------------------------------------- counting
@dataclass
class FlopCount:
    """MACs per image of one model at one input size (see the module docstring for the convention)."""

    macs: float
    input_size: tuple[int, int, int]
    by_operator: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, float] = field(default_factory=dict)
    convention: str = CONVENTION
    method: str = 'fvcore'  # or 'dispatch' (torch.utils.flop_counter) when the model cannot be jit-traced
    note: str = ''

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gmacs_bn_folded(self) -> float:
        """GMACs with BatchNorm folded into the preceding conv / linear (no BN term)."""
        return (self.macs - self.by_operator.get('batch_norm', 0.0)) / 1e9

    @property
    def unexpected_skips(self) -> dict[str, int]:
        """Uncounted ops that are not free under the convention: a handle is probably missing for these."""
        return {
            k: n for k, n in self.skipped.items() if not any(fnmatch.fnmatchcase(k, p) for p in _FREE_BY_CONVENTION)
        }

    def __str__(self) -> str:
        lines = [f'{self.gmacs:.4f} GMACs at {self.input_size} ({self.gmacs_bn_folded:.4f} with BN folded)']
        for op, macs in sorted(self.by_operator.items(), key=lambda kv: -kv[1]):
            lines.append(f'  {op:<40} {macs / 1e9:.4f}')
        if self.unexpected_skips:
            lines.append(f'  not counted (no handle): {self.unexpected_skips}')
        return '\n'.join(lines)


def _normalise_input_size(input_size: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(input_size, int):
        return (3, input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (3, *size)
    if len(size) != 3:
        raise ValueError(f'count_flops: input_size must be (C, H, W), (H, W) or an int, got {input_size!r}')
    return size


def count_flops(
    model: torch.nn.Module,
    input_size: int | Sequence[int] = (3, 224, 224),
    *,
    batch_size: int = 1,
    handles: dict[str, Handle] | None = None,
    fold_bn: bool = False,
    by_module: bool = False,
    inputs: torch.Tensor | None = None,
    method: str = 'auto',
) -> FlopCount:
    """Count the multiply-accumulates of one forward of ``model`` per image (eval mode, no grad).

    Args:
        model: any ``nn.Module`` taking one image batch; it is put in eval mode for the count and put back.
        input_size: (C, H, W), (H, W) (3 channels) or an int side.
        batch_size: images in the traced batch; the result is per image. Batch 1 is the papers' setting.
        handles: extra op handles for this call only (same form as :func:`register_flop_handle`).
        fold_bn: leave BatchNorm out of ``macs`` (as a model with BN folded into convs / linears).
        by_module: also return MACs per submodule name (``FlopCount.by_module``).
        inputs: the exact tensor to trace with (then ``input_size`` / ``batch_size`` are taken from it).
        method: 'fvcore' (jit trace), 'dispatch' (``torch.utils.flop_counter`` with fvcore's norm / pooling /
            attention conventions added; no per-op handles by trace name, no ``by_module``), or 'auto':
            fvcore, and dispatch when the model cannot be traced (``FlopCount.method`` / ``note`` say which).

    Returns:
        FlopCount with ``gmacs``, ``by_operator``, ``skipped`` (uncounted op kinds and how often they ran) and
        ``unexpected_skips`` (those that are not free under the convention).
    """
    method_arg = method
    if method_arg not in ('auto', 'fvcore', 'dispatch'):
        raise ValueError(f"count_flops: method must be 'auto', 'fvcore' or 'dispatch', got {method_arg!r}")
    if inputs is None:
        size = _normalise_input_size(input_size)
        if batch_size < 1:
            raise ValueError(f'count_flops: batch_size must be >= 1, got {batch_size}')
        param = next(model.parameters(), None)
        device = param.device if param is not None and param.device.type != 'meta' else torch.device('cpu')
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        inputs = torch.randn((batch_size, *size), generator=torch.Generator().manual_seed(0)).to(device, dtype)
    else:
        size, batch_size = tuple(inputs.shape[1:]), inputs.shape[0]

    function_macs: Counter = Counter()
    module_macs: Counter = Counter()
    module_ops: Counter = Counter()
    hooks = []
    for name, module in model.named_modules():
        handle = next((h for t, h in _MODULE_HANDLES.items() if isinstance(module, t)), None)
        if handle is not None:

            def hook(mod, args, output, name=name, handle=handle):
                macs = handle(mod, args, output)
                module_macs[name] += macs
                module_ops[f'module:{type(mod).__name__}'] += macs

            hooks.append(module.register_forward_hook(hook))

    was_training = model.training
    model.eval()
    method, note = 'fvcore', ''
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                if method_arg == 'dispatch':
                    raise _UseDispatch('method=dispatch')
                with _counting_functions(function_macs):
                    total, per_op, skipped, modules = _count_fvcore(model, inputs, handles, fold_bn, by_module)
            except Exception as err:
                if method_arg == 'fvcore':
                    raise
                # Models that cannot be jit-traced (shapes turned into tensors, data-dependent control flow)
                # are counted at the dispatcher instead: same convention, no per-module split.
                method = 'dispatch'
                if not isinstance(err, _UseDispatch):
                    note = f'jit trace failed ({type(err).__name__}: {str(err)[:200]})'
                function_macs.clear(), module_macs.clear(), module_ops.clear()
                with _counting_functions(function_macs):
                    total, per_op = _count_dispatch(model, inputs, fold_bn)
                skipped, modules = {}, Counter()
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()

    if function_macs:  # the wrapped functions ran once, during the count
        total += sum(function_macs.values())
        per_op = Counter(per_op) + function_macs
    if module_macs:  # the hooks ran once, during the count
        total += sum(module_macs.values())
        per_op = Counter(per_op) + module_ops
        if by_module:
            for name, macs in module_macs.items():
                parts = name.split('.')
                for depth in range(len(parts) + 1):
                    modules['.'.join(parts[:depth])] += macs

    return FlopCount(
        macs=total / batch_size,
        input_size=tuple(size),
        by_operator={k: v / batch_size for k, v in per_op.items() if v},
        skipped=dict(skipped),
        by_module={k: v / batch_size for k, v in modules.items()},
        method=method,
        note=note,
    )


class _UseDispatch(Exception):
    pass


def _count_fvcore(model, inputs, handles, fold_bn, by_module):
    from fvcore.nn import FlopCountAnalysis

    all_handles = {**_HANDLES, **(handles or {})}
    if fold_bn:
        all_handles['aten::batch_norm'] = lambda i, o: 0
    exact = {k: v for k, v in all_handles.items() if not any(c in k for c in '*?[')}
    patterns = {k: v for k, v in all_handles.items() if k not in exact}
    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle(**exact)
    analysis._op_handles = _HandleTable(analysis._op_handles, patterns)  # fnmatch fallback for our patterns
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
    total = analysis.total()
    modules = analysis.by_module() if by_module else Counter()
    return total, analysis.by_operator(), analysis.unsupported_ops(), modules


def _dispatch_mapping(fold_bn: bool) -> dict:
    """torch.utils.flop_counter formulas (FLOPs = 2 MACs) for what torch does not count, in fvcore's convention."""
    import math as _math

    aten = torch.ops.aten

    def numel(shape) -> int:
        return _math.prod(shape)

    def batch_norm(x, weight=None, *args, out_shape=None, **kwargs):
        return 0 if fold_bn else 2 * numel(x) * (2 if weight is not None else 1)

    def layer_norm(x, normalized_shape, weight=None, *args, out_shape=None, **kwargs):
        return 2 * numel(x) * (5 if weight is not None else 4)

    def group_norm(x, weight=None, *args, out_shape=None, **kwargs):
        return 2 * numel(x) * (5 if weight is not None else 4)

    def sdpa(q, k, v, *args, out_shape=None, **kwargs):
        return 2 * numel(q[:-1]) * k[-2] * (q[-1] + v[-1])

    def adaptive_avg_pool(x, *args, out_shape=None, **kwargs):
        return 2 * numel(x)

    mapping = {
        aten.native_batch_norm: batch_norm,
        aten._native_batch_norm_legit_no_training: batch_norm,
        aten._native_batch_norm_legit: batch_norm,
        aten.native_layer_norm: layer_norm,
        aten.native_group_norm: group_norm,
        aten._adaptive_avg_pool2d: adaptive_avg_pool,
    }
    if hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu'):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = sdpa
    with contextlib.suppress(AttributeError, RuntimeError):
        import torchvision  # noqa: F401  (registers torchvision::deform_conv2d)

        def deform_conv(x, weight, *args, out_shape=None, **kwargs):
            return 2 * numel(out_shape) * numel(weight[1:])

        mapping[torch.ops.torchvision.deform_conv2d] = deform_conv
    return mapping


_DISPATCH_NAMES = (
    ('batch_norm', 'batch_norm'),
    ('layer_norm', 'layer_norm'),
    ('group_norm', 'group_norm'),
    ('convolution', 'conv'),
    ('scaled_dot_product', 'scaled_dot_product_attention'),
    ('attention', 'scaled_dot_product_attention'),
    ('deform_conv2d', 'deform_conv2d'),
    ('adaptive_avg_pool', 'adaptive_avg_pool2d'),
    ('mm', 'matmul'),
)


def _count_dispatch(model, inputs, fold_bn):
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_dispatch_mapping(fold_bn))
    with counter:
        model(inputs)
    per_op: Counter = Counter()
    for packet, flops in counter.get_flop_counts().get('Global', {}).items():
        name = str(packet).split('.')[-1]
        label = next((label for key, label in _DISPATCH_NAMES if key in name), name)
        per_op[label] += flops / 2
    return counter.get_total_flops() / 2, per_op
