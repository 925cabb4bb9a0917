"""SReT: parity with the official model (including its random token shuffles), checkpoint layouts, sizes."""

from __future__ import annotations

import pytest
import timm
import torch
from helpers import assert_close_rel, load_parity, regen

import backbonezoo
from backbonezoo.backbones.sret import SReT, checkpoint_filter_fn


def build_fixture_model(kwargs: dict) -> SReT:
    return SReT(
        img_size=kwargs['image_size'],
        base_dims=kwargs['base_dims'],
        num_heads=kwargs['heads'],
        depths=kwargs['depth'],
        groups=kwargs['groups1'],
        recursive_groups=kwargs['groups2'],
        mlp_ratio=kwargs['mlp_ratio'],
        proj_mlp_ratio=kwargs['np_mlp_ratio'],
        num_classes=kwargs['num_classes'],
    ).eval()


@pytest.fixture(scope='module')
def fixture():
    data = load_parity('sret')
    model = build_fixture_model(data['kwargs'])
    model.load_state_dict(checkpoint_filter_fn(data['state_dict'], model), strict=True)
    return data, model


def official_keys(model: SReT) -> list[tuple[str, str]]:
    """(official key, our key) pairs, written independently of the converter: shared blocks under both indices."""
    block_scales = {
        'skip_scale1': 'coefficient1',
        'attn_scale': 'coefficient2',
        'skip_scale2': 'coefficient3',
        'mlp_scale': 'coefficient4',
    }
    proj_names = {'skip_scale': 'coefficient1', 'mlp_scale': 'coefficient2', 'norm': 'norm1'}
    pairs = []
    for key in model.state_dict():
        parts = key.split('.')
        if parts[0] == 'stem':
            pairs.append(('patch_embed.' + '.'.join(parts[1:]), key))
        elif parts[0] == 'head':
            pairs.append((('norm.' if parts[1] == 'norm' else 'head.') + parts[-1], key))
        elif parts[0] == 'pos_embed':
            pairs.append((key, key))
        elif parts[2] == 'downsample':
            pairs.append((f'pools.{int(parts[1]) - 1}.' + '.'.join(parts[3:]), key))
        else:
            stage, unit, kind, rest = parts[1], int(parts[3]), parts[4], parts[5:]
            if kind == 'block':
                rest = [block_scales[rest[0]], 'bias'] if rest[0] in block_scales else rest
                indices = (4 * unit, 4 * unit + 2)
            else:
                name = proj_names.get(rest[0])
                rest = [name, 'bias' if name.startswith('coefficient') else rest[1]] if name else rest
                indices = (4 * unit + (1 if kind == 'proj1' else 3),)
            pairs += [(f'transformers.{stage}.blocks.{i}.' + '.'.join(rest), key) for i in indices]
    return pairs


def test_parity_logits_and_features(fixture):
    data, model = fixture
    torch.manual_seed(data['rng']['seed_before_forward'])
    with torch.no_grad():
        logits = model(data['input'])
    assert_close_rel(logits, data['logits'], what='logits')
    torch.manual_seed(data['rng']['seed_before_forward'])
    with torch.no_grad():
        _, features = model.forward_intermediates(data['input'])
    for ours, theirs, name in zip(features, data['features'], data['feature_points']):
        assert_close_rel(ours, theirs, what=name)


def test_draws_the_official_permutations_in_order(fixture, monkeypatch):
    data, model = fixture
    drawn, randperm = [], torch.randperm

    def recording_randperm(*args, **kwargs):
        drawn.append(randperm(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(torch, 'randperm', recording_randperm)
    torch.manual_seed(data['rng']['seed_before_forward'])
    with torch.no_grad():
        model(data['input'])
    assert len(drawn) == len(data['rng']['randperms'])
    for ours, theirs in zip(drawn, data['rng']['randperms']):
        assert torch.equal(ours, theirs)


def test_shuffle_seed_makes_inference_deterministic(fixture):
    data, model = fixture
    try:
        model.set_shuffle_seed(7)
        state = torch.get_rng_state()
        with torch.no_grad():
            first, second = model(data['input']), model(data['input'])
        assert torch.equal(torch.get_rng_state(), state), 'the private generator must leave the global RNG alone'
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        model.set_shuffle_seed(8)
        with torch.no_grad():
            assert not torch.allclose(model(data['input']), first)
    finally:
        model.set_shuffle_seed(None)


def test_official_draws_vary_between_calls(fixture):
    data, model = fixture
    with torch.no_grad():
        first, second = model(data['input']), model(data['input'])
    assert not torch.allclose(first, second), 'the official model reshuffles on every call, even in eval mode'


def make_official_file(model: SReT, path, seed: int = 0) -> dict:
    """A stand-in official checkpoint: official keys (shared blocks twice, copies differing), nested under 'model'."""
    rg = regen()
    ours = model.state_dict()
    pairs = official_keys(model)
    manifest = [[off, list(ours[key].shape), str(ours[key].dtype).replace('torch.', '')] for off, key in pairs]
    fixed = {off: ours[key] for off, key in pairs if not ours[key].dtype.is_floating_point}
    official = rg.regen_state_dict(manifest, fixed, seed=seed)
    torch.save({'model': official, 'epoch': 299}, path)
    return official


@pytest.mark.parametrize(
    'name',
    [
        pytest.param(n, marks=() if n == 'sret_tiny' else pytest.mark.slow)
        for n in [
            'sret_tiny',
            'sret_little_tiny',
            'sret_little_tiny_g16',
            'sret_small',
            'sret_tiny_noslice',
            'sret_little_tiny_noslice',
            'sret_small_noslice',
            'sret_tiny_noslice_384',
            'sret_small_noslice_384',
            'sret_small_noslice_512',
        ]
    ],
)
def test_official_checkpoint_loads_strictly(name, tmp_path):
    model = timm.create_model(name)
    path = tmp_path / f'{name}.pth'
    official = make_official_file(model, path)
    with pytest.warns(UserWarning, match='two different copies'):
        loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    # The later of the two copies of a shared block wins, as with the official loader.
    block = loaded.stages[1].units[0].block.attn.qkv.weight
    assert torch.equal(block, official['transformers.1.blocks.2.attn.qkv.weight'])
    assert torch.equal(loaded.head.fc.weight, official['head.weight'])
    with pytest.warns(UserWarning):
        converted = backbonezoo.convert_checkpoint(path, name)
    assert converted.keys() == loaded.state_dict().keys()


def test_identical_copies_convert_silently_and_other_families_fail(tmp_path):
    model = timm.create_model('sret_tiny_noslice')
    pairs = official_keys(model)
    ours = model.state_dict()
    official = {off: ours[key].clone() for off, key in pairs}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter('error')
        converted = backbonezoo.convert_checkpoint({'model': official}, 'sret_tiny_noslice')
    for key, value in ours.items():
        assert torch.equal(converted[key], value), key
    with pytest.raises(backbonezoo.CheckpointMismatchError, match='missing keys'):
        backbonezoo.convert_checkpoint({'model': {'stem.0.weight': torch.zeros(3)}}, 'sret_tiny')


def test_224_checkpoint_resizes_position_embedding_for_384():
    small = timm.create_model('sret_tiny_noslice')
    large = timm.create_model('sret_tiny_noslice_384')
    converted = checkpoint_filter_fn(small.state_dict(), large)
    assert converted['pos_embed'].shape == large.pos_embed.shape
    large.load_state_dict(converted, strict=True)


def test_other_input_sizes(fixture):
    data, model = fixture
    model.set_shuffle_seed(0)
    try:
        with torch.no_grad():
            assert model(torch.randn(1, 3, 160, 96)).shape == (1, 10)  # position embedding resized
        with pytest.raises(ValueError, match='attention groups'):
            model(torch.randn(1, 3, 136, 136))  # 17x17 tokens in stage 1 do not split into 8 groups
    finally:
        model.set_shuffle_seed(None)


def test_grad_checkpointing_gives_the_same_gradients(fixture):
    data, model = fixture
    model = build_fixture_model(data['kwargs'])
    model.load_state_dict(fixture[1].state_dict())
    model.train()
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        torch.manual_seed(0)
        model(data['input']).square().mean().backward()
        grads.append(model.stages[0].units[0].block.attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
