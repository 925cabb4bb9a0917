"""BiFormer: what is special to the family (the contract suite covers the generic timm API)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import timm
import torch
from helpers import assert_close_rel, load_parity, regen

import backbonezoo
from backbonezoo.backbones.biformer import BiFormer, checkpoint_filter_fn

VARIANTS = {
    'biformer_tiny': 13_142_760,
    'biformer_small': 25_536_232,
    'biformer_base': 56_804_968,
    'biformer_stl': 28_372_552,
    'biformer_stl_nchw': 28_372_552,
}


def fixture_kwargs(kwargs: dict) -> dict:
    """The official constructor kwargs of a fixture, mapped to ours."""
    topks = tuple(t if t > 0 else None for t in kwargs['topks'])
    common = dict(
        depths=kwargs['depth'],
        embed_dims=kwargs['embed_dim'],
        mlp_ratios=kwargs['mlp_ratios'],
        head_dim=kwargs['head_dim'],
        topks=topks,
        side_dwconv=kwargs['side_dwconv'],
        num_classes=kwargs['num_classes'],
    )
    if 'n_wins' in kwargs:  # nchwBiFormerSTL
        return dict(common, n_win=kwargs['n_wins'][0], stem_type='patch', global_lepe='value', routing_pad='zero')
    return dict(
        common,
        qk_dims=kwargs['qk_dims'],
        n_win=kwargs['n_win'],
        pos_embed_kernel=kwargs['before_attn_dwconv'],
        auto_pad=kwargs.get('auto_pad', False),
    )


def fixture_cases(fixture: dict) -> list[dict]:
    main = dict(name='main', kwargs_override={}, **{k: fixture[k] for k in ('input', 'logits', 'features')})
    return [main, *fixture['extra_cases']]


def official_key(key: str, model: BiFormer) -> str:
    """Our key -> the official one (the inverse of checkpoint_filter_fn's mapping)."""
    nchw = model.routing_pad == 'zero'
    if model.stem_type == 'conv':
        rules = [
            (r'^stem\.conv1\.', 'downsample_layers.0.0.'),
            (r'^stem\.norm1\.', 'downsample_layers.0.1.'),
            (r'^stem\.conv2\.', 'downsample_layers.0.3.'),
            (r'^stem\.norm2\.', 'downsample_layers.0.4.'),
            (r'^stages\.(\d)\.downsample\.conv\.', r'downsample_layers.\1.0.'),
            (r'^stages\.(\d)\.downsample\.norm\.', r'downsample_layers.\1.1.'),
            (r'^stages\.(\d)\.blocks\.(\d+)\.', r'stages.\1.\2.'),
            (r'\.mlp\.fc2\.', '.mlp.3.'),
        ]
    else:
        rules = [
            (r'^stem\.conv\.', 'downsample_layers.0.0.'),
            (r'^stem\.norm\.', 'downsample_layers.0.1.'),
            (r'^stages\.(\d)\.downsample\.norm\.', r'downsample_layers.\1.0.'),
            (r'^stages\.(\d)\.downsample\.conv\.', r'downsample_layers.\1.1.'),
            (r'\.mlp\.fc2\.', '.mlp.2.'),
        ]
    stage = re.match(r'^stages\.(\d)\.', key)
    if stage and model.topks[int(stage.group(1))]:  # routing stage
        rules += [(r'\.attn\.qkv\.', '.attn.qkv_linear.' if nchw else '.attn.qkv.qkv.')]
        rules += [(r'\.attn\.proj\.', '.attn.output_linear.' if nchw else '.attn.wo.')]
    rules += [(r'\.mlp\.fc1\.', '.mlp.0.'), (r'^head\.fc\.', 'head.')]
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def official_manifest(model: BiFormer) -> list:
    """[key, shape, dtype] of the official checkpoint for ``model`` (1x1 convs in the NCHW model)."""
    manifest = []
    for key, value in model.state_dict().items():
        shape = list(value.shape)
        if model.routing_pad == 'zero' and key.startswith('stages.') and value.dim() == 2:
            shape += [1, 1]
        manifest.append([official_key(key, model), shape, str(value.dtype).replace('torch.', '')])
    return manifest


def load_fixture_model(fixture: dict, case: dict) -> BiFormer:
    model = BiFormer(**fixture_kwargs(dict(fixture['kwargs'], **case['kwargs_override']))).eval()
    model.load_state_dict(checkpoint_filter_fn(dict(fixture['state_dict']), model), strict=True)
    return model


# ---------------------------------------------------------------------------------------------- variants


@pytest.mark.parametrize('name', list(VARIANTS))
def test_variant_param_counts_are_official(name):
    with torch.device('meta'):
        model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == VARIANTS[name]
    assert backbonezoo.variant_info(name).params == VARIANTS[name]


def test_variant_hyper_parameters():
    with torch.device('meta'):
        tiny = timm.create_model('biformer_tiny')
        nchw = timm.create_model('biformer_stl_nchw')
    attn = tiny.stages[0].blocks[0].attn
    assert (attn.num_heads, attn.topk, attn.n_win) == (2, 1, 7)
    assert attn.scale == pytest.approx(64**-0.5)  # full qk width, not head_dim
    assert [tiny.stages[i].blocks[0].attn.topk for i in range(3)] == [1, 4, 16]
    assert tiny.stages[3].blocks[0].attn.num_heads == 8 and tiny.stages[3].blocks[0].attn.qkv.bias is None
    assert tiny.stages[3].blocks[0].attn.lepe_on == 'input'
    assert nchw.stages[3].blocks[0].attn.lepe_on == 'value' and nchw.stages[0].blocks[0].attn.routing_pad == 'zero'
    cfg = tiny.pretrained_cfg
    assert cfg['mean'] == timm.data.IMAGENET_DEFAULT_MEAN and cfg['crop_pct'] == 0.875  # not the 0.5 / 0.9 of _cfg()
    assert 'hf_hub_id' not in cfg or not cfg['hf_hub_id']


# ---------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize('backend', ['torch', 'reference'])
@pytest.mark.parametrize('fixture_name', ['tiny.pt', 'tiny_stl_nchw.pt'])
def test_parity_with_official(fixture_name, backend, monkeypatch):
    monkeypatch.setenv('BACKBONEZOO_KERNEL_BACKEND', backend)
    fixture = load_parity('biformer', fixture_name)
    for case in fixture_cases(fixture):
        model = load_fixture_model(fixture, case)
        assert sum(p.numel() for p in model.parameters()) == fixture['params']
        with torch.no_grad():
            logits = model(case['input'])
            features = model.forward_intermediates(case['input'], intermediates_only=True)
        assert_close_rel(logits, case['logits'], what=f'{fixture_name}/{case["name"]} logits')
        for i, (ours, theirs) in enumerate(zip(features, case['features'], strict=True)):
            assert_close_rel(ours, theirs, what=f'{fixture_name}/{case["name"]} stage {i}')


@pytest.mark.parametrize('fixture_name', ['tiny.pt', 'tiny_stl_nchw.pt'])
def test_official_manifest_matches_fixture_layout(fixture_name):
    """The inverse key mapping used for stand-in checkpoints reproduces the official layout exactly."""
    fixture = load_parity('biformer', fixture_name)
    model = BiFormer(**fixture_kwargs(fixture['kwargs']))
    expected = [[k, list(v.shape), str(v.dtype).replace('torch.', '')] for k, v in fixture['state_dict'].items()]
    assert sorted(official_manifest(model)) == sorted(expected)


def test_auto_pad_pads_with_projection_bias():
    """Legacy auto_pad: padded tokens enter the projection as zeros, so they carry the qkv bias (not zeros)."""
    fixture = load_parity('biformer', 'tiny.pt')
    case = fixture['extra_cases'][0]
    model = load_fixture_model(fixture, case)
    for block in (s.blocks[0] for s in model.stages[:3]):
        block.attn.qkv.bias.data.zero_()
    with torch.no_grad():
        changed = model(case['input'])
    assert (changed - case['logits']).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------- checkpoints


def _stand_in(name: str, tmp_path, nest: dict | None = None):
    with torch.device('meta'):
        model = timm.create_model(name)
    manifest = official_manifest(model)
    fixed = {k: torch.tensor(0, dtype=torch.int64) for k, _, dtype in manifest if dtype == 'int64'}
    state_dict = regen().regen_state_dict(manifest, fixed, seed=0)
    path = tmp_path / f'{name}_official.pth'
    torch.save(nest or {'model': state_dict}, path)
    return path, state_dict


@pytest.mark.parametrize(
    'name', [n if n == 'biformer_tiny' else pytest.param(n, marks=pytest.mark.slow) for n in VARIANTS]
)
def test_official_checkpoint_loads(name, tmp_path):
    path, state_dict = _stand_in(name, tmp_path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    ours = model.state_dict()
    assert ours['norm.running_var'].equal(state_dict['norm.running_var'])
    assert ours['head.fc.weight'].equal(state_dict['head.weight'])
    converted = backbonezoo.convert_checkpoint(path, name, model=model)
    assert converted.keys() == ours.keys()
    assert all(converted[k].equal(v) for k, v in ours.items())


def test_official_checkpoint_with_ema_nest(tmp_path):
    with torch.device('meta'):
        model = timm.create_model('biformer_stl_nchw', num_classes=10)
    state_dict = regen().regen_state_dict(official_manifest(model), seed=1)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state_dict.items()}
    converted = backbonezoo.convert_checkpoint({'model': state_dict, 'model_ema': ema}, 'biformer_stl_nchw', model)
    assert converted['stages.0.blocks.0.attn.qkv.weight'].dim() == 2  # 1x1 conv -> Linear
    ema_converted = backbonezoo.convert_checkpoint(
        {'model': state_dict, 'model_ema': ema}, 'biformer_stl_nchw', model, prefer_ema=True
    )
    assert ema_converted['norm.weight'].equal(ema['norm.weight'])


def test_checkpoint_of_another_family_is_rejected():
    model = tiny(num_classes=1000, embed_dims=(16, 32, 48, 512))  # converted against this model, head as in the file
    foreign = {'patch_embed.proj.weight': torch.zeros(64, 3, 4, 4), 'head.weight': torch.zeros(1000, 512)}
    with pytest.raises(backbonezoo.CheckpointMismatchError, match='missing keys'):
        backbonezoo.convert_checkpoint({'model': foreign}, 'biformer_tiny', model)
    # the dense wrapper's extra norms are not silently dropped either
    sd = regen().regen_state_dict(official_manifest(model), seed=0)
    sd['extra_norms.0.weight'] = torch.ones(64)
    with pytest.raises(backbonezoo.CheckpointMismatchError, match='extra_norms'):
        backbonezoo.convert_checkpoint(sd, 'biformer_tiny', model)


# ---------------------------------------------------------------------------------------------- behaviour


def tiny(**kwargs) -> BiFormer:
    torch.manual_seed(0)
    args = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), head_dim=8, num_classes=10)
    return BiFormer(**dict(args, **kwargs)).eval()


def test_backends_agree_on_model():
    model = tiny()
    x = torch.randn(2, 3, 112, 112)
    outs = {}
    for backend in ('reference', 'torch'):
        with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
            mp.setenv('BACKBONEZOO_KERNEL_BACKEND', backend)
            outs[backend] = model(x)
    assert_close_rel(outs['torch'], outs['reference'], rtol=1e-5)


def test_input_checks_name_the_problem():
    model = tiny()
    with pytest.raises(ValueError, match='3 input channels'):
        model(torch.randn(1, 1, 112, 112))
    with pytest.raises(ValueError, match='4-D'):
        model(torch.randn(3, 112, 112))
    with pytest.raises(ValueError, match='at least 112x112'):
        model(torch.randn(1, 3, 96, 112))
    with pytest.raises(ValueError, match='auto_pad=True'):
        model(torch.randn(1, 3, 112, 128))  # stage sides 28x32: not divisible by n_win=7
    with pytest.raises(ValueError, match='routing_pad'):
        tiny(routing_pad='mask')


@pytest.mark.parametrize('size', [(100, 116), pytest.param((511, 673), marks=pytest.mark.slow)])
def test_auto_pad_and_nchw_accept_any_size(size):
    x = torch.randn(1, 3, *size)
    for model in (tiny(auto_pad=True, n_win=4), tiny(routing_pad='zero', stem_type='patch', n_win=4)):
        with torch.no_grad():
            features = model.forward_intermediates(x, intermediates_only=True)
        assert [f.shape[1] for f in features] == [16, 32, 48, 64]


def test_robustness_batch1_channels_last_bf16_grad_checkpointing():
    model = tiny()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        ref = model(x)
        assert_close_rel(model(x[:1]), ref[:1], rtol=1e-4)
        model_cl = tiny().to(memory_format=torch.channels_last)
        assert_close_rel(model_cl(x.to(memory_format=torch.channels_last)), ref, rtol=1e-4)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
        assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
        assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.1
    model = tiny(drop_path_rate=0.1).train()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_reset_classifier_and_group_matcher():
    model = tiny()
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 112, 112)).shape == (1, 3)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 112, 112)).shape == (1, 64)
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))


@pytest.mark.parametrize('kwargs', [dict(auto_pad=True), dict(routing_pad='zero', stem_type='patch')])
def test_torchscript_matches_eager(kwargs):
    """Scripting keeps the routing kernel in Python (torch.jit.ignore); padded and zero-padded region grids."""
    model = tiny(**kwargs)
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_torch_compile_forward():
    model = tiny()
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend='eager', fullgraph=True)
        assert_close_rel(compiled(x), expected, rtol=1e-5)


@pytest.mark.slow
def test_onnx_export_with_dynamic_height_width(tmp_path):
    """Dynamic H / W for multiples of 16 * n_win = 112 (>= 224: a 1-token region specialises the graph)."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    model = tiny()
    path = tmp_path / 'biformer.onnx'
    dims = {2: 112 * torch.export.Dim('h', min=2, max=9), 3: 112 * torch.export.Dim('w', min=2, max=9)}
    torch.onnx.export(
        model, (torch.randn(1, 3, 224, 224),), str(path), dynamo=True, input_names=['x'], dynamic_shapes={'x': dims}
    )
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for size in ((224, 224), (224, 336)):
        x = torch.randn(1, 3, *size)
        (out,) = session.run(None, {'x': x.numpy()})
        with torch.no_grad():
            assert_close_rel(torch.from_numpy(out), model(x), rtol=1e-4)


# ---------------------------------------------------------------------------------------------- dense (mm)


@pytest.mark.mm
def test_mm_backbone_outputs_norms_and_official_checkpoints(tmp_path):
    pytest.importorskip('mmdet')
    from mmengine.registry import MODELS

    import backbonezoo.mm  # noqa: F401

    small = dict(depths=(1, 1, 1, 1))
    backbone = MODELS.build(dict(type='BiFormer', arch='tiny', n_win=4, model_kwargs=small, norm_eval=True))
    x = torch.randn(1, 3, 97, 131)  # no stage side is a multiple of the region grid
    backbone.train()
    assert all(not m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    outs = backbone(x)
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 25, 33), (128, 13, 17), (256, 7, 9), (512, 4, 5)]
    assert all(isinstance(n, timm.layers.LayerNorm2d) and n.eps == 1e-6 for n in backbone.out_norms)

    # an official dense checkpoint (extra_norms, no head / norm) and a classification one (head / norm dropped)
    with torch.device('meta'):
        full = timm.create_model('biformer_tiny', **small)
    official = regen().regen_state_dict(official_manifest(full), seed=3)
    dense = {k: v for k, v in official.items() if not k.startswith(('head.', 'norm.'))}
    dense.update({f'extra_norms.{i}.weight': torch.full((c,), 2.0) for i, c in enumerate((64, 128, 256, 512))})
    dense.update({f'extra_norms.{i}.bias': torch.zeros(c) for i, c in enumerate((64, 128, 256, 512))})
    torch.save({'state_dict': dense}, tmp_path / 'dense.pth')
    torch.save({'model': official}, tmp_path / 'cls.pth')
    picked = MODELS.build(
        dict(
            type='BiFormer',
            arch='tiny',
            n_win=4,
            model_kwargs=small,
            out_indices=(1, 3),
            frozen_stages=1,
            init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'dense.pth')),
        )
    )
    picked.init_weights()
    assert picked.out_norms[1].weight.eq(2.0).all()
    assert not any(p.requires_grad for p in picked.model.stages[0].parameters())
    assert [o.shape[1] for o in picked(x)] == [128, 512]
    cls = MODELS.build(
        dict(
            type='BiFormer',
            arch='tiny',
            n_win=4,
            model_kwargs=small,
            with_cp=True,
            init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'cls.pth')),
        )
    )
    cls.init_weights()
    assert cls.model.stem.conv1.weight.equal(official['downsample_layers.0.0.weight'])
    cls.train()
    sum(o.mean() for o in cls(x)).backward()


CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
DENSE_CONFIGS = sorted((CONFIGS / 'detection' / 'biformer').glob('*.py')) + sorted(
    (CONFIGS / 'segmentation' / 'biformer').glob('*.py')
)
# official (drop path, n_win) per config kind and arch
OFFICIAL_DENSE = {
    'retinanet': {'s': (0.2, 16), 'b': (0.3, 16)},
    'mask_rcnn': {'s': (0.2, 16), 'b': (0.3, 16)},
    'fpn': {'s': (0.15, 8), 'b': (0.3, 8)},
    'upernet': {'s': (0.3, 8), 'b': (0.4, 8)},
}


@pytest.mark.mm
@pytest.mark.parametrize('path', DENSE_CONFIGS, ids=lambda p: p.stem)
def test_mm_configs_describe_the_official_setups(path):
    pytest.importorskip('mmdet')
    from mmengine.config import Config

    cfg = Config.fromfile(str(path))
    backbone = cfg.model.backbone
    arch = re.search(r'biformer_([sb])_', path.name)[1]
    kind = next(k for k in OFFICIAL_DENSE if k in path.name)
    assert backbone.type == 'BiFormer' and backbone.arch == {'s': 'small', 'b': 'base'}[arch]
    assert (backbone.drop_path_rate, backbone.n_win) == OFFICIAL_DENSE[kind][arch] and backbone.auto_pad
    assert backbone.init_cfg.checkpoint == f'pretrained/biformer_{backbone.arch}.pth'  # a manual download
    channels = [64, 128, 256, 512] if arch == 's' else [96, 192, 384, 768]
    in_channels = cfg.model.neck.in_channels if 'neck' in cfg.model else cfg.model.decode_head.in_channels
    assert list(in_channels) == channels


@pytest.mark.mm
@pytest.mark.parametrize('name', ['retinanet_biformer_s_fpn_1x_coco', 'biformer_s_upernet_512x512_160k_ade20k'])
def test_mm_config_builds_and_extracts_features(name):
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import backbonezoo.mm  # noqa: F401

    kind = 'detection' if 'coco' in name else 'segmentation'
    scope = 'mmdet' if kind == 'detection' else 'mmseg'
    __import__(f'{scope}.utils', fromlist=['register_all_modules']).register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(CONFIGS / kind / 'biformer' / f'{name}.py'))
    cfg.model.backbone.init_cfg = None  # no network in tests
    cfg.model.backbone.model_kwargs = dict(depths=(1, 1, 1, 1))
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 256, 320))
    assert feats[0].shape[-2:] == ((32, 40) if kind == 'detection' else (64, 80))


@pytest.mark.mm
def test_classification_configs_follow_the_official_recipe():
    pytest.importorskip('mmengine')
    from mmengine.config import Config

    for path in sorted((CONFIGS / 'classification' / 'biformer').glob('*.py')):
        cfg = Config.fromfile(str(path))
        assert cfg.model.model_name == path.stem.removesuffix('_in1k')
        # DeiT's rule (main.py): lr = 5e-4 x total batch / 512 (total batch 1024, or 2048 for BiFormer-S)
        lr, batch = cfg.optim_wrapper.optimizer.lr, cfg.auto_scale_lr.base_batch_size
        assert lr == pytest.approx(5e-4 * batch / 512) and cfg.optim_wrapper.optimizer.weight_decay == 0.05
        assert cfg.train_cfg.max_epochs == 300 and cfg.custom_hooks[0].type == 'EMAHook'
        assert cfg.model.mixup.mixup_alpha == 0.8 and cfg.model.mixup.cutmix_alpha == 1.0
