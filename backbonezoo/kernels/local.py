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

Backends (``backend=`` or env ``BACKBONEZOO_KERNEL_BACKEND``, see ``_backend.py``): ``'reference'`` gathers every
window (the specification, not fast); ``'torch'`` is the fast PyTorch path (query tiles attending to one shared key
region through ``F.scaled_dot_product_attention``: blocked / halo windows as they are, neighbourhoods with a mask;
no per-query window is materialised; stride-1 ``'zero'`` 3x3 windows, MSA-Conv's small form, as shifted views of
the zero-padded map instead); ``'triton'`` runs the fused kernels of ``triton_local.py`` (CUDA tensors, or
CPU under ``TRITON_INTERPRET=1``). Every backend has a backward.

The index tables of the reference and fast paths are computed with tensor ops from the map size (cached per size in
eager mode, rebuilt in the graph under torch.compile / torch.export), so exported graphs keep H / W (and a
size-dependent dilation) symbolic: ``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)`` runs at any size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.fx.experimental.symbolic_shapes import optimization_hint

from ._backend import resolve_backend
from ._shapes import assert_in_graph, size_oblivious

__all__ = ['local_aggregate', 'local_attention', 'local_scores']

BORDERS = ('shift', 'zero')
_Size = int | tuple[int, int]


def _pair(value: _Size, name: str, op: str) -> tuple[int, int]:
    # SymInts too: under dynamic-shape export a size-dependent dilation (A2Mamba's) is symbolic
    pair = (value, value) if isinstance(value, (int, torch.SymInt)) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ValueError(f'{op}: {name}={value!r} must be a positive int or a pair of positive ints')
    return pair


def _tensor_cache(maxsize: int):
    """``functools.lru_cache`` for functions that build index tensors, bypassed while torch.compile / torch.export
    trace or when a size is symbolic: tensors made under tracing are fake or graph-bound and must not leak into later
    eager calls, and symbolic sizes must stay in the graph (built from them with tensor ops) to export dynamic H / W."""

    def decorate(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def wrapper(*args):
            if torch.compiler.is_compiling() or not _static(*args):
                return fn(*args)
            return cached(*args)

        wrapper.cache_clear = cached.cache_clear
        return wrapper

    return decorate


def _static(*args) -> bool:
    """True when no argument is (or holds, like ``_Geometry``) a symbolic size."""
    try:
        hash(args)  # SymInts are unhashable
    except TypeError:
        return False
    return True


def _cdiv(a, b):
    """Ceil division for ints and SymInts alike."""
    return (a + b - 1) // b


def _mod(x: torch.Tensor, divisor) -> torch.Tensor:
    """``x % divisor``; through floor division for a symbolic divisor (the ONNX exporter cannot translate a remainder
    by a SymInt)."""
    return x % divisor if isinstance(divisor, int) else x - x // divisor * divisor


# ---------------------------------------------------------------------------------------------------------------------
# Per-axis window geometry: the specification in index form.


@functools.lru_cache(maxsize=512)
def axis_windows(length: int, kernel: int, stride: int, dilation: int, border: str) -> tuple[tuple, tuple]:
    """Key positions and bias-table rows of every query along one axis.

    Returns ``(keys, rel)``, each ``length`` tuples of ``kernel`` ints: ``keys[i][j]`` is the position of window slot
    ``j`` of query ``i`` (``-1`` when outside the map, 'zero' only); ``rel[i][j]`` the bias-table row
    (``-1`` where no table applies). Arguments are assumed valid (see ``_geometry``).
    """
    keys, rel = [], []
    for i in range(length):
        if border == 'shift':
            group, pos = _mod(i, dilation), i // dilation
            group_len = (length - group + dilation - 1) // dilation
            start = min(max(pos - kernel // 2, 0), group_len - kernel)
            keys.append(tuple(group + (start + j) * dilation for j in range(kernel)))
            rel.append(tuple(start + j - pos + kernel - 1 for j in range(kernel)))
        else:
            start = (i // stride) * stride - dilation * ((kernel - stride) // 2)
            row = tuple(start + j * dilation for j in range(kernel))
            keys.append(tuple(p if 0 <= p < length else -1 for p in row))
            offsets = [p - i for p in row]
            if all(o % dilation == 0 for o in offsets):
                rel.append(tuple(o // dilation + kernel - 1 for o in offsets))
            else:
                rel.append((-1,) * kernel)
    return tuple(keys), tuple(rel)


@dataclass(frozen=True)
class _Geometry:
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    border: str

    @property
    def slots(self) -> int:
        return self.kernel[0] * self.kernel[1]

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(keys_h (H, kh), keys_w (W, kw), rel_h, rel_w)`` as long tensors on ``device``."""
        return _tables(self, device)


@_tensor_cache(maxsize=256)
def _tables(geo: _Geometry, device: torch.device) -> tuple[torch.Tensor, ...]:
    (keys_h, rel_h), (keys_w, rel_w) = (
        _axis_window_tensors(length, geo.kernel[a], geo.stride[a], geo.dilation[a], geo.border, device)
        for a, length in enumerate((geo.height, geo.width))
    )
    return keys_h, keys_w, rel_h, rel_w


def _axis_window_tensors(
    length: int, kernel: int, stride: int, dilation: int, border: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``axis_windows`` as ``(length, kernel)`` long tensors built with tensor ops from ``length``, so a symbolic
    length (torch.export with dynamic H / W) stays symbolic instead of being baked into the graph."""
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(kernel, device=device)
    if border == 'shift':
        group, pos = _mod(i, dilation), i // dilation
        members = (length - group + dilation - 1) // dilation
        start = torch.minimum((pos - kernel // 2).clamp_min(0), members - kernel)
        return group + (start + j) * dilation, start + j - pos + kernel - 1
    raw = (i // stride) * stride - dilation * ((kernel - stride) // 2) + j * dilation
    offsets = raw - i  # all or none of a row's offsets are multiples of the dilation
    keys = torch.where((raw >= 0) & (raw < length), raw, -1)
    return keys, torch.where(_mod(offsets, dilation) == 0, offsets // dilation + kernel - 1, -1)


def _geometry(
    op: str, height: int, width: int, kernel_size: _Size, stride: _Size, dilation: _Size, border: str
) -> _Geometry:
    hashable = lambda x: tuple(x) if isinstance(x, list) else x
    args = (op, height, width, hashable(kernel_size), hashable(stride), hashable(dilation), border)
    # traced or symbolic sizes (dynamic-shape export): checked uncached, the checks become shape guards
    if torch.compiler.is_compiling() or not _static(*args):
        return _checked_geometry.__wrapped__(*args)
    return _checked_geometry(*args)


@functools.lru_cache(maxsize=1024)  # per-call validation is pure Python: cache it (errors are never cached)
def _checked_geometry(
    op: str, height: int, width: int, kernel_size: _Size, stride: _Size, dilation: _Size, border: str
) -> _Geometry:
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
    return _Geometry(height, width, kernel, stride, dilation, border)


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


def _check_bias(op: str, bias: torch.Tensor | None, ref: torch.Tensor, geo: _Geometry) -> str | None:
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


# ---------------------------------------------------------------------------------------------------------------------
# Reference: gather every window (B, heads, H, W, kh, kw, d). The specification; memory-hungry by design.


def _gather_windows(x: torch.Tensor, keys_h: torch.Tensor, keys_w: torch.Tensor) -> torch.Tensor:
    """(B, heads, H, W, d) -> (B, heads, H, W, kh, kw, d); outside positions (-1) read a zero row."""
    height, width = x.shape[2:4]
    padded = F.pad(x, (0, 0, 0, 1, 0, 1))  # index H / W is the zero row / column
    rows = torch.where(keys_h >= 0, keys_h, height)
    cols = torch.where(keys_w >= 0, keys_w, width)
    return padded[:, :, rows[:, None, :, None], cols[None, :, None, :]]


def _bias_logits(bias: torch.Tensor, kind: str, geo: _Geometry, device: torch.device) -> torch.Tensor:
    """The bias as a tensor broadcastable to (B, heads, H, W, K)."""
    if kind == 'query':
        return bias
    _, _, rel_h, rel_w = geo.tables(device)
    table = bias[:, rel_h[:, None, :, None], rel_w[None, :, None, :]]  # (heads, H, W, kh, kw)
    return table.flatten(-2).unsqueeze(0)


def _reference_scores(q, k, geo, bias, kind, scale):
    keys_h, keys_w, _, _ = geo.tables(q.device)
    k_win = _gather_windows(k, keys_h, keys_w).flatten(4, 5)  # (B, heads, H, W, K, d)
    logits = torch.einsum('bnhwc,bnhwkc->bnhwk', q, k_win) * scale
    if kind is not None:
        logits = logits + _bias_logits(bias, kind, geo, q.device)
    return logits


def _reference_aggregate(attn, v, geo):
    keys_h, keys_w, _, _ = geo.tables(v.device)
    v_win = _gather_windows(v, keys_h, keys_w).flatten(4, 5)
    return torch.einsum('bnhwk,bnhwkc->bnhwc', attn, v_win)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float().softmax(-1).to(logits.dtype)
    return logits.softmax(-1)


# ---------------------------------------------------------------------------------------------------------------------
# Public operators.


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
    ``scale=1``: NATTEN does not scale). See the module docstring for the window rules and bias forms.
    """
    op = 'local_scores'
    _check_qkv(op, q, k, None)
    geo = _geometry(op, q.shape[2], q.shape[3], kernel_size, stride, dilation, border)
    kind = _check_bias(op, bias, q, geo)
    chosen = resolve_backend(backend, q, op)
    if chosen == 'reference':
        return _reference_scores(q, k, geo, bias, kind, scale)
    if chosen == 'triton':
        from .triton_local import triton_scores

        return triton_scores(q, k, geo, bias, kind, scale)
    return _torch_scores(q, k, geo, bias, kind, scale)


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

    ``attn`` is ``(B, heads, H, W, kh*kw)`` (any weights, not necessarily normalised); outside-the-map slots
    ('zero') contribute nothing (their value is zero). NATTEN's ``na2d_av`` for ``border='shift'``.
    """
    op = 'local_aggregate'
    geo_slots = math.prod(_pair(kernel_size, 'kernel_size', op))
    _check_attn(op, attn, v, geo_slots)
    geo = _geometry(op, v.shape[2], v.shape[3], kernel_size, stride, dilation, border)
    chosen = resolve_backend(backend, v, op)
    if chosen == 'reference':
        return _reference_aggregate(attn, v, geo)
    if chosen == 'triton':
        from .triton_local import triton_aggregate

        return triton_aggregate(attn, v, geo)
    return _torch_aggregate(attn, v, geo)


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

    ``scale`` defaults to ``d_qk ** -0.5``. The softmax runs over the ``kh*kw`` window slots, including
    outside-the-map slots for ``border='zero'`` (zero keys and values, never masked). See the module docstring.
    """
    op = 'local_attention'
    _check_qkv(op, q, k, v)
    geo = _geometry(op, q.shape[2], q.shape[3], kernel_size, stride, dilation, border)
    kind = _check_bias(op, bias, q, geo)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    chosen = resolve_backend(backend, q, op)
    if chosen == 'reference':
        attn = _softmax(_reference_scores(q, k, geo, bias, kind, scale))
        return _reference_aggregate(attn, v, geo)
    if chosen == 'triton':
        from .triton_local import triton_attention

        return triton_attention(q, k, v, geo, bias, kind, scale)
    return _torch_attention(q, k, v, geo, bias, kind, scale)


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
    The layout is the backend's: ``(B, heads, H, W, K)`` window slots on 'reference' / 'triton'; on 'torch' the fast
    path's query tiles by key regions ``(B, heads, tiles, T, R)``, zero off each query's window, so aggregating
    skips re-tiling and scattering the map each time. Pass it only to ``local_aggregate_probs`` with the same
    geometry and backend; for the window layout itself use ``local_scores``.
    """
    op = 'local_probs'
    _check_qkv(op, q, k, None)
    geo = _geometry(op, q.shape[2], q.shape[3], kernel_size, stride, dilation, border)
    kind = _check_bias(op, bias, q, geo)
    chosen = resolve_backend(backend, q, op)
    if chosen != 'torch':
        scores = local_scores(q, k, kernel_size, stride=stride, dilation=dilation, border=border, bias=bias,
                              scale=scale, backend=chosen)  # fmt: skip
        return _softmax(scores)
    tiling = _tiling(geo, q.device, _split_tile(geo))
    q_t = tiling.tile(q)
    logits = torch.matmul(q_t if scale == 1.0 else q_t * scale, tiling.regions(k).transpose(-1, -2))
    mask = tiling.bias(bias if kind == 'table' else None, q.dtype)  # (heads | 1, tiles, T, R): -inf off the window
    if kind == 'query':
        query_bias = tiling.scatter(tiling.tile(bias.expand(*q.shape[:4], -1)))
        mask = query_bias if mask is None else query_bias + mask
    # in place: the logits are the matmul's fresh output (its backward reads only its inputs)
    return _softmax(logits if mask is None else logits.add_(mask))


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
    """:func:`local_aggregate` of maps made by :func:`local_probs` (same geometry and backend): ``(B, heads, H, W,
    d_v)``."""
    op = 'local_aggregate_probs'
    chosen = resolve_backend(backend, v, op)
    if chosen != 'torch':
        return local_aggregate(probs, v, kernel_size, stride=stride, dilation=dilation, border=border, backend=chosen)
    if v.dim() != 5 or not v.is_floating_point():
        raise ValueError(f'{op}: v must be a 5-D floating point (B, heads, H, W, d_v) tensor; got {tuple(v.shape)}')
    geo = _geometry(op, v.shape[2], v.shape[3], kernel_size, stride, dilation, border)
    tiling = _tiling(geo, v.device, _split_tile(geo))
    if _static(*probs.shape, *v.shape):
        expected = (*v.shape[:2], tiling.tiles, tiling.queries, tiling.region)
        if tuple(probs.shape) != expected:
            raise ValueError(
                f'{op}: probs has shape {tuple(probs.shape)}; expected {expected}, the layout local_probs gives on '
                "the 'torch' backend for this geometry (maps in window layout go to local_aggregate)"
            )
    if probs.dtype != v.dtype or probs.device != v.device:
        raise ValueError(f'{op}: probs is {probs.dtype} on {probs.device} but v is {v.dtype} on {v.device}')
    return tiling.untile(torch.matmul(probs, tiling.regions(v)))


# ---------------------------------------------------------------------------------------------------------------------
# Fast PyTorch path: query tiles attending to one gathered key region each, through matmuls / SDPA.
#
# Per axis, queries are cut into tiles; tile ``t`` holds queries ``qpos[t]`` and reads the key positions ``pos[t]``
# (its region); ``slot[t, a, r]`` is the window slot of region entry ``r`` for query ``a`` (-1: not in its window).
# Strided 'zero' problems (halo / blocked windows): a tile = the ``stride`` queries sharing one window, the region =
# that window, no mask. Stride 1 (neighbourhoods): each dilation group is tiled on its own (group positions are
# ``g + p * d``, so dilation costs nothing extra), a tile holds ``_NEIGHBOURHOOD_TILE`` consecutive group members, the
# region is the union of their windows (tile + kernel - 1 members) and an additive -inf mask keeps every query
# inside its own window. That trades ~3-4x the minimal flops for matmul / SDPA speed and never materialises
# per-query windows. Everything is three ``index_select`` copies (queries, key / value regions, output).

_NEIGHBOURHOOD_TILE = 8
# local_scores / local_aggregate (no fused SDPA to feed): a tile's matmul and its scattered attention cost ``region``
# per query, so smaller tiles do less work (4: 100 region entries per query at kernel 7, against 196 at 8) as long
# as the region is not already the whole dilation group, where fewer, larger tiles win (``_split_tile``)
_SPLIT_TILE = 4


@dataclass(frozen=True)
class _AxisTiles:
    tile: int
    count: int
    region: int
    qpos: torch.Tensor  # (count, tile) query positions, -1 past the group / map end (dropped rows)
    pos: torch.Tensor  # (count, region) key positions, -1 outside the map
    slot: torch.Tensor  # (count, tile, region) window slot of each region entry, -1 off the window
    regpos: torch.Tensor  # (count, tile, kernel) region entry of each window slot
    rel: torch.Tensor  # (count, tile, region) bias-table row of each region entry (clamped where unused)
    tile_of: torch.Tensor  # (length,) tile of each position
    slot_of: torch.Tensor  # (length,) row of each position inside its tile
    uniform: bool  # every query's window is its whole region, in slot order
    all_inside: bool  # no region entry falls outside the map (decided in Python: no data-dependent branch later)


@_tensor_cache(maxsize=512)
def _axis_tiles(
    length: int, kernel: int, stride: int, dilation: int, border: str, tile: int, device: torch.device
) -> _AxisTiles:
    """``tile=0``: 'zero' tiles of ``stride`` queries sharing one window; else neighbourhood tiles per dilation group.

    Built with tensor ops from ``length`` (symbolic under dynamic-shape export). All groups share one tile count, tile
    and region size (uneven groups: region entries past a group's end read zeros and are masked like any entry off
    the window; tiles past a group's end hold only dropped rows).
    """
    arange = functools.partial(torch.arange, device=device)
    static = isinstance(length, int)
    position = arange(length)
    if tile == 0:
        count, tile, region = _cdiv(length, stride), stride, kernel
        first = arange(count)[:, None] * stride  # (count, 1)
        query = first + arange(stride)  # (count, stride)
        raw = first - dilation * ((kernel - stride) // 2) + arange(kernel) * dilation  # (count, kernel)
        slot = arange(kernel).expand(count, stride, kernel)
        offsets = raw[:, None, :] - query[:, :, None]  # table row = offset / dilation + kernel - 1 where integral
        rel = torch.where(_mod(offsets, dilation) == 0, offsets // dilation + kernel - 1, 0)
        qpos, regpos, uniform = torch.where(query < length, query, -1), slot, True
        pos = torch.where((raw >= 0) & (raw < length), raw, -1)
        tile_of, slot_of = position // stride, position % stride
        low = dilation * ((kernel - stride) // 2)
        all_inside = static and low == 0 and (count - 1) * stride - low + (kernel - 1) * dilation < length
    else:
        longest = _cdiv(length, dilation)
        if static:  # small maps: smaller tiles / regions
            tile = min(tile, longest)
        else:  # symbolic (export): keep >= 2 tiles per group at the example size, or export specialises the size
            tile = max(1, min(tile, optimization_hint(longest) // 2))
        region = min(tile + kernel - 1, longest) if static and border == 'shift' else tile + kernel - 1
        count = _cdiv(longest, tile)
        group = arange(dilation)[:, None, None]  # (dilation, 1, 1)
        members = (length - group + dilation - 1) // dilation
        first = arange(count)[None, :, None] * tile  # (1, count, 1)
        member = first + arange(tile)  # (1, count, tile) group position of each query
        start = first - kernel // 2  # region start, group units
        window = member - kernel // 2  # window start of each query
        if border == 'shift':  # shifted to stay inside the group (dropped rows: a valid window too, finite softmax)
            start = torch.minimum(start, members - region).clamp_min(0)
            window = torch.minimum(window.clamp_min(0), members - kernel)
        to_map = lambda p: torch.where((p >= 0) & (p < members), group + p * dilation, -1)
        qpos = to_map(member.expand(dilation, -1, -1)).flatten(0, 1)
        entry = start + arange(region)  # (., count, region) group position of each region entry
        pos = to_map(entry).expand(dilation, -1, -1).flatten(0, 1)
        offset = (window - start).expand(dilation, -1, -1)[..., None]  # (dilation, count, tile, 1)
        diff = arange(region) - offset
        on_window = (diff >= 0) & (diff < kernel)
        slot = torch.where(on_window, diff, -1).flatten(0, 1)
        regpos = (offset + arange(kernel)).flatten(0, 1)
        rel = entry[..., None, :] - member[..., None] + kernel - 1  # key - query + kernel - 1, group units
        rel = torch.where(on_window, rel, 0).clamp(0, 2 * kernel - 2).flatten(0, 1)
        tile_of = _mod(position, dilation) * count + position // dilation // tile
        count, uniform = count * dilation, False
        slot_of = position // dilation % tile
        all_inside = static and border == 'shift' and length // dilation >= region
    return _AxisTiles(tile, count, region, qpos, pos, slot, regpos, rel, tile_of, slot_of, uniform, all_inside)


class _Tiling:
    """2-D tiling of one problem: flat gather indices and mask index, built once per geometry and device."""

    def __init__(self, geo: _Geometry, device: torch.device, tile: int = _NEIGHBOURHOOD_TILE):
        self.geo = geo
        height, width = geo.height, geo.width
        neighbourhood = geo.stride == (1, 1)
        ah, aw = self.axes = [
            _axis_tiles(length, geo.kernel[a], geo.stride[a], geo.dilation[a], geo.border,
                        tile if neighbourhood else 0, device)
            for a, length in enumerate((height, width))
        ]  # fmt: skip
        self.uniform = ah.uniform and aw.uniform
        self.tiles, self.queries, self.region = ah.count * aw.count, ah.tile * aw.tile, ah.region * aw.region
        inside = (ah.pos[:, None, :, None] >= 0) & (aw.pos[None, :, None, :] >= 0)
        self.outside = None if ah.all_inside and aw.all_inside else ~inside.flatten(2, 3).flatten(0, 1).unsqueeze(-1)
        rows, cols = ah.pos.clamp_min(0), aw.pos.clamp_min(0)  # outside entries are zeroed after the gather
        self.region_index = (rows[:, None, :, None] * width + cols[None, :, None, :]).flatten()
        # strided tilings of whole tiles are plain reshapes (faster than row gathers for narrow heads)
        self.reshaped = not neighbourhood
        qh, qw = ah.qpos.clamp_min(0), aw.qpos.clamp_min(0)  # dropped rows read any query
        self.query_index = (qh[:, None, :, None] * width + qw[None, :, None, :]).flatten()
        tile = ah.tile_of[:, None] * aw.count + aw.tile_of[None, :]  # where each output position sits in the tiling
        self.output_index = ((tile * ah.tile + ah.slot_of[:, None]) * aw.tile + aw.slot_of[None, :]).flatten()
        idx = ah.regpos[:, None, :, None, :, None] * aw.region + aw.regpos[None, :, None, :, None, :]
        self.regpos = idx.flatten(4, 5).flatten(2, 3).flatten(0, 1)  # (tiles, T, K)
        entries = (2 * geo.kernel[0] - 1) * (2 * geo.kernel[1] - 1)
        ok = (ah.slot[:, None, :, None, :, None] >= 0) & (aw.slot[None, :, None, :, None, :] >= 0)
        rel = ah.rel[:, None, :, None, :, None] * (2 * geo.kernel[1] - 1) + aw.rel[None, :, None, :, None, :]
        index = torch.where(ok, rel, entries)  # entry `entries` of the extended table is -inf
        self.bias_index = index.flatten(4, 5).flatten(2, 3).flatten(0, 1)  # (tiles, T, R)
        self.masks: dict[torch.dtype, torch.Tensor] = {}

    def tile(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, H, W, c) -> (B, n, tiles, T, c)."""
        if self.reshaped:
            return self._blocks(x, (0, 0), (self.axes[0].tile, self.axes[1].tile), (1, 1))
        out = x.flatten(2, 3).index_select(2, self.query_index)
        return out.view(*x.shape[:2], self.tiles, self.queries, x.shape[-1])

    def untile(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, tiles, T, c) -> (B, n, H, W, c)."""
        if self.reshaped:
            (ah, aw), (height, width) = self.axes, (self.geo.height, self.geo.width)
            x = x.unflatten(3, (ah.tile, aw.tile)).unflatten(2, (ah.count, aw.count)).permute(0, 1, 2, 4, 3, 5, 6)
            return x.flatten(4, 5).flatten(2, 3)[:, :, :height, :width]
        out = x.flatten(2, 3).index_select(2, self.output_index)
        return out.view(*x.shape[:2], self.geo.height, self.geo.width, x.shape[-1])

    def regions(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, H, W, c) -> (B, n, tiles, R, c): every tile's key region, zeros outside the map."""
        if self.reshaped:
            geo = self.geo
            low = tuple(d * ((k - s) // 2) for k, s, d in zip(geo.kernel, geo.stride, geo.dilation))
            span = tuple((k - 1) * d + 1 for k, d in zip(geo.kernel, geo.dilation))
            return self._blocks(x, low, span, geo.dilation)
        out = x.flatten(2, 3).index_select(2, self.region_index)
        out = out.view(*x.shape[:2], self.tiles, self.region, x.shape[-1])
        return out if self.outside is None else out.masked_fill_(self.outside, 0)  # in place: a fresh gather

    def _blocks(self, x: torch.Tensor, low: tuple, span: tuple, dilation: tuple) -> torch.Tensor:
        """Windows of ``span`` positions from ``t * stride - low``, every ``dilation``-th kept, zeros outside the map:
        (B, n, tiles, R, c) through pad + unfold views and one copy."""
        (ah, aw), (height, width) = self.axes, x.shape[2:4]
        (low_h, low_w), (span_h, span_w), (dh, dw) = low, span, dilation
        high_h = (ah.count - 1) * self.geo.stride[0] + span_h - low_h - height
        high_w = (aw.count - 1) * self.geo.stride[1] + span_w - low_w - width
        pads = (low_w, high_w, low_h, high_h)  # a negative high pad crops what no window reads
        if not _static(*pads) or any(pads):  # symbolic sizes: always pad (no shape-dependent branch in the graph)
            x = F.pad(x, (0, 0, *pads))
        x = x.unfold(2, span_h, self.geo.stride[0]).unfold(3, span_w, self.geo.stride[1])[..., ::dh, ::dw]
        return x[:, :, : ah.count, : aw.count].permute(0, 1, 2, 3, 5, 6, 4).flatten(4, 5).flatten(2, 3)

    def bias(self, table: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """Additive (heads | 1, tiles, T, R) logits bias: table values, -inf outside each query's window."""
        if table is None:
            if self.uniform:
                return None
            if dtype not in self.masks:
                values = torch.tensor([0.0, float('-inf')], dtype=dtype, device=self.bias_index.device)
                entries = (2 * self.geo.kernel[0] - 1) * (2 * self.geo.kernel[1] - 1)
                self.masks[dtype] = values[(self.bias_index == entries).long()].unsqueeze(0)
            return self.masks[dtype]
        flat = table.flatten(1)
        if not self.uniform:  # entry `entries` is the -inf of positions off the window
            flat = torch.cat([flat, flat.new_full((flat.shape[0], 1), float('-inf'))], 1)
        return flat[:, self.bias_index]

    def scatter(self, x: torch.Tensor) -> torch.Tensor:
        """Tiled (..., T, K) window-slot values -> (..., T, R) region layout, zero off the window."""
        if self.uniform:
            return x
        index = self.regpos.expand(*x.shape[:-3], -1, -1, -1)
        return x.new_zeros(*x.shape[:-1], self.region).scatter(-1, index, x)


@_tensor_cache(maxsize=64)
def _tiling(geo: _Geometry, device: torch.device, tile: int = _NEIGHBOURHOOD_TILE) -> _Tiling:
    # Symbolic sizes: the index tables view (dilation, tiles, tile) grids whose contiguity checks would otherwise ask
    # whether a dilation or a tile count is 1 and pin the graph to one side of that. Size-oblivious reasoning (sizes
    # of >= 2 where it decides only layout) keeps them general; the tables' values do not depend on it.
    with size_oblivious(not _static(geo)):
        return _Tiling(geo, device, tile)


def _split_tile(geo: _Geometry) -> int:
    """Neighbourhood tile of local_scores / local_aggregate: ``_SPLIT_TILE`` unless its region would already span
    every dilation group on both axes (symbolic sizes: the default tile, whose export behaviour is the tested one)."""
    if geo.stride != (1, 1) or not _static(geo):
        return _NEIGHBOURHOOD_TILE
    spans = [_SPLIT_TILE + k - 1 >= _cdiv(length, d) for length, k, d in zip((geo.height, geo.width), geo.kernel,
                                                                          geo.dilation)]  # fmt: skip
    return _NEIGHBOURHOOD_TILE if all(spans) else _SPLIT_TILE


def _torch_scores(q, k, geo, bias, kind, scale):
    if _use_shifted(geo):
        return _shifted_scores(q, k, geo, bias, kind, scale)
    tiling = _tiling(geo, q.device, _split_tile(geo))
    logits = torch.matmul(tiling.tile(q) * scale, tiling.regions(k).transpose(-1, -2))
    if not tiling.uniform:
        logits = logits.gather(-1, tiling.regpos.expand(*logits.shape[:2], -1, -1, -1))
    logits = tiling.untile(logits)
    if kind is not None:
        logits = logits + _bias_logits(bias, kind, geo, q.device)
    return logits


def _torch_aggregate(attn, v, geo):
    if _use_shifted(geo):
        return _shifted_aggregate(attn, v, geo)
    tiling = _tiling(geo, v.device, _split_tile(geo))
    return tiling.untile(torch.matmul(tiling.scatter(tiling.tile(attn)), tiling.regions(v)))


def _torch_attention(q, k, v, geo, bias, kind, scale):
    if _use_shifted(geo):
        return _shifted_aggregate(_softmax(_shifted_scores(q, k, geo, bias, kind, scale)), v, geo)
    tiling = _tiling(geo, q.device)
    mask = tiling.bias(bias if kind == 'table' else None, q.dtype)  # (heads | 1, tiles, T, R) or None
    if kind == 'query':
        query_bias = tiling.scatter(tiling.tile(bias.expand(*q.shape[:4], -1)))  # (B, heads, tiles, T, R)
        mask = query_bias if mask is None else query_bias + mask
    q_t, k_r, v_r = tiling.tile(q), tiling.regions(k), tiling.regions(v)
    if mask is not None and mask.requires_grad:
        # SDPA's fused CPU kernels give no gradient for a mask; the plain composition keeps the bias trainable.
        attn = _softmax(torch.matmul(q_t * scale, k_r.transpose(-1, -2)) + mask)
        return tiling.untile(torch.matmul(attn, v_r))
    # 4-D (batch, heads, L, E) lets SDPA take its fused kernels; the mask broadcasts over the leading dimension
    batch, heads, tiles = q_t.shape[:3]
    if mask is None or (mask.dim() == 4 and mask.shape[0] == 1):
        flat = lambda x: x.flatten(0, 1)  # (B * heads, tiles, ., .)
    else:
        flat = lambda x: x.flatten(1, 2)  # (B, heads * tiles, ., .)
        mask = flat(mask.unsqueeze(0) if mask.dim() == 4 else mask)
    out = F.scaled_dot_product_attention(flat(q_t), flat(k_r), flat(v_r), attn_mask=mask, scale=scale)
    return tiling.untile(out.view(batch, heads, tiles, *out.shape[-2:]))


# ---------------------------------------------------------------------------------------------------------------------
# Fast PyTorch path for stride-1 'zero' windows with few slots (MSA-Conv's 3x3 form at any dilation): window slot
# ``(i, j)`` of every query is the same shift of the zero-padded map, so the logits are ``K`` shifted dot products and
# the output ``K`` shifted weighted sums. Nothing is tiled, masked or gathered: the only copies are the padded k / v
# (the border keys and values are those zeros) and the ``(B, heads, H, W, K)`` logits, where the tiled path holds
# query tiles, key regions and a mask several times that size.

# 3x3 windows (9 slots): 1.2-1.6x faster than the tiled path on 56x56 maps (batch 16, 4 heads, d 32), and a third
# of its memory; 5x5 ones were already 2x slower there (every slot is a pass over the whole map)
_SHIFTED_MAX_SLOTS = 9


def _use_shifted(geo: _Geometry) -> bool:
    return geo.border == 'zero' and geo.stride == (1, 1) and geo.slots <= _SHIFTED_MAX_SLOTS


def _shifted_pad(x: torch.Tensor, geo: _Geometry) -> torch.Tensor:
    """``x`` with a zero border wide enough for every window slot (these zeros are the outside keys / values)."""
    (kh, kw), (dh, dw) = geo.kernel, geo.dilation
    return F.pad(x, (0, 0, dw * (kw // 2), dw * (kw // 2), dh * (kh // 2), dh * (kh // 2)))


def _shifted_views(padded: torch.Tensor, geo: _Geometry, height, width) -> list[torch.Tensor]:
    """Slot ``(i, j)`` of every query as an ``(B, heads, H, W, c)`` view of the padded map, in slot order."""
    (kh, kw), (dh, dw) = geo.kernel, geo.dilation
    return [padded[:, :, i * dh : i * dh + height, j * dw : j * dw + width] for i in range(kh) for j in range(kw)]


def _shifted_crop(padded: torch.Tensor, geo: _Geometry, height, width) -> torch.Tensor:
    (kh, kw), (dh, dw) = geo.kernel, geo.dilation
    top, left = dh * (kh // 2), dw * (kw // 2)
    return padded[:, :, top : top + height, left : left + width]


def _slot_dots(x: torch.Tensor, padded: torch.Tensor, geo: _Geometry) -> torch.Tensor:
    """``(B, heads, H, W, K)``: ``x`` dotted with every slot view of ``padded``."""
    views = _shifted_views(padded, geo, *x.shape[2:4])
    return torch.stack([torch.linalg.vecdot(x, view) for view in views], dim=-1)


def _slot_sum(weights: torch.Tensor, padded: torch.Tensor, geo: _Geometry, out: torch.Tensor | None = None):
    """``sum_j weights[..., j] * view_j(padded)``; in place into ``out`` when given (no autograd)."""
    views = _shifted_views(padded, geo, *weights.shape[2:4])
    if out is not None:
        for slot, view in enumerate(views):
            out.addcmul_(weights[..., slot : slot + 1], view)
        return out
    out = weights[..., :1] * views[0]
    for slot in range(1, len(views)):
        out = torch.addcmul(out, weights[..., slot : slot + 1], views[slot])
    return out


def _spread(weights: torch.Tensor, x: torch.Tensor, padded_like: torch.Tensor, geo: _Geometry) -> torch.Tensor:
    """The adjoint of the slot views: ``grad_padded[view_j] += weights[..., j] * x``, accumulated in place into one
    padded buffer (autograd's own view backward would allocate a padded-size buffer per slot), then cropped."""
    grad = torch.zeros_like(padded_like)
    for slot, view in enumerate(_shifted_views(grad, geo, *x.shape[2:4])):
        view.addcmul_(weights[..., slot : slot + 1], x)
    return _shifted_crop(grad, geo, *x.shape[2:4])


class _ShiftedScores(torch.autograd.Function):
    """``q`` dotted with the ``K`` slot views of the zero-padded ``k``, with a memory-lean backward."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, geo: _Geometry) -> torch.Tensor:
        padded = _shifted_pad(k, geo)
        ctx.save_for_backward(q, padded)
        ctx.geo = geo
        return _slot_dots(q, padded, geo)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        q, padded = ctx.saved_tensors
        grad_q = _slot_sum(grad, padded, ctx.geo, torch.zeros_like(q)) if ctx.needs_input_grad[0] else None
        grad_k = _spread(grad, q, padded, ctx.geo) if ctx.needs_input_grad[1] else None
        return grad_q, grad_k, None


class _ShiftedAggregate(torch.autograd.Function):
    """``sum_j attn[..., j] * view_j(zero-padded v)``, with a memory-lean backward."""

    @staticmethod
    def forward(ctx, attn: torch.Tensor, v: torch.Tensor, geo: _Geometry) -> torch.Tensor:
        padded = _shifted_pad(v, geo)
        ctx.save_for_backward(attn, padded)
        ctx.geo = geo
        out = attn.new_zeros(*attn.shape[:4], v.shape[-1])
        return _slot_sum(attn, padded, geo, out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        attn, padded = ctx.saved_tensors
        grad_attn = _slot_dots(grad, padded, ctx.geo) if ctx.needs_input_grad[0] else None
        grad_v = _spread(attn, grad, padded, ctx.geo) if ctx.needs_input_grad[1] else None
        return grad_attn, grad_v, None


def _custom_backward(*tensors: torch.Tensor) -> bool:
    """Training in eager mode: the autograd Functions above. Inference and traced graphs (compile / export) take the
    plain composition, which needs no saved tensors and traces as ordinary ops."""
    return (
        torch.is_grad_enabled()
        and any(t.requires_grad for t in tensors)
        and not torch.compiler.is_compiling()
        and not torch.jit.is_scripting()
    )


def _shifted_bias(bias: torch.Tensor, kind: str | None, geo: _Geometry) -> torch.Tensor | None:
    """A table as ``(1, heads, 1, 1, K)``: with stride 1 the slot alone picks the entry (offset 0 is row ``k - 1``)."""
    if kind != 'table':
        return bias
    (kh, kw) = geo.kernel
    return bias[:, kh // 2 : kh // 2 + kh, kw // 2 : kw // 2 + kw].flatten(1)[None, :, None, None]


def _shifted_scores(q, k, geo, bias, kind, scale):
    # scaled after the dot products: the logits are K / d_qk the size of q
    if _custom_backward(q, k):
        logits = _ShiftedScores.apply(q, k, geo) * scale
    else:
        logits = _slot_dots(q, _shifted_pad(k, geo), geo) * scale
    return logits if kind is None else logits + _shifted_bias(bias, kind, geo)


def _shifted_aggregate(attn, v, geo):
    if _custom_backward(attn, v):
        return _ShiftedAggregate.apply(attn, v, geo)
    if torch.is_grad_enabled() or torch.compiler.is_compiling():  # autograd / tracing: out-of-place ops only
        return _slot_sum(attn, _shifted_pad(v, geo), geo)
    out = attn.new_zeros(*attn.shape[:4], v.shape[-1])
    return _slot_sum(attn, _shifted_pad(v, geo), geo, out)  # inference: one output buffer, accumulated in place
