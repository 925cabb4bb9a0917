"""Deterministic stand-in weights for a checkpoint layout (the tests' own generator).

A *manifest* lists a checkpoint's tensors as ``[key, shape, dtype]`` in state-dict order; ``regen_state_dict``
rebuilds tensors of that layout from a seed, so a test can describe an official checkpoint by its key list and
shapes instead of shipping the weights. The parity fixtures in ``tests/fixtures/parity`` were made with weights drawn
by this same rule (see ``tests/fixtures/README.md``), so the rule is part of the fixtures' definition:

- float tensors draw, in manifest order, from one ``torch.Generator(seed)`` in float64, then cast:
  ``running_var`` -> U(0.5, 1.5); ``running_mean`` -> 0.1 N(0, 1); 2-D and higher -> N(0, 1) / sqrt(fan_in) with
  fan_in = prod(shape[1:]); 1-D or scalar whose name ends in weight / gamma / scale -> 1 + 0.1 N(0, 1);
  anything else -> 0.1 N(0, 1). Every float tensor first draws its N(0, 1) sample (so the stream position does not
  depend on the rule), and ``running_var`` draws its uniform sample after it.
- integer and bool tensors (index buffers, counters) are taken from ``fixed`` when given, else zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

__all__ = ['manifest_of', 'regen_state_dict']


def _draw(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    normal = torch.randn(shape, generator=generator, dtype=torch.float64)
    leaf = key.rsplit('.', 1)[-1]
    if leaf == 'running_var':
        return torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5
    if leaf == 'running_mean':
        return 0.1 * normal
    if len(shape) >= 2:
        return normal / math.sqrt(max(1, math.prod(shape[1:])))
    if leaf.endswith(('weight', 'gamma', 'scale')):
        return 1.0 + 0.1 * normal
    return 0.1 * normal


def regen_state_dict(
    manifest: Sequence[Sequence], fixed: Mapping[str, torch.Tensor] | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A state dict with the manifest's keys, shapes and dtypes, filled deterministically from ``seed``."""
    fixed = fixed or {}
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape, dtype_name in manifest:
        dtype = getattr(torch, dtype_name)
        shape = tuple(shape)
        if dtype.is_floating_point:
            out[key] = _draw(key, shape, generator).to(dtype)
        else:
            out[key] = fixed[key].clone() if key in fixed else torch.zeros(shape, dtype=dtype)
    return out


def manifest_of(state_dict: Mapping[str, torch.Tensor]) -> tuple[list, dict[str, torch.Tensor]]:
    """The manifest of ``state_dict`` and its non-float tensors (kept verbatim by ``regen_state_dict``)."""
    manifest = [[key, list(t.shape), str(t.dtype).replace('torch.', '')] for key, t in state_dict.items()]
    fixed = {key: t.clone() for key, t in state_dict.items() if not t.dtype.is_floating_point}
    return manifest, fixed
