"""Neighborhood attention (NATTEN's shifted-border windows) through ``backbonezoo.kernels``, callable from scripted
and fx-traced models.

The kernels dispatch in Python (device, backend, capture mode), so families call them through these wrappers, each
one opaque call for TorchScript and timm's fx tracer (``opaque_to_tracing``). Windows and dilations are
``(rows, cols)`` pairs; ``backend`` is the kernel backend (None = automatic). Maps are ``(B, heads, H, W, d)``.
"""

from __future__ import annotations

import torch

from backbonezoo.kernels import local_aggregate, local_aggregate_probs, local_probs, local_scores

from .tracing import opaque_to_tracing

__all__ = ['neighborhood_aggregate', 'neighborhood_aggregate_probs', 'neighborhood_probs', 'neighborhood_scores']


@opaque_to_tracing
def neighborhood_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    window: tuple[int, int],
    dilation: tuple[int, int],
    bias: torch.Tensor | None,
    backend: str | None,
) -> torch.Tensor:
    """Window logits ``q . k + bias`` (unscaled), ``(B, heads, H, W, kh*kw)``: ``kernels.local_scores``."""
    return local_scores(q, k, window, dilation=dilation, bias=bias, backend=backend)


@opaque_to_tracing
def neighborhood_probs(
    q: torch.Tensor,
    k: torch.Tensor,
    window: tuple[int, int],
    dilation: tuple[int, int],
    bias: torch.Tensor | None,
    backend: str | None,
) -> torch.Tensor:
    """Softmaxed :func:`neighborhood_scores` in the reusable layout of :func:`~backbonezoo.kernels.local_probs`: apply
    it with :func:`neighborhood_aggregate_probs`, as often as needed."""
    return local_probs(q, k, window, dilation=dilation, bias=bias, backend=backend)


@opaque_to_tracing
def neighborhood_aggregate(
    attn: torch.Tensor, v: torch.Tensor, window: tuple[int, int], dilation: tuple[int, int], backend: str | None
) -> torch.Tensor:
    """Window weights ``(B, heads, H, W, kh*kw)`` applied to the values: ``kernels.local_aggregate``."""
    return local_aggregate(attn, v, window, dilation=dilation, backend=backend)


@opaque_to_tracing
def neighborhood_aggregate_probs(
    probs: torch.Tensor, v: torch.Tensor, window: tuple[int, int], dilation: tuple[int, int], backend: str | None
) -> torch.Tensor:
    """:func:`neighborhood_probs` output applied to the values: :func:`~backbonezoo.kernels.local_aggregate_probs`."""
    return local_aggregate_probs(probs, v, window, dilation=dilation, backend=backend)
