"""tools/convert_checkpoint.py: official / timm / OpenMMLab files to verified safetensors in the zoo layout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch
from helpers import REPO, assert_close_rel, load_parity
from safetensors.torch import load_file, safe_open

import backbonezoo

sys.path.insert(0, str(REPO / 'tools'))
import convert_checkpoint as tool  # noqa: E402

MODEL = 'efficientvit_m0'


def _needs_zoo(name: str) -> None:
    try:
        backbonezoo.family_of(name)
    except KeyError:
        pytest.skip(f'{name} is not described in backbonezoo.zoo yet')


@pytest.fixture(scope='module')
def timm_state_dict() -> dict:
    torch.manual_seed(0)
    return timm.create_model(MODEL).state_dict()


@pytest.mark.parametrize('layout', ['model_nest', 'mmdet_backbone_prefix', 'flat'])
def test_round_trip_timm_layouts(tmp_path: Path, timm_state_dict: dict, layout: str, capsys):
    _needs_zoo(MODEL)
    if layout == 'model_nest':
        checkpoint = {'model': timm_state_dict, 'epoch': 3}
    elif layout == 'mmdet_backbone_prefix':
        checkpoint = {'state_dict': {f'backbone.{k}': v for k, v in timm_state_dict.items()}, 'meta': {}}
    else:
        checkpoint = timm_state_dict
    src, dst = tmp_path / 'in.pth', tmp_path / 'out.safetensors'
    torch.save(checkpoint, src)
    assert tool.main([str(src), str(dst), '--model', MODEL]) == 0
    assert 'verified by a strict load' in capsys.readouterr().out
    converted = load_file(str(dst))
    assert converted.keys() == timm_state_dict.keys()
    assert all(torch.equal(converted[k], v) for k, v in timm_state_dict.items())
    with safe_open(str(dst), 'pt') as handle:
        assert handle.metadata()['model'] == MODEL
    model = timm.create_model(MODEL, pretrained=True, pretrained_cfg_overlay=dict(file=str(dst)))
    assert torch.equal(model.state_dict()['head.linear.weight'], timm_state_dict['head.linear.weight'])


def test_official_layout_reproduces_the_parity_logits(tmp_path: Path):
    _needs_zoo(MODEL)
    fixture = load_parity('efficientvit')
    src, dst = tmp_path / 'official.pth', tmp_path / 'official.safetensors'
    torch.save({'model': fixture['state_dict']}, src)
    kw = fixture['kwargs']
    kwargs = dict(
        img_size=kw['img_size'],
        embed_dim=tuple(kw['embed_dim']),
        key_dim=tuple(kw['key_dim']),
        depth=tuple(kw['depth']),
        num_heads=tuple(kw['num_heads']),
        window_size=tuple(kw['window_size']),
        kernels=tuple(kw['kernels']),
    )
    argv = [str(src), str(dst), '--model', MODEL, '--num-classes', str(kw['num_classes']), '--model-kwargs']
    argv += [f'{k}={v!r}' for k, v in kwargs.items()]
    assert tool.main(argv) == 0
    model = timm.create_model(MODEL, num_classes=kw['num_classes'], **kwargs).eval()
    model.load_state_dict(load_file(str(dst)), strict=True)
    with torch.no_grad():
        assert_close_rel(model(fixture['input']), fixture['logits'], what='logits')


def test_plain_timm_model_outside_the_zoo(tmp_path: Path):
    src, dst = tmp_path / 'r.pth', tmp_path / 'r.safetensors'
    state_dict = timm.create_model('resnet10t').state_dict()
    torch.save({'state_dict': state_dict}, src)
    assert tool.main([str(src), str(dst), '--model', 'resnet10t']) == 0
    assert load_file(str(dst)).keys() == state_dict.keys()


def test_backbone_only_checkpoint_needs_num_classes_0(tmp_path: Path, timm_state_dict: dict, capsys):
    _needs_zoo(MODEL)
    backbone = {f'backbone.{k}': v for k, v in timm_state_dict.items() if not k.startswith('head.')}
    backbone['neck.lateral.weight'] = torch.zeros(1)  # a detector file also holds neck / head weights
    src = tmp_path / 'det.pth'
    torch.save({'state_dict': backbone}, src)
    assert tool.main([str(src), str(tmp_path / 'a.safetensors'), '--model', MODEL]) == 1
    err = capsys.readouterr().err
    assert 'missing keys' in err and 'head.linear.weight' in err and '--num-classes 0' in err
    assert tool.main([str(src), str(tmp_path / 'b.safetensors'), '--model', MODEL, '--num-classes', '0']) == 0


def test_errors_are_named(tmp_path: Path, timm_state_dict: dict, capsys):
    src = tmp_path / 'in.pth'
    torch.save({'model': timm_state_dict}, src)
    dst = tmp_path / 'out.safetensors'
    cases = [
        ([str(tmp_path / 'nope.pth'), str(dst), '--model', MODEL], 'is not a file'),
        ([str(src), str(tmp_path / 'out.pth'), '--model', MODEL], 'must end in .safetensors'),
        ([str(src), str(dst), '--model', 'no_such_model_xyz'], 'is not a timm / backbonezoo model'),
    ]
    for argv, message in cases:
        assert tool.main(argv) == 1
        assert message in capsys.readouterr().err
    dst.write_bytes(b'')
    assert tool.main([str(src), str(dst), '--model', MODEL]) == 1
    assert '--force' in capsys.readouterr().err


def test_checkpoint_of_another_variant_is_refused(tmp_path: Path, timm_state_dict: dict, capsys):
    _needs_zoo('efficientvit_m1')
    src = tmp_path / 'm0.pth'
    torch.save({'model': timm_state_dict}, src)
    assert tool.main([str(src), str(tmp_path / 'x.safetensors'), '--model', 'efficientvit_m1']) == 1
    err = capsys.readouterr().err
    assert 'efficientvit_m1' in err and not (tmp_path / 'x.safetensors').exists()


def test_help():
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--help'])
    assert exit_info.value.code == 0


def _first_variants() -> list[str]:
    names = []
    for family in backbonezoo.families():
        models = backbonezoo.list_models(family=family)
        if models:
            names.append(models[0])
    return names


@pytest.mark.slow
@pytest.mark.parametrize('name', _first_variants())
def test_zoo_layout_passes_through(tmp_path: Path, name: str):
    """Our own (timm) layout of every family's first variant converts unchanged (the filter passes it through)."""
    state_dict = timm.create_model(name).state_dict()
    src, dst = tmp_path / 'own.pth', tmp_path / 'own.safetensors'
    torch.save({'state_dict': state_dict}, src)
    assert tool.main([str(src), str(dst), '--model', name]) == 0
    converted = load_file(str(dst))
    assert converted.keys() == state_dict.keys()
    assert all(torch.equal(converted[k], v) for k, v in state_dict.items())


class _RunnerState:
    """Stands for what an mmengine Runner checkpoint holds beside the weights (message hub objects): it needs
    full unpickling, so the file is read only when trusted."""


def test_own_runner_checkpoint_converts_only_with_trust_checkpoint(tmp_path: Path, capsys):
    _needs_zoo(MODEL)
    torch.manual_seed(0)
    state_dict = timm.create_model(MODEL, num_classes=6).state_dict()
    src, dst = tmp_path / 'epoch_1.pth', tmp_path / 'mine.safetensors'
    classifier_layout = {f'model.{k}': v for k, v in state_dict.items()}  # backbonezoo.mm.ZooClassifier's keys
    torch.save({'meta': {'hub': _RunnerState()}, 'state_dict': classifier_layout}, src)
    argv = [str(src), str(dst), '--model', MODEL, '--num-classes', '6']
    assert tool.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and '--trust-checkpoint' in err and not dst.exists()
    assert tool.main([*argv, '--trust-checkpoint']) == 0
    converted = load_file(str(dst))
    assert converted.keys() == state_dict.keys()
    assert all(torch.equal(converted[k], v) for k, v in state_dict.items())
