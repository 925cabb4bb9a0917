"""HaloNet: paper variants H0, H2-H7 on timm's ByoaNet, kernel-backed halo attention, checkpoints, parity."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from helpers import assert_close_rel, load_parity, regen
from timm.layers.halo_attn import HaloAttn
from timm.models.byobnet import ByoBlockCfg, ByobNet, ByoModelCfg

import backbonezoo
from backbonezoo import CheckpointMismatchError, convert_checkpoint
from backbonezoo.backbones.halonet_ext import KernelHaloAttn, checkpoint_filter_fn, to_kernel_backed

FAMILY = backbonezoo.get_family('halonet')
PAPER_VARIANTS = [v for v in FAMILY.variants if v.params_rtol]
# timm's halonet_h1 builds in ~3 s and all stand-in tests load a full model: keep the default run to H0
DEFAULT_RUN = {'halonet_h0'}


def fixture_model(fixture: dict) -> ByobNet:
    """Rebuild the fixture's ByobNet from its stored ``dataclasses.asdict`` config (README: kwargs['cfg'])."""
    kwargs = dict(fixture['kwargs'])
    cfg = dict(kwargs.pop('cfg'))

    def block(spec):
        return tuple(block(s) for s in spec) if isinstance(spec, (list, tuple)) else ByoBlockCfg(**spec)

    cfg['blocks'] = tuple(block(b) for b in cfg['blocks'])
    return ByobNet(ByoModelCfg(**cfg), **kwargs)


@pytest.fixture(scope='module')
def fixture():
    return load_parity('halonet')


def run_fixture(model: torch.nn.Module, fixture: dict) -> None:
    model.eval()
    with torch.no_grad():
        logits = model(fixture['input'])
        features = model.forward_intermediates(fixture['input'], indices=[1, 2, 3, 4], intermediates_only=True)
    assert_close_rel(logits, fixture['logits'], 1e-4, 'logits')
    for i, (ours, ref) in enumerate(zip(features, fixture['features'])):
        assert_close_rel(ours, ref, 1e-4, f'feature {i + 1}')


@pytest.mark.parametrize('backend', [None, 'reference', 'torch'])
@pytest.mark.parametrize('pad_to_block', [False, True])
def test_parity_fixture_kernel_backed(fixture, backend, pad_to_block):
    """Plain, avg-down and strided-query halo blocks on local_attention reproduce timm's fixture."""
    model = fixture_model(fixture)
    model.load_state_dict(checkpoint_filter_fn(fixture['state_dict'], model), strict=True)
    keys = model.state_dict().keys()
    to_kernel_backed(model, pad_to_block=pad_to_block, backend=backend)
    assert sum(isinstance(m, KernelHaloAttn) for m in model.modules()) == 3
    assert not any(type(m) is HaloAttn for m in model.modules())
    assert model.state_dict().keys() == keys
    run_fixture(model, fixture)


def test_parity_fixture_timm(fixture):
    model = fixture_model(fixture)
    model.load_state_dict(checkpoint_filter_fn({'state_dict': fixture['state_dict']}, model), strict=True)
    run_fixture(model, fixture)


def test_kernel_halo_attn_pads_or_names_the_size():
    torch.manual_seed(0)
    attn = KernelHaloAttn(16, num_heads=2, block_size=4, halo_size=1, pad_to_block=False).eval()
    with pytest.raises(ValueError, match='multiple of block_size=4'):
        attn(torch.randn(1, 16, 10, 12))
    attn.pad_to_block = True
    x = torch.randn(1, 16, 10, 13)
    out = attn(x)
    assert out.shape == (1, 16, 10, 13)
    # padding is zeros, the halo's own convention: the top-left blocks see only real or zero keys, as unpadded
    padded = attn(torch.nn.functional.pad(x, (0, 3, 0, 2)))
    torch.testing.assert_close(out, padded[..., :10, :13])
    strided = KernelHaloAttn(16, stride=2, num_heads=2, block_size=4, halo_size=1)
    assert strided(x).shape == (1, 16, 5, 7)


@pytest.mark.parametrize('example, stride', [((4, 4), 1), ((8, 12), 2)], ids=['one-block', 'strided'])
def test_kernel_halo_attn_exports_with_dynamic_hw(example, stride):
    """torch.export with dynamic H / W (``pad_to_block=True``): traced at one block or at several, the graph holds no
    guard on the block count and equals the eager module at sizes below, at and above block multiples."""
    torch.manual_seed(0)
    attn = KernelHaloAttn(16, stride=stride, num_heads=2, block_size=4, halo_size=1, pad_to_block=True).eval()
    dim = torch.export.Dim
    exported = torch.export.export(
        attn, (torch.randn(1, 16, *example),), dynamic_shapes={'x': {2: dim.AUTO, 3: dim.AUTO}}, strict=False
    )
    assert all(r.upper > 10_000 for r in exported.range_constraints.values()), exported.range_constraints
    graph = exported.module()
    for size in [(4, 4), (5, 13), (16, 12), (33, 30)]:
        x = torch.randn(1, 16, *size)
        with torch.no_grad():
            assert_close_rel(graph(x), attn(x), 1e-5, f'at {size}')


@pytest.mark.parametrize('variant', PAPER_VARIANTS, ids=lambda v: v.name)
def test_paper_variant_param_counts(variant):
    with torch.device('meta'):
        model = timm.create_model(variant.name)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - variant.params) <= 0.02 * variant.params, (
        f'{variant.name}: {count:,} vs paper {variant.params:,}'
    )
    halo = [m for m in model.modules() if isinstance(m, KernelHaloAttn)]
    assert halo and all(m.pad_to_block for m in halo)


def test_value_multiplier_widens_values_only():
    """H5's rv = 2.5: values (and the post-attention BN / last 1x1 conv) are 2.5x the bottleneck width, q/k are not."""
    with torch.device('meta'):
        model = timm.create_model('halonet_h5')
    block = model.stages[0][0]
    mid = block.conv1_1x1.conv.out_channels
    assert block.self_attn.dim_out_qk == mid and block.self_attn.dim_out_v == int(2.5 * mid)
    assert block.post_attn.num_features == block.conv3_1x1.conv.in_channels == int(2.5 * mid)


def test_paper_variant_runs_at_any_size_and_checks_input():
    model = timm.create_model('halonet_h0', num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 200, 232)).shape == (1, 5)
    with pytest.raises(ValueError, match='4-D input'):
        model(torch.randn(3, 64, 64))


@pytest.mark.parametrize(
    'name', [pytest.param(n, marks=() if n in DEFAULT_RUN else pytest.mark.slow) for n in FAMILY.model_names]
)
def test_standin_checkpoint_loads(name, tmp_path):
    """timm's flat layout (the only HaloNet layout) loads strictly through create_model and convert_checkpoint."""
    gen = regen()
    reference = timm.create_model(name)
    manifest, fixed = gen.manifest_of(reference.state_dict())
    weights = gen.regen_state_dict(manifest, fixed, seed=0)
    path = tmp_path / f'{name}.pth'
    torch.save(weights, path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    loaded = model.state_dict()
    assert all(torch.equal(weights[k], loaded[k]) for k in loaded)
    converted = convert_checkpoint(path, name)
    assert converted.keys() == loaded.keys()


def test_other_family_checkpoint_is_named(fixture):
    with torch.device('meta'):
        model = timm.create_model('halonet_h0')
    with pytest.raises(CheckpointMismatchError, match='missing keys'):
        convert_checkpoint(load_parity('shvit')['state_dict'], 'halonet_h0', model=model)


def test_to_kernel_backed_on_timm_halonet_equals_timm():
    """A timm HaloNet (halonet_h1 geometry, b 8 h 3, shrunk) gives timm's outputs once kernel-backed."""
    torch.manual_seed(0)
    cfg = ByoModelCfg(
        blocks=(
            ByoBlockCfg(type='self_attn', d=1, c=16, s=1, gs=0, br=1.0),
            ByoBlockCfg(type='self_attn', d=1, c=32, s=2, gs=0, br=1.0),
        ),
        stem_chs=16,
        stem_type='7x7',
        stem_pool='maxpool',
        self_attn_layer='halo',
        self_attn_kwargs=dict(block_size=8, halo_size=3, num_heads=2),
        zero_init_last=False,
    )
    model = ByobNet(cfg, num_classes=4).eval()
    kernel = to_kernel_backed(copy.deepcopy(model))
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        assert_close_rel(kernel(x), model(x), 1e-5, 'logits')


@pytest.mark.mm
def test_mm_backbone_pads_to_blocks():
    """mm type ``HaloNet``: timm's halonet26t fails at 224; the mm backbone pads each attention input."""
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS

    import backbonezoo.mm  # noqa: F401

    backbone = MODELS.build(dict(type='HaloNet', arch='h0', frozen_stages=1))
    backbone.init_weights()
    backbone.train()
    assert all(m.pad_to_block for m in backbone.modules() if isinstance(m, KernelHaloAttn))
    assert not any(p.requires_grad for p in backbone.model.stages[0].parameters())
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 150, 202))
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 38, 51), (64, 19, 26), (128, 10, 13), (256, 5, 7)]
