"""Loading and converting checkpoints: official layouts, timm's layout, OpenMMLab-prefixed files.

**Trust boundary.** A checkpoint file is read as safetensors (recognised by its header, whatever its name) or with
``torch.load(weights_only=True)``, so a downloaded file cannot run code. Full unpickling (``weights_only=False``,
which runs whatever the file's pickle says) happens only for files trusted one by one: named with
:func:`trust_checkpoint` (``--trust-checkpoint FILE`` in the tools), or a training run's own checkpoints (the files
its Runner saved, or the one a previous run of the same work dir listed in ``last_checkpoint``; see
``backbonezoo.mm.runtime``). Folders are never trusted: a trusted file is one exact, resolved path.

Errors are named: :class:`UnsafeCheckpointError` (needs full unpickling; says how to trust the file),
:class:`CheckpointReadError` (empty, truncated or not a checkpoint), :class:`CheckpointMismatchError` (does not fit
the model; names the keys).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from .zoo import family_of

__all__ = [
    'CheckpointMismatchError',
    'CheckpointReadError',
    'UnsafeCheckpointError',
    'convert_checkpoint',
    'PretrainedUnavailableError',
    'ensure_pretrained_available',
    'is_safetensors_file',
    'is_trusted_checkpoint',
    'load_state_dict_file',
    'trust_checkpoint',
    'trusted_checkpoints',
    'unwrap_state_dict',
]

# Nesting keys used by the families' official releases, timm's train script and mmengine, in priority order.
NEST_KEYS = ('state_dict_ema', 'model_ema', 'state_dict', 'model', 'module')
STRIP_PREFIXES = ('module.', 'backbone.', '_orig_mod.')
TRUST_HINT = 'tools: --trust-checkpoint {path}; Python: backbonezoo.checkpoint.trust_checkpoint({path!r})'


class CheckpointMismatchError(RuntimeError):
    """A converted checkpoint does not fit the model: names the missing and unexpected keys."""

    def __init__(self, model_name: str, missing=(), unexpected=(), mismatched=(), hint: str = ''):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        lines = [f'checkpoint does not fit {model_name!r}:']
        for title, keys in (('missing', self.missing), ('unexpected', self.unexpected), ('shape', self.mismatched)):
            if keys:
                shown = ', '.join(map(str, keys[:20])) + (f' ... (+{len(keys) - 20} more)' if len(keys) > 20 else '')
                lines.append(f'  {title} keys ({len(keys)}): {shown}')
        if hint:
            lines.append(hint)
        super().__init__('\n'.join(lines))


class UnsafeCheckpointError(pickle.UnpicklingError):
    """Reading the file needs full unpickling, which can run code, and the file is not trusted."""

    def __init__(self, path: str | os.PathLike, detail: str = ''):
        self.path = os.fspath(path)
        super().__init__(
            f'{self.path} is not a plain weights file: reading it needs full unpickling, which can run arbitrary code'
            f'{" (" + detail + ")" if detail else ""}. It was not loaded. If you know where it comes from (e.g. '
            f'your own training run), trust this one file: ' + TRUST_HINT.format(path=self.path)
        )


class CheckpointReadError(ValueError):
    """The file is empty, truncated or not a checkpoint at all."""


_trusted_files: set[Path] = set()


def _resolve(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def trust_checkpoint(path: str | os.PathLike) -> Path:
    """Allow full unpickling (``weights_only=False``) of this one file (not of its folder); returns its resolved
    path. Only for files whose origin you know: unpickling runs whatever code the file holds."""
    resolved = _resolve(path)
    if resolved.is_dir():
        raise IsADirectoryError(f'trust_checkpoint({os.fspath(path)!r}): a folder; trust checkpoint files one by one')
    if not resolved.is_file():
        raise FileNotFoundError(f'trust_checkpoint({os.fspath(path)!r}): file not found')
    _trusted_files.add(resolved)
    return resolved


def is_trusted_checkpoint(path: str | os.PathLike) -> bool:
    return _resolve(path) in _trusted_files


def trusted_checkpoints() -> list[Path]:
    """The files trusted in this process (resolved paths)."""
    return sorted(_trusted_files)


def is_safetensors_file(path: str | os.PathLike) -> bool:
    """Sniff the content: an 8-byte little-endian header length, then a JSON header starting with '{'."""
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as handle:
            head = handle.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b'{':
        return False
    (length,) = struct.unpack('<Q', head[:8])
    return 2 <= length <= size - 8


def _read_safetensors(path: str, map_location) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    device = map_location if isinstance(map_location, (str, torch.device)) else 'cpu'
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, json.JSONDecodeError, OSError, ValueError) as err:
        raise CheckpointReadError(f'{path}: a damaged safetensors file ({type(err).__name__}: {err})') from err


def _read_torch(path: str, map_location, trusted: bool):
    with open(path, 'rb') as handle:
        magic = handle.read(2)
    if magic == b'PK':
        if not zipfile.is_zipfile(path):
            raise CheckpointReadError(f'{path}: a truncated or damaged torch.save file (broken zip archive)')
    elif magic[:1] != b'\x80':  # neither torch.save's zip format nor a (legacy) pickle
        raise CheckpointReadError(
            f'{path}: not a checkpoint (expected a torch.save file or safetensors; starts with {magic!r})'
        )
    if trusted:
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except (EOFError, RuntimeError, pickle.UnpicklingError) as err:
            raise CheckpointReadError(f'{path}: could not be read ({type(err).__name__}: {err})') from err
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = []
        if magic == b'PK':
            try:
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:  # noqa: BLE001 (a broken archive: reported below)
                unsafe = []
        if magic == b'PK' and not unsafe:
            raise CheckpointReadError(f'{path}: could not be read ({type(err).__name__}: {err})') from err
        detail = f'it references {", ".join(unsafe[:8])}' if unsafe else 'a legacy pickle with non-tensor objects'
        raise UnsafeCheckpointError(path, detail) from None
    except (EOFError, RuntimeError) as err:
        raise CheckpointReadError(
            f'{path}: a truncated or damaged checkpoint ({type(err).__name__}: {err or "unexpected end of file"})'
        ) from err


def load_state_dict_file(path: str | os.PathLike, map_location='cpu', trusted: bool | None = None):
    """Read a checkpoint file safely: safetensors (sniffed from the content, not the name), else
    ``torch.load(weights_only=True)``. Full unpickling only for a trusted file (``trusted=None``: the file is
    trusted when :func:`trust_checkpoint` named it, or a Runner of this process saved it).

    Raises FileNotFoundError, :class:`CheckpointReadError` (empty / truncated / not a checkpoint) or
    :class:`UnsafeCheckpointError` (needs full unpickling and is not trusted; nothing was executed).
    """
    path = os.fspath(Path(path).expanduser())
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}')
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(f'{path}: empty file (0 bytes), not a checkpoint')
    if is_safetensors_file(path):
        return _read_safetensors(path, map_location)
    if path.endswith('.safetensors'):
        raise CheckpointReadError(f'{path}: named .safetensors but has no safetensors header')
    return _read_torch(path, map_location, is_trusted_checkpoint(path) if trusted is None else trusted)


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


def strip_classifier_prefix(state_dict: Mapping, model: torch.nn.Module) -> dict:
    """Drop the ``model.`` prefix of a ``backbonezoo.mm.ZooClassifier`` state dict (the timm model sits at
    ``.model``), unless the model's own keys carry it."""
    if state_dict and all(k.startswith('model.') for k in state_dict):
        if not all(k.startswith('model.') for k in model.state_dict()):
            return {k[len('model.') :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def family_filter(model_name: str):
    """The ``checkpoint_filter_fn(state_dict, model)`` of the family owning ``model_name``."""
    family = family_of(model_name)
    module = importlib.import_module(family.module)
    return module.checkpoint_filter_fn


def convert_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    model_name,
    model: torch.nn.Module | None = None,
    prefer_ema: bool = False,
    strict: bool = True,
) -> dict:
    """Convert an official, timm or OpenMMLab checkpoint to the zoo's (timm's) layout for ``model_name``.

    **Dense form.** When ``model_name`` is an mmdet / mmseg config (a ``.py`` path, an mmengine ``Config`` or a dict
    with ``model``), ``checkpoint`` is a whole detection / segmentation checkpoint (the authors' mmdet 2.x / mmseg 0.x
    files: backbone in the official wrapper's names, neck, heads) and the result is the state dict of the model that
    config builds (``model``: that model, built when omitted), checked strictly:
    :func:`backbonezoo.mm.dense_convert.convert_dense_checkpoint` (raises its ``DenseCheckpointMismatchError``, a
    :class:`CheckpointMismatchError`). ``prefer_ema`` and ``strict=False`` do not apply there.

    Returns a state dict that ``timm.create_model(model_name).load_state_dict(sd, strict=True)`` accepts.
    ``model`` (built from ``model_name`` when omitted) is what the result is checked against; pass one built
    with your own kwargs (e.g. ``num_classes``) to convert for it. Raises CheckpointMismatchError naming the
    missing / unexpected keys when the file does not fit. Files are read with :func:`load_state_dict_file`
    (safetensors or ``weights_only=True`` unless trusted). Our own classification Runner checkpoints
    (``backbonezoo.mm.ZooClassifier``: ``model.``-prefixed keys) are accepted too.
    """
    import timm

    if not isinstance(model_name, str) or model_name.endswith('.py'):
        from .mm.dense_convert import convert_dense_checkpoint, is_dense_config

        if not is_dense_config(model_name):
            raise TypeError(f'model_name={model_name!r}: expected a timm model name or an mmdet / mmseg config')
        if prefer_ema or not strict:
            raise ValueError('convert_checkpoint(path, CONFIG): prefer_ema / strict=False do not apply to dense files')
        return convert_dense_checkpoint(checkpoint, model_name, model=model)
    if not isinstance(checkpoint, Mapping):
        checkpoint = load_state_dict_file(checkpoint)
    state_dict = unwrap_state_dict(checkpoint, prefer_ema=prefer_ema)
    if model is None:
        model = timm.create_model(model_name, pretrained=False)
    state_dict = strip_classifier_prefix(state_dict, model)
    state_dict = family_filter(model_name)(state_dict, model)
    if strict:
        strict_match(model_name, model, state_dict)
    return state_dict


class PretrainedUnavailableError(RuntimeError):
    """``pretrained=True`` with no way to get the weights (hub offline / unreachable, nothing cached)."""


def _hub_reachable(host: str, timeout: float = 3.0) -> bool:
    """A bounded TCP probe (DNS included) instead of the hub client's minute of retries; True behind a proxy."""
    import socket
    import threading

    if any(os.environ.get(k) for k in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY')):
        return True
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result and result[0])


def _hf_offline() -> bool:
    if os.environ.get('HF_HUB_OFFLINE', '').upper() in ('1', 'ON', 'YES', 'TRUE'):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def ensure_pretrained_available(variant: str, pretrained_cfg=None, pretrained_cfg_overlay=None) -> None:
    """Fail fast, with a message that says what to do, when ``pretrained=True`` cannot get weights.

    A ``file`` / ``state_dict`` overlay always passes. Hub weights pass when cached, or when the hub is online
    and reachable (a 3 s probe); with ``HF_HUB_OFFLINE`` set and nothing cached, or no network, this raises
    :class:`PretrainedUnavailableError` at once instead of timm waiting on the hub client's retries.
    """
    from timm.models._builder import _resolve_pretrained_source, resolve_pretrained_cfg

    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay)
    load_from, location = _resolve_pretrained_source(cfg.to_dict())
    if load_from not in ('hf-hub', 'url'):
        return  # a local file / state dict, or nothing (timm says so itself, at once)
    hint = (
        f'pass a local file instead: timm.create_model({variant!r}, pretrained=True, '
        f"pretrained_cfg_overlay=dict(state_dict=backbonezoo.convert_checkpoint('PATH', {variant!r}))) "
        '(official, timm or zoo layouts), or pretrained=False'
    )
    if load_from == 'hf-hub':
        from huggingface_hub import try_to_load_from_cache

        repo, files = (location, ('model.safetensors', 'pytorch_model.bin'))
        if isinstance(location, (list, tuple)):
            repo, files = location[0], (location[1],)
        if any(isinstance(try_to_load_from_cache(repo, name), str) for name in files):
            return
        if _hf_offline():
            raise PretrainedUnavailableError(
                f'{variant}: pretrained weights are on the Hugging Face hub ({repo}), HF_HUB_OFFLINE is set and they '
                f'are not in the local cache; {hint}'
            )
        host = 'huggingface.co'
    else:
        from urllib.parse import urlparse

        cached = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(urlparse(location).path))
        if os.path.isfile(cached):
            return
        host = urlparse(location).hostname or ''
    if not _hub_reachable(host):
        raise PretrainedUnavailableError(
            f'{variant}: pretrained weights need a download from {host}, which cannot be reached; {hint}'
        )
