"""selective_scan: reference = specification, fast torch path and Triton kernel against it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import assert_close_rel

from backbonezoo.kernels import selective_scan
from backbonezoo.kernels.scan import linear_scan


def _inputs(batch=2, dim=4, d_state=2, length=29, groups=None, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale + shift).requires_grad_(requires_grad)

    bc_shape = (batch, d_state, length) if groups is None else (batch, groups, d_state, length)
    return dict(
        u=rnd(batch, dim, length),
        delta=rnd(batch, dim, length),
        A=(-torch.rand(dim, d_state, generator=g, dtype=dtype) - 0.2).requires_grad_(requires_grad),
        B=rnd(*bc_shape),
        C=rnd(*bc_shape),
        D=rnd(dim),
        delta_bias=rnd(dim, scale=0.5),
    )


def _closed_form(u, delta, A, B, C=None, D=None, delta_bias=None, groups=1):
    """h_t = sum_{s<=t} exp(A * sum_{r=s+1..t} dt_r) dt_s B_s u_s, literally, in float64."""
    dt = torch.nn.functional.softplus(delta + delta_bias[:, None], threshold=20.0).double()
    batch, dim, length = u.shape
    B = B if B.dim() == 4 else B[:, None]
    per_group = dim // B.shape[1]
    states = torch.zeros(batch, dim, A.shape[1], length, dtype=torch.float64)
    for d in range(dim):
        bg = B[:, d // per_group].double()  # (batch, N, L)
        for t in range(length):
            for s in range(t + 1):
                decay = torch.exp(A[d].double()[None, :] * dt[:, d, s + 1 : t + 1].sum(-1, keepdim=True))
                states[:, d, :, t] += decay * dt[:, d, s, None] * bg[:, :, s] * u[:, d, s, None].double()
    return states


def test_reference_matches_closed_form():
    x = _inputs(length=11, groups=2)
    states = selective_scan(x['u'], x['delta'], x['A'], x['B'], delta_bias=x['delta_bias'], delta_softplus=True,
                            backend='reference')  # fmt: skip
    expected = _closed_form(x['u'], x['delta'], x['A'], x['B'], delta_bias=x['delta_bias'])
    torch.testing.assert_close(states, expected, rtol=1e-12, atol=1e-12)


def test_output_and_skip_term():
    x = _inputs(length=13)
    y, states = selective_scan(**x, delta_softplus=True, return_states=True, backend='reference')
    expected = (states * x['C'][:, None]).sum(2) + x['D'][:, None] * x['u']
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize('backend', ['reference', 'torch'])
def test_gradcheck_float64(backend):
    x = _inputs(batch=1, dim=2, d_state=2, length=9, requires_grad=True)
    names = list(x)

    def fn(*args):
        kw = dict(zip(names, args))
        return selective_scan(**kw, delta_softplus=True, backend=backend)

    assert torch.autograd.gradcheck(fn, tuple(x.values()))


@pytest.mark.parametrize('length', [1, 2, 37, 2100])  # 2100: past one 2048-step chunk of the CUDA kernel
@pytest.mark.parametrize('groups', [None, 2])
def test_torch_matches_reference_forward_backward(length, groups):
    x = _inputs(batch=2, dim=4, d_state=1 if length > 100 else 2, length=length, groups=groups,
                dtype=torch.float32, requires_grad=True)  # fmt: skip
    outs = {}
    for backend in ('reference', 'torch'):
        for t in x.values():
            t.grad = None
        y, states = selective_scan(**x, delta_softplus=True, return_states=True, backend=backend)
        (y.square().mean() + states.sin().mean()).backward()
        outs[backend] = (y.detach(), states.detach(), {k: t.grad.clone() for k, t in x.items()})
    ref, fast = outs['reference'], outs['torch']
    assert_close_rel(fast[0], ref[0], rtol=1e-5, what='y')
    assert_close_rel(fast[1], ref[1], rtol=1e-5, what='states')
    for name in x:
        assert_close_rel(fast[2][name], ref[2][name], rtol=1e-4, what=f'grad {name}')


def test_long_sequence_is_stable():
    """Strong decay over long sequences: no overflow / NaN in the log-depth scan (products of a <= 1 only)."""
    a = torch.full((1, 4096), 1e-3)
    b = torch.ones(1, 4096)
    h = linear_scan(a, b, backend='torch')
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h[:, 3:], torch.full_like(h[:, 3:], 1 / (1 - 1e-3)), rtol=1e-6, atol=1e-6)


def test_softplus_threshold_and_low_precision_inputs():
    """Above 20 the softplus is the identity (like the CUDA kernel); low-precision inputs give float32 states."""
    x = _inputs(dtype=torch.float32, length=5)
    x['delta'] = x['delta'] + 25.0
    states = selective_scan(x['u'], x['delta'], x['A'], x['B'], delta_softplus=True, backend='reference')
    expected = selective_scan(x['u'], x['delta'], x['A'], x['B'], delta_softplus=False, backend='reference')
    torch.testing.assert_close(states, expected)
    half = selective_scan(x['u'].bfloat16(), x['delta'].bfloat16(), x['A'], x['B'].bfloat16(), backend='torch')
    assert half.dtype == torch.float32


def test_bad_arguments_raise_named_errors():
    x = _inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match='delta has shape'):
        selective_scan(x['u'], x['delta'][..., :-1], x['A'], x['B'])
    with pytest.raises(ValueError, match='A has shape'):
        selective_scan(x['u'], x['delta'], x['A'][:-1], x['B'])
    with pytest.raises(ValueError, match='B has shape'):
        selective_scan(x['u'], x['delta'], x['A'], x['B'][..., :-1])
    with pytest.raises(ValueError, match='D was given without C'):
        selective_scan(x['u'], x['delta'], x['A'], x['B'], D=x['D'])
    with pytest.raises(TypeError, match='u has dtype torch.int64'):
        selective_scan(x['u'].long(), x['delta'], x['A'], x['B'])
    with pytest.raises(ValueError, match="backend='nope'"):
        selective_scan(x['u'], x['delta'], x['A'], x['B'], backend='nope')


def test_inference_path_has_no_autograd_function():
    """Without grad the fast path is plain tensor ops (what torch.compile / ONNX export trace)."""
    x = _inputs(dtype=torch.float32)
    with torch.no_grad():
        states = selective_scan(x['u'], x['delta'], x['A'], x['B'], backend='torch')
    assert states.grad_fn is None
    torch.testing.assert_close(
        states, selective_scan(x['u'], x['delta'], x['A'], x['B'], backend='reference'), rtol=1e-5, atol=1e-6
    )


_TRITON_SCRIPT = textwrap.dedent(
    """
    import torch
    from backbonezoo.kernels import selective_scan
    torch.manual_seed(0)
    u, delta = torch.randn(1, 2, 37, requires_grad=True), torch.randn(1, 2, 37, requires_grad=True)
    A = (-torch.rand(2, 1) - 0.1).requires_grad_()
    B = torch.randn(1, 1, 37, requires_grad=True)
    grads = {}
    for backend in ('reference', 'triton'):
        for t in (u, delta, A, B):
            t.grad = None
        states = selective_scan(u, delta, A, B, delta_softplus=True, backend=backend)
        states.sin().sum().backward()
        grads[backend] = [states.detach()] + [t.grad.clone() for t in (u, delta, A, B)]
    for r, t in zip(grads['reference'], grads['triton']):
        err = ((r - t).abs().max() / r.abs().max()).item()
        assert err < 1e-5, err
    from backbonezoo.kernels.triton_scan import linear_scan_triton
    a, b = torch.rand(1, 40), torch.randn(1, 40)
    h = linear_scan_triton(a, b, block=16)  # three blocks with carries
    assert torch.allclose(h, selective_scan.__globals__['_scan_reference'](a, b), rtol=1e-5, atol=1e-6)
    print('ok')
    """
)


@pytest.mark.triton
@pytest.mark.slow
def test_triton_kernel_interpret_mode():
    """The Triton scan (forward and the reversed-scan backward) under TRITON_INTERPRET=1, in a fresh process."""
    pytest.importorskip('triton')
    env = dict(os.environ, TRITON_INTERPRET='1')
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, '-c', _TRITON_SCRIPT], env=env, cwd=repo, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0 and 'ok' in result.stdout, result.stderr[-3000:]


def test_exported_scan_serves_every_length():
    """torch.export with a symbolic length: the traced scan takes a fixed number of steps (no guard on the length's
    power-of-two bracket), so one graph, traced at 3136 tokens, matches the reference from 2 to 9000 tokens."""

    class Scan(torch.nn.Module):
        def forward(self, a, b):
            return linear_scan(a, b, backend='torch')

    def inputs(length):
        gen = torch.Generator().manual_seed(length)
        return torch.rand(2, 3, length, generator=gen) * 0.2 + 0.8, torch.randn(2, 3, length, generator=gen)

    dims = {
        'a': {2: torch.export.Dim('length', min=2, max=1 << 16)},
        'b': {2: torch.export.Dim('length', min=2, max=1 << 16)},
    }
    with torch.no_grad():
        program = torch.export.export(Scan(), inputs(3136), dynamic_shapes=dims)
        for length in (2, 5, 64, 65, 1000, 3136, 9000):
            a, b = inputs(length)
            assert_close_rel(
                program.module()(a, b),
                linear_scan(a, b, backend='reference'),
                rtol=1e-5,
                what=f'exported scan, length {length}',
            )
