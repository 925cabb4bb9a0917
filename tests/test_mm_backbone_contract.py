"""mm backbones, every family: ``out_indices`` in any order and ``frozen_stages`` (mmdet's Swin semantics).

What each family's stem and stages are is written down here from the model files' layout (module-name prefixes), not
asked from the code under test: ``frozen_stages=-1`` freezes nothing, ``0`` the stem (with any absolute position
embedding), ``i`` the stem, stages 1..i (each with the downsampling that opens it) and the output norm of every
requested output those stages produce.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field

import pytest
import torch

pytest.importorskip('mmdet')

import timm  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402

import backbonezoo.mm  # noqa: E402, F401

pytestmark = pytest.mark.mm


@dataclass(frozen=True)
class Spec:
    arch: str
    stem: tuple[str, ...]  # parameter / module name prefixes of the stem (under ``model.``)
    stages: tuple[tuple[str, ...], ...]  # prefixes of stage 1, 2, ... (under ``model.``)
    levels: tuple[int, ...] | None = None  # stage producing each feature level; default level i <- stage i + 1
    default_out: tuple[int, ...] | None = None  # the type's default out_indices; default every level
    extras: dict[str, int] = field(default_factory=dict)  # backbone-level prefix -> stage that freezes it
    kwargs: dict = field(default_factory=dict)  # small widths / depths keep the sweep fast

    @property
    def stage_of_level(self) -> tuple[int, ...]:
        return self.levels or tuple(range(1, len(self.stages) + 1))

    @property
    def out(self) -> tuple[int, ...]:
        return self.default_out or tuple(range(len(self.stage_of_level)))


def _stages(count: int, name: str = 'stages') -> tuple[tuple[str, ...], ...]:
    return tuple((f'{name}.{i}.',) for i in range(count))


DEPTH1 = (1, 1, 1, 1)
SPECS = {
    'A2Mamba': Spec(
        'nano', ('stem.',), _stages(4), kwargs=dict(model_kwargs=dict(depths=DEPTH1, window_size=(3, 3, 3, 3)))
    ),
    'BiFormer': Spec(
        'tiny',
        ('stem.',),
        _stages(4),
        kwargs=dict(n_win=4, model_kwargs=dict(depths=DEPTH1, embed_dims=(32, 64, 128, 256))),
    ),
    # no output norms by default: add some, so that their freezing is checked too
    'EfficientViT': Spec('m0', ('patch_embed.',), _stages(3), kwargs=dict(out_norm='ln2d')),
    # ResNet-style: feature level 0 is the stride-2 stem, stage i is stages.{i-1}; the last level is final_conv
    'HaloNet': Spec(
        'h0',
        ('stem.',),
        (('stages.0.',), ('stages.1.',), ('stages.2.',), ('stages.3.', 'final_conv.')),
        levels=(0, 1, 2, 3, 4),
        default_out=(1, 2, 3, 4),
        kwargs=dict(out_norm='bn'),
    ),
    'LITv2': Spec(
        'small',
        ('patch_embed.',),
        _stages(4),
        kwargs=dict(norm_first_output=True, model_kwargs=dict(depths=DEPTH1, embed_dim=32, num_heads=(1, 2, 4, 8))),
    ),
    # Focus-Net stage 3 (level 2) needs Base-Net stage 3, the Overview-Net and the context projection; the
    # detection projection of the Overview-Net output belongs to the last output
    'OverLoCK': Spec(
        'xt',
        ('stem.',),
        (
            ('stages.0.',),
            ('stages.1.',),
            ('stages.2.', 'stages.3.', 'context_proj.', 'focus_stages.0.'),
            ('focus_stages.1.',),
        ),
        extras={'overview_proj.': 4},
        kwargs=dict(overview_proj=True, model_kwargs=dict(depths=DEPTH1, focus_depths=(1, 1))),
    ),
    'PATNet': Spec('t0', ('patch_embed.',), _stages(4)),
    'SHViT': Spec('s1', ('patch_embed.',), _stages(3), kwargs=dict(out_norm='ln2d')),
    # the absolute position embedding (and its dropout) belong to the stem, as in mmdet's Swin
    'SReT': Spec('little_tiny', ('stem.', 'pos_embed', 'pos_drop'), _stages(3)),
    'TiC': Spec(
        'tiny',
        ('stem.',),
        _stages(4),
        kwargs=dict(model_kwargs=dict(depths=DEPTH1, embed_dim=32, num_heads=(1, 2, 4, 8))),
    ),
}

_MODELS: dict = {}


@pytest.fixture
def fast_models(monkeypatch):
    """``timm.create_model`` memoised per (name, kwargs): the sweeps build a few hundred backbones and creating the
    timm model (random initialisation) is their slow part. Each call returns a new module tree (a deep copy) whose
    parameters share the cached tensors, so no weights are copied either; nothing here changes weights in place except
    ``load_state_dict`` with the same values. Everything the backbone does with the model (pruning, output order,
    norms, freezing, kernel swaps) still runs on every build."""
    create = timm.create_model

    def create_model(model_name, pretrained=False, **kwargs):
        key = (model_name, pretrained, repr(sorted(kwargs.items())))
        if key not in _MODELS:
            _MODELS[key] = create(model_name, pretrained=pretrained, **kwargs)
        model = _MODELS[key]
        shared = {id(p): torch.nn.Parameter(p.data, requires_grad=p.requires_grad) for p in model.parameters()}
        return copy.deepcopy(model, shared)

    monkeypatch.setattr(timm, 'create_model', create_model)


def build(family: str, **kwargs):
    spec = SPECS[family]
    return MODELS.build(dict(type=family, arch=spec.arch, **dict(spec.kwargs, **kwargs)))


def _remap_state(source, source_out: tuple[int, ...], target_out: tuple[int, ...], keys) -> dict:
    """``source``'s state for a backbone with ``target_out`` and state ``keys`` (stages pruned away for fewer levels
    are not there): output norms follow their level, not their position."""
    state = {}
    for key, value in source.state_dict().items():
        if key.startswith('out_norms.'):
            _, position, rest = key.split('.', 2)
            level = source_out[int(position)]
            if level not in target_out:
                continue
            key = f'out_norms.{target_out.index(level)}.{rest}'
        if key in keys:
            state[key] = value
    return state


@pytest.mark.parametrize('family', sorted(SPECS))
def test_out_indices_in_any_order(family, fast_models):
    """Every permutation of the levels (and some subsets, negative indices) returns the maps in the order asked, at
    their own size, with their own channels, strides and output norms."""
    spec = SPECS[family]
    levels = spec.out
    torch.manual_seed(0)
    reference = build(family, out_indices=levels).eval()
    for name, param in reference.named_parameters():
        if name.startswith('out_norms.'):  # distinct per level, so a norm applied to the wrong output shows
            param.data.normal_(1.0 if name.endswith('weight') else 0.0, 0.5)
    height, width = 36, 50  # padded or not, no side a multiple of every stride: crops matter
    x = torch.randn(1, 3, height, width)
    with torch.no_grad():
        expected = dict(zip(levels, reference(x)))
    for level, out in expected.items():
        assert out.shape[1] == reference.out_channels[levels.index(level)]
    channels = dict(zip(levels, reference.out_channels))
    strides = dict(zip(levels, reference.out_strides))
    num_levels = len(spec.stage_of_level)
    orders = list(itertools.permutations(levels))
    orders += [(levels[-1], levels[0]), (levels[-1] - num_levels, levels[0]), (levels[1],)]
    if family == 'OverLoCK':  # its detection projection needs the last output
        orders = [order for order in orders if levels[-1] in [level % num_levels for level in order]]
    for order in orders:
        backbone = build(family, out_indices=order).eval()
        asked = tuple(level % num_levels for level in order)
        assert backbone.out_indices == asked
        assert backbone.out_channels == [channels[level] for level in asked]
        assert backbone.out_strides == [strides[level] for level in asked]
        backbone.load_state_dict(_remap_state(reference, levels, asked, backbone.state_dict()))
        with torch.no_grad():
            outs = backbone(x)
        assert len(outs) == len(asked)
        for level, out in zip(asked, outs):
            # same map, same size (no crop at another level's stride) as when asked in ascending order
            torch.testing.assert_close(out, expected[level], msg=f'{family} out_indices={order}: level {level}')


@pytest.mark.parametrize('family', sorted(SPECS))
def test_bad_out_indices_are_refused(family, fast_models):
    num_levels = len(SPECS[family].stage_of_level)
    last = build(family, out_indices=-1)  # one int: that level, as mmpretrain's backbones take it
    assert last.out_indices == (num_levels - 1,) and len(last.out_channels) == 1
    for bad in [(0, 0), (num_levels - 1, -1), (num_levels,), (-num_levels - 1,), (), (0, 1.0), ('1',), (True,)]:
        with pytest.raises((ValueError, TypeError), match='out_indices'):
            build(family, out_indices=bad)


def _frozen_prefixes(spec: Spec, frozen_stages: int, out_indices: tuple[int, ...]) -> list[str]:
    if frozen_stages < 0:
        return []
    prefixes = [f'model.{p}' for p in spec.stem]
    for stage in spec.stages[:frozen_stages]:
        prefixes += [f'model.{p}' for p in stage]
    prefixes += [
        f'out_norms.{position}.'
        for position, level in enumerate(out_indices)
        if spec.stage_of_level[level] <= frozen_stages
    ]
    prefixes += [prefix for prefix, stage in spec.extras.items() if stage <= frozen_stages]
    return prefixes


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name.startswith(p) or f'{name}.' == p for p in prefixes)


@pytest.mark.parametrize('family', sorted(SPECS))
def test_frozen_stages_freeze_exactly_stem_stages_and_their_output_norms(family, fast_models):
    spec = SPECS[family]
    num_stages = len(spec.stages)
    out_indices = spec.out[::-1]  # not ascending: output norm i is the norm of out_indices[i]
    for frozen_stages in range(-1, num_stages + 1):
        backbone = build(family, out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=False)
        prefixes = _frozen_prefixes(spec, frozen_stages, out_indices)
        names = [name for name, _ in backbone.named_parameters()]
        for group in [spec.stem, *spec.stages[:frozen_stages]] if frozen_stages >= 0 else []:
            assert any(_under(n, [f'model.{p}' for p in group]) for n in names), f'{family}: no parameters in {group}'
        expected = {name for name in names if _under(name, prefixes)}
        for when in ('built', 'train()'):
            if when == 'train()':
                assert backbone.train() is backbone
            frozen = {name for name, param in backbone.named_parameters() if not param.requires_grad}
            assert frozen == expected, (
                f'{family} frozen_stages={frozen_stages} ({when}): '
                f'trainable but should be frozen {sorted(expected - frozen)[:5]}, '
                f'frozen but should train {sorted(frozen - expected)[:5]}'
            )
        wrong_mode = [
            name for name, module in backbone.named_modules() if name and module.training == _under(name, prefixes)
        ]
        assert not wrong_mode, f'{family} frozen_stages={frozen_stages}: wrong train / eval mode: {wrong_mode[:5]}'
    for bad in (-2, num_stages + 1, 1.5, True):
        with pytest.raises((ValueError, TypeError), match='frozen_stages'):
            build(family, frozen_stages=bad)
