"""The kernels as registered operators (backbonezoo/kernels/ops.py): torch.library.opcheck for every operator and
argument form, the public functions calling them, the 'flex' backend's errors, debug logging."""

from __future__ import annotations

import logging

import pytest
import torch

from backbonezoo import kernels
from backbonezoo.kernels._geometry import Geometry
from backbonezoo.kernels.backends import local_tiled

_BNS = torch.ops.backbonezoo


def _geo_args(kernel, stride=(1, 1), dilation=(1, 1), border='shift'):
    return [list(kernel), list(stride), list(dilation), border]


# (kernel, stride, dilation, border, bias form): every fast path (tiled neighbourhoods, shifted views, halo tiles,
# blocked windows) and both bias forms
_LOCAL_CASES = [
    ((3, 3), (1, 1), (2, 1), 'shift', 'table'),
    ((5, 3), (1, 1), (1, 1), 'shift', None),
    ((3, 3), (1, 1), (1, 2), 'zero', 'query'),
    ((5, 5), (1, 1), (1, 1), 'zero', 'table'),
    ((4, 4), (2, 2), (1, 1), 'zero', 'table'),
    ((3, 3), (3, 3), (1, 1), 'zero', None),
]


def _bias(form, heads, shape, kernel, dtype=torch.float32):
    if form == 'table':
        return torch.randn(heads, 2 * kernel[0] - 1, 2 * kernel[1] - 1, dtype=dtype, requires_grad=True)
    if form == 'query':
        return torch.randn(*shape[:4], kernel[0] * kernel[1], dtype=dtype, requires_grad=True)
    return None


@pytest.mark.parametrize('kernel,stride,dilation,border,form', _LOCAL_CASES)
def test_opcheck_local_operators(kernel, stride, dilation, border, form):
    torch.manual_seed(0)
    shape = (2, 2, 7, 8, 4)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    bias = _bias(form, shape[1], shape, kernel)
    args = _geo_args(kernel, stride, dilation, border)
    torch.library.opcheck(_BNS.local_attention, (q, k, v, bias, *args, 0.5))
    torch.library.opcheck(_BNS.local_scores, (q, k, bias, *args, 0.5))
    attn = torch.randn(*shape[:4], kernel[0] * kernel[1], requires_grad=True)
    torch.library.opcheck(_BNS.local_aggregate, (attn, v, *args))


@pytest.mark.parametrize('kernel,stride,dilation,border,form', [c for c in _LOCAL_CASES if c[1] == (1, 1)][:3])
def test_opcheck_probs_operators(kernel, stride, dilation, border, form):
    torch.manual_seed(0)
    shape = (1, 2, 9, 7, 4)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    bias = _bias(form, shape[1], shape, kernel)
    args = _geo_args(kernel, stride, dilation, border)
    torch.library.opcheck(_BNS.local_probs, (q, k, bias, *args, 1.0))
    geo = Geometry(shape[2], shape[3], kernel, stride, dilation, border)
    probs = torch.randn(local_tiled.probs_shape(geo, *shape[:2]), requires_grad=True)
    torch.library.opcheck(_BNS.local_aggregate_probs, (probs, v, *args))


@pytest.mark.parametrize('padded', [False, True], ids=['divisible', 'region-size-padding'])
def test_opcheck_routing_attention(padded):
    torch.manual_seed(0)
    height, width = (7, 8) if padded else (8, 8)
    q, k, v = (torch.randn(2, 2, height, width, 4, requires_grad=True) for _ in range(3))
    grid, size = [4, 4], [2, 2]
    pad = [grid[0] * size[0] - height, grid[1] * size[1] - width]
    index = torch.stack([torch.randperm(16)[:3] for _ in range(2 * 16)]).view(2, 16, 3)
    torch.library.opcheck(_BNS.routing_attention, (q, k, v, index, grid, size, pad, 0.5))


@pytest.mark.parametrize('readout', ['y', 'y+D+bias', 'states'])
def test_opcheck_selective_scan(readout):
    torch.manual_seed(0)
    batch, dim, d_state, length = 2, 4, 3, 9
    u, delta = torch.randn(batch, dim, length), torch.rand(batch, dim, length)
    A = -torch.rand(dim, d_state)
    B, C = torch.randn(batch, 2, d_state, length), torch.randn(batch, 2, d_state, length)
    D, delta_bias = torch.randn(dim), torch.randn(dim)
    for t in (u, delta, A, B, C, D, delta_bias):
        t.requires_grad_()
    if readout == 'states':
        torch.library.opcheck(_BNS.selective_scan_states, (u, delta, A, B, delta_bias, True))
    elif readout == 'y':
        torch.library.opcheck(_BNS.selective_scan, (u, delta, A, B, C, None, None, False))
    else:
        torch.library.opcheck(_BNS.selective_scan, (u, delta, A, B, C, D, delta_bias, True))


class _Recorder(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func._overloadpacket))
        return func(*args, **(kwargs or {}))


def test_public_functions_call_one_operator_on_cpu():
    """'torch' on CPU: each public call reaches the dispatcher as its operator, the reference backend does not."""
    x = torch.randn(1, 2, 6, 6, 4)
    u, B = torch.randn(1, 4, 7), torch.randn(1, 2, 7)
    calls = {
        'local_attention': lambda b: kernels.local_attention(x, x, x, 3, backend=b),
        'local_scores': lambda b: kernels.local_scores(x, x, 3, backend=b),
        'local_aggregate': lambda b: kernels.local_aggregate(x[..., :1].expand(-1, -1, -1, -1, 9), x, 3, backend=b),
        'local_probs': lambda b: kernels.local_probs(x, x, 3, backend=b),
        'routing_attention': lambda b: kernels.routing_attention(x, x, x, 3, 2, backend=b),
        'selective_scan': lambda b: kernels.selective_scan(u, u, -u[0, :, :2].exp(), B, B, backend=b),
        'selective_scan_states': lambda b: kernels.selective_scan(u, u, -u[0, :, :2].exp(), B, backend=b),
    }
    for name, call in calls.items():
        for backend, expected in (('torch', True), ('reference', False)):
            with _Recorder() as recorder:
                call(backend)
            assert (f'backbonezoo.{name}' in recorder.ops) == expected, (name, backend, recorder.ops[:5])


def test_flex_backend_needs_cuda(monkeypatch):
    x = torch.randn(1, 1, 5, 5, 4)
    with pytest.raises(ValueError, match="local_attention: backend='flex' needs CUDA tensors"):
        kernels.local_attention(x, x, x, 3, backend='flex')
    with pytest.raises(ValueError, match="routing_attention: backend='flex' needs CUDA tensors"):
        kernels.routing_attention(x, x, x, 5, 2, backend='flex')
    u, B = torch.randn(1, 4, 7), torch.randn(1, 2, 7)
    A = -torch.rand(4, 2)
    with pytest.raises(ValueError, match="selective_scan: backend='flex' is not supported"):
        kernels.selective_scan(u, u, A, B, backend='flex')
    # a process-wide 'flex' default: operators without a flex implementation take their automatic choice
    monkeypatch.setenv('BACKBONEZOO_KERNEL_BACKEND', 'flex')
    torch.testing.assert_close(
        kernels.selective_scan(u, u, A, B), kernels.selective_scan(u, u, A, B, backend='reference')
    )
    with pytest.raises(ValueError, match="backend='flex' needs CUDA tensors"):
        kernels.local_attention(x, x, x, 3)


def test_chosen_path_is_logged_at_debug_level(caplog):
    x = torch.randn(1, 1, 6, 6, 4)
    with caplog.at_level(logging.DEBUG, logger='backbonezoo.kernels'):
        kernels.local_attention(x, x, x, 3, border='zero', backend='torch')
        kernels.local_attention(x, x, x, 5, border='zero')
    messages = [r.getMessage() for r in caplog.records]
    assert any("local_attention: backend 'torch'" in m for m in messages), messages
    assert any('local_shifted path' in m for m in messages), messages
    assert any('local_tiled path' in m for m in messages), messages
