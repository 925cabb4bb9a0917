"""Triton forward and backward kernels of the token attention of ``routing_attention`` (see ``routing.py``).

Forward: one program handles ``BLOCK_Q`` query tokens of one region of one (batch, head) and walks its ``topk``
routed key regions in blocks of ``BLOCK_K`` tokens, reading each key / value straight from ``(B, heads, H, W, d)``
memory through the route index (the gathered ``(B, R, topk * region_tokens, ...)`` keys / values are never built),
``tl.dot`` for ``Q K^T`` and ``P V`` and an online softmax, saving the log-sum-exp for the backward. Region slots past
the map (``region_size`` grids, padded bottom / right) are zero keys / values that still take part in the softmax;
padded queries are never written.

Backward, without atomics (deterministic): a dQ kernel walks the routes again; a dK / dV kernel takes a block of key
tokens of one key region and gathers from the query regions routed to it (the inverse routes, a CSR list built on the
host with a stable sort: same order every run). Offsets are int64, batch x heads x blocks sit on grid axis 0, launches
run under the tensors' device, float64 is computed in float64, float32 with IEEE dots (not TF32), float16 / bfloat16
on tensor cores with float32 accumulation; block sizes are autotuned on CUDA.

Plain launchers (no autograd; for registered operators to call):

* ``routing_fwd(q, k, v, routes, grid, size, scale) -> (out, lse)``; ``lse`` ``(B, heads, H, W)`` float32 (float64
  for float64 inputs);
* ``routing_bwd(grad_out, q, k, v, out, lse, routes, grid, size, scale) -> (dq, dk, dv)``.

The registered operators (``kernels/triton_ops.py``, ``torch.library.triton_op``) call them; launches go through
``torch.library.wrap_triton`` (traceable: Inductor sees the kernels). The routes themselves
(region means + top-k) stay in PyTorch (``region_routing``): a few small ops, no gradient. Used for CUDA tensors
(``backend='auto'``) and, for testing, on CPU under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from ._backend import launch_device

__all__ = ['inverse_routes', 'routing_bwd', 'routing_fwd']

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@triton.jit
def _region_tokens(region, nw, height, width, tok, RH: tl.constexpr, RW: tl.constexpr):
    """Map offsets (y * W + x) of tokens ``tok`` of ``region``, whether each is a slot of the region, and whether it
    lies inside the map (slots past the map are the grid's zero padding)."""
    y = (region // nw) * RH + tok // RW
    x = (region % nw) * RW + tok % RW
    slot = tok < RH * RW
    return y * width + x, slot, slot & (y < height) & (x < width)


@triton.jit
def _dot(a, b, IEEE: tl.constexpr, ACC: tl.constexpr):
    if IEEE:  # float32 / float64: full precision (the reference is a float32 / float64 matmul), not TF32
        return tl.dot(a, b, input_precision='ieee', out_dtype=ACC)
    return tl.dot(a, b, out_dtype=ACC)


@triton.jit
def _load_rows(PTR, rows, mask, D: tl.constexpr, BLOCK_D: tl.constexpr):
    c = tl.arange(0, BLOCK_D)
    return tl.load(PTR + rows[:, None] * D + c[None, :], mask=mask[:, None] & (c[None, :] < D), other=0.0)


@triton.jit
def _store_rows(PTR, rows, value, mask, D: tl.constexpr, BLOCK_D: tl.constexpr):
    c = tl.arange(0, BLOCK_D)
    tl.store(
        PTR + rows[:, None] * D + c[None, :], value.to(PTR.dtype.element_ty), mask=mask[:, None] & (c[None, :] < D)
    )


@triton.jit
def _program(num_regions, heads, height, width, BLOCKS: tl.constexpr):
    """Grid axis 0 -> (int64 batch, int64 row base of the (batch, head), region, block)."""
    pid = tl.program_id(0)
    per_bn = num_regions * BLOCKS
    bn = pid // per_bn
    rest = pid % per_bn
    return (bn // heads).to(tl.int64), bn.to(tl.int64) * height * width, rest // BLOCKS, rest % BLOCKS


@triton.jit
def _routing_fwd_kernel(
    Q, K, V, ROUTES, OUT, LSE, height, width, heads, nw, num_regions, topk, scale,
    RH: tl.constexpr, RW: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr, Q_BLOCKS: tl.constexpr,
    BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, ACC: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    b, rowbase, region, q_block = _program(num_regions, heads, height, width, Q_BLOCKS)
    qpos, _, qmask = _region_tokens(region, nw, height, width, q_block * BLOCK_Q + tl.arange(0, BLOCK_Q), RH, RW)
    rows = rowbase + qpos
    q = _load_rows(Q, rows, qmask, DQK, BLOCK_DQK)
    m = tl.full([BLOCK_Q], float('-inf'), ACC)
    denom = tl.zeros([BLOCK_Q], ACC)
    acc = tl.zeros([BLOCK_Q, BLOCK_DV], ACC)
    for t in range(0, topk):
        route = tl.load(ROUTES + (b * num_regions + region) * topk + t)
        for k0 in range(0, RH * RW, BLOCK_K):
            kpos, slot, inside = _region_tokens(route, nw, height, width, k0 + tl.arange(0, BLOCK_K), RH, RW)
            k = _load_rows(K, rowbase + kpos, inside, DQK, BLOCK_DQK)
            v = _load_rows(V, rowbase + kpos, inside, DV, BLOCK_DV)
            s = _dot(q, tl.trans(k), IEEE, ACC) * scale
            s = tl.where(slot[None, :], s, float('-inf'))  # block lanes past the region's tokens
            m_new = tl.maximum(m, tl.max(s, 1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(s - m_new[:, None])
            denom = denom * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE, ACC)
            m = m_new
    _store_rows(OUT, rows, acc / denom[:, None], qmask, DV, BLOCK_DV)
    tl.store(LSE + rows, (m + tl.log(denom)).to(LSE.dtype.element_ty), mask=qmask)


@triton.jit
def _routing_bwd_dq_kernel(
    Q, K, V, ROUTES, DO, LSE, DELTA, DQ, height, width, heads, nw, num_regions, topk, scale,
    RH: tl.constexpr, RW: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr, Q_BLOCKS: tl.constexpr,
    BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, ACC: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    b, rowbase, region, q_block = _program(num_regions, heads, height, width, Q_BLOCKS)
    qpos, _, qmask = _region_tokens(region, nw, height, width, q_block * BLOCK_Q + tl.arange(0, BLOCK_Q), RH, RW)
    rows = rowbase + qpos
    q = _load_rows(Q, rows, qmask, DQK, BLOCK_DQK)
    do = _load_rows(DO, rows, qmask, DV, BLOCK_DV)
    lse = tl.load(LSE + rows, mask=qmask, other=0.0).to(ACC)
    delta = tl.load(DELTA + rows, mask=qmask, other=0.0).to(ACC)
    dq = tl.zeros([BLOCK_Q, BLOCK_DQK], ACC)
    for t in range(0, topk):
        route = tl.load(ROUTES + (b * num_regions + region) * topk + t)
        for k0 in range(0, RH * RW, BLOCK_K):
            kpos, slot, inside = _region_tokens(route, nw, height, width, k0 + tl.arange(0, BLOCK_K), RH, RW)
            k = _load_rows(K, rowbase + kpos, inside, DQK, BLOCK_DQK)
            v = _load_rows(V, rowbase + kpos, inside, DV, BLOCK_DV)
            s = _dot(q, tl.trans(k), IEEE, ACC) * scale
            p = tl.where(slot[None, :] & qmask[:, None], tl.exp(s - lse[:, None]), 0.0)
            ds = p * (_dot(do, tl.trans(v), IEEE, ACC) - delta[:, None])
            dq += _dot(ds.to(k.dtype), k, IEEE, ACC)
    _store_rows(DQ, rows, dq * scale, qmask, DQK, BLOCK_DQK)


@triton.jit
def _routing_bwd_dkv_kernel(
    Q, K, V, SOURCES, STARTS, DO, LSE, DELTA, DK, DV_, height, width, heads, nw, num_regions, topk, scale,
    RH: tl.constexpr, RW: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr, K_BLOCKS: tl.constexpr,
    BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, ACC: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_Q: tl.constexpr,
):  # fmt: skip
    """dK / dV of a block of key tokens of one key region, gathered from the query regions routed to it
    (``SOURCES[b, STARTS[b, r] : STARTS[b, r + 1]]``)."""
    b, rowbase, region, k_block = _program(num_regions, heads, height, width, K_BLOCKS)
    kpos, _, kin = _region_tokens(region, nw, height, width, k_block * BLOCK_K + tl.arange(0, BLOCK_K), RH, RW)
    krows = rowbase + kpos
    k = _load_rows(K, krows, kin, DQK, BLOCK_DQK)
    v = _load_rows(V, krows, kin, DV, BLOCK_DV)
    dk = tl.zeros([BLOCK_K, BLOCK_DQK], ACC)
    dv = tl.zeros([BLOCK_K, BLOCK_DV], ACC)
    start = tl.load(STARTS + b * (num_regions + 1) + region)
    stop = tl.load(STARTS + b * (num_regions + 1) + region + 1)
    for i in range(start, stop):
        source = tl.load(SOURCES + b * num_regions * topk + i)
        for q0 in range(0, RH * RW, BLOCK_Q):
            qpos, _qslot, qmask = _region_tokens(source, nw, height, width, q0 + tl.arange(0, BLOCK_Q), RH, RW)
            rows = rowbase + qpos
            q = _load_rows(Q, rows, qmask, DQK, BLOCK_DQK)
            do = _load_rows(DO, rows, qmask, DV, BLOCK_DV)
            lse = tl.load(LSE + rows, mask=qmask, other=0.0).to(ACC)
            delta = tl.load(DELTA + rows, mask=qmask, other=0.0).to(ACC)
            s = _dot(k, tl.trans(q), IEEE, ACC) * scale  # (keys, queries)
            p = tl.where(qmask[None, :], tl.exp(s - lse[None, :]), 0.0)  # padded queries feed nothing
            dv += _dot(p.to(do.dtype), do, IEEE, ACC)
            ds = p * (_dot(v, tl.trans(do), IEEE, ACC) - delta[None, :])
            dk += _dot(ds.to(q.dtype), q, IEEE, ACC)
    _store_rows(DK, krows, dk * scale, kin, DQK, BLOCK_DQK)
    _store_rows(DV_, krows, dv, kin, DV, BLOCK_DV)


# ---------------------------------------------------------------------------------------------------------------------
# Autotuning (CUDA only; one configuration under the interpreter). The lane count along the region's tokens is fixed
# by the host (it sets the grid); the other block is tuned. Kernels only write their outputs: benchmarking is harmless.


def _configs(name: str) -> list[triton.Config]:
    if os.environ.get('TRITON_INTERPRET', '0') == '1':
        return [triton.Config({name: 32}, num_warps=4)]
    return [triton.Config({name: block}, num_warps=w, num_stages=s) for block in (32, 64) for w in (4, 8)
            for s in (1, 2)]  # fmt: skip


_KEY = ['RH', 'RW', 'DQK', 'DV', 'ACC']
_routing_fwd = triton.autotune(_configs('BLOCK_K'), key=_KEY)(_routing_fwd_kernel)
_routing_bwd_dq = triton.autotune(_configs('BLOCK_K'), key=_KEY)(_routing_bwd_dq_kernel)
_routing_bwd_dkv = triton.autotune(_configs('BLOCK_Q'), key=_KEY)(_routing_bwd_dkv_kernel)

KERNELS = {'fwd': _routing_fwd_kernel, 'bwd_dq': _routing_bwd_dq_kernel, 'bwd_dkv': _routing_bwd_dkv_kernel}


# ---------------------------------------------------------------------------------------------------------------------
# Launchers.


def _block(d: int) -> int:
    return max(16, triton.next_power_of_2(d))  # tl.dot needs every block dimension >= 16


def _lanes(tokens: int) -> int:
    return min(64, _block(tokens))


def _numerics(dtype: torch.dtype) -> dict:
    if dtype not in _DTYPES:
        raise TypeError(f'routing attention (triton): dtype {dtype} is not supported; expected one of {_DTYPES}')
    return dict(ACC=tl.float64 if dtype == torch.float64 else tl.float32, IEEE=dtype in (torch.float32, torch.float64))


def _launch(q: torch.Tensor, v: torch.Tensor, routes: torch.Tensor, grid, size) -> tuple[int, int, tuple, dict, int]:
    """(programs, blocks per region, runtime sizes, constexprs, lanes per block)."""
    batch, heads, height, width, dqk = q.shape
    lanes = _lanes(size[0] * size[1])
    blocks = triton.cdiv(size[0] * size[1], lanes)
    num = grid[0] * grid[1]
    programs = batch * heads * num * blocks
    if programs >= 2**31:
        raise ValueError(f'routing attention (triton): {programs} programs exceed the grid limit 2**31 - 1')
    static = dict(RH=size[0], RW=size[1], DQK=dqk, DV=v.shape[-1], BLOCK_DQK=_block(dqk), BLOCK_DV=_block(v.shape[-1]),
                  **_numerics(q.dtype))  # fmt: skip
    sizes = (height, width, heads, grid[1], num, routes.shape[-1])
    return programs, blocks, sizes, static, lanes


def inverse_routes(routes: torch.Tensor, num_regions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR of the query regions routed to each key region: ``sources (B, R * topk)`` int32 query regions sorted by
    key region (stable: deterministic), ``starts (B, R + 1)`` int32 offsets into it."""
    batch, num, topk = routes.shape
    flat = routes.reshape(batch, num * topk)
    keys, order = torch.sort(flat, dim=1, stable=True)
    sources = (order // topk).to(torch.int32)
    bounds = torch.arange(num_regions + 1, device=routes.device, dtype=keys.dtype).expand(batch, -1).contiguous()
    starts = torch.searchsorted(keys.contiguous(), bounds).to(torch.int32)
    return sources.contiguous(), starts.contiguous()


def routing_fwd(q, k, v, routes, grid, size, scale):
    """``(out, lse)`` of the token attention over ``routes (B, R, topk)``."""
    q, k, v, routes = q.contiguous(), k.contiguous(), v.contiguous(), routes.contiguous()
    batch, heads, height, width, _ = q.shape
    out = torch.empty_like(v)
    lse = torch.empty(batch, heads, height, width, dtype=_acc_dtype(q.dtype), device=q.device)
    programs, blocks, sizes, static, lanes = _launch(q, v, routes, grid, size)
    with launch_device(q):
        wrap_triton(_routing_fwd)[(programs,)](
            q, k, v, routes, out, lse, *sizes, float(scale), **static, Q_BLOCKS=blocks, BLOCK_Q=lanes
        )
    return out, lse


def routing_bwd(grad_out, q, k, v, out, lse, routes, grid, size, scale):
    """``(dq, dk, dv)`` of :func:`routing_fwd`; deterministic (no atomics)."""
    q, k, v, out, grad_out, routes = (t.contiguous() for t in (q, k, v, out, grad_out, routes))
    acc = _acc_dtype(q.dtype)
    delta = (grad_out.to(acc) * out.to(acc)).sum(-1)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    programs, blocks, sizes, static, lanes = _launch(q, v, routes, grid, size)
    sources, starts = inverse_routes(routes, grid[0] * grid[1])
    with launch_device(q):
        wrap_triton(_routing_bwd_dq)[(programs,)](
            q, k, v, routes, grad_out, lse, delta, dq, *sizes, float(scale), **static, Q_BLOCKS=blocks, BLOCK_Q=lanes
        )
        kernel = wrap_triton(_routing_bwd_dkv)
        kernel[(programs,)](q, k, v, sources, starts, grad_out, lse, delta, dk, dv, *sizes, float(scale), **static,
                            K_BLOCKS=blocks, BLOCK_K=lanes)  # fmt: skip
    return dq, dk, dv


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------------------------------
# Compile specifications (for tools/gpu_readiness.py).

_TRITON_DTYPES = {torch.float16: 'fp16', torch.bfloat16: 'bf16', torch.float32: 'fp32', torch.float64: 'fp64'}


def kernel_source(name: str, dtype: torch.dtype, *, dqk: int = 32, dv: int | None = None, region=(7, 7),
                  chunk: int = 64):  # fmt: skip
    """``(jit function, signature, constexprs)`` of kernel ``name`` (a key of ``KERNELS``) as
    ``triton.compiler.ASTSource`` takes them; ``chunk`` is the autotuned block."""
    fn = KERNELS[name]
    dv = dqk if dv is None else dv
    tokens = region[0] * region[1]
    lanes = _lanes(tokens)
    constexprs = dict(RH=region[0], RW=region[1], DQK=dqk, DV=dv, BLOCK_DQK=_block(dqk), BLOCK_DV=_block(dv),
                      **_numerics(dtype))  # fmt: skip
    constexprs['Q_BLOCKS' if name != 'bwd_dkv' else 'K_BLOCKS'] = triton.cdiv(tokens, lanes)
    constexprs['BLOCK_Q' if name != 'bwd_dkv' else 'BLOCK_K'] = lanes
    constexprs['BLOCK_K' if name != 'bwd_dkv' else 'BLOCK_Q'] = chunk
    elem, acc = _TRITON_DTYPES[dtype], _TRITON_DTYPES[_acc_dtype(dtype)]
    signature = {}
    for arg in fn.arg_names:
        if arg in constexprs:
            signature[arg] = 'constexpr'
        elif arg == 'scale':
            signature[arg] = 'fp32'
        elif arg in ('ROUTES',):
            signature[arg] = '*i64'
        elif arg in ('SOURCES', 'STARTS'):
            signature[arg] = '*i32'
        elif arg.isupper() or arg == 'DV_':
            signature[arg] = f'*{acc if arg in ("LSE", "DELTA") else elem}'
        else:
            signature[arg] = 'i32'
    return fn, signature, constexprs
