"""OverLoCK: parity with the official model, both forms and reparameterisation, official checkpoints, kernels."""

from __future__ import annotations

import pytest
import timm
import torch
from helpers import assert_close_rel, load_parity, regen

import backbonezoo
from backbonezoo.backbones import overlock as ol

VARIANTS = ['overlock_xt', 'overlock_t', 'overlock_s', 'overlock_b']
# exact counts of the official code: overlock_*(deploy=False, use_ds=True), i.e. training form with the aux head
OFFICIAL_TRAIN_FORM_PARAMS = {
    'overlock_xt': 17_307_272,
    'overlock_t': 34_990_472,
    'overlock_s': 58_309_772,
    'overlock_b': 98_012_968,
}
TINY = dict(
    depths=(1, 1, 1, 1),
    focus_depths=(2, 2),
    embed_dims=(16, 24, 32, 48),
    kernel_sizes=(5, 7, 13, 9),
    mlp_ratios=(2, 2, 2, 2),
    focus_mlp_ratios=(2, 2),
    focus_num_heads=(1, 2),
    small_kernel_size=5,
    projection_dim=64,
    num_classes=10,
)


def tiny_kwargs_from_official(kwargs: dict) -> dict:
    """The fixture's official constructor kwargs in our names."""
    return dict(
        depths=tuple(kwargs['depth']),
        focus_depths=tuple(kwargs['sub_depth']),
        embed_dims=tuple(kwargs['embed_dim']),
        kernel_sizes=tuple(kwargs['kernel_size']),
        mlp_ratios=tuple(kwargs['mlp_ratio']),
        focus_mlp_ratios=tuple(kwargs['sub_mlp_ratio']),
        focus_num_heads=tuple(kwargs['sub_num_heads']),
        small_kernel_size=kwargs['smk_size'],
        projection_dim=kwargs['projection'],
        num_classes=kwargs['num_classes'],
    )


def official_shape(key: str, shape: torch.Size) -> tuple[int, ...]:
    """Official storage of tensors we store flat: LayerScales as (C,1,1,1) dw-conv kernels, GRN as (1,C,1,1),
    1x1-conv classifiers / kernel projection as (out, in, 1, 1)."""
    leaf = key.rsplit('.', 2)
    if key.endswith(('ls.weight', 'ls1.weight', 'ls2.weight', 'x_scale.weight', 'h_scale.weight')):
        return (shape[0], 1, 1, 1)
    if leaf[-1] in ('gamma', 'beta'):
        return (1, shape[0], 1, 1)
    if key.endswith(('weight_proj.weight', 'head.4.weight', 'aux_head.2.weight')):
        return (*shape, 1, 1)
    return tuple(shape)


def official_manifest(model: torch.nn.Module) -> list:
    """[key, shape, dtype] of the official checkpoint layout of ``model`` (inverse of our key mapping)."""
    return [
        [
            ol.convert_key(k, to_official=True),
            list(official_shape(ol.convert_key(k, to_official=True), v.shape)),
            str(v.dtype).replace('torch.', ''),
        ]
        for k, v in model.state_dict().items()
    ]


def official_standin(model: torch.nn.Module, seed: int = 0) -> dict:
    manifest = official_manifest(model)
    fixed = {k: torch.zeros(s, dtype=torch.int64) for k, s, d in manifest if d == 'int64'}
    return regen().regen_state_dict(manifest, fixed, seed=seed)


@pytest.fixture(scope='module')
def fixture():
    return load_parity('overlock', 'tiny.pt')


def build_tiny(fixture_or_none=None, **kwargs) -> ol.OverLoCK:
    base = tiny_kwargs_from_official(fixture_or_none['kwargs']) if fixture_or_none is not None else dict(TINY)
    torch.manual_seed(0)
    return ol.OverLoCK(**{**base, **kwargs}).eval()


def perturb_norms(model: torch.nn.Module, seed: int = 1) -> None:
    """Make BN statistics, RPBs, GRN and layer scales non-trivial so that fusion and indexing errors show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith('running_mean') or 'rpb' in name or '.grn.' in name:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif t.is_floating_point() and t.ndim == 1 and name.endswith('bias'):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))


# --- parity with the official fixture ----------------------------------------------------------------------------


def test_tiny_kwargs_cover_the_fixture(fixture):
    kwargs = fixture['kwargs']
    assert set(kwargs) == {
        'depth',
        'sub_depth',
        'embed_dim',
        'kernel_size',
        'mlp_ratio',
        'sub_mlp_ratio',
        'sub_num_heads',
        'smk_size',
        'projection',
        'num_classes',
        'use_gemm',
    }, 'fixture kwargs changed: map the new ones to ours'
    assert tiny_kwargs_from_official(kwargs) == TINY


def test_inverse_key_mapping_reproduces_the_official_layout(fixture):
    """Our training-form model with the aux head, renamed back, has exactly the official keys and shapes."""
    model = build_tiny(fixture, deploy=False, use_ds=True)
    manifest = official_manifest(model)
    official = {k: list(v.shape) for k, v in fixture['state_dict'].items()}
    assert {k: s for k, s, _ in manifest} == official


@pytest.mark.parametrize('deploy', [False, True], ids=['train_form', 'deploy_form'])
def test_parity_with_official_fixture(fixture, deploy):
    """Logits and all six official taps; a deploy model loads the training-form file by fusing it on the fly."""
    model = build_tiny(fixture, deploy=deploy, use_ds=True)
    model.load_state_dict(ol.checkpoint_filter_fn(dict(fixture['state_dict']), model), strict=True)
    taps = {}
    model.stages[2].register_forward_hook(lambda m, i, o: taps.__setitem__('base3', o))
    model.stages[3].register_forward_hook(lambda m, i, o: taps.__setitem__('overview', o))
    x = fixture['input']
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_intermediates(x, intermediates_only=True)
    assert_close_rel(logits, fixture['logits'], what='logits')
    expected = fixture['features']
    ours = [feats[0], feats[1], taps['base3'], taps['overview'], feats[2], feats[3]]
    for i, (a, e) in enumerate(zip(ours, expected)):
        assert_close_rel(a, e, what=f'tap {i + 1}')


def test_parity_with_default_and_reference_kernels(fixture):
    """Same logits through the operators' reference (gather-everything) path and the fast default path."""
    outs = {}
    for backend in ('reference', 'torch', None):
        model = build_tiny(fixture, deploy=True, kernel_backend=backend)
        model.load_state_dict(ol.checkpoint_filter_fn(dict(fixture['state_dict']), model))
        with torch.no_grad():
            outs[backend] = model(fixture['input'][:1])
    assert_close_rel(outs['reference'], fixture['logits'][:1], what='reference backend')
    assert_close_rel(outs['torch'], outs['reference'], rtol=1e-5, what='torch backend')
    assert_close_rel(outs[None], outs['reference'], rtol=1e-5, what='default backend')


# --- training form, deploy form, reparameterize ----------------------------------------------------------------


def test_reparameterize_keeps_outputs_and_gives_the_deploy_layout():
    model = build_tiny(deploy=False)
    perturb_norms(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        model.reparameterize()
        after = model(x)
    assert_close_rel(after, before, rtol=1e-5, what='reparameterized logits')
    deploy = build_tiny(deploy=True)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in deploy.state_dict().items()}
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in deploy.parameters())
    assert model.deploy and not any('branches' in k for k in model.state_dict())
    # timm's generic helper finds the blocks too
    fresh = build_tiny(deploy=False)
    perturb_norms(fresh)
    with torch.no_grad():
        ref = fresh(x)
        fused = timm.utils.reparameterize_model(fresh)
        assert_close_rel(fused(x), ref, rtol=1e-5, what='timm.utils.reparameterize_model')


def test_training_form_file_fused_by_filter_equals_reparameterize(fixture):
    train = build_tiny(fixture, deploy=False, use_ds=True)
    train.load_state_dict(ol.checkpoint_filter_fn(dict(fixture['state_dict']), train))
    train.reparameterize()
    deploy = build_tiny(fixture, deploy=True, use_ds=True)
    converted = ol.checkpoint_filter_fn(dict(fixture['state_dict']), deploy)
    for key, value in train.state_dict().items():
        torch.testing.assert_close(converted[key], value, rtol=1e-6, atol=1e-7, msg=key)


def test_reparameterized_file_into_training_form_is_a_named_error(fixture):
    deploy = build_tiny(fixture, deploy=True)
    official_deploy = {
        ol.convert_key(k, to_official=True): v.reshape(official_shape(ol.convert_key(k, to_official=True), v.shape))
        for k, v in deploy.state_dict().items()
    }
    train = build_tiny(fixture, deploy=False)
    with pytest.raises(ValueError, match='deploy=True'):
        ol.checkpoint_filter_fn(official_deploy, train)
    # and into a deploy model it loads strictly
    deploy.load_state_dict(ol.checkpoint_filter_fn(official_deploy, build_tiny(fixture, deploy=True)), strict=True)


@pytest.mark.parametrize('name', VARIANTS)
def test_param_counts_of_both_forms(name):
    """Deploy form without aux head = metadata (= official deploy=True, use_ds=False); training form with the aux
    head = official deploy=False, use_ds=True. Built on 'meta', no memory or time spent."""
    with torch.device('meta'):
        deploy = timm.create_model(name)
        train = timm.create_model(name, deploy=False, use_ds=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(deploy) == backbonezoo.variant_info(name).params
    assert count(train) == OFFICIAL_TRAIN_FORM_PARAMS[name]


def test_builder_honours_kwargs():
    """The official *_reparam builders dropped **kwargs; ours pass everything through."""
    with torch.device('meta'):
        model = timm.create_model('overlock_xt', num_classes=10, deploy=False, use_ds=True, drop_path_rate=0.1)
    assert model.num_classes == 10 and model.get_classifier().out_features == 10
    assert model.aux_head.fc.out_features == 10 and not model.deploy
    assert model.focus_stages[1].blocks[-1].drop_path.drop_prob == pytest.approx(0.1)


# --- official checkpoints (stand-ins in the official layout) ----------------------------------------------------


def _check_official_files(name: str, tmp_path) -> None:
    with torch.device('meta'):
        train_meta = timm.create_model(name, deploy=False, use_ds=True)
        deploy_meta = timm.create_model(name)
    train_file = tmp_path / f'{name}_in1k_224.pth'
    train_sd = official_standin(train_meta)
    torch.save({'state_dict': train_sd}, train_file)  # mmengine-style nest
    deploy_file = tmp_path / f'{name}_in1k_224_reparam.pth'
    deploy_sd = official_standin(deploy_meta, seed=1)
    deploy_sd.update({f'aux_head.{k}': v for k, v in train_sd.items() if k.startswith('aux_head.')})
    torch.save(deploy_sd, deploy_file)  # bare
    del train_meta, deploy_meta

    from_train = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(train_file)))
    expected = timm.create_model(name, deploy=False)
    expected.load_state_dict(backbonezoo.convert_checkpoint(train_file, name, model=expected))
    expected.reparameterize()
    got = from_train.state_dict()
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
    del from_train, expected

    from_deploy = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(deploy_file)))
    converted = backbonezoo.convert_checkpoint(deploy_file, name)
    got = from_deploy.state_dict()
    assert set(converted) == set(got)
    ref = {k: v.reshape(got[ol.convert_key(k)].shape) for k, v in deploy_sd.items() if not k.startswith('aux_head.')}
    for key, value in ref.items():
        torch.testing.assert_close(got[ol.convert_key(key)], value, rtol=0, atol=0, msg=key)


def test_official_checkpoints_load_xt(tmp_path):
    _check_official_files('overlock_xt', tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('name', VARIANTS[1:])
def test_official_checkpoints_load_all(name, tmp_path):
    _check_official_files(name, tmp_path)


def test_aux_head_kept_for_training_and_reset_for_new_classes(fixture):
    sd = dict(fixture['state_dict'])
    model = build_tiny(fixture, deploy=False, use_ds=True)
    model.load_state_dict(ol.checkpoint_filter_fn(sd, model), strict=True)
    torch.testing.assert_close(model.aux_head.fc.weight, sd['aux_head.2.weight'].flatten(1))
    other = build_tiny(fixture, deploy=False, use_ds=True, num_classes=7)
    converted = ol.checkpoint_filter_fn(sd, other)
    assert converted['aux_head.fc.weight'].shape == (7, 48)


def test_checkpoint_of_another_family_is_a_named_error():
    foreign = timm.create_model('resnet10t', pretrained=False).state_dict()
    model = build_tiny()
    with pytest.raises(backbonezoo.CheckpointMismatchError, match='missing keys'):
        backbonezoo.convert_checkpoint(foreign, 'overlock_xt', model=model)


# --- ContMix specifics ------------------------------------------------------------------------------------------


@pytest.mark.parametrize('size', [(64, 96), (96, 64), (33, 47)], ids=['wide', 'tall', 'odd'])
def test_small_maps_resize_up_to_the_kernel(size):
    """Maps smaller than ContMix's kernel take the official resize-then-pool branch, non-square and odd too."""
    model = build_tiny()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, *size), intermediates_only=True)
    h, w = size
    for f, stride in zip(feats, (4, 8, 16, 32)):
        assert f.shape[-2:] == (-(-h // stride), -(-w // stride))
        assert torch.isfinite(f).all()


def official_small_map_size(height: int, width: int, k: int) -> tuple[int, int]:
    """The official ContMix rule, as the official code writes it."""
    if min(height, width) < k:
        return (k, int(k / height * width)) if height < width else (int(k / width * height), k)
    return height, width


def test_contmix_size_is_the_official_float_rule():
    """The branch-free (export-friendly) form gives the official float rule at every size, including where the
    truncated float product is one below exact arithmetic, and the map itself where it holds the kernel."""
    assert ol.contmix_size(5, 45, 7) == (7, 62)  # 7 / 5 * 45 = 62.99999...: exact arithmetic would give 63
    assert ol.contmix_size(11, 11, 15) == (14, 15)  # a square map becomes non-square (15 / 11 * 11 < 15)
    assert ol.contmix_size(14, 12, 13) == (15, 13)
    for k in (5, 7, 9, 13, 15):
        for height in range(1, 3 * k):
            for width in range(1, 3 * k):
                assert ol.contmix_size(height, width, k) == official_small_map_size(height, width, k)


@pytest.mark.parametrize(
    'in_size, out_size', [((13, 17), (7, 7)), ((15, 13), (14, 12)), ((7, 9), (7, 9)), ((5, 3), (7, 7))]
)
def test_traced_adaptive_pool_matches_aten(in_size, out_size, monkeypatch):
    """Traced, ContMix pools with averaging matmuls built from the sizes: PyTorch's adaptive windows exactly."""
    x = torch.randn(2, 3, *in_size, dtype=torch.float64)
    expected = torch.nn.functional.adaptive_avg_pool2d(x, out_size)
    monkeypatch.setattr(ol, 'is_tracing', lambda: True)
    torch.testing.assert_close(ol.adaptive_avg_pool(x, out_size), expected)


def test_traced_path_resamples_every_map_with_the_same_outputs(monkeypatch):
    """Traced, ContMix always resizes and pools back (no size comparison to specialise on): at sizes whose maps hold
    the kernels that is the identity, on small maps it is the official branch; outputs equal eager mode."""
    model = build_tiny()
    perturb_norms(model)
    sizes = [(64, 96), (33, 47), (288, 320)]  # small maps in both Focus-Net stages; none small at 288 x 320
    inputs = [torch.randn(1, 3, *size) for size in sizes]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
        monkeypatch.setattr(ol, 'is_tracing', lambda: True)
        for x, ref in zip(inputs, expected):
            torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-6)


def test_deep_supervision_returns_aux_logits_in_training():
    model = build_tiny(use_ds=True).train()
    logits, aux = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 10)
    (logits.sum() + aux.sum()).backward()
    assert model.aux_head.fc.weight.grad is not None
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_grad_checkpointing_same_outputs_and_grads():
    model = build_tiny(deploy=False).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    model(x).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.set_grad_checkpointing(True)
    torch.manual_seed(0)
    model(x).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)


def test_features_only_subset_and_dense_channels():
    model = timm.create_model('overlock_xt', features_only=True, out_indices=(2, 3), pretrained=False)
    assert model.feature_info.channels() == [256 + 84, 336 + 84]
    assert model.feature_info.reduction() == [16, 32]
    with torch.device('meta'):
        for name, channels in {
            'overlock_t': [64, 128, 384, 640],
            'overlock_s': [64, 128, 448, 640],
            'overlock_b': [80, 160, 528, 720],
        }.items():
            assert [i['num_chs'] for i in timm.create_model(name).feature_info] == channels


def test_prune_intermediate_layers_keeps_what_is_needed():
    model = build_tiny()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = model.forward_intermediates(x, intermediates_only=True)
        model.prune_intermediate_layers(indices=[0, 1])
        pruned = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
    assert len(model.focus_stages) == 0 and len(model.stages) == 2
    for a, b in zip(pruned, full[:2]):
        torch.testing.assert_close(a, b)


# --- robustness ---------------------------------------------------------------------------------------------------


def test_bf16_autocast_channels_last_batch1():
    model = build_tiny()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.isfinite(low).all() and (low.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)


def test_torchscript_matches_eager():
    """Scripting keeps the kernels in Python (torch.jit.ignore); 40 px takes the small-map ContMix branch."""
    model = build_tiny()
    scripted = torch.jit.script(model)
    for size in (64, 40):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-6)


def test_reset_classifier_resets_the_auxiliary_head():
    model = build_tiny(use_ds=True).train()
    model.reset_classifier(3)
    logits, aux = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 3)
    model.reset_classifier(0)
    logits, aux = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, TINY['projection_dim']) and aux.shape == (2, TINY['embed_dims'][3])


def test_wrong_dtype_is_an_error():
    model = build_tiny()
    with pytest.raises(TypeError, match='dtype'):
        model(torch.randn(1, 3, 64, 64, dtype=torch.float64))


@pytest.mark.slow
@pytest.mark.xfail(
    reason="torch.compile traces the local-attention kernels' lru-cached window geometry in Python: the compile ran "
    'past the 900 s pytest timeout on the shared 2-core machine (2026-11-22); needs a compile-friendly kernel path',
    run=False,
)
def test_torch_compile_forward():
    model = build_tiny()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = torch.compile(model)(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.heavy
def test_onnx_export_with_dynamic_sizes(tmp_path):
    """One dynamo export (dynamic H / W, traced at 64 px) runs in onnxruntime with the eager outputs at other sizes:
    small maps in one or both Focus-Net stages or in none, non-square and odd sides. The whole architecture at a
    small width (about 2.5 CPU-minutes here); overlock_xt's own export (about 10) runs in `make test-slow`."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    model = build_tiny()
    perturb_norms(model)
    dim = torch.export.Dim
    path = tmp_path / 'overlock_tiny.onnx'
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 64, 64),),
        str(path),
        dynamo=True,
        dynamic_shapes={'x': {2: dim.AUTO, 3: dim.AUTO}},
        input_names=['x'],
        output_names=['logits'],
        optimize=False,  # onnxscript's optimisation: most of the export time, no change to the results
    )
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for size in [(64, 64), (96, 64), (33, 47), (288, 320)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            ref = model(x)
        out = session.run(None, {'x': x.numpy()})[0]
        assert_close_rel(torch.from_numpy(out), ref, rtol=1e-4, what=f'onnxruntime logits at {size}')


# --- OpenMMLab ------------------------------------------------------------------------------------------------------

CONFIGS = backbonezoo.__path__[0].rsplit('/', 1)[0] + '/configs'


@pytest.fixture(scope='module')
def registries():
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    import backbonezoo.mm  # noqa: F401  (registers OverLoCK)

    return DET, SEG


def _ln(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)


@pytest.mark.mm
@pytest.mark.parametrize('overview_proj', [False, True], ids=['seg_form', 'det_form'])
def test_mm_outputs_match_the_official_dense_wrappers(fixture, registries, overview_proj):
    """out0/1 = LN(Base-Net 1/2), out2 = LN(Focus-Net 3), out3 = LN(Focus-Net 4) [+ det: scale * conv(LN(overview))],
    from the fixture's official taps; the official dense layout (extra_norm.*, h_proj.*) loads strictly."""
    det, seg = registries
    kwargs = tiny_kwargs_from_official(fixture['kwargs'])
    backbone = (
        (det if overview_proj else seg)
        .build(dict(type='OverLoCK', arch='overlock_xt', overview_proj=overview_proj, model_kwargs=kwargs))
        .eval()
    )
    official = {f'backbone.{k}': v for k, v in fixture['state_dict'].items() if not k.startswith(('head.', 'aux_'))}
    g = torch.Generator().manual_seed(3)
    dims = [16, 24, 44, 60] + ([48] if overview_proj else [])
    for i, c in enumerate(dims):
        official[f'backbone.extra_norm.{i}.weight'] = 1 + 0.1 * torch.randn(c, generator=g)
        official[f'backbone.extra_norm.{i}.bias'] = 0.1 * torch.randn(c, generator=g)
    if overview_proj:
        official['backbone.h_proj.0.weight'] = 0.1 * torch.randn(60, 48, 1, 1, generator=g)
        official['backbone.h_proj.0.bias'] = 0.1 * torch.randn(60, generator=g)
        official['backbone.h_proj.1.weight'] = 0.1 * torch.randn(60, 1, 1, 1, generator=g)
        official['backbone.h_proj.1.bias'] = 0.1 * torch.randn(60, generator=g)
    official['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)  # a detector file: only the backbone is taken
    backbone.load_pretrained({'state_dict': official})
    with torch.no_grad():
        outs = backbone(fixture['input'][:1])
    taps = [t[:1] for t in fixture['features']]

    def norm(i, x):
        w, b = official[f'backbone.extra_norm.{i}.weight'], official[f'backbone.extra_norm.{i}.bias']
        return _ln(x) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)

    expected = [norm(0, taps[0]), norm(1, taps[1]), norm(2, taps[4]), norm(3, taps[5])]
    if overview_proj:
        proj = torch.nn.functional.conv2d(norm(4, taps[3]), official['backbone.h_proj.0.weight'],
                                          official['backbone.h_proj.0.bias'])  # fmt: skip
        expected[3] = (
            expected[3]
            + proj * official['backbone.h_proj.1.weight'].view(1, -1, 1, 1)
            + official['backbone.h_proj.1.bias'].view(1, -1, 1, 1)
        )
    for i, (a, e) in enumerate(zip(outs, expected)):
        assert_close_rel(a, e, what=f'dense output {i}')


@pytest.mark.mm
def test_mm_imagenet_file_keeps_new_layers_and_foreign_is_an_error(fixture, registries):
    det, _ = registries
    kwargs = tiny_kwargs_from_official(fixture['kwargs'])
    backbone = det.build(dict(type='OverLoCK', arch='overlock_xt', overview_proj=True, model_kwargs=kwargs))
    before = backbone.overview_proj.conv.weight.clone()
    backbone.load_pretrained(dict(fixture['state_dict']))  # the ImageNet file: aux head and classifier dropped
    torch.testing.assert_close(backbone.overview_proj.conv.weight, before)
    seg_backbone = det.build(dict(type='OverLoCK', arch='overlock_xt', model_kwargs=kwargs))
    with pytest.raises(backbonezoo.CheckpointMismatchError, match='overview_proj'):
        seg_backbone.load_pretrained({**fixture['state_dict'], 'h_proj.0.weight': torch.zeros(60, 48, 1, 1)})


@pytest.mark.mm
def test_mm_out_indices_frozen_stages_norm_eval_with_cp_odd_sizes(registries):
    det, _ = registries
    cfg = dict(type='OverLoCK', arch='overlock_xt', model_kwargs=TINY, out_indices=(1, 2), frozen_stages=3,
               norm_eval=True)  # fmt: skip
    torch.manual_seed(0)
    backbone = det.build(cfg).train()
    frozen = {n.split('.')[1] + '.' + n.split('.')[2] for n, p in backbone.named_parameters() if not p.requires_grad}
    assert {'stem.0', 'stages.0', 'stages.1', 'stages.2', 'stages.3', 'focus_stages.0'} <= frozen | {'stem.0'}
    assert not any(p.requires_grad for p in backbone.model.context_proj.parameters())
    assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = torch.randn(1, 3, 97, 131)
    outs = backbone(x)
    assert [tuple(o.shape) for o in outs] == [(1, 24, 13, 17), (1, 44, 7, 9)]
    assert len(backbone.model.focus_stages) == 1  # Focus-Net stage 4 pruned for out_indices (1, 2)
    plain = det.build(dict(type='OverLoCK', arch='overlock_xt', model_kwargs=TINY, overview_proj=True)).train()
    checkpointed = det.build(dict(type='OverLoCK', arch='overlock_xt', model_kwargs=TINY, overview_proj=True,
                                  with_cp=True)).train()  # fmt: skip
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    for a, b in zip(plain(x), checkpointed(x)):
        torch.testing.assert_close(a, b)


def _config_files(kind: str) -> list:
    from pathlib import Path

    return sorted((Path(CONFIGS) / kind / 'overlock').glob('*.py'))


@pytest.mark.mm
@pytest.mark.parametrize('path', _config_files('detection') + _config_files('segmentation'), ids=lambda p: p.stem)
def test_mm_configs_describe_the_official_setups(path, registries):
    import re

    from mmengine.config import Config

    cfg = Config.fromfile(str(path))
    backbone = cfg.model.backbone
    arch = re.search(r'overlock_([tsb])_', path.name)[1]
    assert backbone.type == 'OverLoCK' and backbone.arch == arch and backbone.deploy is False
    assert backbone.init_cfg.checkpoint.endswith(f'/overlock_{arch}_in1k_224.pth')
    with torch.device('meta'):
        channels = [i['num_chs'] for i in timm.create_model(f'overlock_{arch}').feature_info]
    if 'detection' in str(path):
        assert backbone.overview_proj is True and list(cfg.model.neck.in_channels) == channels
        assert backbone.drop_path_rate == {'t': 0.2, 's': 0.4, 'b': 0.6}[arch]
        three_x = '_3x_' in path.name
        assert cfg.optim_wrapper.optimizer.lr == (1e-4 if three_x else 2e-4)
        assert cfg.train_cfg.max_epochs == (36 if three_x else 12)
    else:
        assert backbone.overview_proj is False and list(cfg.model.decode_head.in_channels) == channels
        assert cfg.model.auxiliary_head.in_channels == channels[2]
        assert backbone.drop_path_rate == {'t': 0.2, 's': 0.3, 'b': 0.5}[arch]
        assert cfg.optim_wrapper.optimizer.lr == 6e-5 and cfg.train_cfg.max_iters == 160000


@pytest.mark.mm
def test_mm_detection_config_builds_and_runs(registries):
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(_config_files('detection')[-1]))  # mask_rcnn_overlock_t_fpn_3x_coco
    cfg.model.backbone.init_cfg = None  # no network in tests
    cfg.model.backbone.model_kwargs = TINY
    cfg.model.neck.in_channels = [16, 24, 44, 60]
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = registries[0].build(cfg.model).eval()
    with torch.no_grad():
        feats = detector.extract_feat(torch.randn(1, 3, 96, 160))
    assert [tuple(f.shape[-2:]) for f in feats] == [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]


@pytest.mark.mm
@pytest.mark.parametrize('arch, drop_path', [('xt', 0.1), ('t', 0.15), ('s', 0.4), ('b', 0.5)])
def test_classification_configs_follow_the_official_recipe(arch, drop_path):
    pytest.importorskip('mmengine')
    from mmengine.config import Config

    cfg = Config.fromfile(f'{CONFIGS}/classification/overlock/overlock_{arch}_in1k.py')
    assert cfg.model.type == 'OverLoCKClassifier' and cfg.model.model_name == f'overlock_{arch}'
    assert cfg.model.model_kwargs == dict(drop_path_rate=drop_path, deploy=False, use_ds=True)
    assert cfg.model.aux_loss_ratio == 0.4 and cfg.optim_wrapper.optimizer.lr == 2e-3
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0 and cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.param_scheduler[-1].end == 300  # the full recipe, value by value: tests/test_recipes.py


@pytest.mark.mm
def test_classifier_adds_the_aux_loss():
    pytest.importorskip('mmengine')
    from backbonezoo.mm.families.overlock import OverLoCKClassifier

    torch.manual_seed(0)
    model_kwargs = {k: v for k, v in TINY.items() if k != 'num_classes'}
    clf = OverLoCKClassifier('overlock_xt', num_classes=10, model_kwargs=model_kwargs).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 2])
    losses = clf(x, y, mode='loss')
    assert set(losses) == {'loss', 'loss_aux'} and losses['loss_aux'] > 0
    sum(losses.values()).backward()
    assert clf.model.aux_head.fc.weight.grad is not None
    assert clf.eval()(x, y, mode='predict')[0]['pred_score'].shape == (10,)
