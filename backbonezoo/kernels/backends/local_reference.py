"""Local attention, reference backend: gathers every window ``(B, heads, H, W, kh, kw, d)``.

The specification of ``backbonezoo.kernels.local`` in tensor form (float64 gradcheck in the tests); memory-hungry by
design. A plain Python path (autograd differentiates it), never a registered operator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._geometry import Geometry

__all__ = ['aggregate', 'attention', 'bias_logits', 'scores', 'softmax']


def _gather_windows(x: torch.Tensor, keys_h: torch.Tensor, keys_w: torch.Tensor) -> torch.Tensor:
    """(B, heads, H, W, d) -> (B, heads, H, W, kh, kw, d); outside positions (-1) read a zero row."""
    height, width = x.shape[2:4]
    padded = F.pad(x, (0, 0, 0, 1, 0, 1))  # index H / W is the zero row / column
    rows = torch.where(keys_h >= 0, keys_h, height)
    cols = torch.where(keys_w >= 0, keys_w, width)
    return padded[:, :, rows[:, None, :, None], cols[None, :, None, :]]


def bias_logits(bias: torch.Tensor, kind: str, geo: Geometry, device: torch.device) -> torch.Tensor:
    """The bias as a tensor broadcastable to (B, heads, H, W, K)."""
    if kind == 'query':
        return bias
    _, _, rel_h, rel_w = geo.tables(device)
    table = bias[:, rel_h[:, None, :, None], rel_w[None, :, None, :]]  # (heads, H, W, kh, kw)
    return table.flatten(-2).unsqueeze(0)


def scores(q, k, geo, bias, kind, scale):
    keys_h, keys_w, _, _ = geo.tables(q.device)
    k_win = _gather_windows(k, keys_h, keys_w).flatten(4, 5)  # (B, heads, H, W, K, d)
    logits = torch.einsum('bnhwc,bnhwkc->bnhwk', q, k_win) * scale
    if kind is not None:
        logits = logits + bias_logits(bias, kind, geo, q.device)
    return logits


def aggregate(attn, v, geo):
    keys_h, keys_w, _, _ = geo.tables(v.device)
    v_win = _gather_windows(v, keys_h, keys_w).flatten(4, 5)
    return torch.einsum('bnhwk,bnhwkc->bnhwc', attn, v_win)


def softmax(logits: torch.Tensor) -> torch.Tensor:
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float().softmax(-1).to(logits.dtype)
    return logits.softmax(-1)


def attention(q, k, v, geo, bias, kind, scale):
    return aggregate(softmax(scores(q, k, geo, bias, kind, scale)), v, geo)
