"""Selective scan: the first-order linear recurrence of Mamba-style state space models.

Layout (Mamba's): ``u, delta: (batch, dim, L)``, ``A: (dim, d_state)``, ``B, C: (batch, d_state, L)`` or
``(batch, groups, d_state, L)`` with ``dim`` divisible by ``groups``, ``D, delta_bias: (dim,)``. Per channel ``d``
and state ``n``, from ``h = 0`` and in increasing ``t`` (one direction, the order of the last axis)::

    dt_t = softplus(delta_t + delta_bias)        (softplus only with delta_softplus; identity above 20)
    h_t  = exp(dt_t * A[d, n]) * h_{t-1} + dt_t * B_t[n] * u_t
    y_t  = sum_n C_t[n] * h_t[n] + D[d] * u_t

The CUDA kernels of Mamba / VMamba process the sequence in chunks (2048 steps in ``selective_scan_cuda_oflex_rh``)
and carry the state across chunk borders: the result is the full recurrence above, so there is no chunking
semantics to reproduce beyond float rounding. Everything is computed in float32 (float64 when an input is float64)
with autocast disabled, like the official kernels, which take low-precision ``u`` / ``delta`` / ``B`` / ``C`` but
keep ``A``, ``D``, ``delta_bias`` and the states in float32.

Backends: ``'reference'`` is the sequential loop (the specification, differentiable by autograd); ``'torch'`` a
log-depth (Hillis-Steele) scan, two-level for long sequences (in chunks, then across them), with a hand-written
backward (the adjoint of a linear recurrence is the same recurrence run backwards), fast on CPU; over a symbolic
length (torch.export / dynamic compile) a fixed number of steps, so one graph serves every length up to 65536;
``'triton'`` the registered CUDA operators ``torch.ops.backbonezoo.selective_scan[_states]_triton`` (``triton_ops.py``:
the discretisation and readout in PyTorch around the ``tl.associative_scan`` kernel of ``triton_scan.py``, and a
hand-written backward: one reverse scan, the parameter gradients reduced in PyTorch); ``linear_scan(backend='triton')``
runs that kernel under the Function above.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._backend import resolve_backend

__all__ = ['selective_scan', 'linear_scan']

_SUPPORTED = ('reference', 'torch', 'triton')


def _shift_right(x: torch.Tensor) -> torch.Tensor:
    """x[..., t-1] at position t, zero at t = 0 (the previous state h_{t-1}, with h_{-1} = 0)."""
    return F.pad(x[..., :-1], (1, 0))


def _scan_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t over the last axis, one step at a time."""
    h = torch.zeros_like(b[..., 0])
    states = []
    for t in range(b.shape[-1]):
        h = a[..., t] * h + b[..., t]
        states.append(h)
    return torch.stack(states, dim=-1)


_CHUNK = 64  # tokens per chunk of the torch scan (a power of two: log2 of it in-chunk steps)
_FLAT_UP_TO = 1024  # eager scans up to this length: flat Hillis-Steele
_TRACED_STEPS = 16  # steps of a scan over a symbolic length: up to 2**16 tokens (a 1024x1024 input at stride 4)


def _hillis_steele_(a: torch.Tensor, b: torch.Tensor, steps: int, cumulative: bool) -> None:
    """In place, over the last axis: ``b`` becomes the inclusive scan of (a, b) after ``steps`` Hillis-Steele steps
    (enough for up to ``2 ** steps`` positions), ``a`` the running products of a (when ``cumulative``; otherwise it
    is left partly updated).

    Each step combines (a_{t-k}, b_{t-k}) into (a_t, b_t) as (a_{t-k} a_t, a_t b_{t-k} + b_t). Only products of the
    a's (all in [0, 1] for a decaying SSM) and sums appear: no division, no exp of cumulative sums, so no overflow
    however long the sequence. Right-hand sides are evaluated before each in-place update, so they read the previous
    step's values.
    """
    length = b.shape[-1]
    for step in range(steps):
        offset = 1 << step
        if isinstance(length, int) and offset >= length:
            break
        b[..., offset:] = torch.addcmul(b[..., offset:], a[..., offset:], b[..., :-offset])
        if cumulative or 2 * offset < length:
            a[..., offset:] = a[..., offset:] * a[..., :-offset]


def _scan_shifted(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Hillis-Steele with shifts written as pads: no size-dependent slicing, for lengths a trace keeps symbolic."""
    for step in range(steps):
        offset = 1 << step
        length = b.shape[-1]
        b = torch.addcmul(b, a, F.pad(b, (offset, 0))[..., :length])
        if step + 1 < steps:
            a = a * F.pad(a, (offset, 0), value=1.0)[..., :length]
    return b


def _scan_chunked(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The recurrence as a two-level scan: log2(chunk) in-place steps inside chunks of ``_CHUNK`` tokens, a scan of
    the chunk carries (``1 / _CHUNK`` of the data) and one pass adding each chunk's incoming state.

    About 8 full-size passes at 56x56 tokens where a flat Hillis-Steele scan takes 12 (1.3-1.7x faster there); eager
    scans up to ``_FLAT_UP_TO`` tokens stay flat. A symbolic length (torch.export, torch.compile with dynamic shapes)
    takes :func:`_scan_traced`.
    """
    length = b.shape[-1]
    if not isinstance(length, int):
        return _scan_traced(a, b)
    if length <= _FLAT_UP_TO:  # short: the flat scan's few extra steps cost less than the chunking
        a, b = a.clone(), b.clone()
        _hillis_steele_(a, b, max(length - 1, 0).bit_length(), cumulative=False)
        return b
    chunks = -(-length // _CHUNK)
    pad = chunks * _CHUNK - length
    # Padding past the end: a = 1, b = 0 (never read by a real position: the scan only looks backwards).
    a = F.pad(a, (0, pad), value=1.0).unflatten(-1, (chunks, _CHUNK))
    b = F.pad(b, (0, pad)).unflatten(-1, (chunks, _CHUNK))
    _hillis_steele_(a, b, _CHUNK.bit_length() - 1, cumulative=True)
    # state entering chunk k: the scan of the chunk ends (a: whole-chunk products, b: chunk-local end states)
    carried = _scan_chunked(a[..., :-1, -1].contiguous(), b[..., :-1, -1].contiguous())
    b[..., 1:, :] = torch.addcmul(b[..., 1:, :], a[..., 1:, :], carried[..., None])
    return b.flatten(-2)[..., :length]


def _scan_traced(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:func:`_scan_chunked` for a symbolic length: a flat scan of a fixed ``_TRACED_STEPS`` steps with shifts written
    as pads, so the graph holds no guard on the length and serves every length up to ``2 ** _TRACED_STEPS`` (at
    56x56 tokens that is 16 steps where the eager scan takes about 8 passes: the price of one graph for all sizes)."""
    length = b.shape[-1]
    limit = 1 << _TRACED_STEPS
    torch._check(length <= limit, lambda: f'linear_scan: a traced scan takes at most {limit} positions, got {length}')
    return _scan_shifted(a, b, _TRACED_STEPS)


def _scan_triton(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from .triton_scan import linear_scan_triton

    return linear_scan_triton(a, b)


_SCANS = {'torch': _scan_chunked, 'triton': _scan_triton}


class _LinearScan(torch.autograd.Function):
    """h = scan(a, b) with a fast forward and the reverse recurrence as backward.

    With g_t = dL/dh_t, the total adjoint is lam_t = g_t + a_{t+1} lam_{t+1}: the same recurrence run backwards with
    the coefficients shifted by one. Then dL/db_t = lam_t and dL/da_t = lam_t * h_{t-1}.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, backend: str) -> torch.Tensor:
        scan = _SCANS[backend]
        h = scan(a.contiguous(), b.contiguous())
        ctx.backend = backend
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        a, h = ctx.saved_tensors
        scan = _SCANS[ctx.backend]
        a_reversed = _shift_right(a.flip(-1))
        lam = scan(a_reversed.contiguous(), grad_h.flip(-1).contiguous()).flip(-1)
        grad_a = lam * _shift_right(h) if ctx.needs_input_grad[0] else None
        return grad_a, lam, None


def linear_scan(a: torch.Tensor, b: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` (``h_{-1} = 0``) along the last axis.

    Args:
        a: the decay coefficients, any shape ``(..., L)``, floating point.
        b: the inputs, the shape, dtype and device of ``a``.
        backend: None / ``'auto'``, ``'reference'`` (the sequential loop), ``'torch'`` or ``'triton'`` (the
            ``tl.associative_scan`` kernel; CUDA, or CPU under ``TRITON_INTERPRET=1``), see ``_backend.py``.

    Returns:
        ``h`` like ``b``; differentiable on every backend (the adjoint recurrence as backward).
    """
    if a.shape != b.shape:
        raise ValueError(f'linear_scan: a has shape {tuple(a.shape)} but b has {tuple(b.shape)}; expected equal')
    chosen = resolve_backend(backend, b, 'linear_scan', _SUPPORTED)
    if chosen == 'reference':
        return _scan_reference(a, b)
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return _LinearScan.apply(a, b, chosen)
    # Inference: no autograd.Function in the graph (torch.compile and the ONNX exporter trace straight through).
    return _SCANS[chosen](a.contiguous(), b.contiguous())


def _check_bc(name: str, t: torch.Tensor, batch: int, dim: int, d_state: int, length: int) -> torch.Tensor:
    """B / C as (batch, groups, d_state, L)."""
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != d_state or t.shape[3] != length or dim % t.shape[1]:
        raise ValueError(
            f'selective_scan: {name} has shape {tuple(t.shape)}; expected ({batch}, {d_state}, {length}) or '
            f'({batch}, groups, {d_state}, {length}) with groups dividing dim={dim}'
        )
    return t


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor | None = None,
    D: torch.Tensor | None = None,
    *,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_states: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba's selective scan (see the module docstring for the recurrence).

    Args:
        u, delta: ``(batch, dim, L)``.
        A: ``(dim, d_state)``, usually ``-exp(A_log)``.
        B: ``(batch, d_state, L)`` or ``(batch, groups, d_state, L)``.
        C: like ``B``, or None for the state mode: then the hidden states are the result (what A2Mamba's
            ``selective_scan_cuda_oflex_rh`` returns; ``D`` must be None).
        D: ``(dim,)`` skip term, optional.
        delta_bias: ``(dim,)`` added to ``delta`` before the softplus.
        delta_softplus: apply softplus (threshold 20, as the CUDA kernels) to ``delta + delta_bias``.
        return_states: with ``C``, also return the hidden states.
        backend: None / 'auto', 'reference', 'torch' or 'triton' (see ``backbonezoo.kernels._backend``).

    Returns:
        ``y (batch, dim, L)``; or the states ``(batch, dim, d_state, L)`` when ``C`` is None; or ``(y, states)``
        with ``return_states``. Float32 (float64 for float64 inputs).
    """
    if u.dim() != 3:
        raise ValueError(f'selective_scan: u has shape {tuple(u.shape)}; expected (batch, dim, L)')
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f'selective_scan: delta has shape {tuple(delta.shape)}; expected {tuple(u.shape)} like u')
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f'selective_scan: A has shape {tuple(A.shape)}; expected ({dim}, d_state)')
    d_state = A.shape[1]
    B = _check_bc('B', B, batch, dim, d_state, length)
    if C is not None:
        C = _check_bc('C', C, batch, dim, d_state, length)
    elif D is not None:
        raise ValueError('selective_scan: D was given without C; the state mode (C=None) returns the raw states')
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f'selective_scan: {name} has shape {tuple(t.shape)}; expected ({dim},)')
    for name, t in (('u', u), ('delta', delta), ('A', A), ('B', B), ('C', C), ('D', D), ('delta_bias', delta_bias)):
        if t is not None and not t.is_floating_point():
            raise TypeError(f'selective_scan: {name} has dtype {t.dtype}; expected a floating point tensor')
    chosen = resolve_backend(backend, u, 'selective_scan', _SUPPORTED)
    from . import ops  # the registered operators: one node for torch.compile / export / flop_counter

    if chosen == 'triton' and not ops.enabled():
        chosen = 'torch'  # ONNX export: the traceable PyTorch path (no translation for the Triton operators)
    if ops.enabled() and chosen == 'torch' and u.device.type == 'cpu':
        if C is None:
            return ops.selective_scan_states(u, delta, A, B, delta_bias, bool(delta_softplus))
        y, states = ops.selective_scan(u, delta, A, B, C, D, delta_bias, bool(delta_softplus))
    elif chosen == 'triton':  # the registered CUDA operators (triton_ops.py; CPU tensors: the interpreter)
        from . import triton_ops

        y, states = triton_ops.selective_scan(u, delta, A, B, C, D, delta_bias, bool(delta_softplus))
        if C is None:
            return states
    else:
        y, states = scan_impl(u, delta, A, B, C, D, delta_bias, delta_softplus, chosen)
        if C is None:
            return states
    return (y, states) if return_states else y


def scan_impl(u, delta, A, B, C, D, delta_bias, delta_softplus: bool, backend: str):
    """``(y, states)`` (``y`` None when ``C`` is None) of checked arguments (``B`` / ``C`` 4-D) on ``backend``: the
    implementation of every backend in PyTorch (``linear_scan`` picks the recurrence's backend)."""
    batch, dim, length = u.shape
    d_state = A.shape[1]
    float64 = any(t is not None and t.dtype == torch.float64 for t in (u, delta, A, B, C, D, delta_bias))
    dtype = torch.float64 if float64 else torch.float32
    with torch.autocast(u.device.type, enabled=False):
        u, delta, A, B = u.to(dtype), delta.to(dtype), A.to(dtype), B.to(dtype)
        if delta_bias is not None:
            delta = delta + delta_bias.to(dtype)[:, None]
        dt = F.softplus(delta, threshold=20.0) if delta_softplus else delta
        groups = B.shape[1]
        # Channels d = g * (dim // groups) + j read B[:, g]: view the channel axis as (groups, dim // groups).
        dt4 = dt.view(batch, groups, dim // groups, 1, length)
        u4 = u.view(batch, groups, dim // groups, 1, length)
        a = torch.exp(dt4 * A.view(1, groups, dim // groups, d_state, 1))
        b = dt4 * u4 * B.unsqueeze(2)
        shape = (batch, dim, d_state, length)
        states = linear_scan(a.expand(b.shape).reshape(shape), b.reshape(shape), backend=backend)
        if C is None:
            return None, states
        C = C.to(dtype)
        y = states.view(batch, groups, dim // groups, d_state, length) * C.unsqueeze(2)
        y = y.sum(3).view(batch, dim, length)
        if D is not None:
            y = y + D.to(dtype)[:, None] * u
    return y, states
