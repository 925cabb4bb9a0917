"""EfficientViT-M (timm's efficientvit_m*): official layouts, parity, stand-in checkpoints, kernel attention."""

from __future__ import annotations

import copy
import re

import pytest
import timm
import torch
from helpers import assert_close_rel, load_parity, regen
from timm.models.efficientvit_msra import CascadedGroupAttention, EfficientVitMsra, LocalWindowAttention

import backbonezoo
from backbonezoo import CheckpointMismatchError, convert_checkpoint
from backbonezoo.backbones import efficientvit_ext
from backbonezoo.backbones.efficientvit_ext import KernelLocalWindowAttention, checkpoint_filter_fn, to_kernel_backed

VARIANTS = backbonezoo.get_family('efficientvit').model_names


def fixture_model(fixture: dict) -> EfficientVitMsra:
    """The fixture's official hyper-parameters on timm's class (official down_ops [s, s, ''] = timm's ['', s, s])."""
    kw = fixture['kwargs']
    assert kw['down_ops'] == [['subsample', 2], ['subsample', 2], ['']] and not kw['distillation']
    return EfficientVitMsra(
        img_size=kw['img_size'],
        in_chans=kw['in_chans'],
        num_classes=kw['num_classes'],
        embed_dim=kw['embed_dim'],
        key_dim=kw['key_dim'],
        depth=kw['depth'],
        num_heads=kw['num_heads'],
        window_size=kw['window_size'],
        kernels=kw['kernels'],
    )


def fuse_official(state_dict: dict) -> dict:
    """The authors' ``replace_batchnorm`` applied to their state-dict layout: Conv2d_BN -> Conv2d(+bias), BN_Linear ->
    Linear (their ``Residual`` has no ``fuse``, so residual convs stay one level down)."""
    out = dict(state_dict)
    for prefix in sorted({k[: -len('.c.weight')] for k in state_dict if k.endswith('.c.weight')}):
        bn = {n: state_dict[f'{prefix}.bn.{n}'] for n in ('weight', 'bias', 'running_mean', 'running_var')}
        scale = bn['weight'] / torch.sqrt(bn['running_var'] + 1e-5)
        for key in [k for k in out if k.startswith((f'{prefix}.c.', f'{prefix}.bn.'))]:
            del out[key]
        out[f'{prefix}.weight'] = state_dict[f'{prefix}.c.weight'] * scale[:, None, None, None]
        out[f'{prefix}.bias'] = bn['bias'] - bn['running_mean'] * scale
    for head in sorted({k.split('.')[0] for k in state_dict if k.endswith('.l.weight')}):
        bn = {n: state_dict[f'{head}.bn.{n}'] for n in ('weight', 'bias', 'running_mean', 'running_var')}
        scale = bn['weight'] / torch.sqrt(bn['running_var'] + 1e-5)
        shift = bn['bias'] - bn['running_mean'] * scale
        weight = state_dict[f'{head}.l.weight']
        for key in [k for k in out if k.startswith(f'{head}.')]:
            del out[key]
        out[f'{head}.weight'] = weight * scale[None, :]
        out[f'{head}.bias'] = weight @ shift + state_dict[f'{head}.l.bias']
    return out


_TO_OFFICIAL = (
    (re.compile(r'^stages\.0\.blocks\.(\d+)\.'), lambda m: f'blocks1.{m[1]}.'),
    (re.compile(r'^stages\.(\d)\.downsample\.res1\.(\d+)\.'), lambda m: f'blocks{int(m[1]) + 1}.0.{m[2]}.'),
    (re.compile(r'^stages\.(\d)\.downsample\.patchmerge\.'), lambda m: f'blocks{int(m[1]) + 1}.1.'),
    (re.compile(r'^stages\.(\d)\.downsample\.res2\.(\d+)\.'), lambda m: f'blocks{int(m[1]) + 1}.2.{m[2]}.'),
    (re.compile(r'^stages\.(\d)\.blocks\.(\d+)\.'), lambda m: f'blocks{int(m[1]) + 1}.{int(m[2]) + 3}.'),
    (re.compile(r'^patch_embed\.conv(\d)\.'), lambda m: f'patch_embed.{2 * (int(m[1]) - 1)}.'),
)


def official_key(key: str) -> str:
    """timm key -> the authors' key (inverse of the converter's renames)."""
    for pattern, repl in _TO_OFFICIAL:
        key, count = pattern.subn(repl, key, count=1)
        if count:
            break
    key = re.sub(r'\.conv\.(weight|bias)$', r'.c.\1', key)
    return re.sub(r'^head\.linear\.', 'head.l.', key)


def official_layout(model: torch.nn.Module) -> dict:
    """``model``'s weights in the authors' layout, with their persistent ``attention_bias_idxs`` buffers: the layout
    of the released ``efficientvit_m*.pth`` files."""
    index = {
        f'{name}.attention_biases': module.attention_bias_idxs
        for name, module in model.named_modules()
        if isinstance(module, CascadedGroupAttention)
    }
    out = {}
    for key, value in model.state_dict().items():
        out[official_key(key)] = value
        if key in index:
            out[official_key(key)[: -len('biases')] + 'bias_idxs'] = index[key].clone()
    return out


@pytest.mark.parametrize('kernel_backed', [False, True], ids=['timm', 'kernel'])
def test_parity_official_fixture(kernel_backed):
    fixture = load_parity('efficientvit')
    model = fixture_model(fixture)
    state_dict = checkpoint_filter_fn({'model': fixture['state_dict']}, model)
    model.load_state_dict(state_dict, strict=True)
    if kernel_backed:
        to_kernel_backed(model)
    model.eval()
    with torch.no_grad():
        final, features = model.forward_intermediates(fixture['input'])
        logits = model.forward_head(final)
    assert_close_rel(logits, fixture['logits'], 1e-4, 'logits')
    for i, (ours, ref) in enumerate(zip(features, fixture['features'])):
        assert_close_rel(ours, ref, 1e-4, f'stage {i + 1}')


def test_parity_bn_fused_and_distilled_layouts():
    fixture = load_parity('efficientvit')
    model = fixture_model(fixture)
    fused = fuse_official(fixture['state_dict'])
    assert not any('.bn.' in k for k in fused)
    model.load_state_dict(checkpoint_filter_fn(fused, model), strict=True)
    with torch.no_grad():
        assert_close_rel(model.eval()(fixture['input']), fixture['logits'], 1e-5, 'fused logits')
    # a distillation head equal to the main head: the official eval mean is the main head's output
    distilled = dict(fixture['state_dict'])
    distilled.update({'head_dist' + k[4:]: v for k, v in fixture['state_dict'].items() if k.startswith('head.')})
    model.load_state_dict(checkpoint_filter_fn(distilled, model), strict=True)
    with torch.no_grad():
        assert_close_rel(model.eval()(fixture['input']), fixture['logits'], 1e-5, 'distilled logits')


def test_timm_layout_passes_through_and_other_family_is_named():
    model = timm.create_model('efficientvit_m0')
    converted = convert_checkpoint({'state_dict': model.state_dict()}, 'efficientvit_m0', model=model)
    assert all(torch.equal(converted[k], v) for k, v in model.state_dict().items())
    shvit = load_parity('shvit')['state_dict']
    with pytest.raises(CheckpointMismatchError, match='missing keys'):
        convert_checkpoint({'model': shvit}, 'efficientvit_m0', model=model)


@pytest.mark.parametrize(
    'name', [pytest.param(n, marks=() if n == VARIANTS[0] else pytest.mark.slow) for n in VARIANTS]
)
def test_official_standin_checkpoint_loads(name, tmp_path):
    """A file in the authors' layout (nested under 'model', with attention_bias_idxs) converts strictly through
    backbonezoo.convert_checkpoint; the converted file loads through timm's own create path, which (untouched by
    backbonezoo) refuses the authors' layout itself."""
    gen = regen()
    reference = timm.create_model(name)
    manifest, fixed = gen.manifest_of(official_layout(reference))
    official = gen.regen_state_dict(manifest, fixed, seed=0)
    assert sum(k.endswith('attention_bias_idxs') for k in official) == sum(
        k.endswith('attention_biases') for k in official
    )
    path = tmp_path / f'{name}.pth'
    torch.save({'model': official, 'epoch': 299}, path)
    converted = convert_checkpoint(path, name)
    torch.save(converted, tmp_path / 'converted.pth')
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'converted.pth')))
    with pytest.raises(RuntimeError, match='Missing key'):
        timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    loaded = model.state_dict()
    assert converted.keys() == loaded.keys()
    assert all(torch.equal(converted[k], loaded[k]) for k in loaded)
    # spot-check the mapping: the authors' first stem conv and classifier land on timm's
    assert torch.equal(loaded['patch_embed.conv1.conv.weight'], official['patch_embed.0.c.weight'])
    assert torch.equal(loaded['head.linear.weight'], official['head.l.weight'])


def perturbed_m0(num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model('efficientvit_m0', num_classes=num_classes)
    with torch.no_grad():  # wake the zero-initialised BN gammas and biases
        for param in model.parameters():
            if param.ndim <= 2:
                param.add_(0.2 * torch.randn_like(param))
    return model.eval()


@pytest.mark.parametrize('size', [(224, 224), (96, 96), (511, 673)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_kernel_backed_equals_timm_at_any_size(size):
    model = perturbed_m0()
    kernel = to_kernel_backed(copy.deepcopy(model))
    assert sum(isinstance(m, KernelLocalWindowAttention) for m in kernel.modules()) == 6
    assert kernel.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        expected = model(x)
        # the reference backend gathers every window: checked at the small size only (CI budget)
        for backend in ('reference', 'torch', None) if size[0] < 200 else ('torch', None):
            to_kernel_backed(kernel, backend=backend)
            assert_close_rel(kernel(x), expected, 1e-5, f'backend {backend}')


@pytest.mark.parametrize('fit_small_maps', [False, True])
def test_kernel_backed_takes_an_empty_batch(fit_small_maps):
    """Batch 0 through the kernel-backed windows (several windows per map, so the window fold runs) gives the empty
    output (timm's own ``CascadedGroupAttention`` cannot, and backbonezoo no longer patches it)."""
    model = to_kernel_backed(perturbed_m0(), fit_small_maps=fit_small_maps)
    with torch.no_grad():
        assert model(torch.randn(0, 3, 224, 224)).shape == (0, 10)


@pytest.mark.parametrize('size', [(224, 224), (96, 96), (800, 1333), (511, 673)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_dense_windows_work_at_any_size(size):
    """Dense setting (the authors' detection wrapper): window 7 in every stage (bias tables resized on load), and a
    map that fits in one window is attended whole. The official wrapper crashes at 224 and 96."""
    official = {k: v for k, v in official_layout(perturbed_m0()).items() if not k.startswith('head.')}
    model = timm.create_model('efficientvit_m0', num_classes=0, img_size=448)  # 448 / 64 = 7: window 7 everywhere
    model.load_state_dict(checkpoint_filter_fn({'model': official}, model), strict=True)
    to_kernel_backed(model, fit_small_maps=True).eval()
    assert all(m.attn.resolution == 7 for m in model.modules() if isinstance(m, KernelLocalWindowAttention))
    with torch.no_grad():
        features = model.forward_intermediates(torch.randn(1, 3, *size), intermediates_only=True)
    expected = [(-(-size[0] // s), -(-size[1] // s)) for s in (16, 32, 64)]
    assert [tuple(f.shape[-2:]) for f in features] == expected
    assert all(torch.isfinite(f).all() for f in features)


def perturbed_window_attention(resolution: int = 14) -> torch.nn.Module:
    """timm's ``LocalWindowAttention`` with m0's stage-1 shape (64 channels, 4 heads, window 7), BN and biases woken."""
    torch.manual_seed(0)
    module = LocalWindowAttention(64, 16, 4, attn_ratio=1, resolution=resolution, window_resolution=7, kernels=[5] * 4)
    with torch.no_grad():
        for param in module.parameters():
            if param.ndim <= 2:
                param.add_(0.2 * torch.randn_like(param))
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.normal_(0, 0.1)
                bn.running_var.uniform_(0.5, 2.0)
    return module.eval()


def test_window_depthwise_equals_the_per_window_conv():
    """The traced form of the query conv (masked taps on the whole map) equals the conv of every window as its own
    zero-padded image (the eager path and the official code)."""
    conv_norm = perturbed_window_attention().attn.dws[0]
    q = torch.randn(2, 16, 14, 21)
    windows = q.view(2, 16, 2, 7, 3, 7).permute(0, 2, 4, 1, 3, 5).reshape(12, 16, 7, 7)
    with torch.no_grad():
        expected = conv_norm(windows).view(2, 2, 3, 16, 7, 7).permute(0, 3, 1, 4, 2, 5).reshape(2, 16, 14, 21)
        assert_close_rel(efficientvit_ext._window_depthwise(conv_norm, q, (7, 7)), expected, 1e-5)


@pytest.mark.parametrize('example', [(14, 14), (7, 7)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_window_attention_exports_with_dynamic_hw(example):
    """torch.export with dynamic H / W, traced at a map of several windows or of one: the graph holds no guard on the
    window count, and runs at maps smaller than, equal to and larger than the window, equal to timm's module."""
    timm_module = perturbed_window_attention(example[0])
    module = KernelLocalWindowAttention.from_local_window_attention(timm_module)
    dim = torch.export.Dim
    exported = torch.export.export(
        module, (torch.randn(1, 64, *example),), dynamic_shapes={'x': {2: dim.AUTO, 3: dim.AUTO}}, strict=False
    )
    assert all(r.upper > 10_000 for r in exported.range_constraints.values()), exported.range_constraints
    graph = exported.module()
    for size in [(3, 4), (7, 7), (14, 10), (15, 29)]:
        x = torch.randn(1, 64, *size)
        with torch.no_grad():
            assert_close_rel(graph(x), timm_module(x), 1e-5, f'at {size}')


def test_kernel_backed_has_no_stale_bias_cache():
    """timm caches the gathered biases in eval; loading new weights into an eval model keeps the stale cache. The
    kernel-backed module builds its bias table per call."""
    fixture = load_parity('efficientvit')
    model = to_kernel_backed(fixture_model(fixture)).eval()
    with torch.no_grad():
        model(fixture['input'])  # would fill timm's cache
        model.load_state_dict(checkpoint_filter_fn(fixture['state_dict'], model), strict=True)
        assert_close_rel(model(fixture['input']), fixture['logits'], 1e-5, 'after load in eval')


@pytest.mark.mm
def test_mm_backbone_loads_official_file_and_runs_at_any_size(tmp_path):
    """mm type ``EfficientViT``: official file through init_cfg (stage-3 bias table resized 4x4 -> 7x7), BN frozen
    while training (official wrapper), outputs at strides 16 / 32 / 64 for sizes the official wrapper crashes on."""
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS

    import backbonezoo.mm  # noqa: F401

    path = tmp_path / 'efficientvit_m0.pth'
    torch.save({'model': official_layout(perturbed_m0())}, path)
    backbone = MODELS.build(
        dict(type='EfficientViT', arch='m0', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    )
    backbone.init_weights()
    backbone.train()
    assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert backbone.out_channels == [64, 128, 192] and backbone.out_strides == [16, 32, 64]
    for size in ((96, 96), (200, 331)):
        outs = backbone(torch.randn(1, 3, *size))
        assert [tuple(o.shape[-2:]) for o in outs] == [(-(-size[0] // s), -(-size[1] // s)) for s in (16, 32, 64)]


@pytest.mark.mm
@pytest.mark.parametrize(
    'extra', [dict(num_extra_trans_convs=2), dict(num_extra_trans_convs=1, add_extra_convs='on_input')]
)
def test_efficientvit_fpn_levels(extra):
    """Mask R-CNN neck: strides 4 ... 64; RetinaNet neck: 8 ... 128 (official setups)."""
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS

    import backbonezoo.necks.efficientvit_fpn  # noqa: F401

    neck = MODELS.build(dict(type='EfficientViTFPN', in_channels=[16, 24, 32], out_channels=8, num_outs=5, **extra))
    feats = [torch.randn(1, 16, 13, 21), torch.randn(1, 24, 7, 11), torch.randn(1, 32, 4, 6)]
    outs = neck(feats)
    expected = [(52, 84), (26, 42)] if extra['num_extra_trans_convs'] == 2 else [(26, 42)]
    expected += [(13, 21), (7, 11), (4, 6)] + ([(2, 3)] if 'add_extra_convs' in extra else [])
    assert [tuple(o.shape[-2:]) for o in outs] == expected
    assert all(o.shape[1] == 8 for o in outs)
