"""SHViT (timm's shvit_s*): official layouts, parity, stand-in checkpoints, the fast single-head attention."""

from __future__ import annotations

import copy
import re

import pytest
import timm
import torch
from helpers import assert_close_rel, load_parity, regen
from timm.models.shvit import SHViT

import backbonezoo
from backbonezoo import CheckpointMismatchError, convert_checkpoint
from backbonezoo.backbones.shvit_ext import FastSHSA, checkpoint_filter_fn, to_kernel_backed

VARIANTS = backbonezoo.get_family('shvit').model_names


def fixture_model(fixture: dict) -> SHViT:
    kw = fixture['kwargs']
    assert kw['down_ops'] == [['subsample', 2], ['subsample', 2], ['']] and not kw['distillation']
    return SHViT(
        in_chans=kw['in_chans'],
        num_classes=kw['num_classes'],
        embed_dim=kw['embed_dim'],
        partial_dim=kw['partial_dim'],
        qk_dim=kw['qk_dim'],
        depth=kw['depth'],
        types=kw['types'],
    )


def fuse_official(state_dict: dict) -> dict:
    """The authors' ``replace_batchnorm``: Conv2d_BN -> Conv2d(+bias), BN_Linear -> Linear, and each residual
    depthwise Conv2d_BN folded with its identity (``R.m.c`` -> ``R`` with +1 at the kernel centre)."""
    out = dict(state_dict)
    for prefix in sorted({k[: -len('.c.weight')] for k in state_dict if k.endswith('.c.weight')}):
        bn = {n: state_dict[f'{prefix}.bn.{n}'] for n in ('weight', 'bias', 'running_mean', 'running_var')}
        scale = bn['weight'] / torch.sqrt(bn['running_var'] + 1e-5)
        for key in [k for k in out if k.startswith((f'{prefix}.c.', f'{prefix}.bn.'))]:
            del out[key]
        weight = state_dict[f'{prefix}.c.weight'] * scale[:, None, None, None]
        bias = bn['bias'] - bn['running_mean'] * scale
        if prefix.endswith('.m') and weight.shape[1] == 1 and weight.shape[-1] == 3:  # Residual(depthwise Conv2d_BN)
            prefix = prefix[: -len('.m')]
            weight = weight.clone()
            weight[:, 0, 1, 1] += 1
        out[f'{prefix}.weight'], out[f'{prefix}.bias'] = weight, bias
    bn = {n: state_dict[f'head.bn.{n}'] for n in ('weight', 'bias', 'running_mean', 'running_var')}
    scale = bn['weight'] / torch.sqrt(bn['running_var'] + 1e-5)
    weight = state_dict['head.l.weight']
    for key in [k for k in out if k.startswith('head.')]:
        del out[key]
    out['head.weight'] = weight * scale[None, :]
    out['head.bias'] = weight @ (bn['bias'] - bn['running_mean'] * scale) + state_dict['head.l.bias']
    return out


_SLOTS = {0: '0.0', 1: '0.1', 2: '1', 3: '2.0', 4: '2.1'}


def official_key(key: str) -> str:
    """timm key -> the authors' key (inverse of the converter's renames)."""
    match = re.match(r'^stages\.(\d)\.(blocks|downsample)\.(\d+)\.', key)
    if match is None:
        return key
    stage, kind, index = int(match[1]), match[2], int(match[3])
    rest = key[match.end() :]
    if kind == 'downsample':
        return f'blocks{stage + 1}.{_SLOTS[index]}.{rest}'
    return f'blocks{stage + 1}.{index + (3 if stage > 0 else 0)}.{rest}'


@pytest.mark.parametrize('nest', ['model', 'state_dict'])
@pytest.mark.parametrize('fast', [False, True], ids=['timm', 'fast'])
def test_parity_official_fixture(nest, fast):
    fixture = load_parity('shvit')
    model = fixture_model(fixture)
    model.load_state_dict(checkpoint_filter_fn({nest: fixture['state_dict']}, model), strict=True)
    if fast:
        to_kernel_backed(model)
    model.eval()
    with torch.no_grad():
        final, features = model.forward_intermediates(fixture['input'])
        logits = model.forward_head(final)
    assert_close_rel(logits, fixture['logits'], 1e-4, 'logits')
    for i, (ours, ref) in enumerate(zip(features, fixture['features'])):
        assert_close_rel(ours, ref, 1e-4, f'stage {i + 1}')


def test_parity_bn_fused_layout():
    fixture = load_parity('shvit')
    model = fixture_model(fixture)
    fused = fuse_official(fixture['state_dict'])
    assert 'blocks2.0.0.weight' in fused and 'blocks1.0.conv.weight' in fused  # the residual folds
    model.load_state_dict(checkpoint_filter_fn(fused, model), strict=True)
    with torch.no_grad():
        assert_close_rel(model.eval()(fixture['input']), fixture['logits'], 1e-5, 'fused logits')


def test_timm_layout_passes_through_and_other_family_is_named():
    model = timm.create_model('shvit_s1')
    converted = convert_checkpoint(model.state_dict(), 'shvit_s1', model=model)
    assert all(torch.equal(converted[k], v) for k, v in model.state_dict().items())
    efficientvit = load_parity('efficientvit')['state_dict']
    with pytest.raises(CheckpointMismatchError, match='unexpected keys'):
        convert_checkpoint({'model': efficientvit}, 'shvit_s1', model=model)


@pytest.mark.parametrize(
    'name', [pytest.param(n, marks=() if n == VARIANTS[0] else pytest.mark.slow) for n in VARIANTS]
)
def test_official_standin_checkpoint_loads(name, tmp_path):
    gen = regen()
    reference = timm.create_model(name)
    manifest, fixed = gen.manifest_of({official_key(k): v for k, v in reference.state_dict().items()})
    official = gen.regen_state_dict(manifest, fixed, seed=0)
    assert any(k.startswith('blocks3.3.') for k in official) and not any(k.startswith('stages.') for k in official)
    path = tmp_path / f'{name}.pth'
    torch.save({'model': official}, path)
    converted = convert_checkpoint(path, name)
    torch.save(converted, tmp_path / 'converted.pth')
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'converted.pth')))
    with pytest.raises(RuntimeError, match='Missing key'):  # timm's own route (untouched): timm's layout only
        timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    loaded = model.state_dict()
    assert converted.keys() == loaded.keys() and all(torch.equal(converted[k], loaded[k]) for k in loaded)
    assert torch.equal(loaded['stages.1.downsample.2.conv1.c.weight'], official['blocks2.1.conv1.c.weight'])


@pytest.mark.parametrize('size', [(224, 224), (97, 131)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_fast_attention_equals_timm(size):
    torch.manual_seed(0)
    model = timm.create_model('shvit_s1', num_classes=10)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim <= 2:
                param.add_(0.2 * torch.randn_like(param))
    model.eval()
    fast = to_kernel_backed(copy.deepcopy(model))
    assert sum(isinstance(m, FastSHSA) for m in fast.modules()) == 9
    assert fast.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        assert_close_rel(fast(x), model(x), 1e-5, f'logits at {size}')


@pytest.mark.mm
def test_mm_backbone_loads_official_file(tmp_path):
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS

    import backbonezoo.mm  # noqa: F401

    gen = regen()
    manifest, fixed = gen.manifest_of(
        {official_key(k): v for k, v in timm.create_model('shvit_s1').state_dict().items()}
    )
    path = tmp_path / 'shvit_s1.pth'
    torch.save({'model': gen.regen_state_dict(manifest, fixed, seed=0)}, path)
    backbone = MODELS.build(
        dict(type='SHViT', arch='s1', frozen_stages=1, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    )
    backbone.init_weights()
    backbone.train()
    assert sum(isinstance(m, FastSHSA) for m in backbone.modules()) == 9
    assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not any(p.requires_grad for p in backbone.model.stages[0].parameters())
    outs = backbone(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape[1:]) for o in outs] == [(128, 7, 9), (224, 4, 5), (320, 2, 3)]
