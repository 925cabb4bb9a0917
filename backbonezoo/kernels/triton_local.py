"""Triton forward and backward kernels of the local attention operators (see ``local.py`` for the specification).

One program handles ``BLOCK_Q`` queries of one (batch, head) and walks the ``kh * kw`` window slots, computing each
query's key position with the same rules as ``local.axis_windows`` (so no index tensors are read): attention keeps an
online softmax (the ``(B, heads, H, W, K)`` maps are never written) and saves the log-sum-exp for the backward, which
recomputes the probabilities. Key / value / table gradients are scattered with atomic adds (keys are shared by many
queries); they accumulate in float32 whatever the input dtype. Every border, stride, dilation and both bias forms
are covered: per-query biases are read through their (broadcast) strides.

Used for CUDA tensors (``backend='auto'``) and, for testing, on CPU under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ['triton_aggregate', 'triton_attention', 'triton_scores']

_BIAS_KINDS = {None: 0, 'table': 1, 'query': 2}


@triton.jit
def _axis_key(i, length, j, KERNEL: tl.constexpr, STRIDE: tl.constexpr, DILATION: tl.constexpr, SHIFT: tl.constexpr):
    """Key position, inside-the-map flag and bias-table row of window slot ``j`` for query positions ``i``."""
    if SHIFT:  # NATTEN: window centred in the query's dilation group, shifted to stay inside the group
        group = i % DILATION
        pos = i // DILATION
        group_len = (length - group + DILATION - 1) // DILATION
        start = tl.minimum(tl.maximum(pos - KERNEL // 2, 0), group_len - KERNEL)
        key = group + (start + j) * DILATION
        rel = start + j - pos + KERNEL - 1
        inside = key < length
    else:  # zero border: the query tile's shared window; offsets are multiples of the dilation wherever a table is used
        key = (i // STRIDE) * STRIDE - DILATION * ((KERNEL - STRIDE) // 2) + j * DILATION
        inside = (key >= 0) & (key < length)
        rel = (key - i) // DILATION + KERNEL - 1
    return key, inside, rel


@triton.jit
def _slot(
    y, x, j, height, width,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    SHIFT: tl.constexpr,
):  # fmt: skip
    ky, in_y, ry = _axis_key(y, height, j // KW, KH, SH, DH, SHIFT)
    kx, in_x, rx = _axis_key(x, width, j % KW, KW, SW, DW, SHIFT)
    return ky * width + kx, in_y & in_x, ry * (2 * KW - 1) + rx


@triton.jit
def _logits(
    q, K, k_base, kpos, inside, rel, j, BIAS, b, n, y, x, qmask, scale, cq,
    sb_b, sb_n, sb_h, sb_w, sb_k,
    DQK: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, BIAS_KIND: tl.constexpr,
):  # fmt: skip
    kmask = inside[:, None] & (cq[None, :] < DQK)
    k = tl.load(K + k_base + kpos[:, None] * DQK + cq[None, :], mask=kmask, other=0.0).to(tl.float32)
    s = tl.sum(q * k, 1) * scale
    if BIAS_KIND == 1:
        s += tl.load(BIAS + n * ((2 * KH - 1) * (2 * KW - 1)) + rel, mask=qmask, other=0.0).to(tl.float32)
    if BIAS_KIND == 2:
        offset = b * sb_b + n * sb_n + y * sb_h + x * sb_w + j * sb_k
        s += tl.load(BIAS + offset, mask=qmask, other=0.0).to(tl.float32)
    return s, k


@triton.jit
def _attention_fwd(
    Q, K, V, BIAS, OUT, LSE, height, width, heads, scale,
    sb_b, sb_n, sb_h, sb_w, sb_k,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    SHIFT: tl.constexpr, BIAS_KIND: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    bn = tl.program_id(1)
    b, n = bn // heads, bn % heads
    offs = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qmask = offs < height * width
    y, x = offs // width, offs % width
    cq, cv = tl.arange(0, BLOCK_DQK), tl.arange(0, BLOCK_DV)
    k_base, v_base = bn * height * width * DQK, bn * height * width * DV
    q = tl.load(Q + k_base + offs[:, None] * DQK + cq[None, :], mask=qmask[:, None] & (cq[None, :] < DQK), other=0.0)
    q = q.to(tl.float32)
    m = tl.full([BLOCK_Q], float('-inf'), tl.float32)
    denom = tl.zeros([BLOCK_Q], tl.float32)
    acc = tl.zeros([BLOCK_Q, BLOCK_DV], tl.float32)
    for j in range(0, KH * KW):
        kpos, inside, rel = _slot(y, x, j, height, width, KH, KW, SH, SW, DH, DW, SHIFT)
        inside = inside & qmask
        s, _ = _logits(q, K, k_base, kpos, inside, rel, j, BIAS, b, n, y, x, qmask, scale, cq,
                       sb_b, sb_n, sb_h, sb_w, sb_k, DQK, KH, KW, BIAS_KIND)  # fmt: skip
        m_new = tl.maximum(m, s)
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new)
        vmask = inside[:, None] & (cv[None, :] < DV)
        v = tl.load(V + v_base + kpos[:, None] * DV + cv[None, :], mask=vmask, other=0.0).to(tl.float32)
        denom = denom * alpha + p
        acc = acc * alpha[:, None] + p[:, None] * v
        m = m_new
    out = acc / denom[:, None]
    omask = qmask[:, None] & (cv[None, :] < DV)
    tl.store(OUT + v_base + offs[:, None] * DV + cv[None, :], out.to(OUT.dtype.element_ty), mask=omask)
    tl.store(LSE + bn * height * width + offs, m + tl.log(denom), mask=qmask)


@triton.jit
def _attention_bwd(
    Q, K, V, BIAS, DO, LSE, DELTA, DQ, DK, DV_, DB, height, width, heads, scale,
    sb_b, sb_n, sb_h, sb_w, sb_k,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    SHIFT: tl.constexpr, BIAS_KIND: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    bn = tl.program_id(1)
    b, n = bn // heads, bn % heads
    offs = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qmask = offs < height * width
    y, x = offs // width, offs % width
    cq, cv = tl.arange(0, BLOCK_DQK), tl.arange(0, BLOCK_DV)
    k_base, v_base, row = bn * height * width * DQK, bn * height * width * DV, bn * height * width + offs
    q_mask2 = qmask[:, None] & (cq[None, :] < DQK)
    q = tl.load(Q + k_base + offs[:, None] * DQK + cq[None, :], mask=q_mask2, other=0.0).to(tl.float32)
    do = tl.load(DO + v_base + offs[:, None] * DV + cv[None, :], mask=qmask[:, None] & (cv[None, :] < DV), other=0.0)
    do = do.to(tl.float32)
    lse = tl.load(LSE + row, mask=qmask, other=0.0)
    delta = tl.load(DELTA + row, mask=qmask, other=0.0)
    dq = tl.zeros([BLOCK_Q, BLOCK_DQK], tl.float32)
    for j in range(0, KH * KW):
        kpos, inside, rel = _slot(y, x, j, height, width, KH, KW, SH, SW, DH, DW, SHIFT)
        inside = inside & qmask
        s, k = _logits(q, K, k_base, kpos, inside, rel, j, BIAS, b, n, y, x, qmask, scale, cq,
                       sb_b, sb_n, sb_h, sb_w, sb_k, DQK, KH, KW, BIAS_KIND)  # fmt: skip
        p = tl.where(qmask, tl.exp(s - lse), 0.0)
        vmask = inside[:, None] & (cv[None, :] < DV)
        v = tl.load(V + v_base + kpos[:, None] * DV + cv[None, :], mask=vmask, other=0.0).to(tl.float32)
        ds = p * (tl.sum(do * v, 1) - delta)
        dq += ds[:, None] * k
        kmask = inside[:, None] & (cq[None, :] < DQK)
        tl.atomic_add(DK + k_base + kpos[:, None] * DQK + cq[None, :], ds[:, None] * q * scale, mask=kmask)
        tl.atomic_add(DV_ + v_base + kpos[:, None] * DV + cv[None, :], p[:, None] * do, mask=vmask)
        if BIAS_KIND == 1:
            tl.atomic_add(DB + n * ((2 * KH - 1) * (2 * KW - 1)) + rel, ds, mask=qmask)
        if BIAS_KIND == 2:
            tl.store(DB + row * (KH * KW) + j, ds, mask=qmask)
    tl.store(DQ + k_base + offs[:, None] * DQK + cq[None, :], (dq * scale).to(DQ.dtype.element_ty), mask=q_mask2)


@triton.jit
def _scores_fwd(
    Q, K, BIAS, S, height, width, heads, scale,
    sb_b, sb_n, sb_h, sb_w, sb_k,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    SHIFT: tl.constexpr, BIAS_KIND: tl.constexpr, DQK: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_DQK: tl.constexpr,
):  # fmt: skip
    bn = tl.program_id(1)
    b, n = bn // heads, bn % heads
    offs = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qmask = offs < height * width
    y, x = offs // width, offs % width
    cq = tl.arange(0, BLOCK_DQK)
    k_base, row = bn * height * width * DQK, bn * height * width + offs
    q = tl.load(Q + k_base + offs[:, None] * DQK + cq[None, :], mask=qmask[:, None] & (cq[None, :] < DQK), other=0.0)
    q = q.to(tl.float32)
    for j in range(0, KH * KW):
        kpos, inside, rel = _slot(y, x, j, height, width, KH, KW, SH, SW, DH, DW, SHIFT)
        s, _ = _logits(q, K, k_base, kpos, inside & qmask, rel, j, BIAS, b, n, y, x, qmask, scale, cq,
                       sb_b, sb_n, sb_h, sb_w, sb_k, DQK, KH, KW, BIAS_KIND)  # fmt: skip
        tl.store(S + row * (KH * KW) + j, s.to(S.dtype.element_ty), mask=qmask)


@triton.jit
def _scores_bwd(
    Q, K, DS, DQ, DK, DB, height, width, heads, scale,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    SHIFT: tl.constexpr, BIAS_KIND: tl.constexpr, DQK: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_DQK: tl.constexpr,
):  # fmt: skip
    bn = tl.program_id(1)
    n = bn % heads
    offs = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qmask = offs < height * width
    y, x = offs // width, offs % width
    cq = tl.arange(0, BLOCK_DQK)
    k_base, row = bn * height * width * DQK, bn * height * width + offs
    q_mask2 = qmask[:, None] & (cq[None, :] < DQK)
    q = tl.load(Q + k_base + offs[:, None] * DQK + cq[None, :], mask=q_mask2, other=0.0).to(tl.float32)
    dq = tl.zeros([BLOCK_Q, BLOCK_DQK], tl.float32)
    for j in range(0, KH * KW):
        kpos, inside, rel = _slot(y, x, j, height, width, KH, KW, SH, SW, DH, DW, SHIFT)
        inside = inside & qmask
        g = tl.load(DS + row * (KH * KW) + j, mask=qmask, other=0.0).to(tl.float32)
        kmask = inside[:, None] & (cq[None, :] < DQK)
        k = tl.load(K + k_base + kpos[:, None] * DQK + cq[None, :], mask=kmask, other=0.0).to(tl.float32)
        dq += g[:, None] * k
        tl.atomic_add(DK + k_base + kpos[:, None] * DQK + cq[None, :], g[:, None] * q * scale, mask=kmask)
        if BIAS_KIND == 1:
            tl.atomic_add(DB + n * ((2 * KH - 1) * (2 * KW - 1)) + rel, g, mask=qmask)
    tl.store(DQ + k_base + offs[:, None] * DQK + cq[None, :], (dq * scale).to(DQ.dtype.element_ty), mask=q_mask2)


@triton.jit
def _aggregate_fwd(
    A, V, OUT, height, width,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    SHIFT: tl.constexpr, DV: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    bn = tl.program_id(1)
    offs = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qmask = offs < height * width
    y, x = offs // width, offs % width
    cv = tl.arange(0, BLOCK_DV)
    v_base, row = bn * height * width * DV, bn * height * width + offs
    acc = tl.zeros([BLOCK_Q, BLOCK_DV], tl.float32)
    for j in range(0, KH * KW):
        kpos, inside, _ = _slot(y, x, j, height, width, KH, KW, SH, SW, DH, DW, SHIFT)
        a = tl.load(A + row * (KH * KW) + j, mask=qmask, other=0.0).to(tl.float32)
        vmask = (inside & qmask)[:, None] & (cv[None, :] < DV)
        v = tl.load(V + v_base + kpos[:, None] * DV + cv[None, :], mask=vmask, other=0.0).to(tl.float32)
        acc += a[:, None] * v
    omask = qmask[:, None] & (cv[None, :] < DV)
    tl.store(OUT + v_base + offs[:, None] * DV + cv[None, :], acc.to(OUT.dtype.element_ty), mask=omask)


@triton.jit
def _aggregate_bwd(
    A, V, DO, DA, DV_, height, width,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    SHIFT: tl.constexpr, DV: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    bn = tl.program_id(1)
    offs = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qmask = offs < height * width
    y, x = offs // width, offs % width
    cv = tl.arange(0, BLOCK_DV)
    v_base, row = bn * height * width * DV, bn * height * width + offs
    do = tl.load(DO + v_base + offs[:, None] * DV + cv[None, :], mask=qmask[:, None] & (cv[None, :] < DV), other=0.0)
    do = do.to(tl.float32)
    for j in range(0, KH * KW):
        kpos, inside, _ = _slot(y, x, j, height, width, KH, KW, SH, SW, DH, DW, SHIFT)
        a = tl.load(A + row * (KH * KW) + j, mask=qmask, other=0.0).to(tl.float32)
        vmask = (inside & qmask)[:, None] & (cv[None, :] < DV)
        v = tl.load(V + v_base + kpos[:, None] * DV + cv[None, :], mask=vmask, other=0.0).to(tl.float32)
        tl.store(DA + row * (KH * KW) + j, tl.sum(do * v, 1).to(DA.dtype.element_ty), mask=qmask)
        tl.atomic_add(DV_ + v_base + kpos[:, None] * DV + cv[None, :], a[:, None] * do, mask=vmask)


# ---------------------------------------------------------------------------------------------------------------------
# Launch helpers and autograd functions.

_BLOCK_Q = 64


def _launch_args(geo, height: int, width: int, batch_heads: int):
    grid = (triton.cdiv(height * width, _BLOCK_Q), batch_heads)
    static = dict(
        KH=geo.kernel[0], KW=geo.kernel[1], SH=geo.stride[0], SW=geo.stride[1],
        DH=geo.dilation[0], DW=geo.dilation[1], SHIFT=geo.border == 'shift', BLOCK_Q=_BLOCK_Q,
    )  # fmt: skip
    return grid, static


def _block(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def _bias_args(bias: torch.Tensor, kind: str, shape: tuple[int, ...], slots: int):
    """(pointer tensor, strides b/n/h/w/k) for the kernels; per-query biases keep their broadcast strides."""
    if kind == 'query':
        return bias, tuple(bias.expand(*shape, slots).stride())
    return bias.contiguous(), (0,) * 5


def _dummy(ref: torch.Tensor) -> torch.Tensor:
    return torch.empty(1, dtype=ref.dtype, device=ref.device)


class _AttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, geo, kind, scale):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        batch, heads, height, width, dqk = q.shape
        dv = v.shape[-1]
        bias_ptr, strides = _bias_args(bias, kind, q.shape[:4], geo.slots) if kind else (_dummy(q), (0,) * 5)
        out = torch.empty_like(v)
        lse = torch.empty(batch, heads, height, width, dtype=torch.float32, device=q.device)
        grid, static = _launch_args(geo, height, width, batch * heads)
        _attention_fwd[grid](
            q, k, v, bias_ptr, out, lse, height, width, heads, scale, *strides, **static,
            BIAS_KIND=_BIAS_KINDS[kind], DQK=dqk, DV=dv, BLOCK_DQK=_block(dqk), BLOCK_DV=_block(dv),
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, bias if kind else None, out, lse)
        ctx.geo, ctx.kind, ctx.scale = geo, kind, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias, out, lse = ctx.saved_tensors
        geo, kind, scale = ctx.geo, ctx.kind, ctx.scale
        batch, heads, height, width, dqk = q.shape
        dv = v.shape[-1]
        grad_out = grad_out.contiguous()
        delta = (grad_out.float() * out.float()).sum(-1)
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
        dval = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
        bias_ptr, strides = _bias_args(bias, kind, q.shape[:4], geo.slots) if kind else (_dummy(q), (0,) * 5)
        if kind == 'table':
            db = torch.zeros(bias.shape, dtype=torch.float32, device=q.device)
        elif kind == 'query':
            db = torch.empty(batch, heads, height, width, geo.slots, dtype=torch.float32, device=q.device)
        else:
            db = torch.empty(1, dtype=torch.float32, device=q.device)
        grid, static = _launch_args(geo, height, width, batch * heads)
        _attention_bwd[grid](
            q, k, v, bias_ptr, grad_out, lse, delta, dq, dk, dval, db, height, width, heads, scale, *strides,
            **static, BIAS_KIND=_BIAS_KINDS[kind], DQK=dqk, DV=dv, BLOCK_DQK=_block(dqk), BLOCK_DV=_block(dv),
        )  # fmt: skip
        grad_bias = None
        if kind is not None and ctx.needs_input_grad[3]:
            grad_bias = (db if kind == 'table' else db.sum_to_size(bias.shape)).to(bias.dtype)
        return dq, dk.to(k.dtype), dval.to(v.dtype), grad_bias, None, None, None


class _ScoresFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, bias, geo, kind, scale):
        q, k = q.contiguous(), k.contiguous()
        batch, heads, height, width, dqk = q.shape
        bias_ptr, strides = _bias_args(bias, kind, q.shape[:4], geo.slots) if kind else (_dummy(q), (0,) * 5)
        scores = torch.empty(batch, heads, height, width, geo.slots, dtype=q.dtype, device=q.device)
        grid, static = _launch_args(geo, height, width, batch * heads)
        _scores_fwd[grid](
            q, k, bias_ptr, scores, height, width, heads, scale, *strides, **static,
            BIAS_KIND=_BIAS_KINDS[kind], DQK=dqk, BLOCK_DQK=_block(dqk),
        )  # fmt: skip
        ctx.save_for_backward(q, k)
        ctx.geo, ctx.kind, ctx.scale = geo, kind, scale
        ctx.bias_shape = None if bias is None else bias.shape
        return scores

    @staticmethod
    def backward(ctx, grad_scores):
        q, k = ctx.saved_tensors
        geo, kind, scale = ctx.geo, ctx.kind, ctx.scale
        batch, heads, height, width, dqk = q.shape
        grad_scores = grad_scores.contiguous()
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
        db = torch.zeros(ctx.bias_shape if kind == 'table' else (1,), dtype=torch.float32, device=q.device)
        grid, static = _launch_args(geo, height, width, batch * heads)
        _scores_bwd[grid](
            q, k, grad_scores, dq, dk, db, height, width, heads, scale, **static,
            BIAS_KIND=_BIAS_KINDS[kind], DQK=dqk, BLOCK_DQK=_block(dqk),
        )  # fmt: skip
        grad_bias = None
        if kind == 'table':
            grad_bias = db.to(q.dtype)
        elif kind == 'query':  # the bias enters the scores unchanged
            grad_bias = grad_scores.sum_to_size(ctx.bias_shape)
        return dq, dk.to(k.dtype), grad_bias, None, None, None


class _AggregateFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attn, v, geo):
        attn, v = attn.contiguous(), v.contiguous()
        batch, heads, height, width, dv = v.shape
        out = torch.empty_like(v)
        grid, static = _launch_args(geo, height, width, batch * heads)
        _aggregate_fwd[grid](attn, v, out, height, width, **static, DV=dv, BLOCK_DV=_block(dv))
        ctx.save_for_backward(attn, v)
        ctx.geo = geo
        return out

    @staticmethod
    def backward(ctx, grad_out):
        attn, v = ctx.saved_tensors
        batch, heads, height, width, dv = v.shape
        grad_out = grad_out.contiguous()
        dattn = torch.empty_like(attn)
        dval = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
        grid, static = _launch_args(ctx.geo, height, width, batch * heads)
        _aggregate_bwd[grid](attn, v, grad_out, dattn, dval, height, width, **static, DV=dv, BLOCK_DV=_block(dv))
        return dattn, dval.to(v.dtype), None


def triton_attention(q, k, v, geo, bias, kind, scale):
    return _AttentionFn.apply(q, k, v, bias, geo, kind, scale)


def triton_scores(q, k, geo, bias, kind, scale):
    return _ScoresFn.apply(q, k, bias, geo, kind, scale)


def triton_aggregate(attn, v, geo):
    return _AggregateFn.apply(attn, v, geo)
