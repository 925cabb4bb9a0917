"""backbonezoo.mm backbones: mmdet / mmseg conventions on timm's EfficientViT-M0 and SHViT-S1."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

import timm  # noqa: E402
from helpers import assert_close_rel, load_parity  # noqa: E402
from mmdet.registry import MODELS as MMDET_MODELS  # noqa: E402
from mmseg.registry import MODELS as MMSEG_MODELS  # noqa: E402

import backbonezoo.mm  # noqa: E402, F401
from backbonezoo import CheckpointMismatchError  # noqa: E402

pytestmark = pytest.mark.mm


def build(registry=MMDET_MODELS, **kwargs):
    cfg = dict(type='ZooTimmBackbone', model_name='efficientvit_m0')
    cfg.update(kwargs)
    return registry.build(cfg)


def test_registered_in_both_registries_and_out_indices():
    det = build(out_indices=(1, 2))
    seg = build(MMSEG_MODELS, model_name='shvit_s1', out_indices=(-1,))
    assert det.out_channels == [128, 192] and det.out_strides == [32, 64]
    assert seg.out_channels == [320] and seg.out_strides == [64]
    with torch.no_grad():
        outs = det.eval()(torch.randn(1, 3, 128, 128))
    assert isinstance(outs, tuple) and [o.shape[1] for o in outs] == [128, 192]
    assert not any(k.startswith('model.head') for k in det.state_dict()), 'classifier head is pruned'
    with pytest.raises(ValueError, match='out_indices'):
        build(out_indices=(3,))
    with pytest.raises(ValueError, match='input of shape'):
        det(torch.randn(1, 1, 64, 64))


def test_out_indices_not_ascending_follow_the_order_asked():
    """out_indices=(2, 0) returns the stride-64 map first, then the stride-16 map at its own size (they used to come
    in ascending order, the stride-16 map cropped to the stride-64 size)."""
    backbone = build(out_indices=(2, 0)).eval()
    ascending = build(out_indices=(0, 2)).eval()
    ascending.load_state_dict(backbone.state_dict())
    assert backbone.out_channels == [192, 64] and backbone.out_strides == [64, 16]
    x = torch.randn(1, 3, 100, 140)
    with torch.no_grad():
        outs, expected = backbone(x), ascending(x)
    assert [tuple(o.shape[1:]) for o in outs] == [(192, 2, 3), (64, 7, 9)]
    torch.testing.assert_close(outs[0], expected[1])
    torch.testing.assert_close(outs[1], expected[0])


@pytest.mark.parametrize('model_name', ['efficientvit_m0', 'shvit_s1'])
def test_odd_input_sizes_give_ceil_divided_shapes(model_name):
    backbone = build(model_name=model_name).eval()
    height, width = 511, 673
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, height, width))
    for out, stride in zip(outs, backbone.out_strides):
        assert out.shape[-2:] == (math.ceil(height / stride), math.ceil(width / stride))


def test_frozen_stages_stay_frozen_after_train():
    backbone = build(frozen_stages=1)
    backbone.train()
    frozen = [backbone.model.patch_embed, backbone.model.stages[0]]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    assert backbone.model.stages[1].training
    assert all(p.requires_grad for p in backbone.model.stages[1].parameters())
    stem_only = build(frozen_stages=0).train()
    assert not stem_only.model.patch_embed.training and stem_only.model.stages[0].training
    with pytest.raises(ValueError, match='frozen_stages'):
        build(frozen_stages=4)


def test_norm_eval_keeps_batchnorm_in_eval():
    backbone = build(norm_eval=True).train()
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert backbone.training
    assert build(norm_eval=False).train().model.stages[0].training


def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain, checkpointed = build(), build(with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    assert checkpointed.model.grad_checkpointing
    x = torch.randn(2, 3, 64, 96)
    results = []
    for backbone in (plain, checkpointed):
        # train mode: batch statistics are the same in both (eval mode would fill EfficientViT's bias cache
        # during the checkpointed forward, which torch's recomputation check rejects)
        backbone.train()
        outs = backbone(x)
        sum(o.square().mean() for o in outs).backward()
        results.append((outs, [p.grad.clone() for p in backbone.parameters()]))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_out_norms_and_train_returns_self():
    backbone = build(MMSEG_MODELS, model_name='shvit_s1', out_norm='ln2d', out_indices=(0, 2))
    assert backbone.train() is backbone
    assert len(backbone.out_norms) == 2
    with pytest.raises(ValueError, match='out_norm'):
        build(out_norm='gn')


@pytest.fixture(scope='module')
def timm_weights() -> dict:
    torch.manual_seed(1)
    return timm.create_model('shvit_s1').state_dict()


@pytest.mark.parametrize('layout', ['timm', 'nested_backbone_prefix', 'mm_wrapper'])
def test_init_cfg_loads_timm_and_openmmlab_files(tmp_path, timm_weights, layout):
    if layout == 'timm':
        payload = timm_weights
    elif layout == 'nested_backbone_prefix':  # an mmdet / mmseg checkpoint: backbone + other modules
        payload = {'state_dict': {**{f'backbone.{k}': v for k, v in timm_weights.items()}, 'neck.w': torch.ones(1)}}
    else:  # our own wrapper's state dict (model. prefix, extra output norms), as an mmdet run saves it
        source = build(MMSEG_MODELS, model_name='shvit_s1', out_norm='ln2d')
        source.model.load_state_dict({k: v for k, v in timm_weights.items() if k in source.model.state_dict()})
        torch.nn.init.normal_(source.out_norms[0].weight)
        payload = {'meta': {}, 'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}}
    path = tmp_path / 'weights.pth'
    torch.save(payload, path)
    out_norm = 'ln2d' if layout == 'mm_wrapper' else None
    backbone = build(
        MMSEG_MODELS, model_name='shvit_s1', out_norm=out_norm, init_cfg=dict(type='Pretrained', checkpoint=str(path))
    )
    backbone.init_weights()
    state = backbone.model.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(value, timm_weights[key], msg=key)
    if layout == 'mm_wrapper':
        torch.testing.assert_close(backbone.out_norms[0].weight, source.out_norms[0].weight)


def test_init_cfg_is_strict(tmp_path, timm_weights):
    extra = dict(timm_weights, **{'stages.0.surprise': torch.zeros(1)})
    torch.save(extra, tmp_path / 'extra.pth')
    with pytest.raises(CheckpointMismatchError, match='stages.0.surprise'):
        build(
            model_name='shvit_s1', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'extra.pth'))
        ).init_weights()
    missing = {k: v for k, v in timm_weights.items() if not k.startswith('stages.1.')}
    torch.save(missing, tmp_path / 'missing.pth')
    with pytest.raises(CheckpointMismatchError, match='missing keys'):
        build(
            model_name='shvit_s1', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'missing.pth'))
        ).init_weights()


def test_init_cfg_loads_official_layout_with_parity(tmp_path):
    """The authors' EfficientViT layout (the parity fixture, nested under 'model') through init_cfg gives the
    official stage outputs."""
    fixture = load_parity('efficientvit')
    kw = fixture['kwargs']
    path = tmp_path / 'official.pth'
    torch.save({'model': fixture['state_dict']}, path)
    model_kwargs = dict(
        img_size=kw['img_size'],
        num_classes=kw['num_classes'],
        embed_dim=kw['embed_dim'],
        key_dim=kw['key_dim'],
        depth=kw['depth'],
        num_heads=kw['num_heads'],
        window_size=kw['window_size'],
        kernels=kw['kernels'],
    )
    # size_divisor=1: the fixture's 96 px input is not padded (padding would change the border windows)
    init_cfg = dict(type='Pretrained', checkpoint=str(path))
    backbone = build(model_kwargs=model_kwargs, size_divisor=1, init_cfg=init_cfg).eval()
    backbone.init_weights()
    with torch.no_grad():
        outs = backbone(fixture['input'])
    for i, (out, expected) in enumerate(zip(outs, fixture['features'])):
        assert_close_rel(out, expected, what=f'stage {i}')


def test_drop_path_rate_zero_disables_stochastic_depth():
    from timm.layers import DropPath

    def drop_paths(**kwargs):
        backbone = MMDET_MODELS.build(
            dict(type='ZooTimmBackbone', model_name='sret_tiny', **kwargs)
        )  # default rate 0.1
        return [m for m in backbone.modules() if isinstance(m, DropPath)]

    assert drop_paths(), 'the variant default (0.1) builds stochastic depth'
    assert not drop_paths(drop_path_rate=0.0), 'an explicit 0.0 must disable it, not keep the variant default'
