"""Shared attention / scan operators (local attention, routing attention, selective scan).

The public functions below check their arguments, pick a backend (``_backend.py``) and call the registered
``torch.library`` operators (``torch.ops.backbonezoo.*``: fake implementation, registered autograd, FLOP formula) for
the fast paths: ``ops.py``'s custom ops on CPU, ``triton_ops.py``'s triton ops on CUDA (torch.compile traces into
those, so Inductor sees the Triton kernels); the reference backend stays plain Python, the one specification. Local
attention's backends are one module each under ``backends/``; ``_geometry.py`` holds the window rules.
"""

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
