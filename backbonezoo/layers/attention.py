"""Dense (all-pairs) multi-head attention with a materialising reference path.

Families with plain global attention (SReT, PATNet's PAT_sf) run ``F.scaled_dot_product_attention``. Under
``BACKBONEZOO_KERNEL_BACKEND=reference`` (what ``tools/benchmark.py``'s reference rows set) they run the
materialising math the authors' code uses, ``softmax(q k^T * scale + bias) v``, so the benchmark measures our path
against theirs in one process, as it does for the local / routing kernels.

No ``from __future__ import annotations`` here: TorchScript compiles these functions and needs real annotations.
"""

import os
from typing import Optional

import torch
import torch.nn.functional as F

from backbonezoo.kernels._backend import ENV_VAR

__all__ = ['dense_attention']


@torch.jit.ignore
def _materialising() -> bool:
    # read per call, like the kernels' backend, so benchmarks can switch it; ignored by TorchScript (env access)
    return os.environ.get(ENV_VAR, '') == 'reference'


def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: Optional[torch.Tensor] = None,  # noqa: UP045 (TorchScript reads the annotations at run time)
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``(..., N, d)`` queries / keys / values -> ``(..., N, d_v)``; ``attn_mask`` is an additive float bias."""
    if not torch.jit.is_scripting() and _materialising():
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        if attn_mask is not None:
            attn = attn + attn_mask
        attn = attn.softmax(dim=-1)
        if dropout_p > 0.0:
            attn = F.dropout(attn, p=dropout_p)
        return attn @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
