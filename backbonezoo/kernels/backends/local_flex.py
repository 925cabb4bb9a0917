"""Local attention, FlexAttention backend: a thin adapter to ``backbonezoo.kernels.flex`` (CUDA only), whose
functions mirror the reference signatures: ``scores(q, k, geo, bias, kind, scale)``, ``aggregate(attn, v, geo)``,
``attention(q, k, v, geo, bias, kind, scale)``. :func:`available` says whether that module exists."""

from __future__ import annotations

import functools
import importlib
import importlib.util

__all__ = ['aggregate', 'attention', 'available', 'scores']


@functools.cache
def _module():
    if importlib.util.find_spec('backbonezoo.kernels.flex') is None:
        return None
    return importlib.import_module('backbonezoo.kernels.flex')


def available() -> bool:
    return _module() is not None


def scores(q, k, geo, bias, kind, scale):
    return _module().scores(q, k, geo, bias, kind, scale)


def aggregate(attn, v, geo):
    return _module().aggregate(attn, v, geo)


def attention(q, k, v, geo, bias, kind, scale):
    return _module().attention(q, k, v, geo, bias, kind, scale)
