"""Triton forward and backward kernels of the token attention of ``routing_attention`` (see ``routing.py``).

One program handles ``BLOCK_Q`` query tokens of one region of one (batch, head) and walks its ``topk`` routed key
regions in blocks of ``BLOCK_K`` tokens, reading each key / value straight from ``(B, heads, H, W, d)`` memory through
the route index: the gathered ``(B, R, topk * region_tokens, ...)`` keys / values are never built, and the
attention keeps an online softmax, saving the log-sum-exp for the backward, which recomputes the probabilities.
Region slots past the map (``region_size`` grids, padded bottom / right) are zero keys / values that still take
part in the softmax; padded queries are never written. Key / value gradients are scattered with atomic adds (a key
region serves every query region routed to it), accumulated in float32 whatever the input dtype.

The routes themselves (region means + top-k) stay in PyTorch (``region_routing``): a few small ops, no gradient.
Used for CUDA tensors (``backend='auto'``) and, for testing, on CPU under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ['triton_routing_attention']


@triton.jit
def _region_tokens(region, nw, height, width, tok, RH: tl.constexpr, RW: tl.constexpr):
    """Map offsets (y * W + x) of tokens ``tok`` of ``region``, whether each is a slot of the region, and whether it
    lies inside the map (slots past the map are the grid's zero padding)."""
    y = (region // nw) * RH + tok // RW
    x = (region % nw) * RW + tok % RW
    slot = tok < RH * RW
    return y * width + x, slot, slot & (y < height) & (x < width)


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:  # float32 inputs: full precision, not TF32 (the reference is float32 matmuls)
        return tl.dot(a, b, input_precision='ieee')
    return tl.dot(a, b)


@triton.jit
def _routing_fwd(
    Q, K, V, ROUTES, OUT, LSE, height, width, heads, nw, num_regions, topk, scale,
    RH: tl.constexpr, RW: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr, Q_BLOCKS: tl.constexpr,
    K_BLOCKS: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DQK: tl.constexpr,
    BLOCK_DV: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    region, q_block = tl.program_id(0) // Q_BLOCKS, tl.program_id(0) % Q_BLOCKS
    bn = tl.program_id(1)
    b = bn // heads
    cq, cv = tl.arange(0, BLOCK_DQK), tl.arange(0, BLOCK_DV)
    qpos, _, qmask = _region_tokens(region, nw, height, width, q_block * BLOCK_Q + tl.arange(0, BLOCK_Q), RH, RW)
    row = bn * height * width + qpos
    q = tl.load(Q + row[:, None] * DQK + cq[None, :], mask=qmask[:, None] & (cq[None, :] < DQK), other=0.0)
    m = tl.full([BLOCK_Q], float('-inf'), tl.float32)
    denom = tl.zeros([BLOCK_Q], tl.float32)
    acc = tl.zeros([BLOCK_Q, BLOCK_DV], tl.float32)
    for t in range(0, topk):
        route = tl.load(ROUTES + (b * num_regions + region) * topk + t)
        for k_block in range(0, K_BLOCKS):
            kpos, slot, inside = _region_tokens(route, nw, height, width, k_block * BLOCK_K + tl.arange(0, BLOCK_K),
                                                RH, RW)  # fmt: skip
            krow = bn * height * width + kpos
            k = tl.load(K + krow[:, None] * DQK + cq[None, :], mask=inside[:, None] & (cq[None, :] < DQK), other=0.0)
            v = tl.load(V + krow[:, None] * DV + cv[None, :], mask=inside[:, None] & (cv[None, :] < DV), other=0.0)
            s = _dot(q, tl.trans(k), IEEE).to(tl.float32) * scale
            s = tl.where(slot[None, :], s, float('-inf'))  # block lanes past the region's tokens
            m_new = tl.maximum(m, tl.max(s, 1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(s - m_new[:, None])
            denom = denom * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE).to(tl.float32)
            m = m_new
    out = acc / denom[:, None]
    tl.store(
        OUT + row[:, None] * DV + cv[None, :], out.to(OUT.dtype.element_ty), mask=qmask[:, None] & (cv[None, :] < DV)
    )
    tl.store(LSE + row, m + tl.log(denom), mask=qmask)


@triton.jit
def _routing_bwd(
    Q, K, V, ROUTES, DO, LSE, DELTA, DQ, DK, DV_, height, width, heads, nw, num_regions, topk, scale,
    RH: tl.constexpr, RW: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr, Q_BLOCKS: tl.constexpr,
    K_BLOCKS: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DQK: tl.constexpr,
    BLOCK_DV: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    region, q_block = tl.program_id(0) // Q_BLOCKS, tl.program_id(0) % Q_BLOCKS
    bn = tl.program_id(1)
    b = bn // heads
    cq, cv = tl.arange(0, BLOCK_DQK), tl.arange(0, BLOCK_DV)
    qpos, _, qmask = _region_tokens(region, nw, height, width, q_block * BLOCK_Q + tl.arange(0, BLOCK_Q), RH, RW)
    row = bn * height * width + qpos
    q_mask2 = qmask[:, None] & (cq[None, :] < DQK)
    q = tl.load(Q + row[:, None] * DQK + cq[None, :], mask=q_mask2, other=0.0)
    do = tl.load(DO + row[:, None] * DV + cv[None, :], mask=qmask[:, None] & (cv[None, :] < DV), other=0.0)
    lse = tl.load(LSE + row, mask=qmask, other=0.0)
    delta = tl.load(DELTA + row, mask=qmask, other=0.0)
    dq = tl.zeros([BLOCK_Q, BLOCK_DQK], tl.float32)
    for t in range(0, topk):
        route = tl.load(ROUTES + (b * num_regions + region) * topk + t)
        for k_block in range(0, K_BLOCKS):
            kpos, slot, inside = _region_tokens(route, nw, height, width, k_block * BLOCK_K + tl.arange(0, BLOCK_K),
                                                RH, RW)  # fmt: skip
            krow = bn * height * width + kpos
            kmask = inside[:, None] & (cq[None, :] < DQK)
            vmask = inside[:, None] & (cv[None, :] < DV)
            k = tl.load(K + krow[:, None] * DQK + cq[None, :], mask=kmask, other=0.0)
            v = tl.load(V + krow[:, None] * DV + cv[None, :], mask=vmask, other=0.0)
            s = _dot(q, tl.trans(k), IEEE).to(tl.float32) * scale
            # padded query rows (qmask off) get no probability: they must not feed dk / dv
            p = tl.where(slot[None, :] & qmask[:, None], tl.exp(s - lse[:, None]), 0.0)
            dp = _dot(do, tl.trans(v), IEEE).to(tl.float32)
            ds = p * (dp - delta[:, None])
            dq += _dot(ds.to(k.dtype), k, IEEE).to(tl.float32)
            dk = _dot(tl.trans(ds.to(q.dtype)), q, IEEE).to(tl.float32) * scale
            dv = _dot(tl.trans(p.to(do.dtype)), do, IEEE).to(tl.float32)
            tl.atomic_add(DK + krow[:, None] * DQK + cq[None, :], dk, mask=kmask)
            tl.atomic_add(DV_ + krow[:, None] * DV + cv[None, :], dv, mask=vmask)
    tl.store(DQ + row[:, None] * DQK + cq[None, :], (dq * scale).to(DQ.dtype.element_ty), mask=q_mask2)


# ---------------------------------------------------------------------------------------------------------------------
# Launch helpers and the autograd function.


def _block(d: int) -> int:
    return max(16, triton.next_power_of_2(d))  # tl.dot needs every block dimension >= 16


def _launch(q: torch.Tensor, v: torch.Tensor, routes: torch.Tensor, grid, size) -> tuple[tuple, tuple, dict]:
    batch, heads, height, width, dqk = q.shape
    tokens = size[0] * size[1]
    block_q = min(64, _block(tokens))
    block_k = min(64, _block(tokens))
    static = dict(
        RH=size[0], RW=size[1], DQK=dqk, DV=v.shape[-1], Q_BLOCKS=triton.cdiv(tokens, block_q),
        K_BLOCKS=triton.cdiv(tokens, block_k), BLOCK_Q=block_q, BLOCK_K=block_k, BLOCK_DQK=_block(dqk),
        BLOCK_DV=_block(v.shape[-1]), IEEE=q.dtype == torch.float32,
    )  # fmt: skip
    num = grid[0] * grid[1]
    launch_grid = (num * static['Q_BLOCKS'], batch * heads)
    sizes = (height, width, heads, grid[1], num, routes.shape[-1])
    return launch_grid, sizes, static


class _RoutingAttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, routes, grid, size, scale):
        q, k, v, routes = q.contiguous(), k.contiguous(), v.contiguous(), routes.contiguous()
        batch, heads, height, width, _ = q.shape
        out = torch.empty_like(v)
        lse = torch.empty(batch, heads, height, width, dtype=torch.float32, device=q.device)
        launch_grid, sizes, static = _launch(q, v, routes, grid, size)
        _routing_fwd[launch_grid](q, k, v, routes, out, lse, *sizes, scale, **static)
        ctx.save_for_backward(q, k, v, routes, out, lse)
        ctx.grid, ctx.size, ctx.scale = grid, size, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, routes, out, lse = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        delta = (grad_out.float() * out.float()).sum(-1)
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
        dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
        launch_grid, sizes, static = _launch(q, v, routes, ctx.grid, ctx.size)
        _routing_bwd[launch_grid](q, k, v, routes, grad_out, lse, delta, dq, dk, dv, *sizes, ctx.scale, **static)
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def triton_routing_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    routes: torch.Tensor,
    grid: tuple[int, int],
    size: tuple[int, int],
    scale: float,
) -> torch.Tensor:
    """Token attention of every region over its ``routes`` ``(B, R, topk)``: ``(B, heads, H, W, d_v)``.

    ``grid`` is the region grid ``(nh, nw)`` and ``size`` the tokens per region side ``(rh, rw)``; the map may be
    smaller than ``grid * size`` (bottom / right padding, zero keys and values that take part in the softmax).
    """
    return _RoutingAttentionFn.apply(q, k, v, routes, grid, size, float(scale))
