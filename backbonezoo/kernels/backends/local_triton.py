"""Local attention, Triton backend: a thin adapter to the kernels of ``backbonezoo.kernels.triton_local`` (CUDA
tensors, or CPU under ``TRITON_INTERPRET=1``). Imported lazily: triton is an optional dependency.

What the registered operators (``backbonezoo.kernels.ops``) expect from ``triton_local``: the autograd-aware entry
points ``triton_attention(q, k, v, geo, bias, kind, scale)``, ``triton_scores(q, k, geo, bias, kind, scale)`` and
``triton_aggregate(attn, v, geo)``; ``geo`` is a ``backbonezoo.kernels._geometry.Geometry`` (``kernel``, ``stride``,
``dilation`` pairs, ``border``, ``height``, ``width``, ``slots``), ``kind`` is None, ``'table'`` or ``'query'``.
"""

from __future__ import annotations

__all__ = ['aggregate', 'attention', 'scores']


def scores(q, k, geo, bias, kind, scale):
    from ..triton_local import triton_scores

    return triton_scores(q, k, geo, bias, kind, scale)


def aggregate(attn, v, geo):
    from ..triton_local import triton_aggregate

    return triton_aggregate(attn, v, geo)


def attention(q, k, v, geo, bias, kind, scale):
    from ..triton_local import triton_attention

    return triton_attention(q, k, v, geo, bias, kind, scale)
