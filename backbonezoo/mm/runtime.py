"""Runtime fixes that mmengine 0.10.7 needs beside torch >= 2.6 and on CPU-only machines.

**Checkpoint trust boundary.** torch >= 2.6 loads with ``weights_only=True`` by default, and a Runner checkpoint
(numpy arrays, ``HistoryBuffer`` objects in the message hub) does not unpickle that way, so ``resume=True`` breaks.
Full unpickling can run arbitrary code, so it is allowed only for files the user has declared their own:
files inside a *trusted folder* (the run's ``work_dir``, which ``tools/train.py`` trusts, folders passed to
:func:`trust_checkpoint_dir`, ``tools/test.py --trust-checkpoint`` or the ``BACKBONEZOO_TRUSTED_CHECKPOINT_DIRS``
environment variable, ``os.pathsep``-separated). Every other file (pretrained weights, downloads, ``load_from``
outside the work dir) is read with ``weights_only=True``; when that fails the error says how to trust the file.
Backbone ``init_cfg`` Pretrained files never take this path: they are always read with ``weights_only=True``.

**DDP on CPU.** mmengine wraps the model with ``device_ids=[LOCAL_RANK]``, which torch's DDP rejects for CPU
modules: :class:`CPUDistributedDataParallel` drops ``device_ids``. Select it with
``model_wrapper_cfg=dict(type='CPUDistributedDataParallel')`` (``tools/train.py`` does when no GPU is used).

**Mixed precision on CPU.** mmengine's ``AmpOptimWrapper`` refuses to run without a GPU; ``CPUAmpOptimWrapper``
runs the forward under ``torch.autocast('cpu', dtype=torch.bfloat16)`` (bf16 needs no loss scaling).
"""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path

import torch
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmengine.registry import MODEL_WRAPPERS, OPTIM_WRAPPERS
from mmengine.runner import CheckpointLoader

__all__ = [
    'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel',
    'trust_checkpoint_dir',
    'trusted_checkpoint_dirs',
    'load_local_checkpoint',
]

TRUSTED_DIRS_ENV = 'BACKBONEZOO_TRUSTED_CHECKPOINT_DIRS'
_trusted_dirs: set[Path] = set()


def trust_checkpoint_dir(path: str | os.PathLike) -> None:
    """Allow full unpickling (``weights_only=False``) of checkpoints inside ``path`` (a folder or a file's folder)."""
    path = Path(path).expanduser().resolve()
    _trusted_dirs.add(path.parent if path.is_file() else path)


def trusted_checkpoint_dirs() -> list[Path]:
    env = [Path(p).expanduser().resolve() for p in os.environ.get(TRUSTED_DIRS_ENV, '').split(os.pathsep) if p]
    return sorted(_trusted_dirs.union(env))


def _is_trusted(path: Path) -> bool:
    return any(path == d or d in path.parents for d in trusted_checkpoint_dirs())


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """mmengine's loader for local paths, with the trust boundary described in the module docstring."""
    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'{filename} can not be found.')
    if _is_trusted(path.resolve()):
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f'{filename} is not a plain weights file: reading it needs full unpickling, which can run code. '
            f'If it was written by your own training run, trust its folder (tools/test.py --trust-checkpoint, '
            f'backbonezoo.mm.trust_checkpoint_dir(), or {TRUSTED_DIRS_ENV}). torch said: {err}'
        ) from err


CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)


@MODEL_WRAPPERS.register_module(force=True)
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for CPU modules (gloo): torch's DDP needs ``device_ids=None`` there."""

    def __init__(self, module: torch.nn.Module, detect_anomalous_params: bool = False, **kwargs) -> None:
        kwargs.pop('device_ids', None)
        kwargs.pop('output_device', None)
        super().__init__(module=module, detect_anomalous_params=detect_anomalous_params, device_ids=None, **kwargs)


@OPTIM_WRAPPERS.register_module(force=True)
class CPUAmpOptimWrapper(OptimWrapper):
    """Optimizer wrapper running the forward pass under CPU autocast (bf16 by default)."""

    def __init__(self, dtype: str = 'bfloat16', **kwargs) -> None:
        super().__init__(**kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError(f"dtype={dtype!r}: expected 'bfloat16' or 'float16'")
        self.cast_dtype = getattr(torch, dtype)

    @contextlib.contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
