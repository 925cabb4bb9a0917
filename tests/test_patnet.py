"""PATNet: parity with the official model, official layouts (bare, Lightning, dense), iRPE buckets."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from helpers import assert_close_rel, load_parity, regen

import backbonezoo
from backbonezoo.backbones.patnet import PATNet, checkpoint_filter_fn, irpe_bucket_ids

VARIANTS = backbonezoo.get_family('patnet').model_names


def fixture_model(kwargs: dict) -> PATNet:
    return PATNet(
        num_classes=kwargs['num_classes'],
        embed_dim=kwargs['embed_dim'],
        depths=tuple(kwargs['depths']),
        mlp_ratio=kwargs['mlp_ratio'],
        n_div=kwargs['n_div'],
        feature_dim=kwargs['feature_dim'],
        spatial_gate=kwargs['use_spatial_attn'],
        num_heads=4 if kwargs['patnet_t0'] else 6,
        act_layer=kwargs['act_layer'].lower(),
    ).eval()


def official_key(key: str) -> str:
    """Our key in the official layout, written independently of the converter."""
    if key.startswith('conv_head.'):
        return 'avgpool_pre_head.1.' + key.split('.', 1)[1]
    if key.startswith('classifier.'):
        return 'head.' + key.split('.', 1)[1]
    if key.startswith('stages.'):
        _, stage, rest = key.split('.', 2)
        stage = int(stage)
        if rest.startswith('downsample.'):
            return f'stages.{2 * stage - 1}.{rest[len("downsample.") :]}'
        rest = rest.replace('attn.stats_conv.', 'attn.cfc1.').replace('attn.rpe_table', 'attn.rpe_k.lookup_table_bias')
        return f'stages.{2 * stage}.{rest}'
    return key


def official_state_dict(model: PATNet, seed: int = 0) -> dict:
    ours = model.state_dict()
    manifest = [[official_key(k), list(v.shape), str(v.dtype).replace('torch.', '')] for k, v in ours.items()]
    fixed = {official_key(k): v for k, v in ours.items() if not v.dtype.is_floating_point}
    return regen().regen_state_dict(manifest, fixed, seed=seed)


def test_parity_logits_and_features():
    data = load_parity('patnet')
    model = fixture_model(data['kwargs'])
    model.load_state_dict(checkpoint_filter_fn(data['state_dict'], model), strict=True)
    with torch.no_grad():
        assert_close_rel(model(data['input']), data['logits'], what='logits')
        _, features = model.forward_intermediates(data['input'])
    for ours, theirs, name in zip(features, data['features'], data['feature_points']):
        assert_close_rel(ours, theirs, what=name)


def official_bucket(dy: int, dx: int) -> int:
    """iRPE's Euclidean piecewise index for one offset, straight from the formula (alpha 20, beta 40, gamma 160)."""
    d = round(math.sqrt(dy * dy + dx * dx))
    if d > 20:
        d = min(40, round(20 + math.log(d / 20) / math.log(8) * 20))
    return d + 40


def test_irpe_buckets_follow_the_piecewise_formula():
    height, width = 25, 38  # distances beyond alpha = 20 exercise the logarithmic buckets
    ids = irpe_bucket_ids(height, width, torch.device('cpu'))
    assert ids.shape == (height * width, height * width)
    positions = [(y, x) for y in range(height) for x in range(width)]
    for i in range(0, len(positions), 37):
        for j in range(0, len(positions), 11):
            (y1, x1), (y2, x2) = positions[i], positions[j]
            assert ids[i, j].item() == official_bucket(y1 - y2, x1 - x2), (positions[i], positions[j])
    assert ids.min() >= 40 and ids.max() <= 80


@pytest.mark.parametrize(
    'name', [pytest.param(n, marks=() if n == 'patnet_t0' else pytest.mark.slow) for n in VARIANTS]
)
def test_official_checkpoint_loads_strictly(name, tmp_path):
    model = timm.create_model(name)
    official = official_state_dict(model)
    path = tmp_path / f'{name}.pth'
    torch.save(official, path)  # the official train_test.py saves the bare state dict
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(loaded.conv_head.weight, official['avgpool_pre_head.1.weight'])
    assert torch.equal(loaded.stages[3].downsample.reduction.weight, official['stages.5.reduction.weight'])
    # PyTorch Lightning checkpoints nest under 'state_dict' with a 'model.' prefix.
    lightning = {'state_dict': {f'model.{k}': v for k, v in official.items()}, 'epoch': 299}
    converted = backbonezoo.convert_checkpoint(lightning, name)
    assert torch.equal(converted['classifier.weight'], official['head.weight'])


def test_wrong_family_checkpoint_is_a_named_error():
    sret = timm.create_model('sret_tiny_noslice').state_dict()
    with pytest.raises(backbonezoo.CheckpointMismatchError, match='missing keys'):
        backbonezoo.convert_checkpoint(sret, 'patnet_t0')


def test_floors_odd_sizes_like_the_official_model():
    model = timm.create_model('patnet_t0', num_classes=0).eval()
    with torch.no_grad():
        features = model.forward_intermediates(torch.randn(1, 3, 225, 250), intermediates_only=True)
    assert [tuple(f.shape[-2:]) for f in features] == [(56, 62), (28, 31), (14, 15), (7, 7)]


@pytest.mark.mm
def test_mm_backbone_loads_official_dense_checkpoint(tmp_path):
    from mmdet.registry import MODELS

    import backbonezoo.mm  # noqa: F401

    backbone = MODELS.build(dict(type='PATNet', arch='t0', out_indices=(1, 2, 3)))
    official = official_state_dict(timm.create_model('patnet_t0'))
    for i, channels in zip((0, 2, 4, 6), (32, 64, 128, 256)):
        official.update({f'norm{i}.weight': torch.rand(channels), f'norm{i}.bias': torch.rand(channels)})
        official.update({f'norm{i}.running_mean': torch.zeros(channels), f'norm{i}.running_var': torch.ones(channels)})
        official[f'norm{i}.num_batches_tracked'] = torch.tensor(0)
    path = tmp_path / 'mask_rcnn_patnet.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in official.items()}}, path)
    backbone.load_pretrained(str(path))
    assert torch.equal(backbone.out_norms[0].weight, official['norm2.weight'])
    outs = backbone.eval()(torch.randn(1, 3, 200, 250))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 25, 32), (1, 128, 13, 16), (1, 256, 7, 8)]


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32, torch.bfloat16])
def test_channel_gate_statistics_are_mean_and_unbiased_std(dtype):
    """PAT_ch's gate reads (mean, unbiased std) per channel; the fast two-pass norm must equal ``Tensor.std``,
    including a 1-pixel map (no unbiased std: NaN, as the official ``torch.std`` gives) and low-precision inputs."""
    from backbonezoo.backbones.patnet import GaussianChannelGate

    torch.manual_seed(0)
    gate = GaussianChannelGate(6).eval()
    seen = []
    gate.stats_conv.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    gate = gate.to(dtype)
    for hw in ((7, 5), (1, 2), (1, 1)):
        x = (3 + 2 * torch.randn(2, 6, *hw, dtype=torch.float64)).to(dtype)
        flat = x.flatten(2).double()
        expected = torch.stack((flat.mean(-1), flat.std(-1)), dim=-1).unsqueeze(2)
        with torch.no_grad():
            gate(x)
        stats = seen[-1].double()
        assert stats.shape == (2, 6, 1, 2)
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-6  # in float32 (as the official code: fx-traceable)
        if hw == (1, 1):
            assert stats[..., 1].isnan().all()
            stats, expected = stats[..., 0], expected[..., 0]
        assert_close_rel(stats, expected, rtol=tol, what=f'{hw} {dtype}')
