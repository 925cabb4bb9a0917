"""The authors' whole detection / segmentation checkpoints load strictly into our configs (issue 23, part 1).

Each official dense file is described by its layout, written here as data: the backbone in the official dense
wrapper's names (the family's official classification layout, from the family's test module, minus what the wrapper
deletes, plus the wrapper's extra output norms / projections) and the neck and heads in mmdet 2.x / mmseg 0.x names
with the official configs' sizes (COCO's 80 classes, ADE20K's 150, FPN width 256, UperNet 512 / 256 ...). Weights are
drawn by ``tests/standin.py`` (``dense_standin``). Checked for each file:

- ``backbonezoo.convert_checkpoint(FILE, CONFIG)`` fills every parameter and buffer of the model the config builds
  from the file, uses every tensor of the file, and keeps neck / head tensors unchanged;
- a missing, an unexpected and a mis-shaped key are each a named ``DenseCheckpointMismatchError``;
- the backbone's features equal those of the ImageNet-checkpoint route (``init_cfg`` Pretrained with the official
  classification file holding the same backbone weights; output norms copied, they exist in dense files only);
- ``tools/test.py``'s loader (``fit_state_dict``) and ``tools/convert_checkpoint.py --config`` give the same weights.

Fast cases use each family's smallest config with depth 1 per stage (same widths, so the config's neck and heads are
the real ones); every listed official checkpoint runs at full size under ``make test-slow``.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from helpers import REPO, regen

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

pytestmark = pytest.mark.mm

COCO_CLASSES, ADE_CLASSES = 80, 150


# ---- the official layouts, as data ------------------------------------------------------------------------------
def _conv(key: str, out_ch: int, in_ch: int, k: int, bias: bool = True, transposed: bool = False) -> list:
    shape = [in_ch, out_ch, k, k] if transposed else [out_ch, in_ch, k, k]
    rows = [[f'{key}.weight', shape, 'float32']]
    return rows + ([[f'{key}.bias', [out_ch], 'float32']] if bias else [])


def _bn(key: str, ch: int) -> list:
    rows = [[f'{key}.{p}', [ch], 'float32'] for p in ('weight', 'bias', 'running_mean', 'running_var')]
    return rows + [[f'{key}.num_batches_tracked', [], 'int64']]


def _conv_module(key: str, out_ch: int, in_ch: int, k: int, norm: bool = False) -> list:
    """mmcv ``ConvModule``: ``conv`` (no bias before a norm) and ``bn`` (BN and SyncBN alike)."""
    return _conv(f'{key}.conv', out_ch, in_ch, k, bias=not norm) + (_bn(f'{key}.bn', out_ch) if norm else [])


def fpn_neck(in_chs, start_level=0, num_outs=5, extra_on_input=False, trans_convs=0, out=256, prefix='neck') -> list:
    """mmdet 2.x ``FPN`` (and Cream's ``EfficientViTFPN``: ``extra_trans_convs`` / ``extra_fpn_convs``)."""
    used = in_chs[start_level:]
    rows = []
    for i, ch in enumerate(used):
        rows += _conv_module(f'{prefix}.lateral_convs.{i}', out, ch, 1)
    for i in range(len(used)):
        rows += _conv_module(f'{prefix}.fpn_convs.{i}', out, out, 3)
    if extra_on_input:
        for i in range(num_outs - len(used) - trans_convs):
            rows += _conv_module(f'{prefix}.fpn_convs.{len(used) + i}', out, in_chs[-1] if i == 0 else out, 3)
    for i in range(trans_convs):
        rows += _conv(f'{prefix}.extra_trans_convs.{i}.conv', out, out, 2, transposed=True)
    for i in range(trans_convs):
        rows += _conv_module(f'{prefix}.extra_fpn_convs.{i}', out, out, 3)
    return rows


def retina_head(num_classes=COCO_CLASSES, ch=256, stacked=4, anchors=9) -> list:
    rows = []
    for branch in ('cls_convs', 'reg_convs'):
        for i in range(stacked):
            rows += _conv_module(f'bbox_head.{branch}.{i}', ch, ch, 3)
    return rows + _conv('bbox_head.retina_cls', anchors * num_classes, ch, 3) + _conv('bbox_head.retina_reg', 36, ch, 3)


def mask_rcnn_heads(num_classes=COCO_CLASSES, ch=256, fc=1024, roi=7) -> list:
    """RPNHead (3 anchors, sigmoid) + StandardRoIHead: Shared2FCBBoxHead, FCNMaskHead (4 convs, deconv upsample)."""
    rows = (
        _conv('rpn_head.rpn_conv', ch, ch, 3)
        + _conv('rpn_head.rpn_cls', 3, ch, 1)
        + _conv('rpn_head.rpn_reg', 12, ch, 1)
    )
    bbox = 'roi_head.bbox_head'
    rows += [
        [f'{bbox}.fc_cls.weight', [num_classes + 1, fc], 'float32'],
        [f'{bbox}.fc_cls.bias', [num_classes + 1], 'float32'],
    ]
    rows += [
        [f'{bbox}.fc_reg.weight', [4 * num_classes, fc], 'float32'],
        [f'{bbox}.fc_reg.bias', [4 * num_classes], 'float32'],
    ]
    rows += [
        [f'{bbox}.shared_fcs.0.weight', [fc, ch * roi * roi], 'float32'],
        [f'{bbox}.shared_fcs.0.bias', [fc], 'float32'],
    ]
    rows += [[f'{bbox}.shared_fcs.1.weight', [fc, fc], 'float32'], [f'{bbox}.shared_fcs.1.bias', [fc], 'float32']]
    for i in range(4):
        rows += _conv_module(f'roi_head.mask_head.convs.{i}', ch, ch, 3)
    rows += _conv('roi_head.mask_head.upsample', ch, ch, 2, transposed=True)
    return rows + _conv('roi_head.mask_head.conv_logits', num_classes, ch, 1)


def sfpn_head(num_classes=ADE_CLASSES, in_ch=256, ch=128, strides=(4, 8, 16, 32)) -> list:
    """mmseg 0.x ``FPNHead``: per level max(1, log2(stride / 4)) ConvModules (BN) with Upsample between them."""
    rows = []
    for i, stride in enumerate(strides):
        for j in range(max(1, int(math.log2(stride) - math.log2(strides[0])))):
            position = 2 * j if i > 0 else j  # Upsample (no weights) after every conv of the coarser levels
            rows += _conv_module(f'decode_head.scale_heads.{i}.{position}', ch, in_ch if j == 0 else ch, 3, norm=True)
    return rows + _conv('decode_head.conv_seg', num_classes, ch, 1)


def upernet_heads(in_chs, num_classes=ADE_CLASSES, ch=512, aux_ch=256, pool_scales=(1, 2, 3, 6)) -> list:
    """mmseg 0.x ``UPerHead`` (PPM on the last level) + ``FCNHead`` auxiliary head on level 2 (1 conv)."""
    rows = _conv('decode_head.conv_seg', num_classes, ch, 1)
    for i in range(len(pool_scales)):
        rows += _conv_module(f'decode_head.psp_modules.{i}.1', ch, in_chs[-1], 1, norm=True)
    rows += _conv_module('decode_head.bottleneck', ch, in_chs[-1] + len(pool_scales) * ch, 3, norm=True)
    for i, c in enumerate(in_chs[:-1]):
        rows += _conv_module(f'decode_head.lateral_convs.{i}', ch, c, 1, norm=True)
    for i in range(len(in_chs) - 1):
        rows += _conv_module(f'decode_head.fpn_convs.{i}', ch, ch, 3, norm=True)
    rows += _conv_module('decode_head.fpn_bottleneck', ch, len(in_chs) * ch, 3, norm=True)
    rows += _conv('auxiliary_head.conv_seg', num_classes, aux_ch, 1)
    return rows + _conv_module('auxiliary_head.convs.0', aux_ch, in_chs[2], 3, norm=True)


def neck_and_heads(method: str, chs: list[int], family: str) -> list:
    if family == 'efficientvit':  # Cream's EfficientViTFPN: 1 (RetinaNet) / 2 (Mask R-CNN) transposed-conv levels
        retina = method == 'retinanet'
        neck = fpn_neck(chs, num_outs=5, extra_on_input=retina, trans_convs=1 if retina else 2)
        return neck + (retina_head() if retina else mask_rcnn_heads())
    if method == 'retinanet':
        return fpn_neck(chs, start_level=1, num_outs=5, extra_on_input=True) + retina_head()
    if method == 'mask_rcnn':
        return fpn_neck(chs, num_outs=5) + mask_rcnn_heads()
    if method == 'sfpn':
        return fpn_neck(chs, num_outs=4) + sfpn_head()
    if method == 'upernet':
        return upernet_heads(chs)
    raise ValueError(method)


def _family_official_layout(family: str, model: torch.nn.Module) -> tuple[list, dict]:
    """The family's official classification layout of ``model`` (manifest, fixed integer buffers), from the family's
    own tests (each checked there against the authors' parity fixture)."""
    standin = regen()
    if family == 'biformer':
        from test_biformer import official_manifest

        return official_manifest(model), {}
    if family == 'overlock':
        from test_overlock import official_manifest

        return official_manifest(model), {}
    if family == 'litv2':
        from test_litv2 import to_official_key

        return [
            [to_official_key(k), list(v.shape), str(v.dtype).replace('torch.', '')]
            for k, v in model.state_dict().items()
        ], {}
    if family == 'efficientvit':
        from test_efficientvit import official_layout

        return standin.manifest_of(official_layout(model))
    raise ValueError(family)


def dense_backbone_layout(case: dict, model: torch.nn.Module) -> tuple[list, list, list, dict]:
    """(classification manifest, its rows the dense wrapper keeps, the wrapper's extras, fixed integer buffers)."""
    family, chs = case['family'], case['chs']
    manifest, fixed = _family_official_layout(family, model)
    extras = []
    if family == 'biformer':  # BiFormer_mm: deletes head / norm, adds extra_norms.0-3 (LayerNorm2d)
        for i, c in enumerate(chs):
            extras += [[f'extra_norms.{i}.weight', [c], 'float32'], [f'extra_norms.{i}.bias', [c], 'float32']]
    elif family == 'litv2':  # mmdet wrapper: norm1-3 (output 0 as it is); mmseg wrapper: norm0-3; no head / norm
        levels = range(1, 4) if case['task'] == 'detection' else range(4)
        for i in levels:
            extras += [[f'norm{i}.weight', [chs[i]], 'float32'], [f'norm{i}.bias', [chs[i]], 'float32']]
    elif family == 'overlock':  # dense copies: no head / aux_head; extra_norm.0-3; detection: extra_norm.4 + h_proj
        for i, c in enumerate(chs):
            extras += [[f'extra_norm.{i}.weight', [c], 'float32'], [f'extra_norm.{i}.bias', [c], 'float32']]
        if case['task'] == 'detection':
            overview = model.embed_dims[3]
            extras += [['extra_norm.4.weight', [overview], 'float32'], ['extra_norm.4.bias', [overview], 'float32']]
            extras += [['h_proj.0.weight', [chs[3], overview, 1, 1], 'float32'], ['h_proj.0.bias', [chs[3]], 'float32']]
            extras += [['h_proj.1.weight', [chs[3], 1, 1, 1], 'float32'], ['h_proj.1.bias', [chs[3]], 'float32']]
    dropped = {'biformer': ('head.', 'norm.'), 'litv2': ('head.', 'norm.'), 'overlock': ('head.', 'aux_head.')}
    dropped = dropped.get(family, ('head.',))  # EfficientViT's downstream class has no head
    dense = [row for row in manifest if not row[0].startswith(dropped)]
    return manifest, dense, extras, fixed


def dense_standin(case: dict, model: torch.nn.Module, seed: int = 0) -> tuple[dict, dict]:
    """(official dense checkpoint, official ImageNet checkpoint holding the same backbone weights)."""
    standin = regen()
    manifest, dense, extras, fixed = dense_backbone_layout(case, model)
    classification = standin.regen_state_dict(manifest, fixed, seed=seed)
    state_dict = {f'backbone.{k}': classification[k] for k, _, _ in dense}
    state_dict.update({f'backbone.{k}': v for k, v in standin.regen_state_dict(extras, seed=seed + 1).items()})
    heads = neck_and_heads(case['method'], case['chs'], case['family'])
    state_dict.update(standin.regen_state_dict(heads, seed=seed + 2))
    return {'meta': {'mmdet_version': '2.25.3', 'CLASSES': ('a', 'b')}, 'state_dict': state_dict}, {
        'model': classification
    }


def wrapper_extras_in_our_names(case: dict, state_dict: dict) -> dict:
    """The official dense wrapper's extra layers under our backbone's names (all four outputs requested)."""
    rename = {
        'biformer': [(r'^extra_norms\.(\d)\.', r'out_norms.\1.')],
        'litv2': [(r'^norm(\d)\.', r'out_norms.\1.')],  # mmdet: out_norms.0 is an Identity (no weights)
        'overlock': [
            (r'^extra_norm\.4\.', 'overview_proj.norm.'),
            (r'^extra_norm\.(\d)\.', r'out_norms.\1.'),
            (r'^h_proj\.0\.', 'overview_proj.conv.'),
            (r'^h_proj\.1\.', 'overview_proj.scale.'),
        ],
    }.get(case['family'], [])
    out = {}
    for key, value in state_dict.items():
        key = key[len('backbone.') :] if key.startswith('backbone.') else None
        for pattern, replacement in rename if key else ():
            if re.match(pattern, key):
                name = re.sub(pattern, replacement, key)
                out[name] = value.flatten() if name.startswith('overview_proj.scale.') else value  # (C,1,1,1) scale
                break
    return out


# ---- the official files and our configs -------------------------------------------------------------------------
def _case(config, family, model, chs, small=None, **kwargs):
    task = 'detection' if config.startswith('configs/detection') else 'segmentation'
    method = next(m for m in ('retinanet', 'mask_rcnn', 'upernet', 'fpn') if m in config.split('/')[-1])
    return dict(config=config, family=family, model=model, chs=chs, task=task, small=small,
                method='sfpn' if method == 'fpn' else method, model_kwargs=kwargs)  # fmt: skip


BIFORMER_S, BIFORMER_B = [64, 128, 256, 512], [96, 192, 384, 768]
LITV2_S, LITV2_B = [96, 192, 384, 768], [128, 256, 512, 1024]
OVERLOCK = {'t': [64, 128, 384, 640], 's': [64, 128, 448, 640], 'b': [80, 160, 528, 720]}
EFFICIENTVIT_M4 = [128, 256, 384]
SMALL = {
    'biformer': dict(depths=(1, 1, 1, 1)),
    'litv2': dict(depths=(1, 1, 1, 1)),
    'overlock': dict(depths=(1, 1, 1, 1), focus_depths=(1, 1)),
    'efficientvit': dict(depth=(1, 1, 1)),
}
B_DET, B_SEG = 'configs/detection/biformer/', 'configs/segmentation/biformer/'
EV_DET = 'configs/detection/efficientvit/'
CASES = [
    _case(f'{B_DET}retinanet_biformer_s_fpn_1x_coco.py', 'biformer', 'biformer_small', BIFORMER_S),
    _case(f'{B_SEG}biformer_s_fpn_512x512_80k_ade20k.py', 'biformer', 'biformer_small', BIFORMER_S),
    _case(f'{B_DET}retinanet_biformer_b_fpn_1x_coco.py', 'biformer', 'biformer_base', BIFORMER_B),
    _case(f'{B_DET}mask_rcnn_biformer_s_fpn_1x_coco.py', 'biformer', 'biformer_small', BIFORMER_S),
    _case(f'{B_DET}mask_rcnn_biformer_b_fpn_1x_coco.py', 'biformer', 'biformer_base', BIFORMER_B),
    _case(f'{B_SEG}biformer_b_fpn_512x512_80k_ade20k.py', 'biformer', 'biformer_base', BIFORMER_B),
    _case(f'{B_SEG}biformer_s_upernet_512x512_160k_ade20k.py', 'biformer', 'biformer_small', BIFORMER_S),
    _case(f'{B_SEG}biformer_b_upernet_512x512_160k_ade20k.py', 'biformer', 'biformer_base', BIFORMER_B),
    *[
        _case(f'configs/detection/litv2/{method}_litv2_{v}_fpn_1x_coco{ws}.py', 'litv2', f'litv2_{name}', chs,
              **({'window_sizes': (0, 0, 4, 1)} if ws else {}))
        for method in ('retinanet', 'mask_rcnn')
        for v, name, chs in (('s', 'small', LITV2_S), ('m', 'medium', LITV2_S), ('b', 'base', LITV2_B))
        for ws in ('', '_ws_4')
    ],
    *[
        _case(f'configs/segmentation/litv2/litv2_{v}_fpn_512x512_80k_ade20k.py', 'litv2', f'litv2_{name}', chs)
        for v, name, chs in (('s', 'small', LITV2_S), ('m', 'medium', LITV2_S), ('b', 'base', LITV2_B))
    ],
    *[
        _case(f'configs/detection/overlock/mask_rcnn_overlock_{v}_fpn_{s}_coco.py', 'overlock', f'overlock_{v}', chs,
              deploy=False)
        for v, chs in OVERLOCK.items()
        for s in ('1x', '3x')
    ],
    *[
        _case(f'configs/segmentation/overlock/overlock_{v}_upernet_512x512_160k_ade20k.py', 'overlock',
              f'overlock_{v}', chs, deploy=False)
        for v, chs in OVERLOCK.items()
    ],
    _case(f'{EV_DET}retinanet_efficientvit_m4_fpn_1x_coco.py', 'efficientvit', 'efficientvit_m4', EFFICIENTVIT_M4,
          img_size=448),
    _case(f'{EV_DET}mask_rcnn_efficientvit_m4_fpn_1x_coco.py', 'efficientvit', 'efficientvit_m4', EFFICIENTVIT_M4,
          img_size=448),
]  # fmt: skip
FAST = {
    'configs/detection/biformer/retinanet_biformer_s_fpn_1x_coco.py',
    'configs/segmentation/biformer/biformer_s_fpn_512x512_80k_ade20k.py',
    'configs/detection/litv2/retinanet_litv2_s_fpn_1x_coco.py',
    'configs/segmentation/overlock/overlock_t_upernet_512x512_160k_ade20k.py',
    'configs/detection/efficientvit/mask_rcnn_efficientvit_m4_fpn_1x_coco.py',
}


def _params(small: bool) -> list:
    out = []
    for case in CASES:
        if small and case['config'] in FAST:
            out.append(pytest.param(dict(case, small=True), id=f'small-{case["config"].split("/")[-1][:-3]}'))
        elif not small:
            out.append(pytest.param(case, id=case['config'].split('/')[-1][:-3], marks=pytest.mark.slow))
    return out


_BUILT: dict = {}


def built(case: dict):
    """(model the config builds, official dense stand-in, official ImageNet stand-in), cached per case."""
    from backbonezoo.mm.dense_convert import build_dense_model

    key = (case['config'], bool(case['small']))
    if key not in _BUILT:
        if not case['small']:  # full-size detectors are large: keep one at a time
            for stale in [k for k in _BUILT if not k[1]]:
                del _BUILT[stale]
        import timm

        small = SMALL[case['family']] if case['small'] else {}
        options = {'model.backbone.model_kwargs': dict(small)} if small else {}
        model = build_dense_model(REPO / case['config'], options).eval()
        # shapes only, except EfficientViT: its official layout carries the attention_bias_idxs index buffers
        device = 'cpu' if case['family'] == 'efficientvit' else 'meta'
        with torch.device(device):
            full = timm.create_model(case['model'], **small, **case['model_kwargs'])
        _BUILT[key] = (model, options, *dense_standin(case, full))
    return _BUILT[key]


def test_every_config_named_here_exists_and_is_recorded_in_the_zoo():
    import backbonezoo

    recorded = {d.config for name in backbonezoo.families() for d in backbonezoo.get_family(name).dense}
    for case in CASES:
        assert (REPO / case['config']).is_file(), case['config']
        assert case['config'] in recorded, f'{case["config"]}: no DenseCheckpoint record in backbonezoo.zoo'


@pytest.mark.parametrize('case', _params(small=True) + _params(small=False))
def test_official_dense_checkpoint_loads_strictly(case, tmp_path):
    import backbonezoo

    model, options, dense, _ = built(case)
    path = tmp_path / 'official.pth'
    torch.save(dense, path)
    if options:  # the narrowed model: convert for the model built with the same options
        converted = backbonezoo.convert_checkpoint(path, str(REPO / case['config']), model=model)
    else:  # the config as it is: the converter builds the model itself
        converted = backbonezoo.convert_checkpoint(path, str(REPO / case['config']))
    expected = model.state_dict()
    assert converted.keys() == expected.keys()
    assert all(tuple(converted[k].shape) == tuple(v.shape) for k, v in expected.items())
    model.load_state_dict(converted, strict=True)
    # neck / heads come over unchanged, under the same names
    for key, value in dense['state_dict'].items():
        if not key.startswith('backbone.'):
            assert converted[key].equal(value), key
    # every tensor of the file is used: the backbone's tensors are all taken (the rest is checked above)
    backbone_in = sum(v.numel() for k, v in dense['state_dict'].items() if k.startswith('backbone.'))
    backbone_out = sum(v.numel() for k, v in converted.items() if k.startswith('backbone.'))
    if case['family'] != 'efficientvit':  # its files carry attention_bias_idxs, which our model recomputes
        assert backbone_in == backbone_out


@pytest.mark.parametrize('case', _params(small=True) + _params(small=False))
def test_backbone_features_equal_the_imagenet_route(case):
    from backbonezoo.mm.dense_convert import convert_dense_checkpoint, load_dense_config

    model, options, dense, classification = built(case)
    model.load_state_dict(convert_dense_checkpoint(dense, REPO / case['config'], model=model), strict=True)
    cfg = load_dense_config(REPO / case['config'], options)
    backbone_cfg = dict(cfg.model.backbone, init_cfg=dict(type='Pretrained', checkpoint=classification))
    from mmengine.registry import MODELS

    imagenet = MODELS.build(backbone_cfg)
    imagenet.init_weights()
    # the output norms / projections exist in dense files only: set from the file by the wrappers' naming (data)
    extras = wrapper_extras_in_our_names(case, dense['state_dict'])
    assert set(extras) == {k for k in imagenet.state_dict() if k.startswith(('out_norms.', 'overview_proj.'))}
    imagenet.load_state_dict({**imagenet.state_dict(), **extras}, strict=True)
    imagenet.eval()
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, reference = model.backbone(x), imagenet(x)
    assert len(ours) == len(reference) == len(case['chs'])
    for i, (a, b) in enumerate(zip(ours, reference)):
        assert a.shape[1] == case['chs'][i]
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f'output {i}')


@pytest.mark.parametrize('case', _params(small=True))
def test_missing_unexpected_and_misshaped_keys_are_named(case):
    from backbonezoo.mm.dense_convert import DenseCheckpointMismatchError, convert_dense_checkpoint

    model, _, dense, _ = built(case)
    state_dict = dense['state_dict']
    head_key = next(k for k in state_dict if not k.startswith('backbone.') and k.endswith('.weight'))
    backbone_key = next(k for k in state_dict if k.startswith('backbone.') and k.endswith('.weight'))
    cases = {
        'missing': ({k: v for k, v in state_dict.items() if k != head_key}, head_key),
        'missing ': ({k: v for k, v in state_dict.items() if k != backbone_key}, None),
        'unexpected': ({**state_dict, 'roi_head.extra.weight': torch.zeros(2)}, 'roi_head.extra.weight'),
        'shape': ({**state_dict, head_key: torch.zeros(3, 1)}, head_key),
        'unexpected ': ({**state_dict, 'backbone.extra_norm_9.weight': torch.zeros(2)}, None),
    }
    for kind, (broken, named) in cases.items():
        with pytest.raises(DenseCheckpointMismatchError) as info:
            convert_dense_checkpoint({'state_dict': broken}, REPO / case['config'], model=model)
        message = str(info.value)
        assert f'{kind.strip()} keys' in message and 'nothing was converted' in message
        if named is not None:
            assert named in message


@pytest.mark.parametrize('case', _params(small=True)[:1])
def test_test_tool_loader_and_convert_tool_give_the_same_weights(case, tmp_path):
    import importlib.util

    from backbonezoo.mm.dense_convert import convert_dense_checkpoint
    from backbonezoo.mm.runtime import fit_state_dict

    model, options, dense, _ = built(case)
    reference = convert_dense_checkpoint(dense, REPO / case['config'], model=model)
    loaded = fit_state_dict(model, dense, source='official.pth')  # what tools/test.py's Runner loads
    assert loaded.keys() == reference.keys() and all(loaded[k].equal(v) for k, v in reference.items())

    spec = importlib.util.spec_from_file_location('convert_tool', REPO / 'tools' / 'convert_checkpoint.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save(dense, src)
    args = ['--config', str(REPO / case['config']), str(src), str(dst)]
    for key, value in options.items():
        args += ['--cfg-options', f'{key}={value!r}'.replace(' ', '')]
    assert tool.main(args) == 0
    written = torch.load(dst, weights_only=True)['state_dict']
    assert written.keys() == reference.keys() and all(written[k].equal(v) for k, v in reference.items())


# ---- the official test-time settings ----------------------------------------------------------------------------
@pytest.mark.parametrize('size', [(375, 500), (512, 683), (333, 1000), (640, 480), (97, 131)])
def test_align_resize_rescales_then_resizes_to_multiples_of_32(size):
    import numpy as np
    from mmengine.registry import DefaultScope
    from mmseg.registry import TRANSFORMS

    from backbonezoo.mm.dense_convert import AlignResize  # noqa: F401  (registers the transform in mmseg's scope)

    cfg = load_dense_config(REPO / 'configs/segmentation/biformer/biformer_s_fpn_512x512_80k_ade20k.py')
    resize = next(t for t in cfg.test_pipeline if t['type'] == 'AlignResize')
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    with DefaultScope.overwrite_default_scope('mmseg'):  # as in a Runner of the (mmseg-scoped) config
        transform = TRANSFORMS.build(dict(resize))
    out = transform({'img': image, 'img_shape': size, 'ori_shape': size, 'seg_fields': []})
    height, width = size
    scale = min(2048 / max(height, width), 512 / min(height, width))  # mmcv's keep-ratio rescale to (2048, 512)
    rescaled = (int(height * scale + 0.5), int(width * scale + 0.5))
    expected = tuple(math.ceil(s / 32) * 32 for s in rescaled)
    assert out['img'].shape[:2] == expected == tuple(out['img_shape'])
    assert out['scale_factor'] == pytest.approx((expected[1] / width, expected[0] / height))


def load_dense_config(path, options=None):
    from backbonezoo.mm.dense_convert import load_dense_config as load

    return load(path, options)


@pytest.mark.parametrize('case', CASES, ids=[c['config'].split('/')[-1][:-3] for c in CASES])
def test_configs_carry_the_official_test_time_settings(case):
    cfg = load_dense_config(REPO / case['config'])
    backbone = cfg.model.backbone
    if case['family'] == 'biformer':  # n_win 16 for COCO, 8 for ADE20K 512 crops, auto_pad: every official config
        assert backbone.n_win == (16 if case['task'] == 'detection' else 8) and backbone.auto_pad
    pipeline = [t['type'] for t in cfg.test_dataloader.dataset.pipeline]
    if case['task'] == 'segmentation':
        assert cfg.model.test_cfg.mode == 'whole'
        resize = cfg.test_dataloader.dataset.pipeline[
            pipeline.index('AlignResize' if 'AlignResize' in pipeline else 'Resize')
        ]
        assert tuple(resize['scale']) == (2048, 512) and resize['keep_ratio']
        if case['family'] == 'biformer' and case['method'] == 'sfpn':  # UniFormer's AlignResize (ade20k_sfpn.py)
            assert 'AlignResize' in pipeline and resize['size_divisor'] == 32
        if case['family'] == 'biformer' and case['method'] == 'upernet':  # README: single scale and ms + flip
            ratios = [t['scale'][1] / 512 for t in cfg.tta_pipeline[1]['transforms'][0]]
            assert ratios == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
            assert [t['prob'] for t in cfg.tta_pipeline[1]['transforms'][1]] == [0.0, 1.0]
    else:
        resize = cfg.test_dataloader.dataset.pipeline[pipeline.index('Resize')]
        assert tuple(resize['scale']) == (1333, 800) and resize['keep_ratio'] and 'RandomFlip' not in pipeline
        assert cfg.model.data_preprocessor.pad_size_divisor == 32


def test_tta_wrapped_model_loads_the_official_file_through_the_same_converter():
    from mmseg.models import SegTTAModel

    from backbonezoo.mm.dense_convert import convert_dense_checkpoint
    from backbonezoo.mm.runtime import fit_state_dict

    case = next(c for c in CASES if c['config'].endswith('biformer_s_fpn_512x512_80k_ade20k.py'))
    model, _, dense, _ = built(dict(case, small=True))
    reference = convert_dense_checkpoint(dense, REPO / case['config'], model=model)
    loaded = fit_state_dict(SegTTAModel(module=model), dense, source='official.pth')  # tools/test.py --tta
    assert loaded.keys() == {f'module.{k}' for k in reference}
    assert all(loaded[f'module.{k}'].equal(v) for k, v in reference.items())


def test_mmdet_1x_head_names_are_renamed_only_where_they_fit():
    """mmdet 1.x kept the RoI heads at the top level (``bbox_head.*`` / ``mask_head.*``): renamed into ``roi_head``
    for a two-stage detector; RetinaNet's own ``bbox_head`` is left alone (covered by its strict load above)."""
    from backbonezoo.mm.dense_convert import convert_dense_checkpoint

    case = next(c for c in CASES if c['config'].endswith('mask_rcnn_efficientvit_m4_fpn_1x_coco.py'))
    model, _, dense, _ = built(dict(case, small=True))
    reference = convert_dense_checkpoint(dense, REPO / case['config'], model=model)
    legacy = {k.replace('roi_head.', '', 1): v for k, v in dense['state_dict'].items()}
    assert any(k.startswith('bbox_head.') for k in legacy) and not any(k.startswith('roi_head.') for k in legacy)
    converted = convert_dense_checkpoint({'state_dict': legacy}, REPO / case['config'], model=model)
    assert converted.keys() == reference.keys() and all(converted[k].equal(v) for k, v in reference.items())
