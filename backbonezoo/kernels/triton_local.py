"""Triton forward and backward kernels of the local attention operators (see ``local.py`` for the specification).

Tensor-core formulation (the way fused neighbourhood attention does it): one program takes a tile of ``TQH x TQW``
queries of one (batch, head) and one dilation group, walks the union of their windows (the tile's key region) in
chunks of ``BLOCK_K`` keys, computes ``Q K^T`` and ``P V`` with ``tl.dot`` and masks every score to its query's own
window; attention keeps an online softmax (the ``(B, heads, H, W, K)`` maps are never written) and saves the
log-sum-exp for the backward. Per axis, with kernel ``k``, stride ``s`` and dilation ``d``:

* stride 1 (sliding neighbourhoods, both borders): positions are split into ``d`` dilation groups, a tile holds
  consecutive members of one group and the window is contiguous in group units (dilation costs nothing extra);
* stride > 1 ('zero' halo / blocked windows): tiles are a multiple of the stride (whole windows), key slots are every
  ``d``-th position of the tile's shared window.

Zero-border keys outside the map are region entries whose key / value rows load as zeros: they take part in the
softmax with logit ``bias`` only, exactly as the reference. The backward has no atomics: a dQ kernel walks the query
tile's key region again, and a separate dK / dV kernel takes a tile of keys and gathers from the queries that see
them (the inverse windows, a contiguous query range per axis). The bias gradient is written per (query, slot), each
entry once, and a relative-position table's gradient is reduced from it with dense one-hot contractions: the whole
backward is deterministic. Offsets are int64, batch x heads x tiles sit on grid axis 0, launches run under the
tensors' device, float64 is computed in float64 (``tl.dot`` in double precision), float32 in IEEE float32 (not
TF32), float16 / bfloat16 on tensor cores with float32 accumulation. Chunk sizes and warps are autotuned on CUDA.

Plain launchers (no autograd; for registered operators to call), all on contiguous ``(B, heads, H, W, d)`` inputs
and a ``Geometry`` (``kernels/_geometry.py``: ``height``, ``width``, ``kernel`` / ``stride`` / ``dilation`` pairs,
``border``, ``slots``, ``tables(device)``); ``kind`` is None, ``'table'`` or ``'query'``:

* ``attention_fwd(q, k, v, geo, bias, kind, scale) -> (out, lse)``; ``lse``: ``(B, heads, H, W)`` float32 (float64
  for float64 inputs);
* ``attention_bwd(grad_out, q, k, v, out, lse, geo, bias, kind, scale, need_bias_grad=True) -> (dq, dk, dv, dbias)``
  (``dbias`` None without a bias or when not needed, else shaped like ``bias``);
* ``scores_fwd(q, k, geo, bias, kind, scale) -> scores`` ``(B, heads, H, W, K)``;
* ``scores_bwd(grad_scores, q, k, geo, bias, kind, scale, need_bias_grad=True) -> (dq, dk, dbias)``;
* ``aggregate_fwd(attn, v, geo) -> out``; ``aggregate_bwd(grad_out, attn, v, geo) -> (dattn, dv)``.

The registered operators (``kernels/triton_ops.py``: ``torch.library.triton_op``, the CUDA implementation) call
them; every launch goes through ``torch.library.wrap_triton``, so a trace (torch.compile, make_fx) records the kernels
themselves and Inductor sees them. ``KERNELS``
names the jitted kernels and ``kernel_source`` gives one kernel's compile signature for a geometry (for
``tools/gpu_readiness.py``, which compiles the variants the models use for sm_80 / sm_90 on any machine). Used for
CUDA tensors (``backend='auto'``) and, for testing, on CPU under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.library import wrap_triton

from ._backend import launch_device

__all__ = [
    'aggregate_bwd',
    'aggregate_fwd',
    'attention_bwd',
    'attention_fwd',
    'scores_bwd',
    'scores_fwd',
]

_BIAS_KINDS = {None: 0, 'table': 1, 'query': 2}
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ---------------------------------------------------------------------------------------------------------------------
# Per-axis window geometry (the rules of ``local.axis_windows`` in working coordinates: group units for stride 1,
# map positions for stride > 1).


@triton.jit
def _wstart(u, members, K: tl.constexpr, S: tl.constexpr, D: tl.constexpr, SHIFT: tl.constexpr):
    """First window key (working coordinates) of queries ``u``."""
    if SHIFT:
        start = tl.minimum(tl.maximum(u - K // 2, 0), members - K)
    elif S == 1:
        start = u - K // 2
    else:
        start = (u // S) * S - D * ((K - S) // 2)
    return start


@triton.jit
def _window(v, start, K: tl.constexpr, STEP: tl.constexpr):
    """Whether key ``v`` lies in the window starting at ``start``, and its slot there (garbage where it does not)."""
    off = v - start
    if STEP == 1:
        inside = (off >= 0) & (off < K)
        slot = off
    else:
        inside = (off >= 0) & (off < K * STEP) & (off % STEP == 0)
        slot = off // STEP
    return inside, slot


@triton.jit
def _query_range(v0, v1, members, K: tl.constexpr, S: tl.constexpr, D: tl.constexpr, SHIFT: tl.constexpr):
    """A contiguous range of queries holding every query whose window meets keys ``v0 .. v1``."""
    if SHIFT:  # a shifted window of query u starts in [u - K + 1, u]
        lo = v0 - (K - 1)
        hi = v1 + K - 1
    elif S == 1:
        lo = v0 - (K - 1) + K // 2
        hi = v1 + K // 2
    else:  # the shared window of query u starts in [u - S + 1 - low, u - low]
        lo = v0 + D * ((K - S) // 2) - (K - 1) * D
        hi = v1 + D * ((K - S) // 2) + S - 1
    return tl.maximum(lo, 0), tl.minimum(hi, members - 1)


@triton.jit
def _axis_tile(index, length, tiles, T: tl.constexpr, G: tl.constexpr):
    """(group, first member, group size) of tile ``index`` along one axis (``tiles`` tiles per group)."""
    g = index // tiles
    return g, (index % tiles) * T, (length - g + G - 1) // G


@triton.jit
def _program(
    height, width, heads, nt_h, nt_w,
    GH: tl.constexpr, GW: tl.constexpr, TQH: tl.constexpr, TQW: tl.constexpr,
):  # fmt: skip
    """Decode grid axis 0 into (batch, head, int64 row base, group / first member / group size per axis)."""
    pid = tl.program_id(0)
    tiles_w = GW * nt_w
    tiles = GH * nt_h * tiles_w
    bn = pid // tiles
    tile = pid % tiles
    gy, u0y, my = _axis_tile(tile // tiles_w, height, nt_h, TQH, GH)
    gx, u0x, mx = _axis_tile(tile % tiles_w, width, nt_w, TQW, GW)
    rowbase = bn.to(tl.int64) * height * width
    return (bn // heads).to(tl.int64), bn % heads, rowbase, gy, u0y, my, gx, u0x, mx


@triton.jit
def _rows(rowbase, gy, gx, uy, ux, width, GH: tl.constexpr, GW: tl.constexpr):
    """Map coordinates and int64 flat rows (``(b * heads + n) * H * W + y * W + x``) of members ``uy, ux``."""
    y = gy + uy * GH
    x = gx + ux * GW
    return y, x, rowbase + (y * width + x).to(tl.int64)


@triton.jit
def _dot(a, b, IEEE: tl.constexpr, ACC: tl.constexpr):
    if IEEE:  # float32 / float64: full precision (the reference is a float32 / float64 matmul), not TF32
        return tl.dot(a, b, input_precision='ieee', out_dtype=ACC)
    return tl.dot(a, b, out_dtype=ACC)


@triton.jit
def _pair_bias(
    BIAS, b, n, uy, ux, vy, vx, y, x, jy, jx, mask, sb_b, sb_n, sb_h, sb_w, sb_k,
    KH: tl.constexpr, KW: tl.constexpr, BIAS_KIND: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """Bias of query (uy, ux) at map (y, x) and key (vy, vx) in slot (jy, jx), elementwise (any 2-D orientation)."""
    if BIAS_KIND == 1:  # table row: key - query + kernel - 1 per axis (working units; tables need STEP == 1)
        rel = (vy - uy + KH - 1) * (2 * KW - 1) + (vx - ux + KW - 1)
        val = tl.load(BIAS + n * ((2 * KH - 1) * (2 * KW - 1)) + rel, mask=mask, other=0.0)
    else:
        off = b * sb_b + n * sb_n + y.to(tl.int64) * sb_h + x.to(tl.int64) * sb_w + (jy * KW + jx) * sb_k
        val = tl.load(BIAS + off, mask=mask, other=0.0)
    return val.to(ACC)


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
def _query_tile(
    rowbase, gy, u0y, my, gx, u0x, mx, width,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GH: tl.constexpr, GW: tl.constexpr, STH: tl.constexpr, STW: tl.constexpr, SHIFT: tl.constexpr,
    TQH: tl.constexpr, TQW: tl.constexpr, BLOCK_Q: tl.constexpr,
):  # fmt: skip
    """The program's queries (members, map coordinates, rows, validity, window starts) and its key region (first
    entry per axis, width, number of entries)."""
    lane = tl.arange(0, BLOCK_Q)
    uy = u0y + lane // TQW
    ux = u0x + lane % TQW
    qvalid = (lane < TQH * TQW) & (uy < my) & (ux < mx)
    y, x, rows = _rows(rowbase, gy, gx, uy, ux, width, GH, GW)
    wsy = _wstart(uy, my, KH, SH, DH, SHIFT)
    wsx = _wstart(ux, mx, KW, SW, DW, SHIFT)
    last_y = tl.minimum(u0y + TQH, my) - 1
    last_x = tl.minimum(u0x + TQW, mx) - 1
    ry = _wstart(u0y, my, KH, SH, DH, SHIFT)
    rx = _wstart(u0x, mx, KW, SW, DW, SHIFT)
    nrx = _wstart(last_x, mx, KW, SW, DW, SHIFT) + (KW - 1) * STW - rx + 1
    nry = _wstart(last_y, my, KH, SH, DH, SHIFT) + (KH - 1) * STH - ry + 1
    count = tl.where((last_y >= u0y) & (last_x >= u0x), nry * nrx, 0)
    return uy, ux, y, x, rows, qvalid, wsy, wsx, ry, rx, nrx, count


@triton.jit
def _region_keys(rowbase, gy, gx, ry, rx, nrx, count, r0, my, mx, width, GH: tl.constexpr, GW: tl.constexpr,
                 BLOCK_K: tl.constexpr):  # fmt: skip
    """Region entries ``r0 .. r0 + BLOCK_K``: members, rows, in-region flag and inside-the-map flag."""
    r = r0 + tl.arange(0, BLOCK_K)
    valid = r < count
    vy = ry + r // nrx
    vx = rx + r % nrx
    inside = valid & (vy >= 0) & (vy < my) & (vx >= 0) & (vx < mx)
    _, _, rows = _rows(rowbase, gy, gx, vy, vx, width, GH, GW)
    return vy, vx, rows, valid, inside


# ---------------------------------------------------------------------------------------------------------------------
# Kernels. Shared constexpr block: KH KW SH SW DH DW (geometry), GH GW (dilation groups per axis), STH STW (key step in
# working units), SHIFT, TQH TQW (tile in members), BLOCK_Q / BLOCK_K (lanes), ACC (accumulator dtype), IEEE.


@triton.jit
def _attention_fwd_kernel(
    Q, K, V, BIAS, OUT, LSE, height, width, heads, nt_h, nt_w, scale,
    sb_b, sb_n, sb_h, sb_w, sb_k,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GH: tl.constexpr, GW: tl.constexpr, STH: tl.constexpr, STW: tl.constexpr, SHIFT: tl.constexpr,
    TQH: tl.constexpr, TQW: tl.constexpr, BIAS_KIND: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr,
    BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, ACC: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    b, n, rowbase, gy, u0y, my, gx, u0x, mx = _program(height, width, heads, nt_h, nt_w, GH, GW, TQH, TQW)
    uy, ux, y, x, rows, qvalid, wsy, wsx, ry, rx, nrx, count = _query_tile(
        rowbase, gy, u0y, my, gx, u0x, mx, width, KH, KW, SH, SW, DH, DW, GH, GW, STH, STW, SHIFT, TQH, TQW, BLOCK_Q
    )
    q = _load_rows(Q, rows, qvalid, DQK, BLOCK_DQK)
    m = tl.full([BLOCK_Q], float('-inf'), ACC)
    denom = tl.zeros([BLOCK_Q], ACC)
    acc = tl.zeros([BLOCK_Q, BLOCK_DV], ACC)
    for r0 in range(0, count, BLOCK_K):
        vy, vx, krows, kvalid, kin = _region_keys(rowbase, gy, gx, ry, rx, nrx, count, r0, my, mx, width, GH, GW,
                                                  BLOCK_K)  # fmt: skip
        k = _load_rows(K, krows, kin, DQK, BLOCK_DQK)
        v = _load_rows(V, krows, kin, DV, BLOCK_DV)
        in_y, jy = _window(vy[None, :], wsy[:, None], KH, STH)
        in_x, jx = _window(vx[None, :], wsx[:, None], KW, STW)
        win = in_y & in_x & kvalid[None, :] & qvalid[:, None]
        s = _dot(q, tl.trans(k), IEEE, ACC) * scale
        if BIAS_KIND != 0:
            s += _pair_bias(BIAS, b, n, uy[:, None], ux[:, None], vy[None, :], vx[None, :], y[:, None], x[:, None],
                            jy, jx, win, sb_b, sb_n, sb_h, sb_w, sb_k, KH, KW, BIAS_KIND, ACC)  # fmt: skip
        s = tl.where(win, s, float('-inf'))
        m_new = tl.maximum(m, tl.max(s, 1))
        m_safe = tl.where(m_new == float('-inf'), 0.0, m_new)  # rows with no key yet: no NaN from -inf - -inf
        alpha = tl.exp(m - m_safe)
        p = tl.exp(s - m_safe[:, None])
        denom = denom * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE, ACC)
        m = m_new
    denom = tl.where(denom > 0, denom, 1.0)  # tile lanes without a query (never stored)
    _store_rows(OUT, rows, acc / denom[:, None], qvalid, DV, BLOCK_DV)
    tl.store(LSE + rows, (m + tl.log(denom)).to(LSE.dtype.element_ty), mask=qvalid)


@triton.jit
def _attention_bwd_dq_kernel(
    Q, K, V, BIAS, DO, LSE, DELTA, DQ, DS, height, width, heads, nt_h, nt_w, scale,
    sb_b, sb_n, sb_h, sb_w, sb_k,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GH: tl.constexpr, GW: tl.constexpr, STH: tl.constexpr, STW: tl.constexpr, SHIFT: tl.constexpr,
    TQH: tl.constexpr, TQW: tl.constexpr, BIAS_KIND: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr,
    BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, ACC: tl.constexpr, IEEE: tl.constexpr, STORE_DS: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """dQ over the query tile's key region; with ``STORE_DS`` the logit gradient per (query, slot) (bias grad)."""
    b, n, rowbase, gy, u0y, my, gx, u0x, mx = _program(height, width, heads, nt_h, nt_w, GH, GW, TQH, TQW)
    uy, ux, y, x, rows, qvalid, wsy, wsx, ry, rx, nrx, count = _query_tile(
        rowbase, gy, u0y, my, gx, u0x, mx, width, KH, KW, SH, SW, DH, DW, GH, GW, STH, STW, SHIFT, TQH, TQW, BLOCK_Q
    )
    q = _load_rows(Q, rows, qvalid, DQK, BLOCK_DQK)
    do = _load_rows(DO, rows, qvalid, DV, BLOCK_DV)
    lse = tl.load(LSE + rows, mask=qvalid, other=0.0).to(ACC)
    delta = tl.load(DELTA + rows, mask=qvalid, other=0.0).to(ACC)
    dq = tl.zeros([BLOCK_Q, BLOCK_DQK], ACC)
    for r0 in range(0, count, BLOCK_K):
        vy, vx, krows, kvalid, kin = _region_keys(rowbase, gy, gx, ry, rx, nrx, count, r0, my, mx, width, GH, GW,
                                                  BLOCK_K)  # fmt: skip
        k = _load_rows(K, krows, kin, DQK, BLOCK_DQK)
        v = _load_rows(V, krows, kin, DV, BLOCK_DV)
        in_y, jy = _window(vy[None, :], wsy[:, None], KH, STH)
        in_x, jx = _window(vx[None, :], wsx[:, None], KW, STW)
        win = in_y & in_x & kvalid[None, :] & qvalid[:, None]
        s = _dot(q, tl.trans(k), IEEE, ACC) * scale
        if BIAS_KIND != 0:
            s += _pair_bias(BIAS, b, n, uy[:, None], ux[:, None], vy[None, :], vx[None, :], y[:, None], x[:, None],
                            jy, jx, win, sb_b, sb_n, sb_h, sb_w, sb_k, KH, KW, BIAS_KIND, ACC)  # fmt: skip
        p = tl.where(win, tl.exp(s - lse[:, None]), 0.0)
        ds = p * (_dot(do, tl.trans(v), IEEE, ACC) - delta[:, None])
        dq += _dot(ds.to(k.dtype), k, IEEE, ACC)
        if STORE_DS:
            tl.store(DS + rows[:, None] * (KH * KW) + (jy * KW + jx), ds.to(DS.dtype.element_ty), mask=win)
    _store_rows(DQ, rows, dq * scale, qvalid, DQK, BLOCK_DQK)


@triton.jit
def _attention_bwd_dkv_kernel(
    Q, K, V, BIAS, DO, LSE, DELTA, DK, DV_, height, width, heads, nt_h, nt_w, scale,
    sb_b, sb_n, sb_h, sb_w, sb_k,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GH: tl.constexpr, GW: tl.constexpr, STH: tl.constexpr, STW: tl.constexpr, SHIFT: tl.constexpr,
    TQH: tl.constexpr, TQW: tl.constexpr, BIAS_KIND: tl.constexpr, DQK: tl.constexpr, DV: tl.constexpr,
    BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, ACC: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_KT: tl.constexpr, BLOCK_Q: tl.constexpr,
):  # fmt: skip
    """dK / dV of a tile of keys, gathered from the queries that see them (no atomics)."""
    b, n, rowbase, gy, v0y, my, gx, v0x, mx = _program(height, width, heads, nt_h, nt_w, GH, GW, TQH, TQW)
    lane = tl.arange(0, BLOCK_KT)
    vy = v0y + lane // TQW
    vx = v0x + lane % TQW
    kvalid = (lane < TQH * TQW) & (vy < my) & (vx < mx)
    _, _, krows = _rows(rowbase, gy, gx, vy, vx, width, GH, GW)
    k = _load_rows(K, krows, kvalid, DQK, BLOCK_DQK)
    v = _load_rows(V, krows, kvalid, DV, BLOCK_DV)
    lo_y, hi_y = _query_range(v0y, tl.minimum(v0y + TQH, my) - 1, my, KH, SH, DH, SHIFT)
    lo_x, hi_x = _query_range(v0x, tl.minimum(v0x + TQW, mx) - 1, mx, KW, SW, DW, SHIFT)
    nqx = hi_x - lo_x + 1
    count = tl.where((hi_y >= lo_y) & (hi_x >= lo_x) & (v0y < my) & (v0x < mx), (hi_y - lo_y + 1) * nqx, 0)
    dk = tl.zeros([BLOCK_KT, BLOCK_DQK], ACC)
    dv = tl.zeros([BLOCK_KT, BLOCK_DV], ACC)
    for r0 in range(0, count, BLOCK_Q):
        r = r0 + tl.arange(0, BLOCK_Q)
        qvalid = r < count
        uy = lo_y + r // nqx
        ux = lo_x + r % nqx
        y, x, rows = _rows(rowbase, gy, gx, uy, ux, width, GH, GW)
        q = _load_rows(Q, rows, qvalid, DQK, BLOCK_DQK)
        do = _load_rows(DO, rows, qvalid, DV, BLOCK_DV)
        lse = tl.load(LSE + rows, mask=qvalid, other=0.0).to(ACC)
        delta = tl.load(DELTA + rows, mask=qvalid, other=0.0).to(ACC)
        in_y, jy = _window(vy[:, None], _wstart(uy, my, KH, SH, DH, SHIFT)[None, :], KH, STH)
        in_x, jx = _window(vx[:, None], _wstart(ux, mx, KW, SW, DW, SHIFT)[None, :], KW, STW)
        win = in_y & in_x & kvalid[:, None] & qvalid[None, :]  # (keys, queries)
        s = _dot(k, tl.trans(q), IEEE, ACC) * scale
        if BIAS_KIND != 0:
            s += _pair_bias(BIAS, b, n, uy[None, :], ux[None, :], vy[:, None], vx[:, None], y[None, :], x[None, :],
                            jy, jx, win, sb_b, sb_n, sb_h, sb_w, sb_k, KH, KW, BIAS_KIND, ACC)  # fmt: skip
        p = tl.where(win, tl.exp(s - lse[None, :]), 0.0)
        dv += _dot(p.to(do.dtype), do, IEEE, ACC)
        ds = p * (_dot(v, tl.trans(do), IEEE, ACC) - delta[None, :])
        dk += _dot(ds.to(q.dtype), q, IEEE, ACC)
    _store_rows(DK, krows, dk * scale, kvalid, DQK, BLOCK_DQK)
    _store_rows(DV_, krows, dv, kvalid, DV, BLOCK_DV)


@triton.jit
def _dots_kernel(
    X, Y, BIAS, OUT, height, width, heads, nt_h, nt_w, scale,
    sb_b, sb_n, sb_h, sb_w, sb_k,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GH: tl.constexpr, GW: tl.constexpr, STH: tl.constexpr, STW: tl.constexpr, SHIFT: tl.constexpr,
    TQH: tl.constexpr, TQW: tl.constexpr, BIAS_KIND: tl.constexpr, DX: tl.constexpr, BLOCK_DX: tl.constexpr,
    ACC: tl.constexpr, IEEE: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """``OUT[q, slot] = scale * X[q] . Y[key(q, slot)] + bias``: local_scores' forward (X = q, Y = k) and
    local_aggregate's attention gradient (X = grad_out, Y = v)."""
    b, n, rowbase, gy, u0y, my, gx, u0x, mx = _program(height, width, heads, nt_h, nt_w, GH, GW, TQH, TQW)
    uy, ux, y, x, rows, qvalid, wsy, wsx, ry, rx, nrx, count = _query_tile(
        rowbase, gy, u0y, my, gx, u0x, mx, width, KH, KW, SH, SW, DH, DW, GH, GW, STH, STW, SHIFT, TQH, TQW, BLOCK_Q
    )
    xq = _load_rows(X, rows, qvalid, DX, BLOCK_DX)
    for r0 in range(0, count, BLOCK_K):
        vy, vx, krows, kvalid, kin = _region_keys(rowbase, gy, gx, ry, rx, nrx, count, r0, my, mx, width, GH, GW,
                                                  BLOCK_K)  # fmt: skip
        yk = _load_rows(Y, krows, kin, DX, BLOCK_DX)
        in_y, jy = _window(vy[None, :], wsy[:, None], KH, STH)
        in_x, jx = _window(vx[None, :], wsx[:, None], KW, STW)
        win = in_y & in_x & kvalid[None, :] & qvalid[:, None]
        s = _dot(xq, tl.trans(yk), IEEE, ACC) * scale
        if BIAS_KIND != 0:
            s += _pair_bias(BIAS, b, n, uy[:, None], ux[:, None], vy[None, :], vx[None, :], y[:, None], x[:, None],
                            jy, jx, win, sb_b, sb_n, sb_h, sb_w, sb_k, KH, KW, BIAS_KIND, ACC)  # fmt: skip
        tl.store(OUT + rows[:, None] * (KH * KW) + (jy * KW + jx), s.to(OUT.dtype.element_ty), mask=win)


@triton.jit
def _gather_kernel(
    A, Y, OUT, height, width, heads, nt_h, nt_w, scale,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GH: tl.constexpr, GW: tl.constexpr, STH: tl.constexpr, STW: tl.constexpr, SHIFT: tl.constexpr,
    TQH: tl.constexpr, TQW: tl.constexpr, DY: tl.constexpr, BLOCK_DY: tl.constexpr,
    ACC: tl.constexpr, IEEE: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """``OUT[q] = scale * sum_slot A[q, slot] * Y[key(q, slot)]``: local_aggregate's forward (A = attn, Y = v) and
    local_scores' query gradient (A = grad_scores, Y = k)."""
    b, n, rowbase, gy, u0y, my, gx, u0x, mx = _program(height, width, heads, nt_h, nt_w, GH, GW, TQH, TQW)
    uy, ux, y, x, rows, qvalid, wsy, wsx, ry, rx, nrx, count = _query_tile(
        rowbase, gy, u0y, my, gx, u0x, mx, width, KH, KW, SH, SW, DH, DW, GH, GW, STH, STW, SHIFT, TQH, TQW, BLOCK_Q
    )
    acc = tl.zeros([BLOCK_Q, BLOCK_DY], ACC)
    for r0 in range(0, count, BLOCK_K):
        vy, vx, krows, kvalid, kin = _region_keys(rowbase, gy, gx, ry, rx, nrx, count, r0, my, mx, width, GH, GW,
                                                  BLOCK_K)  # fmt: skip
        yk = _load_rows(Y, krows, kin, DY, BLOCK_DY)
        in_y, jy = _window(vy[None, :], wsy[:, None], KH, STH)
        in_x, jx = _window(vx[None, :], wsx[:, None], KW, STW)
        win = in_y & in_x & kvalid[None, :] & qvalid[:, None]
        a = tl.load(A + rows[:, None] * (KH * KW) + (jy * KW + jx), mask=win, other=0.0)
        acc += _dot(a.to(yk.dtype), yk, IEEE, ACC)
    _store_rows(OUT, rows, acc * scale, qvalid, DY, BLOCK_DY)


@triton.jit
def _spread_kernel(
    A, X, OUT, height, width, heads, nt_h, nt_w, scale,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GH: tl.constexpr, GW: tl.constexpr, STH: tl.constexpr, STW: tl.constexpr, SHIFT: tl.constexpr,
    TQH: tl.constexpr, TQW: tl.constexpr, DX: tl.constexpr, BLOCK_DX: tl.constexpr,
    ACC: tl.constexpr, IEEE: tl.constexpr, BLOCK_KT: tl.constexpr, BLOCK_Q: tl.constexpr,
):  # fmt: skip
    """``OUT[key] = scale * sum_{q sees key} A[q, slot(q, key)] * X[q]`` over a tile of keys (no atomics):
    local_aggregate's value gradient (A = attn, X = grad_out) and local_scores' key gradient (A = grad, X = q)."""
    b, n, rowbase, gy, v0y, my, gx, v0x, mx = _program(height, width, heads, nt_h, nt_w, GH, GW, TQH, TQW)
    lane = tl.arange(0, BLOCK_KT)
    vy = v0y + lane // TQW
    vx = v0x + lane % TQW
    kvalid = (lane < TQH * TQW) & (vy < my) & (vx < mx)
    _, _, krows = _rows(rowbase, gy, gx, vy, vx, width, GH, GW)
    lo_y, hi_y = _query_range(v0y, tl.minimum(v0y + TQH, my) - 1, my, KH, SH, DH, SHIFT)
    lo_x, hi_x = _query_range(v0x, tl.minimum(v0x + TQW, mx) - 1, mx, KW, SW, DW, SHIFT)
    nqx = hi_x - lo_x + 1
    count = tl.where((hi_y >= lo_y) & (hi_x >= lo_x) & (v0y < my) & (v0x < mx), (hi_y - lo_y + 1) * nqx, 0)
    acc = tl.zeros([BLOCK_KT, BLOCK_DX], ACC)
    for r0 in range(0, count, BLOCK_Q):
        r = r0 + tl.arange(0, BLOCK_Q)
        qvalid = r < count
        uy = lo_y + r // nqx
        ux = lo_x + r % nqx
        _qy, _qx, rows = _rows(rowbase, gy, gx, uy, ux, width, GH, GW)  # not `_`: typed per loop iteration
        xq = _load_rows(X, rows, qvalid, DX, BLOCK_DX)
        in_y, jy = _window(vy[:, None], _wstart(uy, my, KH, SH, DH, SHIFT)[None, :], KH, STH)
        in_x, jx = _window(vx[:, None], _wstart(ux, mx, KW, SW, DW, SHIFT)[None, :], KW, STW)
        win = in_y & in_x & kvalid[:, None] & qvalid[None, :]
        a = tl.load(A + rows[None, :] * (KH * KW) + (jy * KW + jx), mask=win, other=0.0)
        acc += _dot(a.to(xq.dtype), xq, IEEE, ACC)
    _store_rows(OUT, krows, acc * scale, kvalid, DX, BLOCK_DX)


# ---------------------------------------------------------------------------------------------------------------------
# Autotuning (CUDA only; the interpreter runs one configuration). Every kernel only writes its outputs (no
# accumulation into pre-zeroed buffers), so benchmarking a configuration is harmless.


def _configs(name: str) -> list[triton.Config]:
    if os.environ.get('TRITON_INTERPRET', '0') == '1':
        return [triton.Config({name: 32}, num_warps=4)]
    return [triton.Config({name: block}, num_warps=w, num_stages=s) for block in (32, 64) for w in (4, 8)
            for s in (1, 2)]  # fmt: skip


_TUNE_KEY = ['KH', 'KW', 'SH', 'SW', 'DH', 'DW', 'SHIFT', 'TQH', 'TQW', 'BIAS_KIND', 'ACC']
_attention_fwd = triton.autotune(_configs('BLOCK_K'), key=_TUNE_KEY + ['DQK', 'DV'])(_attention_fwd_kernel)
_attention_bwd_dq = triton.autotune(_configs('BLOCK_K'), key=_TUNE_KEY + ['DQK', 'DV', 'STORE_DS'])(
    _attention_bwd_dq_kernel
)
_attention_bwd_dkv = triton.autotune(_configs('BLOCK_Q'), key=_TUNE_KEY + ['DQK', 'DV'])(_attention_bwd_dkv_kernel)
_dots = triton.autotune(_configs('BLOCK_K'), key=_TUNE_KEY + ['DX'])(_dots_kernel)
_gather = triton.autotune(_configs('BLOCK_K'), key=_TUNE_KEY[:-2] + ['ACC', 'DY'])(_gather_kernel)
_spread = triton.autotune(_configs('BLOCK_Q'), key=_TUNE_KEY[:-2] + ['ACC', 'DX'])(_spread_kernel)

# the jitted kernels by name (for tools/gpu_readiness.py) and which of them run in a backward
KERNELS = {
    'attention_fwd': _attention_fwd_kernel,
    'attention_bwd_dq': _attention_bwd_dq_kernel,
    'attention_bwd_dkv': _attention_bwd_dkv_kernel,
    'dots': _dots_kernel,
    'gather': _gather_kernel,
    'spread': _spread_kernel,
}


# ---------------------------------------------------------------------------------------------------------------------
# Launch plan.


def _tile(stride: int) -> int:
    """Members per tile along an axis: 8 for neighbourhoods, whole windows (a multiple of the stride near 8) else."""
    if stride == 1 or stride > 8:
        return 8
    return stride * (8 // stride)


def _block(d: int) -> int:
    return max(16, triton.next_power_of_2(d))  # tl.dot needs every block dimension >= 16


def _plan(geo, batch_heads: int) -> tuple[tuple[int], tuple[int, int], dict]:
    """(grid, (nt_h, nt_w), geometry constexprs) of a problem; the same tiling serves query and key tiles."""
    static, counts = {}, []
    for axis, (name, length) in enumerate((('H', geo.height), ('W', geo.width))):
        k, s, d = geo.kernel[axis], geo.stride[axis], geo.dilation[axis]
        groups, step, tile = (d, 1, _tile(s)) if s == 1 else (1, d, _tile(s))
        static.update({f'K{name}': k, f'S{name}': s, f'D{name}': d, f'G{name}': groups, f'ST{name}': step,
                       f'TQ{name}': tile})  # fmt: skip
        counts.append(triton.cdiv(triton.cdiv(length, groups), tile))
    static['SHIFT'] = geo.border == 'shift'
    programs = batch_heads * static['GH'] * counts[0] * static['GW'] * counts[1]
    if programs >= 2**31:
        raise ValueError(f'local attention (triton): {programs} programs exceed the grid limit 2**31 - 1')
    return (programs,), tuple(counts), static


def _tile_lanes(static: dict) -> int:
    return max(16, triton.next_power_of_2(static['TQH'] * static['TQW']))


def _numerics(dtype: torch.dtype) -> dict:
    if dtype not in _DTYPES:
        raise TypeError(f'local attention (triton): dtype {dtype} is not supported; expected one of {_DTYPES}')
    return dict(ACC=tl.float64 if dtype == torch.float64 else tl.float32, IEEE=dtype in (torch.float32, torch.float64))


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _bias_args(bias: torch.Tensor | None, kind: str | None, ref: torch.Tensor, slots: int):
    """(pointer tensor, strides b/n/h/w/k) for the kernels; per-query biases keep their broadcast strides."""
    if kind is None:
        return ref, (0,) * 5  # never read (BIAS_KIND == 0)
    if kind == 'query':
        return bias, tuple(bias.expand(*ref.shape[:4], slots).stride())
    return bias.contiguous(), (0,) * 5


def _table_grad(dslot: torch.Tensor, geo, bias: torch.Tensor) -> torch.Tensor:
    """Gradient of a relative-position table from the per-(query, slot) logit gradient ``(B, heads, H, W, K)``:
    a batch sum and two one-hot contractions (rows, then columns), deterministic dense ops."""
    kh, kw = geo.kernel
    _, _, rel_h, rel_w = geo.tables(dslot.device)
    one_h = F.one_hot(rel_h, 2 * kh - 1).to(dslot.dtype)  # (H, kh, 2kh - 1)
    one_w = F.one_hot(rel_w, 2 * kw - 1).to(dslot.dtype)  # (W, kw, 2kw - 1)
    per_head = dslot.sum(0).unflatten(-1, (kh, kw))  # (heads, H, W, kh, kw)
    return torch.einsum('nyxab,yap,xbq->npq', per_head, one_h, one_w).to(bias.dtype)


def _query_grad(dslot: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A per-query bias' gradient: ``dslot`` summed over the bias' broadcast axes, always a tensor of its own (an
    operator's output must not alias its inputs, and ``dslot`` may be the incoming gradient itself)."""
    if tuple(bias.shape) == tuple(dslot.shape):
        return dslot.to(bias.dtype, copy=True)
    return dslot.sum_to_size(bias.shape).to(bias.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Plain launchers.


def attention_fwd(q, k, v, geo, bias, kind, scale):
    """``(out, lse)`` of ``softmax(scale * q . k_window + bias) @ v_window``."""
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    batch, heads, height, width, dqk = q.shape
    dv = v.shape[-1]
    grid, (nt_h, nt_w), static = _plan(geo, batch * heads)
    bias_ptr, strides = _bias_args(bias, kind, q, geo.slots)
    out = torch.empty_like(v)
    lse = torch.empty(batch, heads, height, width, dtype=_acc_dtype(q.dtype), device=q.device)
    sizes = (height, width, heads, nt_h, nt_w, float(scale), *strides)
    common = dict(BIAS_KIND=_BIAS_KINDS[kind], DQK=dqk, DV=dv, BLOCK_DQK=_block(dqk), BLOCK_DV=_block(dv))
    with launch_device(q):
        kernel = wrap_triton(_attention_fwd)
        kernel[grid](q, k, v, bias_ptr, out, lse, *sizes, **static, **common, BLOCK_Q=_tile_lanes(static),
                     **_numerics(q.dtype))  # fmt: skip
    return out, lse


def attention_bwd(grad_out, q, k, v, out, lse, geo, bias, kind, scale, need_bias_grad: bool = True):
    """``(dq, dk, dv, dbias)`` of :func:`attention_fwd` (``dbias`` None without a bias or ``need_bias_grad``)."""
    q, k, v, out, grad_out = (t.contiguous() for t in (q, k, v, out, grad_out))
    batch, heads, height, width, dqk = q.shape
    dv = v.shape[-1]
    grid, (nt_h, nt_w), static = _plan(geo, batch * heads)
    acc = _acc_dtype(q.dtype)
    delta = (grad_out.to(acc) * out.to(acc)).sum(-1)
    bias_ptr, strides = _bias_args(bias, kind, q, geo.slots)
    store_ds = kind is not None and need_bias_grad
    dslot = torch.empty(batch, heads, height, width, geo.slots, dtype=acc, device=q.device) if store_ds else delta
    dq, dk, dval = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    common = dict(BIAS_KIND=_BIAS_KINDS[kind], DQK=dqk, DV=dv, BLOCK_DQK=_block(dqk), BLOCK_DV=_block(dv),
                  **static, **_numerics(q.dtype))  # fmt: skip
    sizes = (height, width, heads, nt_h, nt_w, float(scale), *strides)
    lanes = _tile_lanes(static)
    with launch_device(q):
        kernel = wrap_triton(_attention_bwd_dq)
        kernel[grid](q, k, v, bias_ptr, grad_out, lse, delta, dq, dslot, *sizes, **common, STORE_DS=store_ds,
                     BLOCK_Q=lanes)  # fmt: skip
        kernel = wrap_triton(_attention_bwd_dkv)
        kernel[grid](q, k, v, bias_ptr, grad_out, lse, delta, dk, dval, *sizes, **common, BLOCK_KT=lanes)
    dbias = None
    if store_ds:
        dbias = _table_grad(dslot, geo, bias) if kind == 'table' else _query_grad(dslot, bias)
    return dq, dk, dval, dbias


def scores_fwd(q, k, geo, bias, kind, scale):
    """``scale * q . k_window + bias`` as ``(B, heads, H, W, K)``."""
    q, k = q.contiguous(), k.contiguous()
    batch, heads, height, width, dqk = q.shape
    grid, (nt_h, nt_w), static = _plan(geo, batch * heads)
    bias_ptr, strides = _bias_args(bias, kind, q, geo.slots)
    scores = torch.empty(batch, heads, height, width, geo.slots, dtype=q.dtype, device=q.device)
    sizes = (height, width, heads, nt_h, nt_w, float(scale), *strides)
    with launch_device(q):
        kernel = wrap_triton(_dots)
        kernel[grid](q, k, bias_ptr, scores, *sizes, **static, BIAS_KIND=_BIAS_KINDS[kind], DX=dqk,
                     BLOCK_DX=_block(dqk), BLOCK_Q=_tile_lanes(static), **_numerics(q.dtype))  # fmt: skip
    return scores


def scores_bwd(grad_scores, q, k, geo, bias, kind, scale, need_bias_grad: bool = True):
    """``(dq, dk, dbias)`` of :func:`scores_fwd`."""
    grad_scores, q, k = grad_scores.contiguous(), q.contiguous(), k.contiguous()
    batch, heads, height, width, dqk = q.shape
    grid, (nt_h, nt_w), static = _plan(geo, batch * heads)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    common = dict(**static, **_numerics(q.dtype))
    sizes = (height, width, heads, nt_h, nt_w, float(scale))
    lanes = _tile_lanes(static)
    with launch_device(q):
        kernel = wrap_triton(_gather)
        kernel[grid](grad_scores, k, dq, *sizes, **common, DY=dqk, BLOCK_DY=_block(dqk), BLOCK_Q=lanes)
        kernel = wrap_triton(_spread)
        kernel[grid](grad_scores, q, dk, *sizes, **common, DX=dqk, BLOCK_DX=_block(dqk), BLOCK_KT=lanes)
    dbias = None
    if kind is not None and need_bias_grad:  # the bias enters the scores unchanged
        dslot = grad_scores.to(_acc_dtype(q.dtype))
        dbias = _table_grad(dslot, geo, bias) if kind == 'table' else _query_grad(dslot, bias)
    return dq, dk, dbias


def aggregate_fwd(attn, v, geo):
    """``sum_j attn[..., j] * v[key_j]`` as ``(B, heads, H, W, d_v)``."""
    attn, v = attn.contiguous(), v.contiguous()
    batch, heads, height, width, dv = v.shape
    grid, (nt_h, nt_w), static = _plan(geo, batch * heads)
    out = torch.empty_like(v)
    sizes = (height, width, heads, nt_h, nt_w, 1.0)
    with launch_device(v):
        kernel = wrap_triton(_gather)
        kernel[grid](attn, v, out, *sizes, **static, DY=dv, BLOCK_DY=_block(dv), BLOCK_Q=_tile_lanes(static),
                     **_numerics(v.dtype))  # fmt: skip
    return out


def aggregate_bwd(grad_out, attn, v, geo):
    """``(dattn, dv)`` of :func:`aggregate_fwd`."""
    grad_out, attn, v = grad_out.contiguous(), attn.contiguous(), v.contiguous()
    batch, heads, height, width, dv = v.shape
    grid, (nt_h, nt_w), static = _plan(geo, batch * heads)
    dattn, dval = torch.empty_like(attn), torch.empty_like(v)
    sizes = (height, width, heads, nt_h, nt_w, 1.0)
    common = dict(**static, **_numerics(v.dtype), DX=dv, BLOCK_DX=_block(dv))
    lanes = _tile_lanes(static)
    with launch_device(v):
        kernel = wrap_triton(_dots)
        kernel[grid](grad_out, v, v, dattn, *sizes, *(0,) * 5, **common, BIAS_KIND=0, BLOCK_Q=lanes)
        kernel = wrap_triton(_spread)
        kernel[grid](attn, grad_out, dval, *sizes, **common, BLOCK_KT=lanes)
    return dattn, dval


# ---------------------------------------------------------------------------------------------------------------------
# Compile specifications (for tools/gpu_readiness.py: ahead-of-time compilation for sm_80 / sm_90 on any machine).

_TRITON_DTYPES = {torch.float16: 'fp16', torch.bfloat16: 'bf16', torch.float32: 'fp32', torch.float64: 'fp64'}
_ACC_POINTERS = ('LSE', 'DELTA', 'DS')  # float32 (float64 for float64 inputs) whatever the input dtype
_CHUNK = {'attention_bwd_dkv': 'BLOCK_Q', 'spread': 'BLOCK_Q'}  # the autotuned lane count of each kernel


def kernel_source(
    name: str,
    dtype: torch.dtype,
    *,
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    border: str = 'shift',
    dqk: int = 32,
    dv: int | None = None,
    bias_kind: str | None = None,
    chunk: int = 64,
    store_ds: bool = True,
):
    """``(jit function, signature, constexprs)`` of kernel ``name`` (a key of ``KERNELS``) for one geometry, as
    ``triton.compiler.ASTSource`` takes them; ``chunk`` is the autotuned lane count (BLOCK_K or BLOCK_Q). The
    single-operand kernels (dots / gather / spread) read rows of ``dqk`` values."""
    from types import SimpleNamespace

    fn = KERNELS[name]
    dv = dqk if dv is None else dv
    geo = SimpleNamespace(height=64, width=64, kernel=tuple(kernel_size), stride=tuple(stride),
                          dilation=tuple(dilation), border=border)  # fmt: skip
    _, _, static = _plan(geo, 1)
    lanes = _tile_lanes(static)
    constexprs = dict(static, **_numerics(dtype))
    constexprs[_CHUNK.get(name, 'BLOCK_K')] = chunk
    constexprs['BLOCK_KT' if name in _CHUNK else 'BLOCK_Q'] = lanes
    depth = {'DQK': dqk, 'DV': dv, 'DX': dqk, 'DY': dqk}  # dots / gather / spread read rows of ``dqk`` values
    for key, value in depth.items():
        constexprs[key] = value
        constexprs[f'BLOCK_{key}'] = _block(value)
    constexprs['BIAS_KIND'] = _BIAS_KINDS[bias_kind]
    constexprs['STORE_DS'] = store_ds and bias_kind is not None
    params = fn.arg_names
    constexprs = {k: v for k, v in constexprs.items() if k in params}
    elem, acc = _TRITON_DTYPES[dtype], _TRITON_DTYPES[_acc_dtype(dtype)]
    signature = {}
    for arg in params:
        if arg in constexprs:
            signature[arg] = 'constexpr'
        elif arg == 'scale':
            signature[arg] = 'fp32'
        elif arg.isupper() or arg == 'DV_':
            signature[arg] = f'*{acc if arg in _ACC_POINTERS else elem}'
        else:
            signature[arg] = 'i32'
    missing = [p for p in params if p not in signature]
    if missing:
        raise ValueError(f'kernel_source({name!r}): no value for {missing}')
    return fn, signature, constexprs
