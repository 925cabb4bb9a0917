"""TiC (MSA-Conv): what is special to the family.

There is no official network, so parity is operator-level: ``backbonezoo.kernels.local_attention(border='zero')``
against an unfold reference written here from the official CUDA op's semantics (zero-padded dilated window, zero keys
and values in the softmax, scale over the call's channels), asymmetric QK / V windows, gradients in fp32 and half
precision, then our model-level readings of heads (standard / grouped / depthwise), the multi-directional cyclic
shift and inter-pooling against explicit rolls / per-sub-image loops. Then the network: our variant counts, any input
size, kernel backends, FLOPs with the attention counted, robustness, checkpoints, the mm backbone and the configs.
The generic timm API (features_only, forward_intermediates, classifier reset, bad input) is the contract suite's.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from helpers import REPO, assert_close_rel

import backbonezoo
from backbonezoo import CheckpointMismatchError, convert_checkpoint
from backbonezoo.backbones.tic import MSAConv, TiC, msa_conv
from backbonezoo.kernels import local_aggregate, local_attention, local_scores

VARIANTS = [v.name for v in backbonezoo.get_family('tic').variants]
# a narrow configuration with every block kind (plain, dilated + inter-pooled + shifted) in every stage
NARROW = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 4, 4, 8), num_classes=10)


def narrow(**kwargs) -> TiC:
    torch.manual_seed(0)
    return timm.create_model('tic_tiny', **dict(NARROW, **kwargs)).eval()


# ----------------------------------------------------------------------------------------------- operator reference
def unfold_windows(x: torch.Tensor, kernel: tuple[int, int], dilation: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, kh*kw, H, W): the zero-padded dilated windows, slots row-major (the official im2col)."""
    B, C, H, W = x.shape
    kh, kw = kernel
    padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
    return F.unfold(x, kernel, dilation=dilation, padding=padding).view(B, C, kh * kw, H, W)


def unfold_msa_conv(q, k, v, kernel, dilation=1, v_kernel=None, scale=None, masked=False) -> torch.Tensor:
    """The official op pair (QK^T, softmax, attn.V) on NCHW tensors, one head over all C channels.

    ``masked=True`` gives SASA's masked softmax instead (outside slots get -inf): the behaviour MSA-Conv is *not*.
    """
    C = q.shape[1]
    logits = torch.einsum('bchw,bckhw->bkhw', q, unfold_windows(k, kernel, dilation))
    logits = logits * (C**-0.5 if scale is None else scale)
    if masked:
        inside = unfold_windows(torch.ones_like(q[:, :1]), kernel, dilation)[:, 0] > 0
        logits = logits.masked_fill(~inside, float('-inf'))
    attn = logits.softmax(dim=1)
    return torch.einsum('bkhw,bckhw->bchw', attn, unfold_windows(v, v_kernel or kernel, dilation))


def to_op(x: torch.Tensor) -> torch.Tensor:
    """NCHW single head -> the kernels' (B, heads=1, H, W, C)."""
    return x.permute(0, 2, 3, 1).unsqueeze(1)


def from_op(x: torch.Tensor) -> torch.Tensor:
    return x.squeeze(1).permute(0, 3, 1, 2)


OPERATOR_CASES = [
    # (kernel, dilation, H, W): kernels 3 / 5 / 7, dilations 1-3, non-square maps, maps smaller than the window
    (3, 1, 9, 13),
    (5, 2, 12, 7),
    (7, 3, 10, 16),
    (7, 1, 4, 5),
    (5, 3, 3, 6),
    ((3, 5), 2, 8, 11),
]


@pytest.mark.parametrize('backend', ['reference', 'torch'])
@pytest.mark.parametrize('kernel, dilation, height, width', OPERATOR_CASES)
def test_msa_conv_forward_matches_the_unfold_reference(kernel, dilation, height, width, backend):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 6, height, width, dtype=torch.float64) for _ in range(3))
    pair = (kernel, kernel) if isinstance(kernel, int) else kernel
    expected = unfold_msa_conv(q, k, v, pair, dilation)
    out = local_attention(
        to_op(q), to_op(k), to_op(v), pair, dilation=dilation, border='zero', scale=6**-0.5, backend=backend
    )
    torch.testing.assert_close(from_op(out), expected)


def test_border_zeros_take_part_in_the_softmax():
    """At corners MSA-Conv differs from a masked softmax (zero keys leak attention mass); inside it is identical."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 8, 11, 11) for _ in range(3))
    out = from_op(local_attention(to_op(q), to_op(k), to_op(v), 5, dilation=2, border='zero', scale=8**-0.5))
    zero_padded, masked = unfold_msa_conv(q, k, v, (5, 5), 2), unfold_msa_conv(q, k, v, (5, 5), 2, masked=True)
    torch.testing.assert_close(out, zero_padded)
    # windows reach 4 pixels out: the interior [4, 7) has no outside neighbour
    torch.testing.assert_close(out[..., 4:7, 4:7], masked[..., 4:7, 4:7])
    assert (out[..., 0, 0] - masked[..., 0, 0]).abs().max() > 0.1


def test_asymmetric_qk_and_v_windows():
    """The official validation case: a (5, 1) QK window with a (1, 5) V window at dilation 2, through the two halves."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 10, dtype=torch.float64) for _ in range(3))
    logits = local_scores(to_op(q), to_op(k), (5, 1), dilation=2, border='zero', scale=4**-0.5)
    out = local_aggregate(logits.softmax(-1), to_op(v), (1, 5), dilation=2, border='zero')
    torch.testing.assert_close(from_op(out), unfold_msa_conv(q, k, v, (5, 1), 2, v_kernel=(1, 5)))


@pytest.mark.parametrize('backend', ['reference', 'torch'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16])
def test_msa_conv_gradients_match_autograd_through_the_reference(dtype, backend):
    """Gradients in fp32 and half precision (the official op cannot run its backward in half precision)."""
    torch.manual_seed(0)
    inputs = [torch.randn(2, 8, 7, 9).to(dtype) for _ in range(3)]
    grad_out = torch.randn(2, 8, 7, 9)
    ours = [t.clone().requires_grad_() for t in inputs]
    out = from_op(local_attention(*map(to_op, ours), 5, dilation=2, border='zero', scale=8**-0.5, backend=backend))
    (out.float() * grad_out).sum().backward()
    ref = [t.double().requires_grad_() for t in inputs]  # the same (rounded) inputs, in float64
    (unfold_msa_conv(*ref, (5, 5), 2) * grad_out.double()).sum().backward()
    rtol = 1e-5 if dtype == torch.float32 else 3e-2
    assert_close_rel(out.double(), unfold_msa_conv(*ref, (5, 5), 2).detach(), rtol=rtol, what=f'{dtype} forward')
    for name, a, b in zip('qkv', ours, ref):
        assert a.grad.dtype == dtype
        assert_close_rel(a.grad.double(), b.grad, rtol=rtol * 2, what=f'{dtype} d{name}')


# ----------------------------------------------------------------------------------------------- model-level forms
def split_qkv(qkv: torch.Tensor) -> list[torch.Tensor]:
    """Fused NHWC (B, H, W, 3C) -> q, k, v as NCHW, in the ``[q | k | v]`` order of the official toy block."""
    return [t.permute(0, 3, 1, 2) for t in qkv.chunk(3, dim=-1)]


def per_head(fn, q, k, v, heads: int) -> torch.Tensor:
    """Apply the single-head ``fn`` to each channel group separately and concatenate (heads as separate calls)."""
    return torch.cat([fn(*t, g) for g, t in enumerate(zip(q.chunk(heads, 1), k.chunk(heads, 1), v.chunk(heads, 1)))], 1)


@pytest.mark.parametrize('heads, form', [(1, 'standard'), (2, 'grouped'), (8, 'depthwise')])
def test_heads_fold_into_the_batch(heads, form):
    """One head = the standard form (all channels in each logit), heads = channels = the depthwise form."""
    torch.manual_seed(0)
    qkv = torch.randn(2, 9, 11, 24, dtype=torch.float64)
    q, k, v = split_qkv(qkv)
    out = msa_conv(qkv, heads, 3, dilation=2).permute(0, 3, 1, 2)
    expected = per_head(lambda q, k, v, g: unfold_msa_conv(q, k, v, (3, 3), 2), q, k, v, heads)
    torch.testing.assert_close(out, expected, msg=form)


@pytest.mark.parametrize('heads', [2, 4, 8])
def test_cyclic_shift_rolls_head_groups_along_the_diagonals(heads):
    torch.manual_seed(0)
    qkv = torch.randn(1, 10, 7, 3 * 16, dtype=torch.float64)
    q, k, v = split_qkv(qkv)
    groups = math.gcd(heads, 4)
    directions = [(1, 1), (-1, -1), (1, -1), (-1, 1)]

    def shifted(q, k, v, g):
        dy, dx = directions[g // (heads // groups)]
        roll = lambda t: torch.roll(t, shifts=(2 * dy, 2 * dx), dims=(2, 3))  # noqa: E731
        return unfold_msa_conv(q, roll(k), roll(v), (3, 3), 1)

    out = msa_conv(qkv, heads, 3, shift_size=2).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, per_head(shifted, q, k, v, heads))
    assert not torch.allclose(out, msa_conv(qkv, heads, 3).permute(0, 3, 1, 2))


@pytest.mark.parametrize('size', [(8, 12), (11, 14), (5, 3)])
@pytest.mark.parametrize('shift', [0, 1])
def test_inter_pooling_is_space_to_batch_queries_on_pooled_keys(size, shift):
    """Every sub-image (a, b) of the queries (pixels a::f, b::f) attends to the same conv-pooled keys / values;
    the output goes back to its pixels. Sides that are not multiples of f are zero-padded, then cropped."""
    torch.manual_seed(0)
    f, heads, dim = 2, 2, 8
    H, W = size
    qkv = torch.randn(2, H, W, 3 * dim, dtype=torch.float64)
    weight, bias = torch.randn(2 * dim, 1, f, f, dtype=torch.float64), torch.randn(2 * dim, dtype=torch.float64)
    out = msa_conv(qkv, heads, 3, dilation=2, pool_factor=f, pool_weight=weight, pool_bias=bias, shift_size=shift)

    padded = F.pad(qkv, (0, 0, 0, -W % f, 0, -H % f))
    q, k, v = split_qkv(padded)
    kv = F.conv2d(torch.cat([k, v], 1), weight, bias, stride=f, groups=2 * dim)
    k, v = kv.chunk(2, 1)

    def attend(q, k, v, g):
        dy, dx = ((1, 1), (-1, -1))[g]
        roll = lambda t: torch.roll(t, shifts=(shift * dy, shift * dx), dims=(2, 3))  # noqa: E731
        return unfold_msa_conv(q, roll(k), roll(v), (3, 3), 2)

    expected = torch.zeros_like(q)
    for a in range(f):
        for b in range(f):
            expected[..., a::f, b::f] = per_head(attend, q[..., a::f, b::f], k, v, heads)
    torch.testing.assert_close(out.permute(0, 3, 1, 2), expected[..., :H, :W])


def test_inter_pooled_msa_conv_exports_with_dynamic_sizes():
    """torch.export keeps H / W symbolic through inter-pooling (pad to the factor, space-to-batch, pooled keys, crop):
    the program traced at an even size runs at odd and other sizes with the eager outputs. Size arithmetic written
    as remainders, or a crop by slicing, records guards on the traced sides' parity that pin the program to them."""
    torch.manual_seed(0)
    mixer = MSAConv(32, 2, 7, dilation=2, pool_factor=2, shift_size=6).eval()
    dim = torch.export.Dim
    program = torch.export.export(
        mixer, (torch.randn(1, 28, 28, 32),), dynamic_shapes={'x': {1: dim.AUTO, 2: dim.AUTO}}
    ).module()
    for size in [(28, 25), (27, 41), (40, 30)]:
        x = torch.randn(1, *size, 32)
        with torch.no_grad():
            torch.testing.assert_close(program(x), mixer(x))


def test_msa_conv_module_rejects_bad_arguments():
    with pytest.raises(ValueError, match='kernel_size=4'):
        MSAConv(16, 2, kernel_size=4)
    with pytest.raises(ValueError, match='num_heads=3'):
        MSAConv(16, 3)
    with pytest.raises(ValueError, match='pool_factor=0'):
        MSAConv(16, 2, pool_factor=0)


# ----------------------------------------------------------------------------------------------- variants
def meta_model(name: str, **kwargs) -> TiC:
    with torch.device('meta'):
        return timm.create_model(name, **kwargs)


@pytest.mark.parametrize('name, tier', list(zip(VARIANTS, (28e6, 50e6, 88e6))))
def test_variants_are_ours_at_the_usual_tiers(name, tier):
    """No paper table was available: counts are our models' exact counts at the Swin tiers, with no paper figures."""
    variant = backbonezoo.variant_info(name)
    count = sum(p.numel() for p in meta_model(name).parameters())
    assert count == variant.params
    assert abs(count - tier) <= 0.05 * tier
    assert variant.gmacs is None and variant.top1 is None and 'ours' in variant.paper_name
    assert timm.get_pretrained_cfg(name).url == ''  # no weights exist


def test_network_has_every_block_kind():
    model = meta_model('tic_tiny')
    kinds = {
        (b.attn.dilation, b.attn.pool_factor, b.attn.shift_size > 0) for stage in model.stages for b in stage.blocks
    }
    assert kinds == {(1, 1, False), (2, 2, True), (1, 2, True), (1, 1, True)}
    assert not any('pos' in n for n, _ in model.named_parameters())  # no fixed-size position embedding


# ----------------------------------------------------------------------------------------------- any input size
def test_one_model_runs_at_any_size():
    """The paper's central claim: one set of weights, every size, no resizing of anything."""
    model = narrow()
    with torch.no_grad():
        for size in [(224, 224), (320, 320), (512, 512), (800, 1216), (511, 673), (33, 47)]:
            features = model.forward_intermediates(torch.randn(1, 3, *size), intermediates_only=True)
            maps = [tuple(f.shape[-2:]) for f in features]
            assert maps == [tuple(math.ceil(s / r) for s in size) for r in (4, 8, 16, 32)], size
            assert all(torch.isfinite(f).all() for f in features)


def test_tic_tiny_runs_at_any_size():
    model = timm.create_model('tic_tiny').eval()
    with torch.no_grad():
        for size in (224, 320, 512):
            out = model(torch.randn(1, 3, size, size))
            assert out.shape == (1, 1000) and torch.isfinite(out).all(), size


def test_min_size_is_enforced_and_sufficient():
    model = narrow()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 33)).shape == (1, 10)
    with pytest.raises(ValueError, match='at least 32x32'):
        model(torch.randn(1, 3, 31, 64))


# ----------------------------------------------------------------------------------------------- kernels and FLOPs
def test_kernel_backends_agree(monkeypatch):
    x = torch.randn(2, 3, 64, 96)
    outputs = {}
    for backend in ('reference', 'torch', None):
        with torch.no_grad():
            outputs[backend] = narrow(kernel_backend=backend)(x)
    monkeypatch.setenv('BACKBONEZOO_KERNEL_BACKEND', 'reference')
    with torch.no_grad():
        outputs['env'] = narrow()(x)
    for backend, out in outputs.items():
        assert_close_rel(out, outputs['reference'], rtol=1e-5, what=f'backend {backend}')


@pytest.mark.triton
def test_triton_msa_conv_matches_reference_interpreted():
    """Every MSA-Conv form of the model (dilated, inter-pooled at an odd size, shifted) on the Triton kernels, forward
    and backward, under TRITON_INTERPRET=1 (set before triton is imported, hence a fresh interpreter)."""
    pytest.importorskip('triton')
    script = textwrap.dedent(
        """
        import torch
        from backbonezoo.backbones.tic import msa_conv
        torch.set_num_threads(1)
        torch.manual_seed(0)
        qkv = torch.randn(1, 7, 5, 24)
        weight, bias = torch.randn(16, 1, 2, 2), torch.randn(16)
        for kwargs in (dict(dilation=2), dict(pool_factor=2, pool_weight=weight, pool_bias=bias, shift_size=1)):
            outs, grads = [], []
            for backend in ('reference', 'triton'):
                x = qkv.clone().requires_grad_()
                out = msa_conv(x, 2, 3, backend=backend, **kwargs)
                out.square().sum().backward()
                outs.append(out)
                grads.append(x.grad)
            torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)
            print('ok', flush=True)
        """
    )
    env = {**os.environ, 'TRITON_INTERPRET': '1'}
    result = subprocess.run(
        [sys.executable, '-c', script], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert result.stdout.count('ok') == 2, result.stdout


def test_flops_count_the_attention():
    """count_flops sees MSA-Conv through the local_attention handle: k*k keys per query, d_qk + d_v MACs each."""
    from backbonezoo.flops import count_flops

    model = meta_model('tic_tiny').to_empty(device='cpu')
    with torch.no_grad():  # values do not change the count; zeros keep every op finite
        for tensor in model.state_dict().values():
            tensor.zero_()
    result = count_flops(model, (3, 224, 224))
    assert result.unexpected_skips == {}
    expected = 0
    for i, stage in enumerate(model.stages):
        side = 224 // (4 * 2**i)  # every pooled map divides at 224: as many queries as pixels
        dim = 96 * 2**i
        expected += sum(side * side * dim * 2 * b.attn.kernel_size**2 for b in stage.blocks)
    assert result.by_operator['local_attention'] == expected
    assert 4.0 < result.gmacs < 5.0  # Swin-T's tier (4.5 GMACs), our measured 4.64


# ----------------------------------------------------------------------------------------------- robustness
def test_wrong_dtype_is_a_named_error():
    with pytest.raises(TypeError, match='floating-point'):
        narrow()(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_batch_one_channels_last_and_half_precision_training():
    model = narrow()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        ref = model(x)
        assert_close_rel(model(x[:1]), ref[:1], rtol=1e-5, what='batch 1')
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert_close_rel(cl, ref, rtol=1e-5, what='channels_last')
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):  # the official op has no half-precision backward
        loss = model(x).float().square().mean()
    loss.backward()
    grad = model.stages[0].blocks[1].attn.qkv.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_grad_checkpointing_gives_the_same_gradients():
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for enable in (False, True):
        model = narrow(drop_path_rate=0.0).train()
        model.set_grad_checkpointing(enable)
        model(x).sum().backward()
        grads.append(model.stages[1].blocks[1].attn.kv_pool.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_own_checkpoint_round_trips_and_other_families_are_named_errors(tmp_path):
    model = narrow()
    path = tmp_path / 'tic.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()}}, path)
    converted = convert_checkpoint(path, 'tic_tiny', model=narrow())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(converted[key], value)
    other = meta_model('litv2_small').state_dict()
    with pytest.raises(CheckpointMismatchError, match='missing keys') as err:
        convert_checkpoint({'model': other}, 'tic_tiny', model=meta_model('tic_tiny'))
    assert 'stem.conv1.weight' in err.value.missing and 'patch_embed.proj.weight' in err.value.unexpected


@pytest.mark.slow
def test_onnx_export_with_dynamic_sizes(tmp_path):
    """One dynamo export (dynamic H / W) runs in onnxruntime at the traced size, at odd sides (inter-pooling pads and
    crops inside the graph) and at another aspect, with the eager outputs."""
    ort = pytest.importorskip('onnxruntime')
    model = narrow()
    path = tmp_path / 'tic.onnx'
    dim = torch.export.Dim
    dynamic_shapes = {'x': {2: dim.AUTO, 3: dim.AUTO}}
    torch.onnx.export(
        model, (torch.randn(1, 3, 96, 128),), str(path), dynamo=True, dynamic_shapes=dynamic_shapes, external_data=False
    )
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for size in [(96, 128), (97, 131), (160, 72)]:
        x = torch.randn(1, 3, *size)
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            assert_close_rel(torch.from_numpy(out), model(x), rtol=1e-4, what=f'onnxruntime at {size}')


# ----------------------------------------------------------------------------------------------- OpenMMLab
CONFIGS = REPO / 'configs'
MM_KWARGS = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 4, 4, 8))


@pytest.fixture(scope='module')
def registries():
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    import backbonezoo.mm  # noqa: F401  (registers TiC)

    return DET, SEG


@pytest.mark.mm
@pytest.mark.parametrize('flavour', ['mmdet', 'mmseg'])
def test_mm_backbone_strides_and_odd_sizes(flavour, registries):
    registry = registries[0] if flavour == 'mmdet' else registries[1]
    backbone = registry.build(dict(type='TiC', arch='tiny', model_kwargs=MM_KWARGS)).eval()
    assert backbone.out_channels == [16, 32, 64, 128] and backbone.out_strides == [4, 8, 16, 32]
    with torch.no_grad():
        for size in [(511, 673)] + ([(800, 1216)] if flavour == 'mmdet' else []):
            outs = backbone(torch.randn(1, 3, *size))
            assert [tuple(o.shape[-2:]) for o in outs] == [
                tuple(math.ceil(s / r) for s in size) for r in (4, 8, 16, 32)
            ]
    # no padding: the model itself handles every size, so the output at an odd size is the model's own
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        own = backbone.model.forward_intermediates(x, intermediates_only=True)
        outs = backbone(x)
    for out, feature, norm in zip(outs, own, backbone.out_norms):
        torch.testing.assert_close(out, norm(feature))


@pytest.mark.mm
def test_mm_out_indices_and_frozen_stages(registries):
    backbone = registries[0].build(dict(type='TiC', model_kwargs=MM_KWARGS, out_indices=(1, 3), frozen_stages=2))
    backbone.train()
    assert len(backbone.model.stages) == 4 and backbone.out_channels == [32, 128]
    frozen = {'.'.join(n.split('.')[1:3]) for n, p in backbone.named_parameters() if not p.requires_grad}
    # stem, stages 0-1, and the output norm of level 1 (produced by a frozen stage; out_norms.0 serves out_indices[0])
    assert frozen == {'stem.conv1', 'stem.bn1', 'stem.conv2', 'stem.norm', 'stages.0', 'stages.1', '0.weight', '0.bias'}
    assert all(not p.requires_grad for p in backbone.out_norms[0].parameters())
    assert all(p.requires_grad for p in backbone.out_norms[1].parameters())
    assert not backbone.model.stem.bn1.training  # the frozen stem's BatchNorm stays in eval mode
    outs = backbone(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 12), (2, 128, 2, 3)]
    sum(o.sum() for o in outs).backward()
    pruned = registries[0].build(dict(type='TiC', model_kwargs=MM_KWARGS, out_indices=(0, 1)))
    assert len(pruned.model.stages) == 2


@pytest.mark.mm
def test_mm_norm_eval_and_with_cp(registries):
    kwargs = dict(type='TiC', model_kwargs=dict(MM_KWARGS, drop_path_rate=0.0), norm_eval=True)
    plain = registries[1].build(kwargs).train()
    assert not plain.model.stem.bn1.training
    checkpointed = registries[1].build(dict(kwargs, with_cp=True)).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 65, 77)
    outs, outs_cp = plain(x), checkpointed(x)
    for a, b in zip(outs, outs_cp):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in outs_cp).backward()
    assert checkpointed.model.stages[2].blocks[1].attn.kv_pool.weight.grad is not None


@pytest.mark.mm
def test_mm_init_cfg_loads_our_checkpoints_and_names_foreign_ones(registries, tmp_path):
    source = narrow(num_classes=1000)
    path = tmp_path / 'tic_narrow.pth'
    torch.save({'model': source.state_dict()}, path)
    backbone = registries[0].build(
        dict(type='TiC', model_kwargs=MM_KWARGS, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    )
    backbone.init_weights()
    for key, value in backbone.model.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])
    # a detector trained with this backbone (OpenMMLab layout, output norms included) loads back, neck keys dropped
    with torch.no_grad():
        backbone.out_norms[0].weight.uniform_()
    detector = {f'backbone.{k}': v for k, v in backbone.state_dict().items()} | {'neck.conv.weight': torch.ones(1)}
    reloaded = registries[0].build(
        dict(type='TiC', model_kwargs=MM_KWARGS, init_cfg=dict(type='Pretrained', checkpoint={'state_dict': detector}))
    )
    reloaded.init_weights()
    for key, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, backbone.state_dict()[key])
    other_family = {'model': meta_model('litv2_small').state_dict()}
    foreign = registries[0].build(
        dict(type='TiC', model_kwargs=MM_KWARGS, init_cfg=dict(type='Pretrained', checkpoint=other_family))
    )
    with pytest.raises(CheckpointMismatchError, match='missing keys'):
        foreign.init_weights()


def _config_files(kind: str) -> list[Path]:
    return sorted((CONFIGS / kind / 'tic').glob('*.py'))


@pytest.mark.mm
@pytest.mark.parametrize('path', _config_files('detection') + _config_files('segmentation'), ids=lambda p: p.stem)
def test_mm_configs_are_the_standard_setups(path, registries):
    from mmengine.config import Config

    cfg = Config.fromfile(str(path))
    backbone = cfg.model.backbone
    assert backbone.type == 'TiC' and 'init_cfg' not in backbone  # no weights exist
    channels = [info['num_chs'] for info in meta_model(f'tic_{backbone.arch}').feature_info]
    if 'segmentation' in str(path):
        assert list(cfg.model.decode_head.in_channels) == channels
        assert cfg.model.auxiliary_head.in_channels == channels[2]
        assert cfg.train_cfg.max_iters == 160000 and cfg.optim_wrapper.optimizer.lr == 6e-5
    else:
        assert list(cfg.model.neck.in_channels) == channels
        assert cfg.train_cfg.max_epochs == 12 and cfg.optim_wrapper.optimizer.lr == 1e-4
    assert backbone.drop_path_rate == {'tiny': 0.2, 'small': 0.3}[backbone.arch]


@pytest.mark.mm
def test_mm_detection_config_builds_and_runs(registries):
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(CONFIGS / 'detection' / 'tic' / 'retinanet_tic_tiny_fpn_1x_coco.py'))
    cfg.model.backbone.model_kwargs = MM_KWARGS
    cfg.model.neck.in_channels = [16, 32, 64, 128]
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = registries[0].build(cfg.model).eval()
    with torch.no_grad():
        feats = detector.extract_feat(torch.randn(1, 3, 100, 150))
    assert [tuple(f.shape[-2:]) for f in feats] == [(13, 19), (7, 10), (4, 5), (2, 3), (1, 2)]


@pytest.mark.parametrize('variant, drop_path', [('tiny', 0.2), ('small', 0.3), ('base', 0.5)])
def test_classification_configs_follow_the_deit_swin_recipe(variant, drop_path):
    pytest.importorskip('mmengine')
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIGS / 'classification' / 'tic' / f'tic_{variant}_in1k.py'))
    assert cfg.model.model_name == f'tic_{variant}' and cfg.model.model_kwargs.drop_path_rate == drop_path
    assert cfg.train_cfg.max_epochs == 300 and cfg.custom_hooks == []
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05 and cfg.optim_wrapper.clip_grad.max_norm == 5.0
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.type, cosine.end) == ('LinearLR', 20, 'CosineAnnealingLR', 300)
    assert cfg.val_dataloader.dataset.pipeline[1].model_name == f'tic_{variant}'
