"""A2Mamba: what is special to the family (the contract suite covers the generic timm API)."""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torch.nn.functional as F
from helpers import assert_close_rel, load_parity, regen

import backbonezoo
from backbonezoo.backbones.a2mamba import MASS, A2Mamba, checkpoint_filter_fn, resize_global_bias
from backbonezoo.zoo import get_family

FAMILY = get_family('a2mamba')
VARIANTS = FAMILY.model_names


def official_layout(state_dict: dict) -> dict:
    """Our state dict in the official key layout (the inverse of checkpoint_filter_fn's mapping).

    Keys and shapes equal the official model's (checked against the fixture, and for every full-size variant against
    the official code's manifests while writing this); the tied rpb appears twice (``rpb.0``, ``rpb.1``).
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith('stem.'):
            out['patch_embed.' + key[5:]] = value
    stage_ids = sorted({int(k.split('.')[1]) for k in state_dict if k.startswith('stages.')})
    for i in stage_ids:
        prefix = f'stages.{i}.'
        for key, value in state_dict.items():
            if not key.startswith(prefix) or '.downsample.' in key:
                continue
            rest = key[len(prefix) :]
            if rest.endswith('.token_mixer.rpb'):
                out[f'layers.{2 * i}.{rest}.0'] = value
                out[f'layers.{2 * i}.{rest}.1'] = value
                continue
            rest = rest.replace('.token_mixer.global_rpb', '.token_mixer.rpb.2')
            if re.search(r'\.ls[12]\.', rest):
                rest = rest.replace('.ls1.', '.layer_scale1.').replace('.ls2.', '.layer_scale2.')
                value = value.reshape(-1, 1, 1, 1) if rest.endswith('weight') else value
            out[f'layers.{2 * i}.{rest}'] = value
        for key, value in state_dict.items():
            if key.startswith(f'stages.{i + 1}.downsample.'):
                out[f'layers.{2 * i + 1}.' + key.split('.downsample.')[1]] = value
    for ours, theirs in (
        ('conv_head.conv', 'classifier.0'),
        ('conv_head.bn', 'classifier.1'),
        ('head.fc', 'classifier.4'),
    ):
        for key, value in state_dict.items():
            if key.startswith(ours + '.'):
                leaf = key[len(ours) + 1 :]
                if ours == 'head.fc' and leaf == 'weight':
                    value = value.reshape(*value.shape, 1, 1)
                out[f'{theirs}.{leaf}'] = value
    return out


def tiny_kwargs(fixture: dict) -> dict:
    """The fixture's official constructor kwargs in our names."""
    kw = fixture['kwargs']
    return dict(
        num_classes=kw['num_classes'],
        projection=kw['projection'],
        embed_dims=kw['embed_dims'],
        depths=kw['depths'],
        num_heads=kw['num_heads'],
        window_size=kw['window_size'],
        window_dilation=kw['window_dilation'],
        mlp_ratios=kw['mlp_ratios'],
        layer_scales=kw['layerscales'],
        res_scales=kw['resscales'],
        ls_init_values=kw['layer_init_values'],
        img_size=kw['image_size'],
    )


@pytest.fixture(scope='module')
def parity():
    return load_parity('a2mamba', 'tiny.pt')


@pytest.fixture(scope='module')
def tiny_model(parity):
    model = A2Mamba(**tiny_kwargs(parity)).eval()
    model.load_state_dict(checkpoint_filter_fn(parity['state_dict'], model), strict=True)
    return model


def small_model(**kwargs) -> A2Mamba:
    """A very small random model for behaviour tests (windows 3: inputs from 65 px)."""
    args = dict(
        embed_dims=(8, 16, 16, 16),
        depths=(1, 1, 1, 1),
        num_heads=(2, 2, 2, 2),
        window_size=(3, 3, 3, 3),
        mlp_ratios=(2, 2, 2, 2),
        projection=16,
        num_classes=5,
        img_size=96,
    )
    torch.manual_seed(0)
    model = A2Mamba(**dict(args, **kwargs)).eval()
    with torch.no_grad():  # non-trivial biases so that the tests see them
        for name, p in model.named_parameters():
            if name.endswith(('rpb', 'global_rpb')):
                p.normal_(0, 0.5)
    return model


# --- 1. variants ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('name', VARIANTS)
def test_param_count_every_variant(name):
    """Official parameters() counts (the tied rpb counted once), built without allocating weights."""
    with torch.device('meta'):
        model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == backbonezoo.variant_info(name).params


def test_variant_cfgs():
    crops = {'a2mamba_base': 0.95, 'a2mamba_large': 0.975}
    for name in VARIANTS:
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.crop_pct == crops.get(name, 0.9)
        assert cfg.url.endswith(f'{name.split("_")[1]}.pth') and cfg.hf_hub_id is None
        assert cfg.min_input_size == (3, FAMILY.min_size, FAMILY.min_size)


def test_min_input_size_matches_windows():
    """193 px is the smallest side whose stage maps hold the 11/9/7/7 windows (ceil(193 / 32) = 7)."""
    with torch.device('meta'):
        model = timm.create_model('a2mamba_nano')
    assert model.min_input_size == FAMILY.min_size == 193


# --- 2. parity -----------------------------------------------------------------------------------------------------


def test_parity_tiny(parity, tiny_model):
    """Official logits and the four stage outputs, from the official-layout state dict (rel err <= 1e-4)."""
    with torch.no_grad():
        final, features = tiny_model.forward_intermediates(parity['input'])
        logits = tiny_model.forward_head(final)
    assert_close_rel(logits, parity['logits'], what='logits')
    assert len(features) == len(parity['features']) == 4
    for i, (ours, theirs) in enumerate(zip(features, parity['features'])):
        assert_close_rel(ours, theirs, what=f'stage {i}')


def test_official_layout_roundtrip(parity, tiny_model):
    """The test's inverse mapping reproduces the fixture's official layout exactly (keys and shapes)."""
    official = official_layout(tiny_model.state_dict())
    assert set(official) == set(parity['state_dict'])
    for key, value in parity['state_dict'].items():
        assert official[key].shape == value.shape, key


# --- 3. checkpoints ------------------------------------------------------------------------------------------------


def test_tied_rpb_takes_rpb1(parity):
    """rpb.0 / rpb.1 are one official Parameter: the later key (rpb.1) wins on load, and both halves use it."""
    state_dict = dict(parity['state_dict'])
    key = 'layers.0.blocks.0.token_mixer.rpb'
    state_dict[key + '.0'] = torch.randn_like(state_dict[key + '.0'])
    state_dict[key + '.1'] = torch.randn_like(state_dict[key + '.1'])
    model = A2Mamba(**tiny_kwargs(parity))
    model.load_state_dict(checkpoint_filter_fn(state_dict, model), strict=True)
    assert torch.equal(model.stages[0].blocks[0].token_mixer.rpb, state_dict[key + '.1'])
    assert not any(k.endswith('rpb.0') for k in model.state_dict())


def test_rope_angle_is_loaded_not_recomputed(parity):
    state_dict = dict(parity['state_dict'])
    state_dict['layers.2.rope.angle'] = torch.tensor([0.5, 0.5, 0.25, 0.25, 0.1, 0.1, 0.05, 0.05])[
        : state_dict['layers.2.rope.angle'].numel()
    ]
    model = A2Mamba(**tiny_kwargs(parity))
    model.load_state_dict(checkpoint_filter_fn(state_dict, model), strict=True)
    assert torch.equal(model.stages[1].rope.angle, state_dict['layers.2.rope.angle'])
    assert 'stages.1.rope.angle' in model.state_dict()  # persistent


def test_own_layout_passes_through(tiny_model):
    state_dict = tiny_model.state_dict()
    converted = checkpoint_filter_fn(state_dict, tiny_model)
    assert converted.keys() == state_dict.keys()


def _official_standin(name: str, tmp_path, nest: str | None = 'state_dict'):
    rg = regen()
    with torch.device('meta'):
        model = timm.create_model(name)
    manifest, _ = rg.manifest_of(official_layout(model.state_dict()))
    fixed = {k: torch.tensor(7) for k, _, dtype in manifest if dtype == 'int64'}  # BN counters (meta has no data)
    state_dict = rg.regen_state_dict(manifest, fixed, seed=0)
    path = tmp_path / f'{name}.pth'
    torch.save({nest: state_dict} if nest else state_dict, path)
    return path, state_dict


@pytest.mark.parametrize(
    'name', [pytest.param(n, marks=pytest.mark.slow) if n != 'a2mamba_nano' else n for n in VARIANTS]
)
def test_official_checkpoint_loads(name, tmp_path):
    """A stand-in file in the official layout (nested under 'state_dict') loads strictly through timm."""
    path, official = _official_standin(name, tmp_path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    mixer = model.stages[0].blocks[0].token_mixer
    assert torch.equal(mixer.rpb.data, official['layers.0.blocks.0.token_mixer.rpb.1'])
    assert torch.equal(model.stages[3].rope.angle, official['layers.6.rope.angle'])
    assert torch.equal(model.head.fc.weight.data, official['classifier.4.weight'].flatten(1))
    converted = backbonezoo.convert_checkpoint(path, name, model=model)
    assert converted.keys() == model.state_dict().keys()


def test_bare_official_checkpoint_converts(tmp_path):
    path, _ = _official_standin('a2mamba_nano', tmp_path, nest=None)
    with torch.device('meta'):
        model = timm.create_model('a2mamba_nano')
    converted = backbonezoo.convert_checkpoint(path, 'a2mamba_nano', model=model)
    assert set(converted) == set(model.state_dict())


def test_other_family_checkpoint_raises(parity):
    """Keys of another family (OverLoCK's layout) are named by the strict check, not silently skipped."""
    model = A2Mamba(**tiny_kwargs(parity))
    foreign = {'patch_embed1.0.weight': torch.zeros(8, 3, 3, 3), 'blocks1.0.dwconv.weight': torch.zeros(16, 1, 3, 3)}
    with pytest.raises(backbonezoo.CheckpointMismatchError, match='blocks1.0.dwconv.weight'):
        backbonezoo.convert_checkpoint(foreign, 'a2mamba_nano', model=model)


# --- 4. kernels ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('global_mode,window_dilation', [(False, 1), (True, 1), (False, 2)])
def test_mass_backends_agree(global_mode, window_dilation, monkeypatch):
    """MASS gives the same output with the reference kernels, the fast torch kernels and the default backend
    (chosen through BACKBONEZOO_KERNEL_BACKEND, which also reaches the scan). window_dilation 2 (no released
    variant) takes the window-layout maps: the SSM re-applies head half 1's map with dilation 1."""
    torch.manual_seed(0)
    mixer = MASS(16, 4, window_size=3, window_dilation=window_dilation, global_mode=global_mode, global_size=(5, 7))
    mixer = mixer.eval()
    with torch.no_grad():
        mixer.rpb.normal_()
        if global_mode:
            mixer.global_rpb.normal_()
    x = torch.randn(2, 16, 10, 14)  # non-square, dilations (3, 3), size not divisible by the dilation
    sin, cos = torch.randn(10, 14, 4), torch.randn(10, 14, 4)
    outputs = {}
    for backend in ('reference', 'torch', None):
        if backend is None:
            monkeypatch.delenv('BACKBONEZOO_KERNEL_BACKEND', raising=False)
        else:
            monkeypatch.setenv('BACKBONEZOO_KERNEL_BACKEND', backend)
        with torch.no_grad():
            outputs[backend] = mixer(x, sin, cos)
    assert_close_rel(outputs['torch'], outputs['reference'], rtol=1e-5, what='torch vs reference')
    assert_close_rel(outputs[None], outputs['reference'], rtol=1e-5, what='default vs reference')


# --- 5. robustness -------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_named_errors():
    model = small_model()
    with pytest.raises(ValueError, match='4-D input'):
        model(torch.randn(3, 96, 96))
    with pytest.raises(TypeError, match='floating.point'):
        model(torch.zeros(1, 3, 96, 96, dtype=torch.uint8))
    with pytest.raises(ValueError, match='expected 3 input channels, got 1'):
        model(torch.randn(1, 1, 96, 96))
    small = model.min_input_size
    with pytest.raises(ValueError, match=f'expected at least {small}x{small}'):
        model(torch.randn(1, 3, small - 1, 96))
    with torch.no_grad():
        assert model(torch.randn(1, 3, small, small)).shape == (1, 5)


def test_other_sizes_resize_global_bias_like_the_official_model():
    """Non-square input at a size other than img_size: the stage-4 bias is bicubically resized as an (N, N) image."""
    model = small_model()
    mixer = model.stages[3].blocks[0].token_mixer
    resized = resize_global_bias(mixer.global_rpb, 4 * 5)
    expected = F.interpolate(mixer.global_rpb, size=(20, 20), mode='bicubic', align_corners=False)
    assert torch.equal(resized, expected)
    with torch.no_grad():
        out, feats = model.forward_intermediates(torch.randn(1, 3, 128, 160))
    assert [f.shape[-2:] for f in feats] == [(32, 40), (16, 20), (8, 10), (4, 5)]


def test_global_bias_resize_to_its_own_size_is_exact():
    """The bias is resized unconditionally (no size comparison for torch.export to specialise on): at its own size
    bicubic interpolation returns it bit for bit, as the official code's skipped resize does."""
    bias = torch.randn(1, 4, 49, 49) * 10
    assert torch.equal(resize_global_bias(bias, 49), bias)
    assert torch.equal(resize_global_bias(bias.bfloat16(), 49), bias.bfloat16())


def test_eval_deterministic_batch1_channels_last_bf16():
    model = small_model()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(ref, model(x))
        assert_close_rel(model(x[:1]), ref[:1], rtol=1e-4, what='batch 1')
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert_close_rel(cl, ref, rtol=1e-4, what='channels_last')
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    assert torch.isfinite(low).all()
    assert_close_rel(low.float(), ref, rtol=0.1, what='bf16 autocast')


def test_backward_and_grad_checkpointing():
    model = small_model(drop_path_rate=0.1).train()
    model.set_grad_checkpointing(True)
    model(torch.randn(2, 3, 96, 96)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_no_weight_decay_names_ssm_parameters():
    names = small_model().no_weight_decay()
    assert names and all(n.endswith(('A_logs', 'Ds')) for n in names)


def test_torchscript_matches_eager():
    """Scripting keeps the kernels in Python (torch.jit.ignore) and compiles out each mixer's unused branch."""
    model = small_model()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 96, 128)  # not img_size: the stage-4 bias is resized
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-6)


def test_bfloat16_model_runs_in_bfloat16():
    """A model converted to bfloat16 runs its float32-pinned regions (SSM readout, gate / projection) in bfloat16."""
    model = small_model().to(torch.bfloat16)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 96, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.slow
def test_torch_compile_forward():
    """Dynamo traces the forward (graph breaks allowed); 'aot_eager' skips inductor's C++ code generation, which on
    this 2-core CI machine takes longer than the test budget."""
    model = small_model()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected = model(x)
        assert_close_rel(torch.compile(model, backend='aot_eager')(x), expected, rtol=1e-4, what='compiled')


@pytest.mark.heavy
def test_onnx_export_with_dynamic_size_matches_across_dilations(tmp_path):
    """Dynamo ONNX export with dynamic H / W, traced at 96x96, runs in onnxruntime like eager at sizes whose stage
    dilations min(map // 3, 3) differ from the traced ones (96: 3/3/2/1; 65x70: 3/3/1/1 and 3/3/1/1; 200x150:
    3/3/3/2 and 3/3/3/1), so every stage's scan length and tiling changes too. Default kernels: the fast
    neighbourhood path and the scan's no-grad fast path."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    model = small_model()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected = model(x)  # before export: tracing must not change what eager mode computes afterwards
    path = tmp_path / 'a2mamba.onnx'
    dim = torch.export.Dim
    dynamic = {'x': {2: dim('h', min=model.min_input_size, max=1024), 3: dim('w', min=model.min_input_size, max=1024)}}
    torch.onnx.export(model, (x,), str(path), dynamo=True, dynamic_shapes=dynamic, optimize=False)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    (out,) = session.run(None, {name: x.numpy()})
    assert_close_rel(torch.from_numpy(out), expected, rtol=1e-4, what='onnxruntime at 96x96')
    for size in ((65, 70), (200, 150)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = model(x)
        (out,) = session.run(None, {name: x.numpy()})
        assert_close_rel(torch.from_numpy(out), expected, rtol=1e-4, what=f'onnxruntime at {size}')


# --- 6. dense (mmdet / mmseg backbone) -----------------------------------------------------------------------------


@pytest.mark.mm
def test_mm_backbone_official_features_and_any_size(parity, tmp_path):
    """type='A2Mamba' loads an official file through init_cfg and returns the official stage outputs (through the
    wrapper's fresh output LayerNorms);
    inputs of any size work (padded to 32 and to the minimum, outputs cropped); frozen_stages / out_indices hold."""
    pytest.importorskip('mmdet')
    from mmengine.registry import MODELS

    import backbonezoo.mm  # noqa: F401

    path = tmp_path / 'official_tiny.pth'
    torch.save({'state_dict': parity['state_dict']}, path)
    model_kwargs = {k: v for k, v in tiny_kwargs(parity).items() if k not in ('num_classes',)}
    backbone = MODELS.build(
        dict(
            type='A2Mamba',
            arch='nano',
            frozen_stages=1,
            model_kwargs=dict(model_kwargs, num_classes=parity['kwargs']['num_classes']),
            init_cfg=dict(type='Pretrained', checkpoint=str(path)),
        )
    )
    backbone.init_weights()
    backbone.eval()
    with torch.no_grad():
        outs = backbone(parity['input'])
        for i, (ours, theirs) in enumerate(zip(outs, parity['features'])):
            assert_close_rel(ours, backbone.out_norms[i](theirs), what=f'dense stage {i}')
    assert all(not p.requires_grad for p in backbone.model.stem.parameters())
    assert all(not p.requires_grad for p in backbone.model.stages[0].parameters())
    assert all(p.requires_grad for p in backbone.model.stages[1].parameters())

    small = MODELS.build(dict(type='A2Mamba', arch='nano', out_indices=(1, 3), model_kwargs=model_kwargs))
    with torch.no_grad():
        outs = small(torch.randn(1, 3, 50, 75))  # below the minimum side (65 for windows 7/5/3/3): padded
    assert [tuple(o.shape) for o in outs] == [(1, 32, 7, 10), (1, 64, 2, 3)]
