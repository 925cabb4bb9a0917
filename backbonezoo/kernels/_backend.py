"""Backend choice for every operator, in one place.

``backend=None`` (or ``'auto'``) uses Triton for CUDA tensors when Triton is importable and the fast
PyTorch path otherwise. ``BACKBONEZOO_KERNEL_BACKEND`` sets the default; an explicit argument wins.
``'reference'`` is the plain specification, ``'torch'`` the fast PyTorch path, ``'triton'`` the Triton
kernels (on CPU tensors only under ``TRITON_INTERPRET=1``), ``'flex'`` FlexAttention (``kernels/flex.py``, CUDA
tensors only; local attention only). The chosen backend is logged at debug level (logger ``backbonezoo.kernels``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os

import torch

BACKENDS = ('reference', 'torch', 'triton', 'flex')
ENV_VAR = 'BACKBONEZOO_KERNEL_BACKEND'
logger = logging.getLogger('backbonezoo.kernels')


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def launch_device(tensor: torch.Tensor):
    """The device guard of a Triton launch: the tensors' CUDA device (not the current one). None while a trace runs
    (fake or traced CUDA tensors record the launch; nothing runs, and a machine without a GPU can trace too)."""
    from ._geometry import tracing

    if tensor.is_cuda and not tracing():
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


def triton_interpret() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def resolve_backend(backend: str | None, tensor: torch.Tensor, op: str, supported: tuple[str, ...] = BACKENDS) -> str:
    """The backend ``op`` runs on for ``tensor``; raises ValueError naming the argument when not possible."""
    chosen = _resolve(backend, tensor, op, supported)
    if not torch.compiler.is_compiling() and logger.isEnabledFor(logging.DEBUG):  # no logging calls in graphs
        logger.debug('%s: backend %r for %s tensors (asked: %r)', op, chosen, tensor.device.type, backend)
    return chosen


def _resolve(backend: str | None, tensor: torch.Tensor, op: str, supported: tuple[str, ...]) -> str:
    chosen = backend if backend is not None else os.environ.get(ENV_VAR, 'auto')
    if backend is None and chosen in BACKENDS and chosen not in supported:
        chosen = 'auto'  # a process-wide default this operator has no implementation for (e.g. 'flex' for routing)
    if chosen == 'auto':
        if tensor.is_cuda and 'triton' in supported and triton_available():
            return 'triton'
        return 'torch' if 'torch' in supported else 'reference'
    if chosen not in BACKENDS:
        source = 'backend' if backend is not None else ENV_VAR
        raise ValueError(f"{op}: {source}={chosen!r} is not one of 'auto', {', '.join(map(repr, BACKENDS))}")
    if chosen not in supported:
        raise ValueError(f'{op}: backend={chosen!r} is not supported by this operator; expected one of {supported}')
    if chosen == 'triton':
        if not triton_available():
            raise ValueError(f"{op}: backend='triton' needs the triton package, which is not installed")
        if not tensor.is_cuda and not triton_interpret():
            raise ValueError(
                f"{op}: backend='triton' needs CUDA tensors (got device {tensor.device}); "
                'set TRITON_INTERPRET=1 to run the kernels on CPU for testing'
            )
    if chosen == 'flex':
        if not tensor.is_cuda:
            raise ValueError(f"{op}: backend='flex' needs CUDA tensors (got device {tensor.device})")
        from .backends import local_flex

        if not local_flex.available():
            raise ValueError(f"{op}: backend='flex' needs backbonezoo.kernels.flex, which this install does not have")
    return chosen
