"""mmdet / mmseg backbones built on zoo (and any timm) models.

:class:`ZooBackbone` turns a timm model into a multi-scale feature extractor with the arguments users know from
mmdet's Swin and mmpretrain's backbones. It holds no model math: the timm model's ``forward_intermediates`` gives
the maps, ``prune_intermediate_layers`` drops what is not needed, and checkpoints go through
:func:`backbonezoo.convert_checkpoint` (the family's ``checkpoint_filter_fn``).

Adding a family type (in ``backbonezoo/mm/families/<family>.py``, then one import line in
``backbonezoo/mm/families/__init__.py``)::

    from ..backbone import ZooBackbone, register_backbone


    @register_backbone
    class BiFormer(ZooBackbone):
        \"\"\"BiFormer for mmdet / mmseg: ``type='BiFormer', arch='tiny'``.\"\"\"

        arch_zoo = {'tiny': 'biformer_tiny', 'small': 'biformer_small', 'base': 'biformer_base'}
        out_norm = 'ln2d'  # the official dense wrapper normalises every output
        size_divisor = 32  # pad inputs like the official dense code (default: the zoo family's size_divisor)

Overridable per family: ``out_norm`` (extra norm per output, ``None`` / ``'ln2d'`` / ``'bn'``), ``size_divisor``
(inputs are zero-padded bottom / right to a multiple of it and the outputs cropped back to ``ceil(size /
stride)``), ``intermediate_norm`` (apply the model's final norm to the last map), :meth:`ZooBackbone.pad_input`,
:meth:`ZooBackbone.stem_modules` / :meth:`ZooBackbone.stage_modules` (what ``frozen_stages`` freezes) and
:meth:`ZooBackbone.convert_dense_checkpoint` (rename keys of an official *dense* checkpoint, e.g. its output
norms, before the classification filter runs).

``out_indices`` may come in any order (as in mmdet's backbones): the maps, ``out_channels``, ``out_strides`` and
``out_norms`` follow the order asked. Duplicates and out-of-range entries are refused at construction; negative
entries count from the end (``-1`` is the last level).

``frozen_stages`` follows mmdet's Swin: -1 freezes nothing, 0 the stem (with the model's own parameters, e.g. an
absolute position embedding), ``i`` the stem and stages 1..i (stage ``i`` produces ``feature_info`` level
:meth:`ZooBackbone.level_stage`; by default level ``i - 1``), each with the downsampling that opens it, and the output
norm of every requested level those stages produce. Values outside -1 .. :attr:`ZooBackbone.num_stages` are refused.
Frozen modules have ``requires_grad=False`` and stay in eval mode after ``train()``.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule, initialize
from mmengine.registry import MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import CheckpointMismatchError, family_filter, load_state_dict_file, unwrap_state_dict

__all__ = ['ZooBackbone', 'ZooTimmBackbone', 'register_backbone', 'read_checkpoint']

OUT_NORMS = ('ln2d', 'bn')


def register_backbone(cls: type) -> type:
    """Register a backbone class in mmengine's root MODELS and in mmdet's / mmseg's MODELS when installed.

    The root registration alone makes the type buildable from both child registries (they fall back to the root
    for names they lack); registering in the children as well keeps ``mmdet.registry.MODELS.get(name)`` direct.
    """
    MODELS.register_module(module=cls, force=True)
    for registry_module in ('mmdet.registry', 'mmseg.registry'):
        try:
            registry = __import__(registry_module, fromlist=['MODELS']).MODELS
        except ImportError:
            continue
        registry.register_module(module=cls, force=True)
    return cls


def read_checkpoint(checkpoint: str | os.PathLike | Mapping) -> Mapping:
    """A checkpoint as a dict, read so that it cannot run code: URLs with ``weights_only=True``, local files with
    :func:`backbonezoo.checkpoint.load_state_dict_file` (safetensors sniffed from the header, else
    ``weights_only=True``; full unpickling only for a file trusted one by one). A file that needs full unpickling
    raises ``UnsafeCheckpointError`` saying how to trust it."""
    import pickle

    from ..checkpoint import UnsafeCheckpointError

    if isinstance(checkpoint, Mapping):
        return checkpoint
    checkpoint = os.fspath(checkpoint)
    if checkpoint.startswith(('http://', 'https://')):
        try:
            return torch.hub.load_state_dict_from_url(checkpoint, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(checkpoint, 'a download; save it and trust the local file') from err
    return load_state_dict_file(os.path.expanduser(checkpoint))


def _is_zoo_model(model_name: str) -> bool:
    from ..zoo import family_of

    try:
        family_of(model_name)
    except KeyError:
        return False
    return True


class ZooBackbone(BaseModule):
    """A zoo / timm model as an mmdet / mmseg backbone returning a tuple of NCHW maps.

    Args:
        arch: variant key of the class's ``arch_zoo`` (e.g. ``'tiny'``) or a full timm model name.
        out_indices: levels whose maps are returned, in this order (indices into the model's ``feature_info``;
            negative counts from the end; an int is one level). Default: every level.
        frozen_stages: -1 none, 0 the stem, i the stem, stages 1..i and their output norms.
        norm_eval: keep every BatchNorm in eval mode while training (frozen running statistics).
        with_cp: gradient checkpointing through the model's ``set_grad_checkpointing`` (same outputs, less memory).
        drop_path_rate: stochastic depth rate passed to the model; ``None`` keeps the variant's default.
        in_channels: input channels.
        out_norm: extra norm on every output (``'ln2d'``, ``'bn'`` or ``None``); default: the class's ``out_norm``.
        size_divisor: pad inputs to a multiple of this; default: the class's, else the zoo family's
            ``size_divisor`` (1, no padding, for models outside the zoo).
        model_kwargs: further keyword arguments for ``timm.create_model``.
        init_cfg: mmengine init config; ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads an official, timm
            or ``backbone.``-prefixed OpenMMLab checkpoint strictly (see :meth:`load_pretrained`).
    """

    arch_zoo: ClassVar[dict[str, str]] = {}
    out_norm: ClassVar[str | None] = None
    size_divisor: ClassVar[int | None] = None
    intermediate_norm: ClassVar[bool] = False

    def __init__(
        self,
        arch: str | None = None,
        out_indices: Sequence[int] | int | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        drop_path_rate: float | None = None,
        in_channels: int = 3,
        out_norm: str | None = None,
        size_divisor: int | None = None,
        model_kwargs: dict | None = None,
        init_cfg: dict | list | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        import timm

        import backbonezoo  # noqa: F401  (registers the zoo's models with timm)

        self.model_name = self._resolve_arch(arch)
        self._create_kwargs = dict(model_kwargs or {}, in_chans=in_channels)
        if drop_path_rate is not None:  # only when asked: some timm models take no drop_path_rate argument
            self._create_kwargs['drop_path_rate'] = drop_path_rate
        model = timm.create_model(self.model_name, pretrained=False, **self._create_kwargs)
        if not hasattr(model, 'forward_intermediates') or not hasattr(model, 'feature_info'):
            raise TypeError(
                f'arch={self.model_name!r}: expected a timm model with forward_intermediates and feature_info'
            )
        self.stage_info = [dict(info) for info in model.feature_info]
        self.out_indices = self._check_out_indices(out_indices, len(self.stage_info))
        # forward_intermediates returns the levels in ascending order: where each requested level sits in it
        self._take_indices = sorted(self.out_indices)
        self._take_order = [self._take_indices.index(level) for level in self.out_indices]
        if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int):
            raise TypeError(f'frozen_stages={frozen_stages!r}: expected an int')
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f'frozen_stages={frozen_stages}: expected -1 (none), 0 (stem) .. {self.num_stages} (all stages)'
            )
        # The stem is every top-level child before the one holding the first stage (recorded before pruning).
        first_stage_parent = self.stage_info[0]['module'].split('.')[0]
        self._stem_names = []
        for name, _ in model.named_children():
            if name == first_stage_parent:
                break
            self._stem_names.append(name)
        model.prune_intermediate_layers(self._take_indices, prune_norm=not self.intermediate_norm, prune_head=True)
        self.model = model
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.model.set_grad_checkpointing(with_cp)
        self.out_channels = [self.stage_info[i]['num_chs'] for i in self.out_indices]
        self.out_strides = [self.stage_info[i]['reduction'] for i in self.out_indices]
        self.pad_divisor = self._resolve_size_divisor(size_divisor)

        norm = out_norm if out_norm is not None else self.out_norm
        if norm not in (None, *OUT_NORMS):
            raise ValueError(f'out_norm={norm!r}: expected None or one of {OUT_NORMS}')
        self.out_norms = None
        if norm is not None:
            from timm.layers import LayerNorm2d

            layer = LayerNorm2d if norm == 'ln2d' else nn.BatchNorm2d
            self.out_norms = nn.ModuleList(layer(c) for c in self.out_channels)
        self._freeze_stages()

    # ---- construction helpers -------------------------------------------------------------------------------
    def _resolve_arch(self, arch: str | None) -> str:
        if arch is None:
            if not self.arch_zoo:
                raise ValueError(f'{type(self).__name__}: arch=None, expected a timm model name')
            return next(iter(self.arch_zoo.values()))
        if arch in self.arch_zoo:
            return self.arch_zoo[arch]
        if not self.arch_zoo or arch in self.arch_zoo.values():
            return arch
        raise ValueError(f'{type(self).__name__}: arch={arch!r}, expected one of {sorted(self.arch_zoo)}')

    @staticmethod
    def _check_out_indices(out_indices: Sequence[int] | int | None, num_levels: int) -> tuple[int, ...]:
        """``out_indices`` as non-negative levels in the order given; a named error for anything else."""
        if out_indices is None:
            return tuple(range(num_levels))
        given = (out_indices,) if isinstance(out_indices, int) and not isinstance(out_indices, bool) else out_indices
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
            raise TypeError(f'out_indices={out_indices!r}: expected an int or a sequence of ints')
        levels = []
        for entry in given:
            try:
                if isinstance(entry, bool):
                    raise TypeError
                index = operator.index(entry)
            except TypeError:
                raise TypeError(f'out_indices={out_indices!r}: entry {entry!r} is not an int') from None
            if not -num_levels <= index < num_levels:
                raise ValueError(
                    f'out_indices={out_indices!r}: entry {index} out of range, expected -{num_levels} <= index < '
                    f'{num_levels} (the model has {num_levels} feature levels)'
                )
            levels.append(index % num_levels)
        if not levels:
            raise ValueError(f'out_indices={out_indices!r}: expected at least one level')
        if len(set(levels)) != len(levels):
            raise ValueError(f'out_indices={out_indices!r}: the same level is asked for twice (levels {levels})')
        return tuple(levels)

    def _resolve_size_divisor(self, size_divisor: int | None) -> int:
        divisor = size_divisor if size_divisor is not None else type(self).size_divisor
        if divisor is None:
            if _is_zoo_model(self.model_name):
                from ..zoo import family_of

                divisor = family_of(self.model_name).size_divisor
            else:
                divisor = 1
        if divisor < 1:
            raise ValueError(f'size_divisor={divisor}: expected a positive integer')
        return int(divisor)

    # ---- freezing -----------------------------------------------------------------------------------------
    def level_stage(self, level: int) -> int:
        """The stage that produces ``feature_info`` level ``level``: ``frozen_stages >= level_stage(level)`` freezes
        everything computing that level, and its output norm. Default ``level + 1`` (level 0 is stage 1's output);
        0 for a level the stem produces."""
        return level + 1

    @property
    def num_stages(self) -> int:
        """The number of stages, i.e. the largest legal ``frozen_stages`` (everything frozen)."""
        return self.level_stage(len(self.stage_info) - 1)

    def stem_modules(self) -> list[nn.Module]:
        """The modules ``frozen_stages=0`` freezes: the model's top-level children before its first stage."""
        return [getattr(self.model, name) for name in self._stem_names]

    def stem_parameters(self) -> list[nn.Parameter]:
        """Parameters ``frozen_stages=0`` freezes besides the stem modules': the model's own, outside any submodule
        (an absolute position embedding, as mmdet's Swin freezes ``absolute_pos_embed``)."""
        return list(self.model.parameters(recurse=False))

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """The modules of stage ``stage`` (1-based, ``feature_info[stage - 1]``); empty if it was pruned."""
        try:
            return [self.model.get_submodule(self.stage_info[stage - 1]['module'])]
        except AttributeError:
            return []

    def out_norm_modules(self, stage: int) -> list[nn.Module]:
        """The output norms of the requested levels that stage ``stage`` produces (frozen with the stage)."""
        if self.out_norms is None:
            return []
        return [norm for norm, level in zip(self.out_norms, self.out_indices) if self.level_stage(level) == stage]

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = self.stem_modules() + self.out_norm_modules(0)
        for stage in range(1, self.frozen_stages + 1):
            modules += self.stage_modules(stage) + self.out_norm_modules(stage)
        return modules

    def _freeze_stages(self) -> None:
        """Apply ``frozen_stages``: called at construction and by every ``train()``. A family that adds or swaps
        modules after ``ZooBackbone.__init__`` calls it again at the end of its own ``__init__``."""
        if self.frozen_stages >= 0:
            for param in self.stem_parameters():
                param.requires_grad = False
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> ZooBackbone:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    # ---- forward ------------------------------------------------------------------------------------------
    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad bottom / right to a multiple of ``pad_divisor`` (mmdet's and mmseg's padding convention)."""
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.pad_divisor, (-width) % self.pad_divisor
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__}: input of shape {tuple(x.shape)}, expected (B, {self.in_channels}, H, W)'
            )
        height, width = x.shape[-2:]
        feats = self.model.forward_intermediates(
            self.pad_input(x),
            indices=list(self._take_indices),
            norm=self.intermediate_norm,
            stop_early=True,
            output_fmt='NCHW',
            intermediates_only=True,
        )
        if len(feats) != len(self._take_indices):
            raise RuntimeError(
                f'{type(self).__name__}: {self.model_name}.forward_intermediates returned {len(feats)} maps for '
                f'levels {self._take_indices}'
            )
        outs = []
        for i, stride in enumerate(self.out_strides):
            feat = feats[self._take_order[i]]  # ascending level order -> the order asked
            feat = feat[..., : math.ceil(height / stride), : math.ceil(width / stride)]
            if self.out_norms is not None:
                feat = self.out_norms[i](feat)
            outs.append(feat.contiguous())
        return tuple(outs)

    # ---- checkpoints --------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``init_cfg`` Pretrained strictly; other init configs are applied by mmengine.

        The timm model is already initialised by its constructor, so mmengine's recursion into it (which would
        re-run some timm models' own ``init_weights``) is skipped.
        """
        if self._is_init:
            return
        cfgs = [self.init_cfg] if isinstance(self.init_cfg, dict) else list(self.init_cfg or [])
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        others = [c for c in cfgs if c.get('type') != 'Pretrained']
        if others:
            initialize(self, others)
        for cfg in pretrained:
            if 'checkpoint' not in cfg:
                raise ValueError(f'init_cfg={cfg!r}: Pretrained needs a checkpoint=PATH_OR_URL')
            self.load_pretrained(cfg['checkpoint'])
        self._is_init = True

    def convert_dense_checkpoint(self, state_dict: dict) -> dict:
        """Hook for families: rename keys of an official dense (detection / segmentation) checkpoint so that
        output norms are ``out_norms.<i>.*``. Called after unwrapping, before the classification filter."""
        return state_dict

    def load_pretrained(self, checkpoint: str | os.PathLike | Mapping) -> None:
        """Load an official, timm or OpenMMLab (``backbone.``-prefixed, ours or the family's dense) checkpoint.

        Strict: every tensor of this backbone must come from the file, and every tensor of the file must belong to
        the full model (head and parts pruned away for the requested ``out_indices`` are dropped). ``out_norms``
        are new layers: loaded when the file has them (all of them), kept initialised when it has none.
        Raises :class:`backbonezoo.CheckpointMismatchError` naming the offending keys.
        """
        import timm

        state_dict = dict(unwrap_state_dict(read_checkpoint(checkpoint)))
        state_dict = self.convert_dense_checkpoint(state_dict)
        norm_state = {k[len('out_norms.') :]: state_dict.pop(k) for k in list(state_dict) if k.startswith('out_norms.')}
        if state_dict and all(k.startswith('model.') for k in state_dict):  # saved from this wrapper
            state_dict = {k[len('model.') :]: v for k, v in state_dict.items()}

        with torch.device('meta'):
            full_model = timm.create_model(self.model_name, pretrained=False, **self._create_kwargs)
        if _is_zoo_model(self.model_name):
            state_dict = family_filter(self.model_name)(state_dict, full_model)
        full_keys = set(full_model.state_dict())
        own = self.model.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own and k not in full_keys]
        mismatched = [
            f'{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}'
            for k, v in own.items()
            if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
        ]
        if norm_state:
            if self.out_norms is None:
                unexpected += [f'out_norms.{k}' for k in norm_state]
            else:
                expected_norms = self.out_norms.state_dict()
                missing += [f'out_norms.{k}' for k in expected_norms if k not in norm_state]
                unexpected += [f'out_norms.{k}' for k in norm_state if k not in expected_norms]
        if missing or unexpected or mismatched:
            raise CheckpointMismatchError(f'{type(self).__name__}({self.model_name})', missing, unexpected, mismatched)
        self.model.load_state_dict({k: state_dict[k] for k in own}, strict=True)
        if self.out_norms is not None:
            if norm_state:
                self.out_norms.load_state_dict(norm_state, strict=True)
            else:
                print_log(f'{type(self).__name__}: out_norms are not in the checkpoint, kept initialised', 'current')
        source = checkpoint if not isinstance(checkpoint, Mapping) else 'a state dict'
        print_log(f'{type(self).__name__}: loaded {self.model_name} weights from {source}', 'current')


@register_backbone
class ZooTimmBackbone(ZooBackbone):
    """Any zoo or timm model as a backbone: ``dict(type='ZooTimmBackbone', model_name='shvit_s1', ...)``.

    Takes every :class:`ZooBackbone` argument; ``model_name`` replaces ``arch``.
    """

    def __init__(self, model_name: str, **kwargs) -> None:
        if 'arch' in kwargs:
            raise TypeError(f'ZooTimmBackbone takes model_name, not arch (got arch={kwargs["arch"]!r})')
        super().__init__(arch=model_name, **kwargs)
