"""Local attention geometry: which keys each query sees, as Python tuples (the specification) and as index tensors.

Shared by the public API (``local.py``) and every backend (``backends/local_*.py``). The rules are in the docstring
of ``backbonezoo.kernels.local``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

__all__ = [
    'Geometry',
    'axis_window_tensors',
    'axis_windows',
    'cdiv',
    'mod',
    'static',
    'tensor_cache',
    'tracing',
]

Size = int | tuple[int, int]


def tracing() -> bool:
    """True while torch.compile / torch.export / make_fx trace or fake tensors run: tensors made now are fake or
    graph-bound and must not be cached for later eager calls."""
    if torch.compiler.is_compiling():
        return True
    key = torch._C._TorchDispatchModeKey
    return any(torch._C._get_dispatch_mode(k) is not None for k in (key.FAKE, key.PROXY))


def tensor_cache(maxsize: int):
    """``functools.lru_cache`` for functions that build index tensors, bypassed while torch.compile / torch.export
    trace (see :func:`tracing`) or when a size is symbolic: symbolic sizes must stay in the graph (built from them with
    tensor ops) to export dynamic H / W."""

    def decorate(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def wrapper(*args):
            if tracing() or not static(*args):
                return fn(*args)
            return cached(*args)

        wrapper.cache_clear = cached.cache_clear
        return wrapper

    return decorate


def static(*args) -> bool:
    """True when no argument is (or holds, like ``Geometry``) a symbolic size."""
    try:
        hash(args)  # SymInts are unhashable
    except TypeError:
        return False
    return True


def cdiv(a, b):
    """Ceil division for ints and SymInts alike."""
    return (a + b - 1) // b


def mod(x: torch.Tensor, divisor) -> torch.Tensor:
    """``x % divisor``; through floor division for a symbolic divisor (the ONNX exporter cannot translate a remainder
    by a SymInt)."""
    return x % divisor if isinstance(divisor, int) else x - x // divisor * divisor


# ---------------------------------------------------------------------------------------------------------------------
# Per-axis window geometry: the specification in index form.


@functools.lru_cache(maxsize=512)
def axis_windows(length: int, kernel: int, stride: int, dilation: int, border: str) -> tuple[tuple, tuple]:
    """Key positions and bias-table rows of every query along one axis.

    Returns ``(keys, rel)``, each ``length`` tuples of ``kernel`` ints: ``keys[i][j]`` is the position of window slot
    ``j`` of query ``i`` (``-1`` when outside the map, 'zero' only); ``rel[i][j]`` the bias-table row
    (``-1`` where no table applies). Arguments are assumed valid (see ``_geometry``).
    """
    keys, rel = [], []
    for i in range(length):
        if border == 'shift':
            group, pos = mod(i, dilation), i // dilation
            group_len = (length - group + dilation - 1) // dilation
            start = min(max(pos - kernel // 2, 0), group_len - kernel)
            keys.append(tuple(group + (start + j) * dilation for j in range(kernel)))
            rel.append(tuple(start + j - pos + kernel - 1 for j in range(kernel)))
        else:
            start = (i // stride) * stride - dilation * ((kernel - stride) // 2)
            row = tuple(start + j * dilation for j in range(kernel))
            keys.append(tuple(p if 0 <= p < length else -1 for p in row))
            offsets = [p - i for p in row]
            if all(o % dilation == 0 for o in offsets):
                rel.append(tuple(o // dilation + kernel - 1 for o in offsets))
            else:
                rel.append((-1,) * kernel)
    return tuple(keys), tuple(rel)


@dataclass(frozen=True)
class Geometry:
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    border: str

    @property
    def slots(self) -> int:
        return self.kernel[0] * self.kernel[1]

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(keys_h (H, kh), keys_w (W, kw), rel_h, rel_w)`` as long tensors on ``device``."""
        return _tables(self, device)


@tensor_cache(maxsize=256)
def _tables(geo: Geometry, device: torch.device) -> tuple[torch.Tensor, ...]:
    (keys_h, rel_h), (keys_w, rel_w) = (
        axis_window_tensors(length, geo.kernel[a], geo.stride[a], geo.dilation[a], geo.border, device)
        for a, length in enumerate((geo.height, geo.width))
    )
    return keys_h, keys_w, rel_h, rel_w


def axis_window_tensors(
    length: int, kernel: int, stride: int, dilation: int, border: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``axis_windows`` as ``(length, kernel)`` long tensors built with tensor ops from ``length``, so a symbolic
    length (torch.export with dynamic H / W) stays symbolic instead of being baked into the graph."""
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(kernel, device=device)
    if border == 'shift':
        group, pos = mod(i, dilation), i // dilation
        members = (length - group + dilation - 1) // dilation
        start = torch.minimum((pos - kernel // 2).clamp_min(0), members - kernel)
        return group + (start + j) * dilation, start + j - pos + kernel - 1
    raw = (i // stride) * stride - dilation * ((kernel - stride) // 2) + j * dilation
    offsets = raw - i  # all or none of a row's offsets are multiples of the dilation
    keys = torch.where((raw >= 0) & (raw < length), raw, -1)
    return keys, torch.where(mod(offsets, dilation) == 0, offsets // dilation + kernel - 1, -1)
