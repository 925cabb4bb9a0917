"""Triton kernel of the linear recurrence h_t = a_t * h_{t-1} + b_t (the core of ``selective_scan``).

One program per row (``batch * dim * d_state`` rows of length ``L``); each program walks its row in blocks, scans a
block with ``tl.associative_scan`` and carries the last state into the next block, so any length works. Row offsets
are int64, rows sit on grid axis 0 (up to 2**31 - 1 of them) and launches run under the tensors' device; float64
rows are scanned in float64.

Plain launchers (no autograd; for registered operators to call):

* ``scan_fwd(a, b) -> h``: every state of ``h_t = a_t * h_{t-1} + b_t`` along the last axis;
* ``scan_bwd(grad_h, a, h) -> (grad_a, grad_b)``: the adjoint, the same recurrence run backwards with the
  coefficients shifted by one (``lam_t = g_t + a_{t+1} lam_{t+1}``; ``grad_b = lam``, ``grad_a = lam * h_{t-1}``).

``linear_scan_triton(a, b)`` (the forward, any leading shape) is kept for ``scan.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.library import wrap_triton

from ._backend import launch_device

__all__ = ['linear_scan_triton', 'scan_bwd', 'scan_fwd']


@triton.jit
def _compose(a_left, b_left, a_right, b_right):
    # Apply the earlier step (left) then the later one (right): h -> a_r * (a_l * h + b_l) + b_r.
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def _linear_scan_kernel(a_ptr, b_ptr, h_ptr, length, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offsets = tl.arange(0, BLOCK)
    base = row * length
    carry = tl.sum(tl.zeros([BLOCK], dtype=h_ptr.dtype.element_ty), axis=0)
    for start in range(0, length, BLOCK):
        index = start + offsets
        mask = index < length
        # Padding lanes are identity steps (a = 1, b = 0), so the last lane always holds the block's final state.
        a = tl.load(a_ptr + base + index, mask=mask, other=1.0)
        b = tl.load(b_ptr + base + index, mask=mask, other=0.0)
        a_cum, b_cum = tl.associative_scan((a, b), axis=0, combine_fn=_compose)
        h = a_cum * carry + b_cum
        tl.store(h_ptr + base + index, h, mask=mask)
        carry = tl.sum(tl.where(offsets == BLOCK - 1, h, 0.0), axis=0)


def linear_scan_triton(a: torch.Tensor, b: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` along the last axis (``a``, ``b``: same shape and dtype)."""
    if a.dtype != b.dtype:
        raise TypeError(f'linear_scan_triton: a has dtype {a.dtype} but b has {b.dtype}; expected equal')
    shape, length = b.shape, b.shape[-1]
    a_rows = a.reshape(-1, length).contiguous()
    b_rows = b.reshape(-1, length).contiguous()
    h = torch.empty_like(b_rows)
    if h.numel():
        if b_rows.shape[0] >= 2**31:
            raise ValueError(f'linear_scan_triton: {b_rows.shape[0]} rows exceed the grid limit 2**31 - 1')
        block_size = min(triton.next_power_of_2(length), block)
        with launch_device(b):
            wrap_triton(_linear_scan_kernel)[(b_rows.shape[0],)](a_rows, b_rows, h, length, BLOCK=block_size)
    return h.view(shape)


def scan_fwd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` (``h_{-1} = 0``) along the last axis."""
    return linear_scan_triton(a, b)


def _shift_right(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x[..., :-1], (1, 0))


def scan_bwd(grad_h: torch.Tensor, a: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_a, grad_b)`` of :func:`scan_fwd` given its states ``h``."""
    lam = linear_scan_triton(_shift_right(a.flip(-1)), grad_h.flip(-1).to(h.dtype)).flip(-1)
    return lam * _shift_right(h), lam
