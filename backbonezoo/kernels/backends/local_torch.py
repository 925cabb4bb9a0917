"""Local attention, the fast PyTorch path (the CPU implementation of the registered operators): the shifted-views
backend where it applies (stride-1 ``'zero'`` windows of at most 9 slots), the tiled backend otherwise."""

from __future__ import annotations

import logging

import torch

from .._geometry import Geometry
from . import local_shifted, local_tiled

__all__ = ['aggregate', 'aggregate_probs', 'attention', 'path', 'probs', 'scores']

logger = logging.getLogger('backbonezoo.kernels')


def path(geo: Geometry):
    """The backend module for ``geo`` (``local_shifted`` or ``local_tiled``)."""
    return local_shifted if local_shifted.applies(geo) else local_tiled


def _chosen(op: str, geo: Geometry):
    module = path(geo)
    if not torch.compiler.is_compiling() and logger.isEnabledFor(logging.DEBUG):  # no logging calls in graphs
        logger.debug('%s: %s path for %s', op, module.__name__.rsplit('.', 1)[-1], geo)
    return module


def scores(q, k, geo, bias, kind, scale):
    return _chosen('local_scores', geo).scores(q, k, geo, bias, kind, scale)


def aggregate(attn, v, geo):
    return _chosen('local_aggregate', geo).aggregate(attn, v, geo)


def attention(q, k, v, geo, bias, kind, scale):
    return _chosen('local_attention', geo).attention(q, k, v, geo, bias, kind, scale)


def probs(q, k, geo, bias, kind, scale):
    """Always tiled: the layout :func:`aggregate_probs` reads."""
    return local_tiled.probs(q, k, geo, bias, kind, scale)


def aggregate_probs(probs, v, geo):
    return local_tiled.aggregate_probs(probs, v, geo)
