"""Marking functions that graph capturers (TorchScript, torch.fx) must leave as one opaque call."""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from timm.layers import register_notrace_function

__all__ = ['is_tracing', 'opaque_to_tracing', 'size_oblivious']

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


@contextlib.contextmanager
def size_oblivious(enabled: bool = True) -> Iterator[None]:
    """Size-oblivious shape reasoning for the code inside, when ``enabled`` (pass whether sizes are symbolic).

    Views and contiguity checks over symbolic sizes ask whether a size is 1 (its stride would not matter); the
    answer becomes a guard that pins an exported graph to one side of it. Inside, backed sizes are treated as
    unknown sizes >= 2 for such layout decisions. Use it only around code whose sizes cannot be 0 or 1 where the
    answer would change the result (layout-only questions, or sizes the caller has checked). Eager calls: no-op.
    """
    if not enabled:
        yield
        return
    from torch.fx.experimental import _config

    with _config.patch(backed_size_oblivious=True):
        yield
