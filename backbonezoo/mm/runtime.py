"""Runtime fixes that mmengine 0.10.7 needs beside torch >= 2.6 and on CPU-only machines.

**Checkpoint trust boundary.** Checkpoints are read with ``backbonezoo.checkpoint.load_state_dict_file``:
safetensors (sniffed from the header) or ``torch.load(weights_only=True)``, so a file cannot run code. A Runner
checkpoint (numpy arrays, ``HistoryBuffer`` objects in the message hub) needs full unpickling, which can run
arbitrary code, so it is allowed only for *individual trusted files*, never for folders:

* the files a :class:`ZooRunner` saved in this process (its ``epoch_N.pth`` / ``iter_N.pth`` / ``best_*.pth``);
* the file a previous run of the same work dir listed in ``WORK_DIR/last_checkpoint``, when it is named
  ``epoch_N.pth`` / ``iter_N.pth`` / ``best_*.pth`` and lies directly in the work dir (:func:`is_run_checkpoint`):
  what ``--resume`` (auto) picks up;
* files named one by one: ``--trust-checkpoint FILE`` in ``tools/train.py`` / ``tools/test.py``, or
  ``backbonezoo.checkpoint.trust_checkpoint(FILE)``.

Everything else (pretrained weights, downloads, a ``load_from`` or ``--resume FILE`` outside that rule, files in
sub-folders of the work dir) is read with ``weights_only=True``; a file that needs more raises
``backbonezoo.checkpoint.UnsafeCheckpointError`` (nothing was executed) saying how to trust it. URLs
(``http(s)://``, ``open-mmlab://``, ``torchvision://``) are read with ``weights_only=True`` too. Backbone
``init_cfg`` Pretrained files take the same reader.

**Strict loading.** :class:`ZooRunner` (what ``tools/train.py`` / ``tools/test.py`` build) loads ``load_from``
through the zoo's converters (official, timm and OpenMMLab layouts, our safetensors) and then strictly: a
checkpoint that does not fit raises ``CheckpointMismatchError`` naming the keys instead of mmengine's warning
and a model left at random weights. A deliberate partial load (e.g. a backbone-only checkpoint into a detector)
needs ``load_partial=True`` in the config (``--load-partial``); it still fails when nothing fits. ``--resume``
of a file holding weights only raises :class:`WeightsOnlyCheckpointError`.

**DDP on CPU.** mmengine wraps the model with ``device_ids=[LOCAL_RANK]``, which torch's DDP rejects for CPU
modules: :class:`CPUDistributedDataParallel` drops ``device_ids``. Select it with
``model_wrapper_cfg=dict(type='CPUDistributedDataParallel')`` (``tools/train.py`` does when no GPU is used).

**Mixed precision on CPU.** mmengine's ``AmpOptimWrapper`` refuses to run without a GPU; ``CPUAmpOptimWrapper``
runs the forward under ``torch.autocast('cpu', dtype=torch.bfloat16)`` (bf16 needs no loss scaling).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import mmengine.runner.checkpoint as _mm_checkpoint
import torch
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import MODEL_WRAPPERS, OPTIM_WRAPPERS, RUNNERS
from mmengine.runner import CheckpointLoader, Runner

from ..checkpoint import (
    CheckpointMismatchError,
    CheckpointReadError,
    UnsafeCheckpointError,
    family_filter,
    is_trusted_checkpoint,
    load_state_dict_file,
    trust_checkpoint,
    trusted_checkpoints,
)

__all__ = [
    'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel',
    'WeightsOnlyCheckpointError',
    'ZooRunner',
    'build_runner',
    'fit_state_dict',
    'is_run_checkpoint',
    'load_local_checkpoint',
    'trust_checkpoint',
    'trust_checkpoint_dir',
    'trusted_checkpoint_dirs',
    'trusted_checkpoints',
]

RUN_CHECKPOINT_NAME = re.compile(r'(epoch_\d+|iter_\d+|best_[\w.-]+)\.pth')


class WeightsOnlyCheckpointError(ValueError):
    """``--resume`` of a file that holds weights only (no ``meta`` / optimizer / message hub)."""


# ---- trust ------------------------------------------------------------------------------------------------------
def trust_checkpoint_dir(path: str | os.PathLike) -> None:
    """Deprecated: folders are no longer trusted. A file path is trusted as that one file
    (:func:`backbonezoo.checkpoint.trust_checkpoint`); a folder raises ``IsADirectoryError``."""
    if Path(path).expanduser().is_dir():
        raise IsADirectoryError(
            f'trust_checkpoint_dir({os.fspath(path)!r}): folders are not trusted any more (every file below one '
            f'could run code); trust checkpoint files one by one with backbonezoo.checkpoint.trust_checkpoint(FILE)'
        )
    trust_checkpoint(path)


def trusted_checkpoint_dirs() -> list[Path]:
    """Deprecated name of :func:`backbonezoo.checkpoint.trusted_checkpoints` (trusted *files*)."""
    return trusted_checkpoints()


def is_run_checkpoint(work_dir: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Runner's own checkpoint of ``work_dir``: directly in it, named ``epoch_N.pth`` /
    ``iter_N.pth`` / ``best_*.pth``, and the file ``work_dir/last_checkpoint`` lists."""
    work = Path(work_dir).expanduser().resolve()
    file = Path(path).expanduser().resolve()
    if file.parent != work or not RUN_CHECKPOINT_NAME.fullmatch(file.name) or not file.is_file():
        return False
    try:
        listed = (work / 'last_checkpoint').read_text().strip()
    except OSError:
        return False
    return bool(listed) and Path(listed).expanduser().resolve() == file


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's loader for local paths: ``load_state_dict_file`` (trusted files only are fully unpickled)."""
    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_state_dict_file(path, map_location=map_location)


CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)


def _load_url_weights_only(url, model_dir=None, map_location=None, progress=True, check_hash=False, file_name=None):
    """mmengine's ``load_url`` (used by its http(s), open-mmlab, torchvision and mmcls schemes) with
    ``weights_only=True``: torch.hub's default would unpickle a download fully."""
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir, map_location, progress, check_hash, file_name, weights_only=True
        )
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(url, 'a download; save it and trust the local file if you know its origin') from err


_mm_checkpoint.load_url = _load_url_weights_only


# ---- strict, converting load ----------------------------------------------------------------------------------
def _model_tensors(checkpoint, revise_keys=()) -> dict:
    """The model's tensors out of a checkpoint: mmengine's 'state_dict', timm's / the authors' nests."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointReadError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    state_dict = checkpoint
    for _ in range(3):
        nest = next((k for k in ('state_dict', 'model', 'module') if isinstance(state_dict.get(k), Mapping)), None)
        if nest is None:
            break
        state_dict = state_dict[nest]
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    for pattern, replacement in revise_keys:
        tensors = {re.sub(pattern, replacement, k): v for k, v in tensors.items()}
    for prefix in ('module.', '_orig_mod.'):
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _is_zoo_name(name: str) -> bool:
    try:
        family_filter(name)
    except (KeyError, AttributeError, ImportError):
        return False
    return True


def _convert_classifier(module, state_dict: dict) -> dict:
    """Any layout -> a ZooClassifier's (``model.`` + timm keys): the family's converter in front."""
    from ..checkpoint import strip_classifier_prefix, unwrap_state_dict

    state_dict = strip_classifier_prefix(unwrap_state_dict(state_dict), module.model)
    if _is_zoo_name(module.model_name):
        state_dict = family_filter(module.model_name)(state_dict, module.model)
    return {f'model.{k}': v for k, v in state_dict.items()}


def _convert_backbone(backbone, state_dict: dict) -> dict:
    """Any layout -> a ZooBackbone's (``model.*`` of the pruned timm model, ``out_norms.*``, extra children)."""
    import timm

    own = backbone.state_dict()
    if set(state_dict) <= set(own):
        return state_dict
    from ..checkpoint import unwrap_state_dict

    state_dict = backbone.convert_dense_checkpoint(dict(unwrap_state_dict(state_dict)))
    children = {name for name, _ in backbone.named_children() if name != 'model'}
    extra = {k: state_dict.pop(k) for k in list(state_dict) if k.split('.')[0] in children}
    if state_dict and all(k.startswith('model.') for k in state_dict):
        state_dict = {k[len('model.') :]: v for k, v in state_dict.items()}
    with torch.device('meta'):
        full = timm.create_model(backbone.model_name, pretrained=False, **backbone._create_kwargs)
    if _is_zoo_name(backbone.model_name):
        state_dict = family_filter(backbone.model_name)(state_dict, full)
    pruned = set(full.state_dict()) - set(backbone.model.state_dict())  # head / unused stages: not this backbone's
    out = {f'model.{k}': v for k, v in state_dict.items() if k not in pruned}
    out.update(extra)
    return out


def _convert_to_model(model: torch.nn.Module, state_dict: dict) -> dict:
    from .backbone import ZooBackbone

    if isinstance(model, ZooBackbone):
        return _convert_backbone(model, state_dict)
    if hasattr(model, 'model_name') and isinstance(getattr(model, 'model', None), torch.nn.Module):
        return _convert_classifier(model, state_dict)
    inner = getattr(model, 'module', None)
    if getattr(model, 'backbone', None) is None and isinstance(inner, torch.nn.Module):  # a TTA wrapper (--tta)
        if state_dict and all(k.startswith('module.') for k in state_dict):
            state_dict = {k[len('module.') :]: v for k, v in state_dict.items()}
        return {f'module.{k}': v for k, v in _convert_to_model(inner, state_dict).items()}
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, ZooBackbone):
        own = {k[len('backbone.') :]: v for k, v in state_dict.items() if k.startswith('backbone.')}
        rest = {k: v for k, v in state_dict.items() if not k.startswith('backbone.')}
        if not own:  # a backbone-only file (classification / timm / converted safetensors)
            own, rest = state_dict, {}
        if rest:  # a whole dense checkpoint: older mmdet names of the heads (backbonezoo.mm.dense_convert)
            from .dense_convert import rename_legacy_keys

            rest = rename_legacy_keys(rest, model)
        return {**rest, **{f'backbone.{k}': v for k, v in _convert_backbone(backbone, own).items()}}
    return state_dict


def fit_state_dict(
    model: torch.nn.Module, checkpoint, partial: bool = False, revise_keys=((r'^module\.', ''),), source: str = ''
) -> dict:
    """The checkpoint's weights in ``model``'s layout, checked strictly.

    Official, timm and OpenMMLab layouts (and our safetensors) of a zoo classifier or of a detector's / segmentor's
    zoo backbone go through the family's converter first. Raises ``CheckpointMismatchError`` naming the missing,
    unexpected and mis-shaped keys; with ``partial=True`` returns the fitting subset instead (an error when it is
    empty).
    """
    expected = model.state_dict()
    state_dict = _model_tensors(checkpoint, revise_keys)
    note = ''
    if set(state_dict) != set(expected):
        try:
            state_dict = _convert_to_model(model, state_dict)
        except CheckpointMismatchError:
            raise
        except Exception as err:  # noqa: BLE001 (a converter failing on a foreign layout: the keys say more)
            note = f'  (the zoo converter failed on it: {type(err).__name__}: {err})'
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f'{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    name = f'{type(model).__name__}' + (f' from {source}' if source else '')
    if not (missing or unexpected or mismatched):
        return state_dict
    fitting = {k: v for k, v in state_dict.items() if k in expected and tuple(v.shape) == tuple(expected[k].shape)}
    if not partial:
        hint = (
            f'{note}\nnothing was loaded. A backbone-only or classification checkpoint for a detector / segmentor '
            f"belongs in the backbone's init_cfg=dict(type='Pretrained', checkpoint=...); a deliberate partial "
            f'load needs load_partial=True (tools: --load-partial).'
        )
        raise CheckpointMismatchError(name, missing, unexpected, mismatched, hint=hint.lstrip('\n'))
    if not fitting:
        raise CheckpointMismatchError(name, missing, unexpected, mismatched, hint=f'no key fits, even partially.{note}')
    print_log(
        f'partial load of {name}: {len(fitting)} of {len(expected)} tensors loaded; {len(missing)} missing, '
        f'{len(unexpected)} unexpected, {len(mismatched)} mis-shaped (load_partial=True)',
        'current',
        level=30,
    )
    return fitting


# ---- the Runner -------------------------------------------------------------------------------------------------
class ZooRunnerMixin:
    """Runner methods with the trust boundary and the strict, converting load (see the module docstring)."""

    _zoo_resuming = False

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        super().save_checkpoint(out_dir, filename, *args, **kwargs)
        path = os.path.join(out_dir, filename)
        if is_main_process() and os.path.isfile(path):  # the file this process has just written
            trust_checkpoint(path)

    def resume(self, filename, *args, **kwargs):
        self._zoo_resuming = True
        try:
            return super().resume(filename, *args, **kwargs)
        finally:
            self._zoo_resuming = False

    def load_checkpoint(self, filename, map_location='cpu', strict=False, revise_keys=((r'^module\.', ''),)):
        filename = os.fspath(filename)
        local = '://' not in filename
        if local and not is_trusted_checkpoint(filename) and is_run_checkpoint(self.work_dir, filename):
            trust_checkpoint(filename)
        checkpoint = _mm_checkpoint._load_checkpoint(filename, map_location=map_location)
        if self._zoo_resuming and not (isinstance(checkpoint, Mapping) and 'meta' in checkpoint):
            raise WeightsOnlyCheckpointError(
                f'--resume {filename}: the file holds weights only (no meta / optimizer / message hub), so there is '
                f'no training state to resume. To start from these weights use load_from (tools/train.py '
                f'--cfg-options load_from={filename}) without --resume.'
            )
        model = self.model.module if is_model_wrapper(self.model) else self.model
        partial = bool(self.cfg.get('load_partial', False)) and not self._zoo_resuming
        state_dict = fit_state_dict(model, checkpoint, partial=partial, revise_keys=revise_keys, source=filename)
        checkpoint = dict(checkpoint, state_dict=state_dict)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model.load_state_dict(state_dict, strict=not partial)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename} ({len(state_dict)} tensors, strict={not partial})')
        return checkpoint


@functools.cache
def zoo_runner_class(base: type) -> type:
    """``base`` (a Runner class) with :class:`ZooRunnerMixin` in front."""
    if issubclass(base, ZooRunnerMixin):
        return base
    return type(f'Zoo{base.__name__}', (ZooRunnerMixin, base), {'__module__': __name__})


ZooRunner = zoo_runner_class(Runner)
ZooRunner.__doc__ = "mmengine's Runner with the zoo's checkpoint trust boundary and strict loading."
RUNNERS.register_module(name='ZooRunner', module=ZooRunner, force=True)


def build_runner(cfg):
    """The config's runner (``runner_type``, default mmengine's ``Runner``) with :class:`ZooRunnerMixin`."""
    runner_type = cfg.get('runner_type')
    base = Runner
    if runner_type:
        base = RUNNERS.get(runner_type)
        if base is None:
            raise KeyError(f'runner_type={runner_type!r} is not registered in mmengine RUNNERS')
    return zoo_runner_class(base).from_cfg(cfg)


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
