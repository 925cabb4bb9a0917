"""Shared attention / scan operators (local attention, routing attention, selective scan)."""

from .local import local_aggregate, local_aggregate_probs, local_attention, local_probs, local_scores
from .routing import region_routing, routing_attention
from .scan import selective_scan

__all__ = [
    'local_aggregate',
    'local_aggregate_probs',
    'local_attention',
    'local_probs',
    'local_scores',
    'region_routing',
    'routing_attention',
    'selective_scan',
]
