"""Routing attention (BiFormer's bi-level routing attention), layout ``(B, heads, H, W, d)``.

Two steps, each a public function:

1. :func:`region_routing`: the map is cut into a grid of regions; each query region routes to the ``topk`` key
   regions whose mean key best matches its mean query (dot product over the full width ``heads * d_qk``). The
   routing is a non-differentiable top-k: it runs on detached tensors, in float32 even under autocast (near-ties
   flip routes under reduced precision), and returns int64 region ids ``(B, R, topk)``.
2. :func:`routing_attention`: every query token attends to the tokens of its region's routed regions
   (``topk * region_tokens`` keys, softmax over all of them, same route for every head).

Region grid, two ways (exactly one of ``num_regions`` / ``region_size``):

* ``num_regions=(nh, nw)``: the map must divide into ``nh x nw`` regions. Callers that pad (BiFormer's legacy path
  pads its input *before* the projection, so padded q / k / v equal the projection bias) pad before calling.
* ``region_size=(rh, rw)``: ``ceil(H / rh) x ceil(W / rw)`` regions; q / k / v are zero-padded bottom / right
  *after* the projection, region means exclude the padding, padded keys take part in the softmax unmasked (logit
  0, value 0) and padded queries are cropped away (BiFormer's NCHW path).

Backends (``backend=`` / ``BACKBONEZOO_KERNEL_BACKEND``, see ``_backend.py``):

* ``'reference'``: gathers the routed keys / values (``topk`` copies, as the official code does) and runs a plain
  softmax attention. The specification; float64 gradcheck.
* ``'torch'`` (default on CPU): processes query regions in ``topk`` chunks, gathers only one chunk's routed keys /
  values at a time (about one copy of K / V in all) and runs ``F.scaled_dot_product_attention`` on them; under
  autograd each chunk is recomputed in backward, so training memory stays bounded too. The chunk count depends
  only on the region count and ``topk``, never on H / W, so the graph exports with dynamic sizes. Small maps
  (eager sizes, at most ``_DENSE_MAX_TOKENS`` tokens, no padding) routed to at least a quarter of their regions
  instead run one all-pairs attention with the unrouted keys masked (same softmax, nothing gathered): BiFormer's
  stage 3 at 224 routes 16 of 49 regions of 2 x 2 tokens, where the chunks are thousands of 4 x 64 attentions and
  the masked attention is about 2.5x faster.
* ``'flex'`` (CUDA only): FlexAttention with a block mask of the routes (``kernels/flex.py``).
* ``'triton'`` (default for CUDA tensors): the fused kernels of ``triton_routing.py``, which read the routed keys /
  values through the route index (nothing gathered) with an online softmax; the routing itself stays in PyTorch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ._backend import resolve_backend

__all__ = ['region_routing', 'routing_attention', 'routing_impl']

_SUPPORTED = ('reference', 'torch', 'triton', 'flex')
# The torch path attends densely (all pairs, unrouted keys masked) on maps of at most _DENSE_MAX_TOKENS tokens routed to
# at least 1 / _DENSE_MAX_WASTE of their regions (see _dense_is_cheaper).
_DENSE_MAX_TOKENS = 400  # 20 x 20: the mask (B, N, N) stays small next to K / V
_DENSE_MAX_WASTE = 4


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise ValueError(f'{name} must be a positive int or a pair of positive ints, got {value!r}')
    return int(value[0]), int(value[1])


def _region_grid(
    height: int, width: int, num_regions, region_size
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(regions per side, tokens per region side, bottom / right zero padding)."""
    if (num_regions is None) == (region_size is None):
        raise ValueError(
            f'routing_attention: pass exactly one of num_regions / region_size, got num_regions={num_regions!r}, '
            f'region_size={region_size!r}'
        )
    if num_regions is not None:
        nh, nw = _pair(num_regions, 'num_regions')
        if height % nh or width % nw:
            raise ValueError(
                f'routing_attention: the map ({height}x{width}) must divide into num_regions={(nh, nw)}; pad the '
                'input first or pass region_size= for zero padding after the projection'
            )
        return (nh, nw), (height // nh, width // nw), (0, 0)
    rh, rw = _pair(region_size, 'region_size')
    nh, nw = -(-height // rh), -(-width // rw)
    return (nh, nw), (rh, rw), (nh * rh - height, nw * rw - width)


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None) -> None:
    if q.dim() != 5:
        raise ValueError(f'routing_attention: q must be (B, heads, H, W, d_qk), got shape {tuple(q.shape)}')
    if k.shape != q.shape:
        raise ValueError(f'routing_attention: k must have the shape of q {tuple(q.shape)}, got {tuple(k.shape)}')
    if v is not None and (v.dim() != 5 or v.shape[:4] != q.shape[:4]):
        raise ValueError(
            f'routing_attention: v must be (B, heads, H, W, d_v) with (B, heads, H, W) = {tuple(q.shape[:4])}, '
            f'got {tuple(v.shape)}'
        )
    if not q.is_floating_point():
        raise ValueError(f'routing_attention: expected floating point q / k / v, got {q.dtype}')
    if v is not None and not (k.dtype == q.dtype == v.dtype):
        raise ValueError(f'routing_attention: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}')


def _region_means(x: torch.Tensor, grid, size, pad) -> torch.Tensor:
    """(B, heads, H, W, d) -> (B, R, heads * d) float32 means over each region's real (unpadded) tokens."""
    b, heads, height, width, d = x.shape
    # sums over a (B, nh, rh, nw, rw, C) view rather than avg_pool2d: a pooling kernel is static in an exported graph,
    # a reshape keeps the region size symbolic (dynamic H / W export)
    x = x.detach().permute(0, 2, 3, 1, 4).reshape(b, height, width, heads * d).float()
    if pad[0] or pad[1]:
        x = F.pad(x, (0, 0, 0, pad[1], 0, pad[0]))
    # one axis at a time: rows first (contiguous (rw, C) slabs added together), then columns; a joint .sum((2, 4))
    # over the strided pair runs ~50x slower on CPU
    sums = x.reshape(b, grid[0], size[0], grid[1], size[1], heads * d).sum(2).sum(3)
    if not (pad[0] or pad[1]):
        return sums.flatten(1, 2) / (size[0] * size[1])
    rows = (height - torch.arange(grid[0], device=x.device) * size[0]).clamp(max=size[0])  # real rows per region row
    cols = (width - torch.arange(grid[1], device=x.device) * size[1]).clamp(max=size[1])
    return (sums / (rows[:, None] * cols[None, :]).unsqueeze(-1)).flatten(1, 2)


def region_routing(
    q: torch.Tensor,
    k: torch.Tensor,
    num_regions: int | tuple[int, int] | None,
    topk: int,
    *,
    region_size: int | tuple[int, int] | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Top-k region routing: ``(B, R, topk)`` int64 ids of the key regions each query region attends to.

    Regions are numbered row-major over the grid. Logits are ``scale * mean(q_region) . mean(k_region)`` over the
    full width ``heads * d_qk``, computed in float32 on detached tensors with autocast off (no gradient).

    Args:
        q, k: queries and keys ``(B, heads, H, W, d_qk)``, floating point, one device.
        num_regions: regions per side (int or ``(nh, nw)``); H and W must be divisible by it. ``None`` when
            ``region_size`` is given.
        topk: key regions routed to per query region, ``1 <= topk <= R``.
        region_size: tokens per region side (int or ``(rh, rw)``) instead of ``num_regions``: ``ceil(H / rh) x
            ceil(W / rw)`` regions, means over each region's tokens inside the map only.
        scale: factor on the region logits, default ``(heads * d_qk) ** -0.5``; it only matters for ties.
    """
    _check(q, k)
    grid, size, pad = _region_grid(q.shape[2], q.shape[3], num_regions, region_size)
    num = grid[0] * grid[1]
    if not isinstance(topk, int) or not 0 < topk <= num:
        raise ValueError(f'routing_attention: topk must be an int in [1, {num}] (the number of regions), got {topk!r}')
    if scale is None:
        scale = (q.shape[1] * q.shape[-1]) ** -0.5
    with torch.no_grad(), torch.autocast(q.device.type, enabled=False):
        q_region = _region_means(q, grid, size, pad)
        k_region = _region_means(k, grid, size, pad)
        logits = (q_region * scale) @ k_region.transpose(-2, -1)
        return torch.topk(logits, k=topk, dim=-1).indices


def _to_regions(x: torch.Tensor, grid, size, pad) -> torch.Tensor:
    """(B, heads, H, W, d) -> (B, nh, rh, nw, rw, heads, d), zero-padded to the grid (a view when possible)."""
    b, heads, _, _, d = x.shape
    x = x.permute(0, 2, 3, 1, 4)
    if pad[0] or pad[1]:
        x = F.pad(x, (0, 0, 0, 0, 0, pad[1], 0, pad[0]))
    return x.reshape(b, grid[0], size[0], grid[1], size[1], heads, d)


def _from_regions(out: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, nh, rh, nw, rw, heads, d) -> (B, heads, H, W, d), a permuted view of a (B, H, W, heads, d) tensor."""
    b, nh, rh, nw, rw, heads, d = out.shape
    out = out.reshape(b, nh * rh, nw * rw, heads, d)[:, :height, :width]
    return out.permute(0, 3, 1, 2, 4)


def _routing_attention_reference(q, k, v, index, grid, size, pad, scale):
    """Materialises the routed keys / values: (B, R, topk * w2, heads, d). Plainly the definition."""
    b, heads = q.shape[:2]
    num, topk = grid[0] * grid[1], index.shape[-1]
    w2 = size[0] * size[1]

    def regions(x):  # (B, R, w2, heads, d)
        x = _to_regions(x, grid, size, pad).permute(0, 1, 3, 2, 4, 5, 6)
        return x.reshape(b, num, w2, heads, x.shape[-1])

    q_r, k_r, v_r = regions(q), regions(k), regions(v)
    batch = torch.arange(b, device=q.device)[:, None, None]
    k_sel = k_r[batch, index].reshape(b, num, topk * w2, heads, -1)
    v_sel = v_r[batch, index].reshape(b, num, topk * w2, heads, -1)
    logits = torch.einsum('brqhd,brkhd->brhqk', q_r * scale, k_sel)
    out = torch.einsum('brhqk,brkhd->brqhd', logits.softmax(dim=-1), v_sel)
    out = out.reshape(b, grid[0], grid[1], size[0], size[1], heads, -1).permute(0, 1, 3, 2, 4, 5, 6)
    return _from_regions(out, q.shape[2], q.shape[3])


def _region_major(x: torch.Tensor, grid, size, pad) -> torch.Tensor:
    """(B, heads, H, W, d) -> contiguous (B, R, w2 * heads * d): one copy, rows are whole regions."""
    x = _to_regions(x, grid, size, pad).transpose(2, 3)  # (B, nh, nw, rh, rw, heads, d)
    return x.reshape(x.shape[0], grid[0] * grid[1], -1)


def _token_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, H, W, d) -> (B * H * W, heads * d): one row per token, a free view of token-major memory (the
    split of a qkv projection, as the families pass it)."""
    b, heads, height, width, d = x.shape
    return x.permute(0, 2, 3, 1, 4).reshape(b * height * width, heads * d)


def _region_tokens(grid, size, width: int, device: torch.device) -> torch.Tensor:
    """(R, w2) flat map positions ``y * W + x`` of every region's tokens, row-major. Broadcast aranges, no division:
    under export the region size may be symbolic (the ONNX exporter cannot translate a remainder by a SymInt)."""
    arange = lambda n: torch.arange(n, device=device)
    rows = (arange(grid[0])[:, None] * size[0] + arange(size[0])[None, :])[:, None, :, None]  # (nh, 1, rh, 1)
    cols = (arange(grid[1])[:, None] * size[1] + arange(size[1])[None, :])[None, :, None, :]  # (1, nw, 1, rw)
    return (rows * width + cols).flatten(2).flatten(0, 1)


def _chunk_attention(q_rm, k_rows, v_rows, flat, heads: int, w2: int, scale: float) -> torch.Tensor:
    """Attention of a chunk of query regions ``q_rm`` (B, Rc, w2*heads*d_qk) over the key / value rows ``flat``
    selects (the chunk's routed tokens, region by region): (B, Rc, heads, w2, d_v). Only this chunk's routed keys /
    values are gathered."""
    b, chunk = q_rm.shape[:2]
    k_c = k_rows.index_select(0, flat).view(b * chunk, -1, heads, q_rm.shape[-1] // (w2 * heads))
    v_c = v_rows.index_select(0, flat).view(b * chunk, k_c.shape[1], heads, -1)
    q_c = q_rm.reshape(b * chunk, w2, heads, -1)
    out = F.scaled_dot_product_attention(q_c.transpose(1, 2), k_c.transpose(1, 2), v_c.transpose(1, 2), scale=scale)
    return out.reshape(b, chunk, heads, w2, -1)


def _dense_is_cheaper(num: int, topk: int, height, width) -> bool:
    """Whether one masked all-pairs attention beats the routed chunks: small maps (eager sizes only) routed to at
    least a quarter of their regions (BiFormer's stage 3 at 224: 16 of 49 regions of 2x2 tokens, where the chunks
    are thousands of 4 x 64 attentions)."""
    tokens = height * width
    return isinstance(tokens, int) and tokens <= _DENSE_MAX_TOKENS and topk * _DENSE_MAX_WASTE >= num


def _routing_attention_dense(q, k, v, index, grid, size, scale):
    """Every query token against every key token of the map, keys of unrouted regions masked out: the same softmax
    over the same keys, through one large attention instead of many tiny ones, and nothing gathered. Up to
    ``_DENSE_MAX_WASTE`` times the needed logits, so only where :func:`_dense_is_cheaper` says so."""
    b, heads, height, width, _ = q.shape
    num = grid[0] * grid[1]
    routed = torch.zeros(b, num, num, dtype=torch.bool, device=q.device).scatter_(2, index, True)
    arange = lambda n: torch.arange(n, device=q.device)
    region = ((arange(height) // size[0])[:, None] * grid[1] + (arange(width) // size[1])[None, :]).flatten()
    mask = routed[:, region][:, :, region]  # (B, N, N): query token's region routes to key token's region
    flat = lambda x: x.flatten(2, 3)  # (B, heads, N, d): a view of the token-major layout
    out = F.scaled_dot_product_attention(flat(q), flat(k), flat(v), attn_mask=mask[:, None], scale=scale)
    # token-major memory like the routed path's output, so that callers merge the heads for free
    return out.transpose(1, 2).contiguous().view(b, height, width, heads, -1).permute(0, 3, 1, 2, 4)


def _routing_attention_torch(q, k, v, index, grid, size, pad, scale):
    b, heads, height, width, _ = q.shape
    num, topk = grid[0] * grid[1], index.shape[-1]
    if not (pad[0] or pad[1]) and _dense_is_cheaper(num, topk, height, width):
        return _routing_attention_dense(q, k, v, index, grid, size, scale)
    q_rm = _region_major(q, grid, size, pad)
    batch = torch.arange(b, device=q.device)[:, None, None]
    if pad[0] or pad[1]:  # zero padding: gather whole rows of padded region-major copies
        k_rows, v_rows = (_region_major(x, grid, size, pad).reshape(b * num, -1) for x in (k, v))
        select = lambda route: (route + batch * num).reshape(-1)
    else:  # gather tokens straight from the inputs: no region-major copies of k / v
        k_rows, v_rows = _token_rows(k), _token_rows(v)
        tokens = _region_tokens(grid, size, width, q.device)
        select = lambda route: (tokens[route] + (batch * (height * width))[..., None]).reshape(-1)
    # About R / topk query regions per chunk: the gathered keys / values of a chunk are about one copy of K / V.
    per_chunk = max(1, math.ceil(num / topk))
    recompute = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
    outs = []
    for start in range(0, num, per_chunk):
        stop = min(start + per_chunk, num)
        args = (q_rm[:, start:stop], k_rows, v_rows, select(index[:, start:stop]), heads, size[0] * size[1], scale)
        if recompute:  # keep only the inputs for backward, not the chunk's gathered keys / values
            outs.append(checkpoint(_chunk_attention, *args, use_reentrant=False))
        else:
            outs.append(_chunk_attention(*args))
    out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]  # (B, R, heads, w2, d_v)
    out = out.reshape(b, grid[0], grid[1], heads, size[0], size[1], -1).permute(0, 1, 4, 2, 5, 3, 6)
    return _from_regions(out, height, width)


def routing_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_regions: int | tuple[int, int] | None,
    topk: int,
    *,
    region_size: int | tuple[int, int] | None = None,
    scale: float | None = None,
    routing_scale: float | None = None,
    index: torch.Tensor | None = None,
    return_index: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Bi-level routing attention.

    Args:
        q, k: ``(B, heads, H, W, d_qk)``; v: ``(B, heads, H, W, d_v)``.
        num_regions: regions per side (int or ``(nh, nw)``); H and W must be divisible by it. ``None`` when
            ``region_size`` is given.
        topk: key regions routed to per query region (the same for every head).
        region_size: tokens per region side instead of ``num_regions``: the map is zero-padded bottom / right to
            ``ceil(H / rh) x ceil(W / rw)`` regions after the projection (padded keys / values are zeros that take
            part in the softmax; region means exclude them).
        scale: softmax scale of the token attention, default ``d_qk ** -0.5`` (BiFormer passes
            ``(heads * d_qk) ** -0.5``).
        routing_scale: scale of the routing logits (default: ``scale``); it only changes ties.
        index: precomputed ``(B, R, topk)`` routes (from :func:`region_routing`); routing is skipped.
        return_index: also return the routes.
        backend: ``'reference'`` | ``'torch'`` | ``'triton'`` | ``None`` (see module docstring).

    Returns:
        ``(B, heads, H, W, d_v)`` (and the ``(B, R, topk)`` int64 routes when ``return_index``).
    """
    _check(q, k, v)
    chosen = resolve_backend(backend, q, 'routing_attention', _SUPPORTED)
    height, width = q.shape[2], q.shape[3]
    grid, size, pad = _region_grid(height, width, num_regions, region_size)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if index is None:
        index = region_routing(
            q, k, num_regions, topk, region_size=region_size, scale=scale if routing_scale is None else routing_scale
        )
    elif index.shape != (q.shape[0], grid[0] * grid[1], topk) or index.dtype != torch.int64:
        raise ValueError(
            f'routing_attention: index must be int64 of shape {(q.shape[0], grid[0] * grid[1], topk)}, '
            f'got {index.dtype} {tuple(index.shape)}'
        )
    from . import ops  # the registered operators: one node for torch.compile / export / flop_counter

    if chosen == 'triton' and not ops.enabled():
        chosen = 'torch'  # ONNX export: the traceable PyTorch path (no translation for the Triton operators)
    if ops.enabled() and chosen == 'torch' and q.device.type == 'cpu':
        out = ops.routing_attention(q, k, v, index, list(grid), list(size), list(pad), float(scale))
    else:
        out = routing_impl(q, k, v, index, grid, size, pad, scale, chosen)
    return (out, index) if return_index else out


def routing_impl(q, k, v, index, grid, size, pad, scale: float, backend: str) -> torch.Tensor:
    """The token attention of checked arguments on ``backend`` (the Python implementations; ``'triton'`` is the
    registered CUDA operator ``torch.ops.backbonezoo.routing_attention_triton``, ``kernels/triton_ops.py``)."""
    if backend == 'triton':
        from . import triton_ops

        return triton_ops.routing_attention(q, k, v, index, grid, size, scale)
    if backend == 'flex':  # CUDA only (checked by resolve_backend): backbonezoo.kernels.flex
        from .flex import routing_attention as flex_routing_attention

        return flex_routing_attention(q, k, v, index, grid, size, scale)
    impl = _routing_attention_reference if backend == 'reference' else _routing_attention_torch
    return impl(q, k, v, index, grid, size, pad, scale)
