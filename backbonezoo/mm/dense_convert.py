"""The authors' whole detection / segmentation checkpoints, loaded strictly into the model our config builds.

``backbonezoo.convert_checkpoint(OFFICIAL.pth, CONFIG)`` (this module's :func:`convert_dense_checkpoint`) and
``tools/convert_checkpoint.py --config CONFIG OFFICIAL.pth OUT.pth`` take a released mmdet 2.x / mmseg 0.x checkpoint
(RetinaNet, Mask R-CNN, Cascade Mask R-CNN, Semantic FPN, UperNet with its auxiliary head) and return the state dict of
the detector / segmentor that ``CONFIG`` builds in today's mmdet 3.x / mmseg 1.x:

- the backbone part (``backbone.*`` in the official dense wrapper's names) goes through the same route as the
  backbone's ``init_cfg`` Pretrained load: the family wrapper's ``convert_dense_checkpoint`` (its extra output norms
  become ``out_norms``, OverLoCK's detection projection ``overview_proj``), then the family's classification converter
  (``checkpoint_filter_fn``), see ``backbonezoo.mm.runtime._convert_backbone``;
- neck, heads and auxiliary heads keep their names: mmdet 3.x and mmseg 1.x read the 2.x / 0.x names of FPN,
  RetinaHead, RPNHead, the (cascade) RoI heads, FPNHead, UPerHead and FCNHead unchanged. Older layouts are renamed
  (:data:`LEGACY_RENAMES`, mmdet 1.x heads outside ``roi_head``), only where the old name does not fit and the new
  one does;
- the result is checked strictly: every tensor of the file used, every parameter and buffer of the model filled, every
  shape equal, or :class:`DenseCheckpointMismatchError` naming the missing / unexpected / mis-shaped keys.

``tools/test.py CONFIG OFFICIAL.pth`` loads through the same converter (``backbonezoo.mm.runtime.fit_state_dict``).
The official test-time settings live in the configs; :class:`AlignResize` (registered in mmseg's TRANSFORMS) is the
test-time resize of BiFormer's official Semantic FPN results.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import mmcv
import torch
from mmcv.transforms import Resize
from mmseg.registry import TRANSFORMS

from ..checkpoint import CheckpointMismatchError, load_state_dict_file

__all__ = [
    'LEGACY_RENAMES',
    'AlignResize',
    'DenseCheckpointMismatchError',
    'build_dense_model',
    'convert_dense_checkpoint',
    'is_dense_config',
    'load_dense_config',
    'load_dense_checkpoint',
    'rename_legacy_keys',
]

# (pattern, replacement, what): applied to a key only when the key does not fit the model and the renamed one does.
LEGACY_RENAMES = (
    (r'^bbox_head\.', 'roi_head.bbox_head.', 'mmdet 1.x two-stage detectors: the RoI box head sits in roi_head'),
    (r'^mask_head\.', 'roi_head.mask_head.', 'mmdet 1.x two-stage detectors: the RoI mask head sits in roi_head'),
    (r'^semantic_head\.', 'roi_head.semantic_head.', 'mmdet 1.x HTC: the semantic head sits in roi_head'),
)


class DenseCheckpointMismatchError(CheckpointMismatchError):
    """A dense checkpoint does not fit the model a config builds: names the missing, unexpected, mis-shaped keys."""


def is_dense_config(obj) -> bool:
    """Whether ``obj`` names an mmdet / mmseg config: a ``.py`` path, a ``Config`` or a dict with ``model``."""
    if isinstance(obj, (str, os.PathLike)):
        return os.fspath(obj).endswith('.py')
    try:
        from mmengine.config import Config
    except ImportError:  # pragma: no cover (mmengine is a dependency of the mm extra)
        return False
    return isinstance(obj, Config) or (isinstance(obj, Mapping) and isinstance(obj.get('model'), Mapping))


def load_dense_config(config, cfg_options: Mapping | None = None):
    """The mmengine ``Config`` of ``config`` (a path, a Config or a dict), with ``cfg_options`` merged in."""
    from mmengine.config import Config

    if isinstance(config, (str, os.PathLike)):
        path = Path(config).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f'config file not found: {os.fspath(config)!r}')
        cfg = Config.fromfile(str(path))
    elif isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        cfg = Config(copy.deepcopy(dict(config)))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def _registry(cfg):
    """(mmdet's or mmseg's MODELS, the scope name) for the config, its modules registered, its imports done."""
    from mmengine.utils import import_modules_from_strings

    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    scope = cfg.get('default_scope') or ('mmseg' if 'decode_head' in cfg.model else 'mmdet')
    if scope == 'mmseg':
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    elif scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        raise ValueError(f'default_scope={scope!r}: expected an mmdet or mmseg config')
    register_all_modules(init_default_scope=False)
    import backbonezoo.mm  # noqa: F401  (the zoo backbones and necks)

    return MODELS, scope


def build_dense_model(config, cfg_options: Mapping | None = None) -> torch.nn.Module:
    """The detector / segmentor ``config`` describes, with nothing loaded (the backbone's ``init_cfg`` and the
    model's ``pretrained`` are dropped: the dense checkpoint brings every weight)."""
    from mmengine.registry import DefaultScope

    cfg = load_dense_config(config, cfg_options)
    models, scope = _registry(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    if isinstance(model_cfg.get('backbone'), Mapping):
        model_cfg.backbone.pop('init_cfg', None)
        model_cfg.backbone.pop('pretrained', None)
    with DefaultScope.overwrite_default_scope(scope):  # the config's scope while building, not left behind
        return models.build(model_cfg)


def rename_legacy_keys(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict:
    """Apply :data:`LEGACY_RENAMES` to the keys that do not fit ``model`` and fit it once renamed."""
    expected = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        if key not in expected:
            for pattern, replacement, _ in LEGACY_RENAMES:
                renamed = re.sub(pattern, replacement, key)
                if renamed != key and renamed in expected:
                    key = renamed
                    break
        out[key] = value
    return out


def _read(checkpoint) -> Mapping:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    return load_state_dict_file(checkpoint)


def convert_dense_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    config,
    model: torch.nn.Module | None = None,
    cfg_options: Mapping | None = None,
    source: str | None = None,
) -> dict:
    """An official dense checkpoint (file or dict) in the layout of the model ``config`` builds, checked strictly.

    ``model``: the model to convert for (built from ``config`` when omitted); ``source``: how errors name the file
    (default: its path). The file is read safely (safetensors or
    ``torch.load(weights_only=True)``; see :mod:`backbonezoo.checkpoint`). Raises
    :class:`DenseCheckpointMismatchError` naming the missing, unexpected and mis-shaped keys when it does not fit.
    Returns a state dict that ``model.load_state_dict(sd, strict=True)`` takes.
    """
    from .runtime import fit_state_dict

    if model is None:
        model = build_dense_model(config, cfg_options)
    if source is None:
        source = os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else 'a state dict'
    config_name = os.fspath(config) if isinstance(config, (str, os.PathLike)) else type(model).__name__
    try:
        return fit_state_dict(model, _read(checkpoint), partial=False, source=source)
    except CheckpointMismatchError as err:
        failed = [line.strip() for line in str(err).splitlines() if 'converter failed' in line]
        raise DenseCheckpointMismatchError(
            f'{type(model).__name__} of {config_name} (from {source})',
            err.missing,
            err.unexpected,
            err.mismatched,
            hint='\n'.join(
                [
                    *failed,
                    'expected a whole dense checkpoint of this config (backbone, neck and heads); '
                    'nothing was converted.',
                ]
            ),
        ) from None


def load_dense_checkpoint(
    checkpoint: str | os.PathLike | Mapping, config, cfg_options: Mapping | None = None
) -> torch.nn.Module:
    """The model ``config`` builds with the official dense checkpoint loaded strictly, in eval mode."""
    model = build_dense_model(config, cfg_options)
    model.load_state_dict(convert_dense_checkpoint(checkpoint, config, model=model), strict=True)
    return model.eval()


# ---- test-time transform of the official Semantic FPN results ---------------------------------------------------
@TRANSFORMS.register_module(force=True)
class AlignResize(Resize):
    """The test-time resize of the UniFormer / PVT mmseg 0.x forks, which BiFormer's official Semantic FPN results
    used (``semantic_segmentation/configs/_base_/datasets/ade20k_sfpn.py``: ``AlignResize(keep_ratio=True,
    size_divisor=32)`` after ``img_scale=(2048, 512)``): rescale like ``Resize``, then resize (not pad) the image
    to the next multiples of ``size_divisor`` (bilinear; segmentation maps nearest). ``scale_factor`` is updated,
    so mmseg maps the prediction back to the original size as usual.
    """

    def __init__(self, *args, size_divisor: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if size_divisor < 1:
            raise ValueError(f'AlignResize: size_divisor={size_divisor}, expected a positive integer')
        self.size_divisor = int(size_divisor)

    def transform(self, results: dict) -> dict:
        ori_h, ori_w = results['img'].shape[:2]
        results = super().transform(results)
        height, width = results['img'].shape[:2]
        align_h = math.ceil(height / self.size_divisor) * self.size_divisor
        align_w = math.ceil(width / self.size_divisor) * self.size_divisor
        if (align_h, align_w) != (height, width):
            results['img'] = mmcv.imresize(
                results['img'], (align_w, align_h), interpolation=self.interpolation, backend=self.backend
            )
            for key in results.get('seg_fields', []):
                if results.get(key) is not None:
                    results[key] = mmcv.imresize(
                        results[key], (align_w, align_h), interpolation='nearest', backend=self.backend
                    )
            results['img_shape'] = (align_h, align_w)
            results['scale_factor'] = (align_w / ori_w, align_h / ori_h)
        return results

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f', size_divisor={self.size_divisor})'
