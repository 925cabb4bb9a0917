"""Local attention, CPU tiled backend: query tiles attending to one gathered key region each, through matmuls / SDPA.

Per axis, queries are cut into tiles; tile ``t`` holds queries ``qpos[t]`` and reads the key positions ``pos[t]``
(its region); ``slot[t, a, r]`` is the window slot of region entry ``r`` for query ``a`` (-1: not in its window).
Strided 'zero' problems (halo / blocked windows): a tile = the ``stride`` queries sharing one window, the region =
that window, no mask. Stride 1 (neighbourhoods): each dilation group is tiled on its own (group positions are
``g + p * d``, so dilation costs nothing extra), a tile holds ``_NEIGHBOURHOOD_TILE`` consecutive group members, the
region is the union of their windows (tile + kernel - 1 members) and an additive -inf mask keeps every query
inside its own window. That trades ~3-4x the minimal flops for matmul / SDPA speed and never materialises
per-query windows. Everything is three ``index_select`` copies (queries, key / value regions, output).

The index tables are computed with tensor ops from the map size (cached per size in eager mode, rebuilt in the graph
under torch.compile / torch.export), so exported graphs keep H / W (and a size-dependent dilation) symbolic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.fx.experimental.symbolic_shapes import optimization_hint

from .._geometry import Geometry, cdiv, mod, static, tensor_cache
from .._shapes import size_oblivious
from .local_reference import bias_logits, softmax

__all__ = ['aggregate', 'aggregate_probs', 'attention', 'probs', 'probs_shape', 'scores']

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


def _axis_tile_sizes(length, kernel: int, stride: int, dilation, border: str, tile: int, eager_rule=False) -> tuple:
    """``(tile, count, region)`` of one axis: queries per tile, tiles per dilation group (strided: tiles), region
    entries per tile. ``tile=0``: 'zero' tiles of ``stride`` queries sharing one window; else the requested
    neighbourhood tile, shrunk for small maps. ``eager_rule``: the rule of eager sizes also for symbolic ones, as
    expressions (what the registered operator's fake implementation needs: its kernel only sees eager sizes)."""
    if tile == 0:
        return stride, cdiv(length, stride), kernel
    longest = cdiv(length, dilation)
    if eager_rule or isinstance(longest, int):  # small maps: smaller tiles / regions
        tile = torch.sym_min(tile, longest)
        region = torch.sym_min(tile + kernel - 1, longest) if border == 'shift' else tile + kernel - 1
    else:  # symbolic (export): keep >= 2 tiles per group at the example size, or export specialises the size
        tile = max(1, min(tile, optimization_hint(longest) // 2))
        region = tile + kernel - 1
    return tile, cdiv(longest, tile), region


@tensor_cache(maxsize=512)
def _axis_tiles(
    length: int, kernel: int, stride: int, dilation: int, border: str, tile: int, device: torch.device
) -> _AxisTiles:
    """``tile=0``: 'zero' tiles of ``stride`` queries sharing one window; else neighbourhood tiles per dilation group.

    Built with tensor ops from ``length`` (symbolic under dynamic-shape export). All groups share one tile count, tile
    and region size (uneven groups: region entries past a group's end read zeros and are masked like any entry off
    the window; tiles past a group's end hold only dropped rows).
    """
    arange = functools.partial(torch.arange, device=device)
    eager = isinstance(length, int)
    position = arange(length)
    strided = tile == 0
    tile, count, region = _axis_tile_sizes(length, kernel, stride, dilation, border, tile)
    if strided:
        first = arange(count)[:, None] * stride  # (count, 1)
        query = first + arange(stride)  # (count, stride)
        raw = first - dilation * ((kernel - stride) // 2) + arange(kernel) * dilation  # (count, kernel)
        slot = arange(kernel).expand(count, stride, kernel)
        offsets = raw[:, None, :] - query[:, :, None]  # table row = offset / dilation + kernel - 1 where integral
        rel = torch.where(mod(offsets, dilation) == 0, offsets // dilation + kernel - 1, 0)
        qpos, regpos, uniform = torch.where(query < length, query, -1), slot, True
        pos = torch.where((raw >= 0) & (raw < length), raw, -1)
        tile_of, slot_of = position // stride, position % stride
        low = dilation * ((kernel - stride) // 2)
        all_inside = eager and low == 0 and (count - 1) * stride - low + (kernel - 1) * dilation < length
    else:
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
        tile_of = mod(position, dilation) * count + position // dilation // tile
        count, uniform = count * dilation, False
        slot_of = position // dilation % tile
        all_inside = eager and border == 'shift' and length // dilation >= region
    return _AxisTiles(tile, count, region, qpos, pos, slot, regpos, rel, tile_of, slot_of, uniform, all_inside)


class _Tiling:
    """2-D tiling of one problem: flat gather indices and mask index, built once per geometry and device."""

    def __init__(self, geo: Geometry, device: torch.device, tile: int = _NEIGHBOURHOOD_TILE):
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
        if not static(*pads) or any(pads):  # symbolic sizes: always pad (no shape-dependent branch in the graph)
            x = F.pad(x, (0, 0, *pads))
        x = x.unfold(2, span_h, self.geo.stride[0]).unfold(3, span_w, self.geo.stride[1])[..., ::dh, ::dw]
        return x[:, :, : ah.count, : aw.count].permute(0, 1, 2, 3, 5, 6, 4).flatten(4, 5).flatten(2, 3)

    def bias(self, table: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """Additive (heads | 1, tiles, T, R) logits bias: table values, -inf outside each query's window."""
        if table is None:
            if self.uniform:
                return None
            if dtype not in self.masks:
                entries = (2 * self.geo.kernel[0] - 1) * (2 * self.geo.kernel[1] - 1)
                zeros = torch.zeros(self.bias_index.shape, dtype=dtype, device=self.bias_index.device)
                self.masks[dtype] = zeros.masked_fill(self.bias_index == entries, float('-inf')).unsqueeze(0)
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


@tensor_cache(maxsize=64)
def _tiling(geo: Geometry, device: torch.device, tile: int = _NEIGHBOURHOOD_TILE) -> _Tiling:
    # Symbolic sizes: the index tables view (dilation, tiles, tile) grids whose contiguity checks would otherwise ask
    # whether a dilation or a tile count is 1 and pin the graph to one side of that. Size-oblivious reasoning (sizes
    # of >= 2 where it decides only layout) keeps them general; the tables' values do not depend on it.
    with size_oblivious(not static(geo)):
        return _Tiling(geo, device, tile)


def _split_tile(geo: Geometry, eager_rule: bool = False) -> int:
    """Neighbourhood tile of local_scores / local_aggregate: ``_SPLIT_TILE`` unless its region would already span
    every dilation group on both axes (symbolic sizes: the default tile, whose export behaviour is the tested one;
    ``eager_rule``: the eager decision also for symbolic sizes, as guards)."""
    if geo.stride != (1, 1) or not (eager_rule or static(geo)):
        return _NEIGHBOURHOOD_TILE
    spans = [_SPLIT_TILE + k - 1 >= cdiv(length, d) for length, k, d in zip((geo.height, geo.width), geo.kernel,
                                                                          geo.dilation)]  # fmt: skip
    return _NEIGHBOURHOOD_TILE if all(spans) else _SPLIT_TILE


def scores(q, k, geo, bias, kind, scale):
    """Window logits ``(B, heads, H, W, K)``: tiled matmul, then the window slots gathered out of each region."""
    tiling = _tiling(geo, q.device, _split_tile(geo))
    logits = torch.matmul(tiling.tile(q) * scale, tiling.regions(k).transpose(-1, -2))
    if not tiling.uniform:
        logits = logits.gather(-1, tiling.regpos.expand(*logits.shape[:2], -1, -1, -1))
    logits = tiling.untile(logits)
    if kind is not None:
        logits = logits + bias_logits(bias, kind, geo, q.device)
    return logits


def aggregate(attn, v, geo):
    """``(B, heads, H, W, d_v)``: the window weights scattered into region layout, then one tiled matmul."""
    tiling = _tiling(geo, v.device, _split_tile(geo))
    return tiling.untile(torch.matmul(tiling.scatter(tiling.tile(attn)), tiling.regions(v)))


def attention(q, k, v, geo, bias, kind, scale):
    """``(B, heads, H, W, d_v)``: SDPA over query tiles and key regions, the window as an additive -inf mask."""
    tiling = _tiling(geo, q.device)
    mask = tiling.bias(bias if kind == 'table' else None, q.dtype)  # (heads | 1, tiles, T, R) or None
    if kind == 'query':
        query_bias = tiling.scatter(tiling.tile(bias.expand(*q.shape[:4], -1)))  # (B, heads, tiles, T, R)
        mask = query_bias if mask is None else query_bias + mask
    q_t, k_r, v_r = tiling.tile(q), tiling.regions(k), tiling.regions(v)
    if mask is not None and mask.requires_grad:
        # SDPA's fused CPU kernels give no gradient for a mask; the plain composition keeps the bias trainable.
        attn = softmax(torch.matmul(q_t * scale, k_r.transpose(-1, -2)) + mask)
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


def probs_shape(geo: Geometry, batch, heads) -> tuple:
    """The shape :func:`probs` returns for ``geo`` at eager sizes: ``(B, heads, tiles, T, R)`` (expressions in the
    sizes when they are symbolic: the fake implementation of the registered operator)."""
    tile = _split_tile(geo, True) if geo.stride == (1, 1) else 0
    tiles, queries, region = 1, 1, 1
    for a, length in enumerate((geo.height, geo.width)):
        size = _axis_tile_sizes(length, geo.kernel[a], geo.stride[a], geo.dilation[a], geo.border, tile, True)
        groups = geo.dilation[a] if tile else 1  # neighbourhood tiles: per dilation group
        tiles, queries, region = tiles * size[1] * groups, queries * size[0], region * size[2]
    return (batch, heads, tiles, queries, region)


def probs(q, k, geo, bias, kind, scale):
    """``softmax(scores)`` kept in the tiled layout ``(B, heads, tiles, T, R)``, zero off each query's window."""
    tiling = _tiling(geo, q.device, _split_tile(geo))
    q_t = tiling.tile(q)
    logits = torch.matmul(q_t if scale == 1.0 else q_t * scale, tiling.regions(k).transpose(-1, -2))
    mask = tiling.bias(bias if kind == 'table' else None, q.dtype)  # (heads | 1, tiles, T, R): -inf off the window
    if kind == 'query':
        query_bias = tiling.scatter(tiling.tile(bias.expand(*q.shape[:4], -1)))
        mask = query_bias if mask is None else query_bias + mask
    # in place: the logits are the matmul's fresh output (its backward reads only its inputs)
    return softmax(logits if mask is None else logits.add_(mask))


def aggregate_probs(probs, v, geo):
    """:func:`aggregate` of maps from :func:`probs` (same geometry): ``(B, heads, H, W, d_v)``."""
    tiling = _tiling(geo, v.device, _split_tile(geo))
    return tiling.untile(torch.matmul(probs, tiling.regions(v)))
