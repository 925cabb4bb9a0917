"""backbonezoo.layers: shared blocks used by several families."""

from __future__ import annotations

import importlib
import sys

import pytest
import timm
import torch
import torch.fx
from timm.layers._fx import get_notrace_functions

import backbonezoo
from backbonezoo.kernels import local_attention
from backbonezoo.kernels._backend import ENV_VAR
from backbonezoo.layers import (
    DeformConv2d,
    check_input,
    neighborhood_aggregate,
    neighborhood_aggregate_probs,
    neighborhood_probs,
    neighborhood_scores,
)
from backbonezoo.layers.attention import dense_attention

# the families whose models run on any size above a minimum (the timm-owned ones keep timm's own checks)
CHECKED_FAMILIES = [fam.model_names[0] for fam in backbonezoo.families().values() if not fam.timm_owned]


@pytest.mark.parametrize('with_mask', [False, True])
def test_dense_attention_reference_path_is_the_materialising_math(monkeypatch, with_mask: bool):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 5)
    mask = torch.randn(1, 3, 10, 10) if with_mask else None
    logits = q @ k.transpose(-2, -1) / 8**0.5 + (mask if with_mask else 0)
    expected = logits.softmax(-1) @ v
    monkeypatch.delenv(ENV_VAR, raising=False)
    fast = dense_attention(q, k, v, attn_mask=mask)
    monkeypatch.setenv(ENV_VAR, 'reference')
    plain = dense_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(plain, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['sret_tiny', 'patnet_t0'])
def test_models_agree_on_both_attention_paths(monkeypatch, name: str):
    # The benchmark's reference rows run these models with BACKBONEZOO_KERNEL_BACKEND=reference.
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    x = torch.randn(1, 3, 128, 128)
    monkeypatch.delenv(ENV_VAR, raising=False)
    with torch.no_grad():
        torch.manual_seed(1)  # SReT draws its official shuffles from the global generator
        fast = model(x)
        monkeypatch.setenv(ENV_VAR, 'reference')
        torch.manual_seed(1)
        plain = model(x)
    torch.testing.assert_close(plain, fast, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------- check_input
class _Checked(torch.nn.Module):
    """A model in miniature: the shared input check, then a 1x1 conv (the stem whose weight fixes the dtype)."""

    def __init__(self, min_size: int = 8, divisor: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.min_size, self.divisor = min_size, divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.conv.weight, 'Fam', in_chans=3, min_size=self.min_size, divisor=self.divisor, reason='why')
        return self.conv(x)


class _CheckedDefaults(torch.nn.Module):
    """Only the required arguments: the defaults must survive TorchScript."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.conv.weight, 'Fam', 3)
        return self.conv(x)


def _fx_trace(module: torch.nn.Module) -> torch.nn.Module:
    """timm's fx tracing (notrace functions as leaves), keeping side-effect-only calls such as the check."""
    tracer = torch.fx.Tracer(autowrap_functions=tuple(get_notrace_functions()))
    return torch.fx.GraphModule(module, tracer.trace(module))


RUNNERS = {
    'eager': lambda m: m,
    'script': torch.jit.script,
    'fx': _fx_trace,
    'compile': lambda m: torch.compile(m, backend='eager'),
}
BAD_INPUTS = [
    # (id, input, error type, message)
    ('3d', lambda: torch.randn(3, 8, 8), ValueError, 'Fam: expected a 4-D input (B, 3, H, W), got shape (3, 8, 8)'),
    ('5d', lambda: torch.randn(1, 1, 3, 8, 8), ValueError, 'Fam: expected a 4-D input (B, 3, H, W)'),
    ('channels', lambda: torch.randn(1, 1, 8, 8), ValueError, 'Fam: expected 3 input channels, got 1'),
    ('int', lambda: torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TypeError, 'Fam: expected a floating-point'),
    ('float64', lambda: torch.randn(1, 3, 8, 8, dtype=torch.float64), TypeError, 'Fam: input dtype torch.float64'),
    (
        'short-h',
        lambda: torch.randn(1, 3, 4, 8),
        ValueError,
        'Fam: input 4x8 is too small; expected at least 8x8 (why)',
    ),
    (
        'short-w',
        lambda: torch.randn(1, 3, 8, 4),
        ValueError,
        'Fam: input 8x4 is too small; expected at least 8x8 (why)',
    ),
    ('odd-h', lambda: torch.randn(1, 3, 10, 8), ValueError, 'Fam: input 10x8 is not a multiple of 4 per side (why)'),
    ('odd-w', lambda: torch.randn(1, 3, 8, 10), ValueError, 'Fam: input 8x10 is not a multiple of 4 per side (why)'),
]


@pytest.mark.parametrize('runner', list(RUNNERS))
@pytest.mark.parametrize('case, make, error, message', BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_check_input_names_the_problem_in_every_capture_mode(runner, case, make, error, message):
    model = RUNNERS[runner](_Checked())
    # TorchScript re-raises a Python error from an ignored call as its own RuntimeError, with the message
    with pytest.raises(RuntimeError if runner == 'script' else error) as info:
        model(make())
    assert message in str(info.value)


@pytest.mark.parametrize('runner', list(RUNNERS))
def test_check_input_passes_what_the_model_can_compute(runner):
    eager = _Checked()
    model = RUNNERS[runner](eager)  # the same weights
    for size in ((8, 8), (12, 16), (16, 8)):
        x = torch.randn(2, 3, *size)
        torch.testing.assert_close(model(x), eager(x))
    assert RUNNERS[runner](_CheckedDefaults())(torch.randn(1, 3, 5, 7)).shape == (1, 4, 5, 7)
    # autocast: a low-precision batch for a float32 model is what autocast runs
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert _Checked()(torch.randn(1, 3, 8, 8, dtype=torch.bfloat16)).shape == (1, 4, 8, 8)


def test_check_input_compiles_into_one_graph():
    """No graph break for a valid batch: the check is shape guards, not a Python call the graph must leave for."""
    torch._dynamo.reset()  # the error cases above leave the frame marked as one that raises
    compiled = torch.compile(_Checked(), backend='eager', fullgraph=True)
    assert compiled(torch.randn(1, 3, 8, 12)).shape == (1, 4, 8, 12)


@pytest.mark.parametrize('name', CHECKED_FAMILIES)
def test_every_family_checks_its_input_through_the_shared_helper(name):
    """Each family's model, built on the meta device (nothing computed: the check comes first), rejects a bad batch
    with the shared messages, named after the model."""
    model = timm.create_model(name, device='meta').eval()
    family, in_chans, size = type(model).__name__, model.in_chans, backbonezoo.family_of(name).min_size
    cases = [
        (torch.empty(in_chans, size, size), ValueError, f'{family}: expected a 4-D input (B, {in_chans}, H, W)'),
        (torch.empty(1, in_chans + 1, size, size), ValueError, f'{family}: expected {in_chans} input channels'),
        (torch.empty(1, in_chans, size, size, dtype=torch.int64), TypeError, f'{family}: expected a floating-point'),
        (torch.empty(1, in_chans, size - 1, size), ValueError, f'{family}: input {size - 1}x{size} is too small'),
        (torch.empty(1, in_chans, size, size - 1), ValueError, f'expected at least {size}x{size}'),
    ]
    for x, error, message in cases:
        for call in (model.forward_features, model.forward_intermediates):
            with pytest.raises(error) as info:
                call(x.to('meta'))
            assert message in str(info.value)
    assert model.forward_features(torch.empty(1, in_chans, size, size, device='meta')).is_meta
    module = sys.modules[type(model).__module__]
    assert not hasattr(module, 'check_input') or module.check_input is check_input, 'a private copy of check_input'


# ----------------------------------------------------------------------------------------------- neighborhood
class _Neighborhood(torch.nn.Module):
    """Both ways a family applies neighborhood attention: probs made once and applied (A2Mamba), scores softmaxed
    and aggregated (A2Mamba's dilated half, OverLoCK's dynamic kernels)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor):
        probs = neighborhood_probs(q, k, (3, 5), (2, 1), bias, None)
        prepared = neighborhood_aggregate_probs(probs, v, (3, 5), (2, 1), None)
        scores = neighborhood_scores(q, k, (3, 5), (1, 1), bias, None)
        plain = neighborhood_aggregate(scores.softmax(-1), v, (3, 5), (1, 1), None)
        return prepared, plain


@pytest.mark.parametrize('runner', ['eager', 'script', 'fx'])
def test_neighborhood_helpers_are_the_kernels_in_every_capture_mode(runner):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, 9, 11, 4), torch.randn(2, 2, 9, 11, 4), torch.randn(2, 2, 9, 11, 6)
    bias = torch.randn(2, 5, 9)
    prepared, plain = RUNNERS[runner](_Neighborhood())(q, k, v, bias)
    torch.testing.assert_close(prepared, local_attention(q, k, v, (3, 5), dilation=(2, 1), bias=bias, scale=1.0))
    torch.testing.assert_close(plain, local_attention(q, k, v, (3, 5), bias=bias, scale=1.0))


def test_families_share_one_copy_of_each_layer_helper():
    """No family module keeps its own copy of a helper that ``backbonezoo.layers`` provides."""
    import backbonezoo.layers as layers

    for family in backbonezoo.families().values():
        module = importlib.import_module(family.module)
        for name in layers.__all__:
            own = getattr(module, name, None)
            assert own is None or own is getattr(layers, name), f'{family.module}.{name} is a copy'


# ----------------------------------------------------------------------------------------------- DeformConv2d
def test_deform_conv2d_module_is_torchvisions_built_in_place():
    from torchvision.ops import DeformConv2d as TorchvisionDeformConv2d

    from backbonezoo.backbones.litv2 import DeformableTokenMerging

    kwargs = dict(stride=2, padding=1, dilation=1, groups=2)
    torch.manual_seed(0)
    ours = DeformConv2d(4, 6, 3, **kwargs)
    torch.manual_seed(0)
    theirs = TorchvisionDeformConv2d(4, 6, 3, **kwargs)
    for (name, a), (tv_name, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        assert name == tv_name
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same initialisation from the same seed
    x, offset = torch.randn(2, 4, 9, 7), torch.randn(2, 2 * 9, 5, 4)
    torch.testing.assert_close(ours(x, offset), theirs(x, offset), rtol=1e-5, atol=1e-5)
    # built where and as asked, nothing moved afterwards (the meta device holds no values to move)
    meta = DeformConv2d(4, 6, 3, device='meta', dtype=torch.float64)
    assert all(p.is_meta and p.dtype == torch.float64 for p in meta.parameters())
    merging = DeformableTokenMerging(4, 8, device='meta', dtype=torch.bfloat16)
    assert all(t.is_meta for t in merging.state_dict().values())
    assert all(p.dtype == torch.bfloat16 for p in merging.parameters())
