"""Loading and converting checkpoints: official layouts, timm's layout, OpenMMLab-prefixed files.

Trust boundary: checkpoint files are read with ``torch.load(weights_only=True)`` (or safetensors), so a
downloaded file cannot run code. Only a training run's own resume files are unpickled fully (see
``backbonezoo.mm``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

import torch

from .zoo import family_of

__all__ = ['CheckpointMismatchError', 'load_state_dict_file', 'unwrap_state_dict', 'convert_checkpoint']

# Nesting keys used by the families' official releases, timm's train script and mmengine, in priority order.
NEST_KEYS = ('state_dict_ema', 'model_ema', 'state_dict', 'model', 'module')
STRIP_PREFIXES = ('module.', 'backbone.', '_orig_mod.')


class CheckpointMismatchError(RuntimeError):
    """A converted checkpoint does not fit the model: names the missing and unexpected keys."""

    def __init__(self, model_name: str, missing=(), unexpected=(), mismatched=()):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        lines = [f'checkpoint does not fit {model_name!r}:']
        for title, keys in (('missing', self.missing), ('unexpected', self.unexpected), ('shape', self.mismatched)):
            if keys:
                shown = ', '.join(map(str, keys[:20])) + (f' ... (+{len(keys) - 20} more)' if len(keys) > 20 else '')
                lines.append(f'  {title} keys ({len(keys)}): {shown}')
        super().__init__('\n'.join(lines))


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """Read a checkpoint file safely (safetensors, or torch.load with weights_only=True)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)


def unwrap_state_dict(checkpoint: Mapping, prefer_ema: bool = False) -> dict:
    """Take the state dict out of its nest ('model', 'state_dict', 'state_dict_ema', ...) and strip
    'module.' / 'backbone.' prefixes. EMA weights are taken only when ``prefer_ema``."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    state_dict = checkpoint
    keys = NEST_KEYS if prefer_ema else tuple(k for k in NEST_KEYS if 'ema' not in k)
    for _ in range(3):  # nests can be nested ({'state_dict': {'model': ...}} is rare but seen)
        nest = next((k for k in keys if isinstance(state_dict.get(k), Mapping)), None)
        if nest is None:
            break
        state_dict = state_dict[nest]
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f'no tensors found in checkpoint (top-level keys: {list(checkpoint)[:10]})')
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    if any(k.startswith('backbone.') for k in tensors):  # mmdet / mmseg detector checkpoint: keep the backbone
        tensors = {k[len('backbone.') :]: v for k, v in tensors.items() if k.startswith('backbone.')}
    return tensors


def strict_match(model_name: str, model: torch.nn.Module, state_dict: Mapping) -> None:
    """Raise CheckpointMismatchError unless ``state_dict`` loads into ``model`` with strict=True."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f'{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(model_name, missing, unexpected, mismatched)


def family_filter(model_name: str):
    """The ``checkpoint_filter_fn(state_dict, model)`` of the family owning ``model_name``."""
    family = family_of(model_name)
    module = importlib.import_module(family.module)
    return module.checkpoint_filter_fn


def convert_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    model_name: str,
    model: torch.nn.Module | None = None,
    prefer_ema: bool = False,
    strict: bool = True,
) -> dict:
    """Convert an official, timm or OpenMMLab checkpoint to the zoo's (timm's) layout for ``model_name``.

    Returns a state dict that ``timm.create_model(model_name).load_state_dict(sd, strict=True)`` accepts.
    ``model`` (built from ``model_name`` when omitted) is what the result is checked against; pass one built
    with your own kwargs (e.g. ``num_classes``) to convert for it. Raises CheckpointMismatchError naming the
    missing / unexpected keys when the file does not fit.
    """
    import timm

    if not isinstance(checkpoint, Mapping):
        checkpoint = load_state_dict_file(checkpoint)
    state_dict = unwrap_state_dict(checkpoint, prefer_ema=prefer_ema)
    if model is None:
        model = timm.create_model(model_name, pretrained=False)
    state_dict = family_filter(model_name)(state_dict, model)
    if strict:
        strict_match(model_name, model, state_dict)
    return state_dict
