"""backbonezoo.flops: counted at the dispatcher (torch.utils.flop_counter) in fvcore's convention, the kernels by
their registered formulas; fvcore itself only as a cross-check, never patched."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch.utils.flop_counter import register_flop_formula

from backbonezoo import flops
from backbonezoo.flops import count_flops


def _heads_last(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, heads, c // heads, h, w).permute(0, 1, 3, 4, 2)


def test_plain_convnet_matches_analytic_count():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1, groups=2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    result = count_flops(model, (3, 32, 32), batch_size=2)
    expected = 16 * 16 * 8 * 3 * 9 + 16 * 16 * 16 * 4 * 9 + 16 * 10
    pool = 16 * 16 * 16  # fvcore counts adaptive average pooling as one op per input element
    assert result.macs == expected + pool
    assert result.input_size == (3, 32, 32)
    assert result.unexpected_skips == {}
    assert 'relu' not in result.by_operator


@pytest.mark.parametrize(
    'name, unfused, folded',
    # fvcore counts of the official models (same maths as timm's), measured when the families were ported.
    [('efficientvit_m0', 80.83e6, 79.20e6), ('shvit_s1', 244.11e6, 241.40e6)],
)
def test_known_models_match_the_sheets(name, unfused, folded):
    result = count_flops(timm.create_model(name), (3, 224, 224))
    assert result.macs == pytest.approx(unfused, rel=2e-4)
    assert result.gmacs_bn_folded * 1e9 == pytest.approx(folded, rel=2e-4)
    assert count_flops(timm.create_model(name), 224, fold_bn=True).macs == pytest.approx(folded, rel=2e-4)
    assert result.unexpected_skips == {}
    # fvcore as a cross-check, as it is (no handles of ours)
    fvcore = pytest.importorskip('fvcore.nn')
    model = timm.create_model(name).eval()
    assert result.macs == pytest.approx(fvcore.FlopCountAnalysis(model, torch.randn(1, 3, 224, 224)).total(), rel=2e-4)


def test_sdpa_counted_like_explicit_matmuls():
    model = timm.create_model('vit_tiny_patch16_224', img_size=64, num_classes=10)
    fused = count_flops(model, (3, 64, 64))
    for block in model.blocks:
        block.attn.fused_attn = False
    plain = count_flops(model, (3, 64, 64))
    assert fused.by_operator['scaled_dot_product_attention'] > 0
    assert fused.macs == plain.macs
    tokens, dim = 16 + 1, 192
    assert fused.by_operator['scaled_dot_product_attention'] == len(model.blocks) * tokens * tokens * dim * 2


def test_deform_conv2d_counted():
    class DeformBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.offset = torch.nn.Conv2d(8, 2 * 9, 3, padding=1)
            self.deform = torchvision.ops.DeformConv2d(8, 16, 3, padding=1, groups=2)

        def forward(self, x):
            return self.deform(x, self.offset(x))

    result = count_flops(DeformBlock(), (8, 10, 10))
    assert result.by_operator['deform_conv2d'] == 10 * 10 * 16 * (8 // 2) * 9
    assert result.by_operator['conv'] == 10 * 10 * 18 * 8 * 9


def test_bad_input_size_named():
    with pytest.raises(ValueError, match='input_size'):
        count_flops(torch.nn.Identity(), (1, 2, 3, 4))


def test_model_mode_restored():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).train()
    count_flops(model, (3, 8, 8))
    assert model.training


def test_real_local_attention_kernel_counted():
    kernels = pytest.importorskip('backbonezoo.kernels')
    if not hasattr(kernels, 'local_attention'):
        pytest.skip('backbonezoo.kernels.local_attention is not in the repository yet')

    class Neighborhood(torch.nn.Module):
        def forward(self, x):
            q = _heads_last(x, 2)
            return kernels.local_attention(q, q, q, 3, backend='torch')

    result = count_flops(Neighborhood(), (8, 7, 7))
    heads, d = 2, 4
    assert result.unexpected_skips == {}
    assert result.macs == pytest.approx(heads * 7 * 7 * 9 * (d + d), rel=0.01)


def test_module_handle_adds_what_fvcore_cannot_see():
    class Scan(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=-1) * 2

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False), Scan())
    base = count_flops(model, (3, 4, 4))
    flops.register_module_flop_handle(Scan, lambda module, args, output: 9 * args[0].numel())
    try:
        result = count_flops(model, (3, 4, 4), batch_size=2, by_module=True)
    finally:
        flops.register_module_flop_handle(Scan, None)
    assert result.macs == base.macs + 9 * 4 * 4 * 4
    assert result.by_operator['module:Scan'] == 9 * 4 * 4 * 4
    assert result.by_module['1'] == 9 * 4 * 4 * 4
    assert count_flops(model, (3, 4, 4)).macs == base.macs


def test_selective_scan_counted_like_the_official_handle():
    kernels = pytest.importorskip('backbonezoo.kernels')
    if not hasattr(kernels, 'selective_scan'):
        pytest.skip('backbonezoo.kernels.selective_scan is not in the repository yet')

    class StateSpace(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(-torch.rand(6, 2))

        def forward(self, x):
            u = x.flatten(2)  # (B, D=6, L=20)
            b_ssm = u[:, :2] * 0.5
            states = kernels.selective_scan(u, u.sigmoid(), self.A, b_ssm)  # state mode: no C readout
            y = kernels.selective_scan(u, u.sigmoid(), self.A, b_ssm, b_ssm)
            return y + states.sum(2)

    result = count_flops(StateSpace(), (6, 4, 5))
    assert result.by_operator == {'selective_scan_states': 7 * 20 * 6 * 2, 'selective_scan': 9 * 20 * 6 * 2}


@pytest.mark.parametrize('backend', ['torch', 'reference'])
def test_kernel_ops_counted_from_their_arguments_not_their_implementation(backend):
    kernels = pytest.importorskip('backbonezoo.kernels')
    if not all(hasattr(kernels, op) for op in ('local_scores', 'local_aggregate', 'local_attention')):
        pytest.skip('the local-attention operators are not all in the repository yet')

    class Neighborhood(torch.nn.Module):
        def forward(self, x):
            q = _heads_last(x, 2)
            attn = kernels.local_scores(q, q, 7, dilation=2, backend=backend).softmax(-1)
            out = kernels.local_aggregate(attn, q, 7, dilation=2, backend=backend)
            return out + kernels.local_attention(q, q, q, (3, 5), stride=(3, 5), border='zero', backend=backend)

    queries, d = 2 * 15 * 15, 4
    expected = {'local_scores': queries * 49 * d, 'local_aggregate': queries * 49 * d}
    expected['local_attention'] = queries * 15 * 2 * d
    result = count_flops(Neighborhood(), (8, 15, 15))
    if backend == 'reference':  # no operator: the reference's own einsums, which compute exactly the windows
        assert result.macs == sum(expected.values())
    else:
        assert result.by_operator == expected
    assert result.unexpected_skips == {}


def test_routing_attention_counted():
    routing = pytest.importorskip('backbonezoo.kernels.routing')

    class Routed(torch.nn.Module):
        def forward(self, x):
            q = _heads_last(x, 2)
            return routing.routing_attention(q, q, q, 4, 2)

    result = count_flops(Routed(), (8, 16, 16))
    heads, d, tokens, regions, region_tokens = 2, 4, 16 * 16, 16, 16
    attention = heads * tokens * (2 * region_tokens) * (d + d)
    # the routing's region-mean product is a plain matmul
    assert result.by_operator == {'routing_attention': attention, 'matmul': regions * regions * heads * d}


def test_layers_feeding_a_kernel_op_stay_counted():
    kernels = pytest.importorskip('backbonezoo.kernels')
    if not hasattr(kernels, 'local_attention'):
        pytest.skip('backbonezoo.kernels.local_attention is not in the repository yet')

    class Windowed(torch.nn.Module):
        """Only the kernel op consumes the projection: tracing it out must not drop the projection."""

        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Conv2d(8, 24, 1, bias=False)

        def forward(self, x):
            q, k, v = (_heads_last(t, 2) for t in self.qkv(x).chunk(3, dim=1))
            return kernels.local_attention(q, k, v, 4, stride=4, border='zero')

    result = count_flops(Windowed(), (8, 8, 8))
    assert result.by_operator == {'conv': 8 * 8 * 24 * 8, 'local_attention': 2 * 8 * 8 * 16 * (4 + 4)}


_TEST_LIB = torch.library.Library('bzflopstest', 'DEF')  # noqa: RUF012
_TEST_LIB.define('mystery(Tensor x) -> Tensor')
_TEST_LIB.impl('mystery', lambda x: x * 2, 'CPU')
_TEST_LIB.impl('mystery', lambda x: torch.empty_like(x), 'Meta')


class _Mystery(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1, bias=False)

    def forward(self, x):
        return torch.ops.bzflopstest.mystery(self.conv(x))


def test_op_without_formula_is_reported_until_it_has_one():
    before = count_flops(_Mystery(), (3, 8, 8))
    assert before.unexpected_skips == {'bzflopstest::mystery': 1}
    assert before.macs == 8 * 8 * 4 * 3
    register_flop_formula(torch.ops.bzflopstest.mystery)(lambda x, out_shape=None, **kwargs: 2 * 1000)
    after = count_flops(_Mystery(), (3, 8, 8))
    assert after.macs == before.macs + 1000
    assert after.unexpected_skips == {}


def test_every_kernel_operator_has_a_flop_formula():
    from torch.utils.flop_counter import flop_registry

    ops = [name for name in dir(torch.ops.backbonezoo) if not name.startswith('_')]
    names = {'local_attention', 'local_scores', 'local_aggregate', 'local_probs', 'local_aggregate_probs',
             'routing_attention', 'selective_scan', 'selective_scan_states'}  # fmt: skip
    assert names | {f'{n}_backward' for n in names} <= set(ops)
    for name in ops:
        packet = getattr(torch.ops.backbonezoo, name)
        if isinstance(packet, torch._ops.OpOverloadPacket):
            assert packet in flop_registry, name


def test_training_step_counts_the_kernels_backward():
    """Under FlopCounterMode a training step counts each operator's registered backward (twice the forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    from backbonezoo import kernels

    q = torch.randn(1, 2, 8, 8, 4, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        kernels.local_attention(q, q, q, 3, backend='torch').sum().backward()
    counts = {str(k): v for k, v in counter.get_flop_counts()['Global'].items()}
    forward = 2 * 2 * 8 * 8 * 9 * (4 + 4)
    assert counts == {'backbonezoo.local_attention': forward, 'backbonezoo.local_attention_backward': 2 * forward}


def _counts() -> dict:
    from backbonezoo import benchmarking

    return benchmarking.counts(benchmarking.read_rows(kind='count'))


def _smallest_variants() -> list[str]:
    from backbonezoo.zoo import families

    names = _counts()
    out = []
    for family in families().values():
        measured = [v for v in family.variants if v.name in names]
        if measured:
            out.append(min(measured, key=lambda v: v.params or float('inf')).name)
    return sorted(out)


@pytest.mark.slow
@pytest.mark.parametrize('name', _smallest_variants())
def test_counts_match_the_model_cards(name):
    """The cards' GMACs (the results store's count rows) stay within 1 % (every variant: see the issue-18 report)."""
    measured = _counts()[name]
    result = count_flops(timm.create_model(name), (3, *measured['img_size']))
    assert result.gmacs == pytest.approx(measured['gmacs'], rel=0.01)
    assert result.unexpected_skips == {}
