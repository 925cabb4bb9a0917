"""Shape reasoning under torch.export / dynamic torch.compile, in one place (both lean on torch internals).

``backbonezoo.kernels`` uses them, and ``backbonezoo.layers`` re-exports ``size_oblivious`` for model code.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch
from torch.fx.experimental import _config as _symbolic_config
from torch.fx.experimental.symbolic_shapes import statically_known_true

__all__ = ['assert_in_graph', 'size_oblivious']


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
    with _symbolic_config.patch(backed_size_oblivious=True):
        yield


def assert_in_graph(condition: torch.SymBool, message: str) -> None:
    """A check on symbolic sizes as a runtime assertion of the captured graph rather than a shape guard.

    A guard must provably hold over the whole exported size range, and the shape solver cannot prove size rules such
    as A2Mamba's ``kernel * min(size // kernel, kernel) <= size``: export would fail although no size breaks the check.
    A runtime assertion (what ``torch.export`` makes of checks when ``prefer_deferred_runtime_asserts_over_guards`` is
    set) is evaluated when the graph runs, with ``message`` (the ONNX exporter may drop it).
    """
    if statically_known_true(condition):
        return
    env = condition.node.shape_env
    settings = getattr(env, 'settings', None)
    if settings is None or not hasattr(settings, 'prefer_deferred_runtime_asserts_over_guards'):
        torch._check(condition, lambda: message)  # another torch: a plain guard
        return
    env.settings = dataclasses.replace(settings, prefer_deferred_runtime_asserts_over_guards=True)
    try:
        torch._check(condition, lambda: message)
    finally:
        env.settings = settings
