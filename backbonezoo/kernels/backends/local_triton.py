"""Local attention, Triton backend: the registered CUDA operators ``torch.ops.backbonezoo.local_*_triton``
(``kernels/triton_ops.py``: ``torch.library.triton_op`` on the kernels of ``triton_local.py``, with registered autograd
and fake implementations). Used for CUDA tensors, and for CPU tensors under ``TRITON_INTERPRET=1`` (testing). Imported
lazily: triton is an optional dependency.

Each function takes checked arguments: ``geo`` is a ``backbonezoo.kernels._geometry.Geometry`` (``kernel``,
``stride``, ``dilation`` pairs, ``border``, ``height``, ``width``, ``slots``), ``kind`` is None, ``'table'`` or
``'query'`` (the bias form, see ``local.py``), ``scale`` the factor on ``q . k``.
"""

from __future__ import annotations

__all__ = ['aggregate', 'attention', 'scores']


def scores(q, k, geo, bias, kind, scale):
    """``scale * q . k_window + bias`` as ``(B, heads, H, W, K)``."""
    from .. import triton_ops

    return triton_ops.local_scores(q, k, geo, bias, kind, scale)


def aggregate(attn, v, geo):
    """``sum_j attn[..., j] * v[key_j]`` as ``(B, heads, H, W, d_v)``."""
    from .. import triton_ops

    return triton_ops.local_aggregate(attn, v, geo)


def attention(q, k, v, geo, bias, kind, scale):
    """``softmax(scale * q . k_window + bias) @ v_window`` as ``(B, heads, H, W, d_v)``."""
    from .. import triton_ops

    return triton_ops.local_attention(q, k, v, geo, bias, kind, scale)
