"""FlexAttention backend (``torch.nn.attention.flex_attention``) of local attention and routing attention.

Functions mirror the reference signatures (``backends/local_reference.py``, ``triton_routing.py``):

* ``attention(q, k, v, geo, bias, kind, scale)``: local attention as one ``flex_attention`` call over the map's tokens
  with a ``BlockMask``. Queries are the map's tokens, keys / values the tokens of the map zero-padded by the reach of
  the windows ('zero' border: outside keys are zeros that take part in the softmax, exactly the specification),
  both put in a tile order: per axis dilation group, then tiles of 8 members (whole windows for strided 'zero'
  tilings), so that each query block's windows cover few key blocks (dilation costs nothing: a token permutation).
  ``mask_mod`` keeps every query in its own window (start + j * dilation, per axis), ``score_mod`` adds a
  relative-position table (entry ``(key - query) / dilation + k - 1`` per axis) or a per-query bias (by window slot);
  both gather from captured tensors, so the bias is trainable where FlexAttention has a backward (CUDA).
* ``scores(q, k, geo, bias, kind, scale)`` / ``aggregate(attn, v, geo)``: FlexAttention has no form for raw window
  logits or for arbitrary (unnormalised) weights; these two run the reference backend.
* ``routing_attention(q, k, v, routes, grid, size, scale)``: BiFormer's token attention with
  ``BlockMask.from_kv_blocks`` over region-major tokens (one sparse block per region, its ``topk`` routed regions as
  its key blocks, and a ``mask_mod`` saying the same per token, as the eager path reads only that; zero-padded
  grids are zero tokens that take part in the softmax; block lanes past a region's tokens are masked).

On CUDA the call goes through ``torch.compile(flex_attention)`` (the fused kernel; forward and backward); on CPU the
eager implementation runs (forward only in torch 2.14: FlexAttention has no CPU backward). Checked against the
reference on CPU in float32 (tests/test_kernels_triton.py); plans (permutations, lookup tables, block masks) are
cached per geometry and device.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ['aggregate', 'attention', 'routing_attention', 'scores']

_TILE = 8


def _flex():
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention


@functools.cache
def _compiled_flex():
    return torch.compile(_flex(), dynamic=False)


def _run(q, k, v, **kwargs):
    fn = _compiled_flex() if q.is_cuda else _flex()
    return fn(q, k, v, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Local attention.


def _axis_plan(length: int, kernel: int, stride: int, dilation: int, border: str, device):
    """Window start (padded coordinates) of every position, padding below / above, and the tile-order sort keys of
    query positions and of padded key positions."""
    i = torch.arange(length, device=device)
    if border == 'shift':
        group, pos = i % dilation, i // dilation
        members = (length - group + dilation - 1) // dilation
        start = group + torch.minimum((pos - kernel // 2).clamp_min(0), members - kernel) * dilation
        low = high = 0
    else:
        start = (i // stride) * stride - dilation * ((kernel - stride) // 2)
        low = max(0, -int(start.min()))
        high = max(0, int(start.max()) + (kernel - 1) * dilation - (length - 1))
    groups, tile = (
        (dilation, _TILE) if stride == 1 else (1, stride * max(1, _TILE // stride) if stride <= _TILE else _TILE)
    )

    def order(p):  # (group, tile, lane) of map coordinates p (negative / past the end for padded keys)
        member = torch.div(p, groups, rounding_mode='floor')
        return p - member * groups, torch.div(member, tile, rounding_mode='floor'), member % tile

    padded = torch.arange(-low, length + high, device=device)
    return start + low, low, high, order(i), order(padded)


def _sort_order(keys_y, keys_x) -> torch.Tensor:
    """Permutation sorting 2-D positions by (group y, group x, tile y, tile x, lane y, lane x)."""
    (gy, ty, ly), (gx, tx, lx) = keys_y, keys_x
    parts = [gy[:, None], gx[None, :], ty[:, None], tx[None, :], ly[:, None], lx[None, :]]
    shape = (gy.numel(), gx.numel())
    composite = torch.zeros(shape, dtype=torch.int64, device=gy.device)
    for part in parts:
        part = part - part.min()
        composite = composite * (int(part.max()) + 1) + part.expand(shape)
    return torch.argsort(composite.flatten(), stable=True)


@functools.lru_cache(maxsize=64)
def _local_plan(geo, device: torch.device):
    axes = [_axis_plan(length, geo.kernel[a], geo.stride[a], geo.dilation[a], geo.border, device)
            for a, length in enumerate((geo.height, geo.width))]  # fmt: skip
    (start_h, low_h, high_h, qkey_h, kkey_h), (start_w, low_w, high_w, qkey_w, kkey_w) = axes
    width_p = geo.width + low_w + high_w
    q_perm = _sort_order(qkey_h, qkey_w)  # flat map index of each query token
    kv_perm = _sort_order(kkey_h, kkey_w)  # flat padded index of each key token
    plan = dict(
        pads=(low_w, high_w, low_h, high_h),
        q_perm=q_perm,
        q_inverse=torch.argsort(q_perm),
        kv_perm=kv_perm,
        q_y=q_perm // geo.width,
        q_x=q_perm % geo.width,
        kv_y=kv_perm // width_p,  # padded coordinates
        kv_x=kv_perm % width_p,
        start_h=start_h,
        start_w=start_w,
        low=(low_h, low_w),
    )
    (kh, kw), (dh, dw) = geo.kernel, geo.dilation

    def slots(q_idx, kv_idx):
        off_y = plan['kv_y'][kv_idx] - plan['start_h'][plan['q_y'][q_idx]]
        off_x = plan['kv_x'][kv_idx] - plan['start_w'][plan['q_x'][q_idx]]
        return off_y, off_x

    def mask_mod(b, h, q_idx, kv_idx):
        off_y, off_x = slots(q_idx, kv_idx)
        inside_y = (off_y >= 0) & (off_y % dh == 0) & (off_y < kh * dh)
        inside_x = (off_x >= 0) & (off_x % dw == 0) & (off_x < kw * dw)
        return inside_y & inside_x

    from torch.nn.attention.flex_attention import create_block_mask

    plan['slots'] = slots
    plan['mask'] = create_block_mask(mask_mod, None, None, q_perm.numel(), kv_perm.numel(), device=device)
    return plan


def _score_mod(plan, geo, bias, kind):
    if kind is None:
        return None
    (kh, kw), (dh, dw) = geo.kernel, geo.dilation
    (low_h, low_w), slots = plan['low'], plan['slots']
    q_y, q_x, kv_y, kv_x = plan['q_y'], plan['q_x'], plan['kv_y'], plan['kv_x']
    if kind == 'table':

        def table(score, b, h, q_idx, kv_idx):
            rel_y = torch.div(kv_y[kv_idx] - low_h - q_y[q_idx], dh, rounding_mode='floor') + kh - 1
            rel_x = torch.div(kv_x[kv_idx] - low_w - q_x[q_idx], dw, rounding_mode='floor') + kw - 1
            return score + bias[h, rel_y.clamp(0, 2 * kh - 2), rel_x.clamp(0, 2 * kw - 2)]

        return table
    batched, headed, rows, cols = (bias.shape[i] > 1 for i in range(4))  # broadcast dims are indexed at 0

    def per_query(score, b, h, q_idx, kv_idx):
        off_y, off_x = slots(q_idx, kv_idx)
        slot = (off_y // dh).clamp(0, kh - 1) * kw + (off_x // dw).clamp(0, kw - 1)
        zero = torch.zeros_like(b)
        index = (b if batched else zero, h if headed else zero, q_y[q_idx] if rows else zero,
                 q_x[q_idx] if cols else zero, slot)  # fmt: skip
        return score + bias[index]

    return per_query


def attention(q, k, v, geo, bias, kind, scale):
    """``softmax(scale * q . k_window + bias) @ v_window`` through one ``flex_attention`` call."""
    batch, heads, height, width, dqk = q.shape
    plan = _local_plan(geo, q.device)
    pads = plan['pads']

    def keys(x):  # (B, heads, H, W, d) -> (B, heads, tokens, d) padded, in key order
        if any(pads):
            x = F.pad(x, (0, 0, *pads))
        return x.flatten(2, 3).index_select(2, plan['kv_perm'])

    queries = q.flatten(2, 3).index_select(2, plan['q_perm'])
    out = _run(queries, keys(k), keys(v), score_mod=_score_mod(plan, geo, bias, kind), block_mask=plan['mask'],
               scale=float(scale))  # fmt: skip
    return out.index_select(2, plan['q_inverse']).unflatten(2, (height, width))


def scores(q, k, geo, bias, kind, scale):
    """Raw window logits: no FlexAttention form; the reference backend."""
    from .backends import local_reference

    return local_reference.scores(q, k, geo, bias, kind, scale)


def aggregate(attn, v, geo):
    """Arbitrary window weights: no FlexAttention form; the reference backend."""
    from .backends import local_reference

    return local_reference.aggregate(attn, v, geo)


# ---------------------------------------------------------------------------------------------------------------------
# Routing attention.


def _region_block(tokens: int, device: torch.device) -> int:
    """Sparse block (tokens per region, padded): a multiple of 128 on CUDA (the fused kernel's tiles must divide the
    sparse block), of 16 elsewhere."""
    multiple = 128 if device.type == 'cuda' else 16
    return -(-tokens // multiple) * multiple


def routing_attention(q, k, v, routes, grid, size, scale):
    """Token attention of every region over its ``routes (B, R, topk)``, as the Triton operator
    ``torch.ops.backbonezoo.routing_attention_triton``."""
    from torch.nn.attention.flex_attention import BlockMask

    batch, heads, height, width, _ = q.shape
    (nh, nw), (rh, rw) = grid, size
    num, tokens = nh * nw, rh * rw
    block = _region_block(tokens, q.device)

    def region_major(x):  # (B, heads, H, W, d) -> (B, heads, R * block, d): zero-padded grid, block-padded regions
        x = F.pad(x, (0, 0, 0, nw * rw - width, 0, nh * rh - height))
        x = x.unflatten(2, (nh, rh)).unflatten(4, (nw, rw)).permute(0, 1, 2, 4, 3, 5, 6)  # (B, n, nh, nw, rh, rw, d)
        x = x.flatten(4, 5).flatten(2, 3)  # (B, n, R, tokens, d)
        return F.pad(x, (0, 0, 0, block - tokens)).flatten(2, 3)

    kv_num = torch.full((batch, 1, num), routes.shape[-1], dtype=torch.int32, device=q.device)
    # (B, 1, R, R): the routed regions first; the rest is never read (kv_num) but the layout wants R columns
    kv_idx = F.pad(routes.to(torch.int32), (0, num - routes.shape[-1])).unsqueeze(1).contiguous()

    # the mask says it all (the eager path reads only mask_mod); the block lists only make the fused kernel sparse
    routed = torch.zeros(batch, num, num, dtype=torch.bool, device=q.device).scatter_(2, routes, True)

    def mask_mod(b, h, q_idx, kv_idx_):
        return routed[b, q_idx // block, kv_idx_ // block] & (kv_idx_ % block < tokens)  # lanes past the tokens

    mask = BlockMask.from_kv_blocks(kv_num, kv_idx, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(num * block,) * 2)
    out = _run(region_major(q), region_major(k), region_major(v), block_mask=mask, scale=float(scale))
    out = out.unflatten(2, (nh, nw, block))[:, :, :, :, :tokens].unflatten(4, (rh, rw))  # (B, n, nh, nw, rh, rw, d)
    out = out.permute(0, 1, 2, 4, 3, 5, 6).flatten(4, 5).flatten(2, 3)  # (B, n, nh * rh, nw * rw, d)
    return out[:, :, :height, :width]
