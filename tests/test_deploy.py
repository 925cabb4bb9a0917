"""backbonezoo.deploy: the folded / reparameterised inference form computes what the eval model computes."""

from __future__ import annotations

import copy
import importlib
import pickle

import pytest
import timm
import torch
import torch.nn as nn
from helpers import assert_close_rel, load_parity

import backbonezoo
from backbonezoo.deploy import BATCH_CHUNKS, DeployMismatchError, chunk_batches, deploy, fold_batchnorms
from backbonezoo.zoo import families, get_family

SMALLEST = {name: family.variants[0].name for name, family in families().items()}
OWN_FAMILIES = ('a2mamba', 'biformer', 'litv2', 'overlock', 'patnet', 'sret', 'tic')  # timm owns the other three

# BatchNorms deploy leaves in place, and why (backbonezoo/deploy.py's docstring): no layer computes them exactly.
KEPT = {
    'biformer': ('norm',),  # before global pooling: folding it into the head would change forward_features
    'halonet': ('post_attn',),  # after the attention output, with an activation before the next conv
    'patnet': ('mlp.4.norm',),  # PAT_sp (t1 and up): after the gate, at the end of the residual branch
}
ALL_VARIANTS = [
    pytest.param(variant.name, marks=() if variant.name in SMALLEST.values() else pytest.mark.slow, id=variant.name)
    for family in families().values()
    for variant in family.variants
]


def perturb_batchnorms(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so a wrong fold shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                if module.affine:
                    module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=generator))
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return model


def seeded(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # SReT draws its token permutations at inference
        return model(x)


def perturb_scales(model: nn.Module, seed: int = 2) -> nn.Module:
    """Random per-channel LayerScale weights and shifts (the zoo's ChannelAffine, timm's LayerScale gamma)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for tensor in (
                getattr(module, 'gamma', None),
                getattr(module, 'weight', None),
                getattr(module, 'bias', None),
            ):
                if type(module).__name__ in ('ChannelAffine', 'LayerScale', 'LayerScale2d') and tensor is not None:
                    tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
    return model


def _scales(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m).__name__ in ('ChannelAffine', 'LayerScale', 'LayerScale2d')]


@pytest.mark.parametrize('name', ALL_VARIANTS)
def test_deploy_equals_eval_model_and_folds_every_adjacent_batchnorm(name):
    family = backbonezoo.family_of(name).name
    # float64: folding is exact algebra, so anything above rounding is a wrong rule (random deep nets amplify
    # float32 rounding beyond 1e-4; the fp32 tolerance is checked on the authors' weights below)
    model = perturb_scales(perturb_batchnorms(timm.create_model(name))).eval().double()
    reports = []
    # a 1-byte budget: every block of BATCH_CHUNKS runs one sample at a time
    deployed = deploy(model, report=reports.append, rtol=1e-9, batch_chunk_mb=2**-20)
    report = reports[0]
    chunkable = {n for n, m in model.named_modules() if type(m) in BATCH_CHUNKS}
    assert set(report.batch_chunked) == chunkable
    assert chunkable or family not in OWN_FAMILIES, f'{name}: no block runs in batch slices'
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()), 'the input was modified'
    for leftover in report.remaining_batchnorms:
        assert leftover.endswith(KEPT.get(family, ())), f'{name}: {leftover} was not folded'
    total = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert len(report.folded) == total - len(report.remaining_batchnorms)
    # channels-last by default: every 2-D convolution's weight (the NCHW inputs below then give NHWC feature maps)
    assert report.channels_last
    convs = [m for m in deployed.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs), name
    info = get_family(family)
    height, width = backbonezoo.variant_info(name).input_hw
    sizes = [(height, width)]
    if not info.fixed_size:
        sizes.append((height + info.size_divisor, width))  # a second, non-square size
    for size in sizes:
        x = torch.randn(2, model.pretrained_cfg['input_size'][0], *size, dtype=torch.float64)
        assert_close_rel(seeded(deployed, x), seeded(model, x), rtol=1e-9, what=f'{name} at {size}')


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(layer_scales=(True,) * 4),
        dict(layer_scales=(True, True, False, False), res_scales=(False, False, True, True)),
    ],
    ids=['branch_scales', 'branch_and_shortcut_scales'],
)
def test_layer_scale_on_a_branch_folds_into_its_last_projection(kwargs):
    """A2Mamba's ``layer_scale`` blocks: ls1 / ls2 (random weight and shift) go into the mixer's output conv and fc2;
    ``res_scale`` blocks scale the shortcut, which no layer computes alone: those stay. Exact in float64."""
    model = timm.create_model('a2mamba_nano', depths=(1, 1, 2, 1), **kwargs)  # one block per stage, two in stage 3
    model = perturb_scales(perturb_batchnorms(model)).eval().double()
    scaled_shortcut = {
        f'{n}.{ls}' for n, m in model.named_modules() if getattr(m, 'res_scale', False) for ls in ('ls1', 'ls2')
    }
    reports = []
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    deployed = deploy(model, report=reports.append, rtol=1e-9, example_input=x)
    assert set(_scales(deployed)) == scaled_shortcut
    assert set(reports[0].folded_scales) == set(_scales(model)) - scaled_shortcut
    assert reports[0].folded_scales, 'no scale was folded'
    assert_close_rel(seeded(deployed, x), seeded(model, x), rtol=1e-9, what='a2mamba_nano with LayerScale')


def _fixture_model(family: str):
    """The parity fixture's tiny configuration with the authors' weights, and the fixture."""
    tests = importlib.import_module(f'test_{family}')
    fixture = load_parity(family)
    if family == 'biformer':
        return tests.load_fixture_model(fixture, {'kwargs_override': {}}), fixture
    model = {
        'efficientvit': lambda: tests.fixture_model(fixture),
        'shvit': lambda: tests.fixture_model(fixture),
        'halonet': lambda: tests.fixture_model(fixture),
        'patnet': lambda: tests.fixture_model(fixture['kwargs']),
        'overlock': lambda: tests.build_tiny(fixture),
    }[family]().eval()
    convert = importlib.import_module(get_family(family).module).checkpoint_filter_fn
    model.load_state_dict(convert(dict(fixture['state_dict']), model), strict=True)
    return model, fixture


@pytest.mark.parametrize('family', ['biformer', 'efficientvit', 'halonet', 'overlock', 'patnet', 'shvit'])
def test_deploy_reproduces_the_official_logits(family):
    model, fixture = _fixture_model(family)
    deployed = deploy(model, example_input=fixture['input'])
    assert_close_rel(seeded(deployed, fixture['input']), fixture['logits'], rtol=1e-4, what=f'{family} deployed')


class _ConvReluNorm(nn.Module):
    """bn(relu(conv(x))): the BatchNorm is NOT adjacent to the conv."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(torch.relu(self.conv(x)))


def test_folding_is_idempotent_and_a_wrong_rule_is_caught(monkeypatch):
    model = perturb_batchnorms(timm.create_model('patnet_t0')).eval()
    assert fold_batchnorms(deploy(model)).folded == []  # nothing left to fold the second time
    from backbonezoo import deploy as deploy_module

    fold_batchnorms(nn.Identity())  # fills FOLDS
    monkeypatch.setitem(deploy_module.FOLDS, _ConvReluNorm, (('conv', 'bn'),))  # a rule that does not hold
    block = perturb_batchnorms(_ConvReluNorm()).eval()
    with pytest.raises(DeployMismatchError, match='relative error'):
        deploy(block, example_input=torch.randn(2, 3, 8, 8))


def test_deploy_options_and_errors():
    model = perturb_batchnorms(timm.create_model('overlock_xt')).eval()
    x = torch.randn(1, 3, 96, 128)
    deployed = deploy(model, example_input=x)
    assert deployed.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert_close_rel(deployed(x.contiguous(memory_format=torch.channels_last)), seeded(model, x), rtol=1e-4)
    # an NCHW input: from the first convolution on the feature maps are NHWC, with the same values
    seen = []
    deployed.stem[0].register_forward_hook(lambda m, args, out: seen.append(out))
    assert_close_rel(deployed(x), seeded(model, x), rtol=1e-4)
    assert seen[-1].is_contiguous(memory_format=torch.channels_last) and not seen[-1].is_contiguous()
    contiguous = deploy(model, channels_last=False, example_input=x)
    assert contiguous.stem[0].weight.is_contiguous()
    copied = copy.deepcopy(deploy(model))  # the batch slices are module-level objects: copies and pickles keep them
    assert_close_rel(copied(x), seeded(model, x), rtol=1e-4)
    assert_close_rel(pickle.loads(pickle.dumps(copied))(x), seeded(model, x), rtol=1e-4)
    reparam_blocks = [m for m in deployed.modules() if type(m).__name__ == 'DilatedReparamBlock']
    assert reparam_blocks and all(m.bn is None for m in reparam_blocks)
    same = deploy(model, inplace=True, check=False)
    assert same is model
    with pytest.raises(TypeError, match='nn.Module'):
        deploy('overlock_xt')
    assert backbonezoo.deploy is not None


@pytest.mark.parametrize('name', ['litv2_small', 'overlock_xt'])
def test_batch_slices_follow_the_budget_and_keep_the_result(name):
    """A batch of 5 with a budget of two samples' block input: slices of 2, 2 and 1 in every chunked block of the
    first stage, outputs (and their channels-last layout) as the whole batch gives; the OverLoCK Focus-Net blocks
    slice their Overview-Net context with the features. Batches that fit and captured forwards run unsliced."""
    model = perturb_batchnorms(timm.create_model(name)).eval()
    x = torch.randn(5, 3, 64, 64)
    whole = deploy(model, batch_chunk_mb=None, example_input=x)
    first = next(m for m in whole.modules() if type(m) in BATCH_CHUNKS)
    seen = []
    handle = first.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        expected = whole(x)
    handle.remove()
    per_sample = seen[0][0].numel() * seen[0].element_size()
    sliced = deploy(model, batch_chunk_mb=2.5 * per_sample / 2**20, example_input=x)
    batches = {}
    for block_name, block in sliced.named_modules():
        if type(block) in BATCH_CHUNKS:
            inner = next(iter(block.children()))  # its first layer runs once per slice

            def record(module, args, n=block_name):
                batches.setdefault(n, []).append(len(args[0]))

            inner.register_forward_pre_hook(record)
    with torch.no_grad():
        actual = sliced(x)
    assert_close_rel(actual, expected, rtol=1e-5)
    first_name = next(n for n, m in sliced.named_modules() if type(m) in BATCH_CHUNKS)
    assert batches[first_name] == [2, 2, 1]
    assert all(sum(sizes) == 5 for sizes in batches.values())  # every sample once, in every chunked block
    if name == 'overlock_xt':
        focus = [n for n, m in sliced.named_modules() if type(m).__name__ == 'ContMixBlock']
        assert focus and all(batches[n] for n in focus)
    features = sliced.forward_features(x)
    assert features.is_contiguous(memory_format=torch.channels_last) or features.dim() != 4
    batches.clear()
    with torch.no_grad():
        sliced(x[:1])  # fits the budget: one call per block
    assert all(sizes == [1] for sizes in batches.values())
    assert chunk_batches(sliced, 1.0) == []  # already sliced blocks are left alone


def test_compare_official_skips_a_family_without_its_checkout(tmp_path, capsys):
    """benchmarks/compare_official.py fetches nothing: with no official folder it says so and writes no row."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
    compare = importlib.import_module('compare_official')
    out = tmp_path / 'results.csv'
    assert compare.main(['--official-root', str(tmp_path), '--families', 'patnet', 'a2mamba', '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'patnet' in printed and 'a2mamba' in printed and 'not found, skipped' in printed
    assert 'haiduo/PartialNet' in printed  # tells where the code comes from
    assert not out.exists()
