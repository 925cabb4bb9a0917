"""Marking functions that graph capturers (TorchScript, torch.fx) must leave as one opaque call."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function

from backbonezoo.kernels._shapes import size_oblivious

__all__ = ['block_counts', 'crop', 'is_tracing', 'opaque_to_tracing', 'size_oblivious']

_F = TypeVar('_F', bound=Callable)


def opaque_to_tracing(fn: _F) -> _F:
    """Make ``fn`` one call in captured graphs: ``torch.jit.script`` keeps it in Python (``torch.jit.ignore``) and
    timm's torch.fx tracer records it as a leaf (``register_notrace_function``), so its body may dispatch on devices
    and sizes (``backbonezoo.kernels``) or format errors. Eager calls are the plain function.

    The annotations are resolved first: TorchScript reads an ignored function's signature from its annotation objects,
    which ``from __future__ import annotations`` leaves as strings it cannot parse. Every argument must be annotated
    with a type TorchScript knows.
    """
    fn.__annotations__ = typing.get_type_hints(fn)
    return register_notrace_function(torch.jit.ignore(fn))


def is_tracing() -> bool:
    """True under torch.compile and torch.export (non-strict export is not "compiling"): code that branches on map
    sizes must take the size-independent path then, or the captured graph is specialised to one size."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def block_counts(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Blocks of ``multiple`` per axis covering an (H, W) map, ``ceil(H / m), ceil(W / m)``; pad to ``count * m``.

    Written as floor divisions, so that a symbolic padded size is literally ``count * m`` and later shapes simplify.
    Under symbolic sizes (dynamic-shape export / compile; not ``torch.jit.trace``, whose sizes are tensors and whose
    graphs, e.g. fvcore's FLOP count, must stay the eager computation) one more block per axis, for modules whose
    blocks never interact (the extra one holds zeros): no count is then 1 at the traced size, where shape checks
    would pin the graph to one block or to several.
    """
    nh, nw = (height + multiple - 1) // multiple, (width + multiple - 1) // multiple
    if is_tracing() and not (isinstance(height, int) and isinstance(width, int)):
        nh, nw = nh + 1, nw + 1
    return nh, nw


def crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x[..., :height, :width]``. Traced, a negative pad (a new tensor): a slice view's contiguity metadata compares
    the padded and the cropped size, which would pin an exported graph to one of the two cases."""
    if is_tracing():
        return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]))
    return x[..., :height, :width]
