"""Local attention: sliding neighbourhoods, halo tiles and blocked windows as one operator.

Layout (every function here): ``q, k: (B, heads, H, W, d_qk)``, ``v: (B, heads, H, W, d_v)``, output
``(B, heads, H, W, d_v)``. ``kernel_size``, ``stride`` and ``dilation`` are an int or an ``(h, w)`` pair.
``K = kh * kw`` window slots per query, in row-major ``(ky, kx)`` order.

Which keys a query sees is decided per axis (length ``L``, kernel ``k``, stride ``s``, dilation ``d``):

``border='shift'`` (stride 1 only; odd ``k``): NATTEN 0.17 semantics. Positions are split into ``d`` groups by index
modulo ``d``; within its group a query's window of ``k`` group members is centred on it and shifted to stay inside the
group (every query sees ``K`` real keys; each group must hold at least ``k`` members, i.e. ``k * d <= L``).

``border='zero'``: query tiles of ``s`` positions (tile ``t`` = positions ``t*s .. t*s+s-1``) share one window of
``k`` positions starting at ``t*s - d * ((k - s) // 2)`` with step ``d`` (centred on the query for ``s = 1``).
Positions outside the map are keys and values equal to zero that still take part in the softmax (logit = bias only).
Needs ``s <= k`` and, for ``s == 1``, odd ``k``. The window may be larger than the map. Stride 1 = TiC's MSA-Conv,
``k = block + 2 * halo, s = block`` = HaloNet's halo attention, ``k = s = window`` = blocked window attention (the
last tile may be partial; the output is always H x W).

``bias`` is added to the scaled logits, in one of two forms:

* a relative-position table ``(heads, 2*kh - 1, 2*kw - 1)``, entry ``[key_offset - query_offset + k - 1]`` per axis,
  offsets counted in dilation-group units for ``'shift'`` (NATTEN's rpb) and in steps of ``d`` for ``'zero'`` (where
  ``'zero'`` with both ``s > 1`` and ``d > 1`` takes no table: the offsets are not multiples of ``d``);
* a 5-D tensor broadcastable to ``(B, heads, H, W, K)``: a per-query bias the caller builds (e.g. HaloNet's
  query-dependent relative logits).

``local_scores`` and ``local_aggregate`` are the two halves (NATTEN's ``na2d_qk`` / ``na2d_av``) for families that put
something between them; ``local_attention(q, k, v) == local_aggregate(softmax(local_scores(q, k)), v)``.
``local_probs`` / ``local_aggregate_probs`` are the same two halves around the softmax, for a map applied to several
values: the map stays in the fast path's own layout between them.

Layout of the package (NATTEN's ``functional.py`` over ``backends/``): this module holds the public API and its
argument checks; ``_geometry.py`` the window rules as index tables; one module per backend in ``backends/``:
``local_reference`` (gathers every window: the specification, not fast), ``local_tiled`` (query tiles attending to one
shared key region through ``F.scaled_dot_product_attention``: blocked / halo windows as they are, neighbourhoods with
a mask; no per-query window is materialised), ``local_shifted`` (stride-1 ``'zero'`` 3x3 windows, MSA-Conv's small
form, as shifted views of the zero-padded map), ``local_torch`` (picks one of those two: the ``'torch'`` backend),
``local_triton`` (the fused kernels of ``triton_local.py``) and ``local_flex`` (``kernels/flex.py``, FlexAttention).

Backends (``backend=`` or env ``BACKBONEZOO_KERNEL_BACKEND``, see ``_backend.py``): ``'reference'``, ``'torch'``
(default on CPU), ``'triton'`` (default for CUDA tensors; CPU only under ``TRITON_INTERPRET=1``), ``'flex'`` (CUDA
only). Every backend has a backward. ``'torch'`` on CPU runs as the registered operators
``torch.ops.backbonezoo.local_*`` (``ops.py``: custom ops), ``'triton'`` as ``torch.ops.backbonezoo.local_*_triton``
(``triton_ops.py``: triton ops, which torch.compile traces into, so Inductor sees the Triton kernels); both with a fake
implementation, registered autograd and a FLOP formula, so ``torch.compile`` / ``torch.export`` /
``torch.utils.flop_counter`` see one node per call. The chosen backend and fast path are logged at debug level (logger
``backbonezoo.kernels``).

The index tables of the reference and fast paths are computed with tensor ops from the map size (cached per size in
eager mode, rebuilt in the graph under torch.compile / torch.export), so exported graphs keep H / W (and a
size-dependent dilation) symbolic: ``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)`` runs at any size (the
ONNX exporter decomposes the operators into the fast PyTorch path).
"""

from __future__ import annotations

import functools
import math

import torch

from . import ops
from ._backend import resolve_backend
from ._geometry import Geometry, Size, axis_window_tensors, axis_windows, static
from ._shapes import assert_in_graph
from .backends import local_flex, local_reference, local_tiled, local_torch, local_triton

__all__ = ['local_aggregate', 'local_aggregate_probs', 'local_attention', 'local_probs', 'local_scores']

BORDERS = ('shift', 'zero')
_SUPPORTED = ('reference', 'torch', 'triton', 'flex')
_Size = Size
_ = (axis_windows, axis_window_tensors)  # re-exported: the window rules in Python and tensor form


def _pair(value: _Size, name: str, op: str) -> tuple[int, int]:
    # SymInts too: under dynamic-shape export a size-dependent dilation (A2Mamba's) is symbolic
    pair = (value, value) if isinstance(value, (int, torch.SymInt)) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ValueError(f'{op}: {name}={value!r} must be a positive int or a pair of positive ints')
    return pair


def _geometry(
    op: str, height: int, width: int, kernel_size: _Size, stride: _Size, dilation: _Size, border: str
) -> Geometry:
    hashable = lambda x: tuple(x) if isinstance(x, list) else x
    args = (op, height, width, hashable(kernel_size), hashable(stride), hashable(dilation), border)
    # traced or symbolic sizes (dynamic-shape export): checked uncached, the checks become shape guards
    if torch.compiler.is_compiling() or not static(*args):
        return _checked_geometry.__wrapped__(*args)
    return _checked_geometry(*args)


@functools.lru_cache(maxsize=1024)  # per-call validation is pure Python: cache it (errors are never cached)
def _checked_geometry(
    op: str, height: int, width: int, kernel_size: _Size, stride: _Size, dilation: _Size, border: str
) -> Geometry:
    kernel, stride, dilation = (_pair(kernel_size, 'kernel_size', op), _pair(stride, 'stride', op),
                                _pair(dilation, 'dilation', op))  # fmt: skip
    if border not in BORDERS:
        raise ValueError(f"{op}: border={border!r} is not one of 'shift', 'zero'")
    for axis, (name, length) in enumerate((('height', height), ('width', width))):
        k, s, d = kernel[axis], stride[axis], dilation[axis]
        if border == 'shift':
            if s != 1:
                raise ValueError(f"{op}: stride={stride} with border='shift' is not supported; expected stride 1")
            if k % 2 == 0:
                raise ValueError(f"{op}: kernel_size={kernel} with border='shift' must be odd (NATTEN windows)")
            message = (
                f'{op}: kernel_size={kernel} x dilation={dilation} does not fit the map {name} {length}; with '
                f"border='shift' every dilation group needs kernel members (kernel * dilation <= {length})"
            )
            fits = k * d <= length
            if not isinstance(fits, bool):
                assert_in_graph(fits, message)
            elif not fits:
                raise ValueError(message)
        else:
            if s > k:
                raise ValueError(f'{op}: stride={stride} larger than kernel_size={kernel}; expected stride <= kernel')
            if s == 1 and k % 2 == 0:
                raise ValueError(
                    f"{op}: kernel_size={kernel} with stride 1 and border='zero' must be odd (a window centred on "
                    'the query)'
                )
    return Geometry(height, width, kernel, stride, dilation, border)


def _check_qkv(op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None, v_name: str = 'v') -> None:
    if q.dim() != 5:
        raise ValueError(f'{op}: q must be 5-D (B, heads, H, W, d_qk); got shape {tuple(q.shape)}')
    if not q.is_floating_point():
        raise TypeError(f'{op}: q must be a floating-point tensor; got dtype {q.dtype}')
    if k.shape != q.shape:
        raise ValueError(f'{op}: k shape {tuple(k.shape)} must equal q shape {tuple(q.shape)}')
    tensors = [('k', k)]
    if v is not None:
        if v.dim() != 5 or v.shape[:4] != q.shape[:4]:
            raise ValueError(
                f'{op}: {v_name} shape {tuple(v.shape)} must be (B, heads, H, W, d) = {tuple(q.shape[:4])} + (d,)'
            )
        tensors.append((v_name, v))
    for name, t in tensors:
        if t.dtype != q.dtype:
            raise TypeError(f'{op}: {name} dtype {t.dtype} differs from q dtype {q.dtype}; expected one dtype')
        if t.device != q.device:
            raise ValueError(f'{op}: {name} is on {t.device} but q is on {q.device}; expected one device')


def _check_bias(op: str, bias: torch.Tensor | None, ref: torch.Tensor, geo: Geometry) -> str | None:
    """'table', 'query' or None; validates the shape against ``ref`` (B, heads, H, W, .)."""
    if bias is None:
        return None
    if bias.dtype != ref.dtype:
        raise TypeError(f'{op}: bias dtype {bias.dtype} differs from the input dtype {ref.dtype}')
    if bias.device != ref.device:
        raise ValueError(f'{op}: bias is on {bias.device} but the inputs are on {ref.device}')
    batch, heads, height, width = ref.shape[:4]
    kh, kw = geo.kernel
    if bias.dim() == 3:
        expected = (heads, 2 * kh - 1, 2 * kw - 1)
        if tuple(bias.shape) != expected:
            raise ValueError(f'{op}: bias table shape {tuple(bias.shape)} must be (heads, 2*kh-1, 2*kw-1) = {expected}')
        if geo.border == 'zero' and any(s > 1 and d > 1 for s, d in zip(geo.stride, geo.dilation)):
            raise ValueError(
                f"{op}: a bias table with border='zero', stride={geo.stride} and dilation={geo.dilation} is undefined "
                '(key offsets are not multiples of the dilation); pass a per-query bias (B, heads, H, W, K) instead'
            )
        return 'table'
    full = (batch, heads, height, width, kh * kw)
    if bias.dim() != 5 or any(b not in (1, f) for b, f in zip(bias.shape, full)):
        raise ValueError(
            f'{op}: bias shape {tuple(bias.shape)} must be a table (heads, 2*kh-1, 2*kw-1) or 5-D broadcastable to '
            f'(B, heads, H, W, kh*kw) = {full}'
        )
    return 'query'


def _check_attn(op: str, attn: torch.Tensor, v: torch.Tensor, geo_slots: int) -> None:
    if attn.dim() != 5 or v.dim() != 5 or attn.shape[:4] != v.shape[:4] or attn.shape[-1] != geo_slots:
        raise ValueError(
            f'{op}: attn shape {tuple(attn.shape)} must be (B, heads, H, W, kh*kw) = '
            f'{tuple(v.shape[:4]) if v.dim() == 5 else "(v.shape[:4])"} + ({geo_slots},) with v (B, heads, H, W, d_v); '
            f'got v shape {tuple(v.shape)}'
        )
    if not attn.is_floating_point() or attn.dtype != v.dtype:
        raise TypeError(f'{op}: attn dtype {attn.dtype} must equal v dtype {v.dtype} (floating point)')
    if attn.device != v.device:
        raise ValueError(f'{op}: attn is on {attn.device} but v is on {v.device}; expected one device')


def _backend_module(chosen: str, tensor: torch.Tensor):
    """The Python implementation for ``chosen``, or None when the registered CPU operator runs the call (``'torch'`` on
    CPU); ``'triton'`` calls the registered CUDA operators (``triton_ops.py``) through ``backends/local_triton``."""
    if chosen == 'torch':
        return None if tensor.device.type == 'cpu' and ops.enabled() else local_torch
    if chosen == 'triton':  # the registered triton_ops (CPU tensors: the interpreter, TRITON_INTERPRET=1)
        return local_triton if ops.enabled() else local_torch  # ONNX export: the traceable PyTorch path
    return local_reference if chosen == 'reference' else local_flex


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return local_reference.softmax(logits)


# ---------------------------------------------------------------------------------------------------------------------
# Public operators.

_GEOMETRY_ARGS = """
        kernel_size: window size ``kh`` x ``kw``, an int or an ``(h, w)`` pair (odd for ``'shift'`` and for
            stride-1 ``'zero'`` windows); ``K = kh * kw`` slots per query.
        stride: query tile size, an int or a pair: 1 = sliding neighbourhood, ``= kernel_size`` = blocked windows,
            in between = halo-style tiles sharing one key window (``'zero'`` only).
        dilation: step between window slots, an int or a pair (may be a symbolic size under torch.export).
        border: ``'shift'`` (NATTEN: the window is shifted to stay inside the map) or ``'zero'`` (outside slots
            are zero keys / values that take part in the softmax); see the module docstring.
        backend: None / ``'auto'``, ``'reference'``, ``'torch'``, ``'triton'`` or ``'flex'`` (``_backend.py``)."""
_BIAS_ARG = """
        bias: optional additive logits bias: a relative-position table ``(heads, 2*kh-1, 2*kw-1)`` or a 5-D
            tensor broadcastable to ``(B, heads, H, W, K)``; same dtype and device as ``q``."""


def _document(fn):
    fn.__doc__ = fn.__doc__.replace('{geometry}', _GEOMETRY_ARGS.strip('\n')).replace('{bias}', _BIAS_ARG.strip('\n'))
    return fn


@_document
def local_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    kernel_size: _Size,
    *,
    stride: _Size = 1,
    dilation: _Size = 1,
    border: str = 'shift',
    bias: torch.Tensor | None = None,
    scale: float = 1.0,
    backend: str | None = None,
) -> torch.Tensor:
    """Window logits ``scale * q . k + bias``: ``(B, heads, H, W, kh*kw)``, slots in row-major ``(ky, kx)`` order.

        Outside-the-map slots ('zero') hold ``bias`` only. NATTEN's ``na2d_qk`` for ``border='shift'`` (with
        ``scale=1``: NATTEN does not scale).

        Args:
            q: queries ``(B, heads, H, W, d_qk)``, floating point.
            k: keys, the shape, dtype and device of ``q``.
    {geometry}
    {bias}
            scale: factor on ``q . k`` before the bias (default 1, NATTEN's).
    """
    op = 'local_scores'
    _check_qkv(op, q, k, None)
    geo = _geometry(op, q.shape[2], q.shape[3], kernel_size, stride, dilation, border)
    kind = _check_bias(op, bias, q, geo)
    chosen = resolve_backend(backend, q, op, _SUPPORTED)
    module = _backend_module(chosen, q)
    if module is None:
        return ops.local_scores(q, k, bias, *ops.geometry_args(geo), float(scale))
    return module.scores(q, k, geo, bias, kind, scale)


@_document
def local_aggregate(
    attn: torch.Tensor,
    v: torch.Tensor,
    kernel_size: _Size,
    *,
    stride: _Size = 1,
    dilation: _Size = 1,
    border: str = 'shift',
    backend: str | None = None,
) -> torch.Tensor:
    """``out[b, n, y, x] = sum_j attn[b, n, y, x, j] * v[b, n, key_j(y, x)]``: ``(B, heads, H, W, d_v)``.

        Outside-the-map slots ('zero') contribute nothing (their value is zero). NATTEN's ``na2d_av`` for
        ``border='shift'``.

        Args:
            attn: window weights ``(B, heads, H, W, kh*kw)`` (any weights, not necessarily normalised), the dtype and
                device of ``v``.
            v: values ``(B, heads, H, W, d_v)``, floating point.
    {geometry}
    """
    op = 'local_aggregate'
    geo_slots = math.prod(_pair(kernel_size, 'kernel_size', op))
    _check_attn(op, attn, v, geo_slots)
    geo = _geometry(op, v.shape[2], v.shape[3], kernel_size, stride, dilation, border)
    chosen = resolve_backend(backend, v, op, _SUPPORTED)
    module = _backend_module(chosen, v)
    if module is None:
        return ops.local_aggregate(attn, v, *ops.geometry_args(geo))
    return module.aggregate(attn, v, geo)


@_document
def local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: _Size,
    *,
    stride: _Size = 1,
    dilation: _Size = 1,
    border: str = 'shift',
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """``softmax(scale * q . k_window + bias) @ v_window``: ``(B, heads, H, W, d_v)``.

        The softmax runs over the ``kh*kw`` window slots, including outside-the-map slots for ``border='zero'`` (zero
        keys and values, never masked). See the module docstring.

        Args:
            q: queries ``(B, heads, H, W, d_qk)``, floating point.
            k: keys, the shape, dtype and device of ``q``.
            v: values ``(B, heads, H, W, d_v)``, the dtype and device of ``q``.
    {geometry}
    {bias}
            scale: factor on ``q . k`` before the bias; default ``d_qk ** -0.5``.
    """
    op = 'local_attention'
    _check_qkv(op, q, k, v)
    geo = _geometry(op, q.shape[2], q.shape[3], kernel_size, stride, dilation, border)
    kind = _check_bias(op, bias, q, geo)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    chosen = resolve_backend(backend, q, op, _SUPPORTED)
    module = _backend_module(chosen, q)
    if module is None:
        return ops.local_attention(q, k, v, bias, *ops.geometry_args(geo), float(scale))
    return module.attention(q, k, v, geo, bias, kind, scale)


@_document
def local_probs(
    q: torch.Tensor,
    k: torch.Tensor,
    kernel_size: _Size,
    *,
    stride: _Size = 1,
    dilation: _Size = 1,
    border: str = 'shift',
    bias: torch.Tensor | None = None,
    scale: float = 1.0,
    backend: str | None = None,
) -> torch.Tensor:
    """``softmax(local_scores(q, k, ...))``, prepared for :func:`local_aggregate_probs` (any number of times).

        For families that apply one attention map to several values (A2Mamba: the values, then the SSM's hidden states).
        The layout is the backend's: ``(B, heads, H, W, K)`` window slots on 'reference' / 'triton' / 'flex'; on 'torch'
        the tiled path's query tiles by key regions ``(B, heads, tiles, T, R)``, zero off each query's window, so
        aggregating skips re-tiling and scattering the map each time. Pass it only to ``local_aggregate_probs`` with the
        same geometry and backend; for the window layout itself use ``local_scores``.

        Args:
            q: queries ``(B, heads, H, W, d_qk)``, floating point.
            k: keys, the shape, dtype and device of ``q``.
    {geometry}
    {bias}
            scale: factor on ``q . k`` before the bias (default 1, as :func:`local_scores`).
    """
    op = 'local_probs'
    _check_qkv(op, q, k, None)
    geo = _geometry(op, q.shape[2], q.shape[3], kernel_size, stride, dilation, border)
    kind = _check_bias(op, bias, q, geo)
    chosen = resolve_backend(backend, q, op, _SUPPORTED)
    if chosen != 'torch':
        scores = local_scores(q, k, kernel_size, stride=stride, dilation=dilation, border=border, bias=bias,
                              scale=scale, backend=chosen)  # fmt: skip
        return _softmax(scores)
    # the tiled layout's shape is known for eager sizes only: symbolic ones (export) take the traceable Python path
    if q.device.type == 'cpu' and static(geo) and ops.enabled():
        return ops.local_probs(q, k, bias, *ops.geometry_args(geo), float(scale))
    return local_torch.probs(q, k, geo, bias, kind, scale)


@_document
def local_aggregate_probs(
    probs: torch.Tensor,
    v: torch.Tensor,
    kernel_size: _Size,
    *,
    stride: _Size = 1,
    dilation: _Size = 1,
    border: str = 'shift',
    backend: str | None = None,
) -> torch.Tensor:
    """:func:`local_aggregate` of maps made by :func:`local_probs`: ``(B, heads, H, W, d_v)``.

        Args:
            probs: the result of :func:`local_probs` with the same geometry and backend (its layout is the backend's).
            v: values ``(B, heads, H, W, d_v)``, floating point, the dtype and device of ``probs``.
    {geometry}
    """
    op = 'local_aggregate_probs'
    chosen = resolve_backend(backend, v, op, _SUPPORTED)
    if chosen != 'torch':
        return local_aggregate(probs, v, kernel_size, stride=stride, dilation=dilation, border=border, backend=chosen)
    if v.dim() != 5 or not v.is_floating_point():
        raise ValueError(f'{op}: v must be a 5-D floating point (B, heads, H, W, d_v) tensor; got {tuple(v.shape)}')
    geo = _geometry(op, v.shape[2], v.shape[3], kernel_size, stride, dilation, border)
    if static(*probs.shape, *v.shape, geo):
        expected = local_tiled.probs_shape(geo, *v.shape[:2])
        if tuple(probs.shape) != expected:
            raise ValueError(
                f'{op}: probs has shape {tuple(probs.shape)}; expected {expected}, the layout local_probs gives on '
                "the 'torch' backend for this geometry (maps in window layout go to local_aggregate)"
            )
    if probs.dtype != v.dtype or probs.device != v.device:
        raise ValueError(f'{op}: probs is {probs.dtype} on {probs.device} but v is {v.dtype} on {v.device}')
    if v.device.type == 'cpu' and static(geo) and ops.enabled():
        return ops.local_aggregate_probs(probs, v, *ops.geometry_args(geo))
    return local_torch.aggregate_probs(probs, v, geo)
