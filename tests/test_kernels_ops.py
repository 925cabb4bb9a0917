"""The kernels as registered operators: torch.library.opcheck for every CPU operator (backbonezoo/kernels/ops.py) and
argument form, the public functions calling them, the 'flex' backend's errors, debug logging; the CUDA operators
(kernels/triton_ops.py, torch.library.triton_op) without a GPU: registered with their kernels, fake CUDA tensors
(shapes, FLOPs), traces down to the Triton kernels (which write only what they allocate), export as one node."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

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


# ---------------------------------------------------------------------------------------------------------------------
# The CUDA operators (kernels/triton_ops.py: torch.library.triton_op) without a GPU: registration, fake CUDA tensors,
# traces down to the Triton kernels. Their numerics run under the interpreter (tests/test_kernels_triton.py).

_TRITON_OPS = {
    'local_attention_triton': 'local_attention_triton_backward',
    'local_scores_triton': 'local_scores_triton_backward',
    'local_aggregate_triton': 'local_aggregate_triton_backward',
    'routing_attention_triton': 'routing_attention_triton_backward',
    'selective_scan_triton': 'selective_scan_triton_backward',
    'selective_scan_states_triton': 'selective_scan_states_triton_backward',
}


def _triton_or_skip():
    pytest.importorskip('triton')
    if os.environ.get('TRITON_INTERPRET', '0') == '1':
        pytest.skip('traces of Triton launches need the compiler, not the interpreter')


def test_triton_ops_name_their_kernels():
    """Every kernel has a CUDA forward and backward triton_op, and torch finds the Triton kernels each one launches
    (AOTAutograd's cache key hashes their source: a kernel edit must invalidate compiled graphs)."""
    _triton_or_skip()
    from torch._library.triton import get_triton_kernels_for_op

    for forward, backward in _TRITON_OPS.items():
        for name in (forward, backward):
            assert hasattr(_BNS, name), f'torch.ops.backbonezoo.{name} is not registered'
            assert get_triton_kernels_for_op(f'backbonezoo::{name}'), f'{name}: torch finds no Triton kernel in it'


def _calls(device: str) -> dict:
    """Public calls on zero tensors of ``device``: every CUDA operator's forward, a few geometries."""
    x = torch.zeros(2, 2, 9, 10, 16, device=device)
    table = torch.zeros(2, 9, 9, device=device)
    u = torch.zeros(2, 4, 11, device=device)
    A, B = torch.zeros(4, 3, device=device), torch.zeros(2, 2, 3, 11, device=device)
    return {
        'local_attention': lambda: kernels.local_attention(x, x, x[..., :8], 5, bias=table),
        'local_attention/halo': lambda: kernels.local_attention(x, x, x, 6, stride=4, border='zero'),
        'local_scores': lambda: kernels.local_scores(x, x, 3, dilation=2),
        'local_aggregate': lambda: kernels.local_aggregate(x[..., :9], x, 3),
        'routing_attention': lambda: kernels.routing_attention(x, x, x, None, 2, region_size=3),
        'selective_scan': lambda: kernels.selective_scan(u, u, A, B, B, u[0, :, 0], delta_softplus=True),
        'selective_scan_states': lambda: kernels.selective_scan(u, u, A, B),
    }


def test_public_functions_on_fake_cuda_tensors_call_the_triton_ops():
    """CUDA tensors (fake: no GPU needed) reach the triton_ops and never the CPU operators; their fake
    implementations give the CPU operators' output shapes and dtypes, on the tensors' device."""
    _triton_or_skip()
    from torch._subclasses.fake_tensor import FakeTensorMode

    expected = {}
    for name, call in _calls('cpu').items():
        with FlopCounterMode(display=False) as counter:
            expected[name] = call(), counter.get_total_flops()
    with FakeTensorMode():
        for name, call in _calls('cuda').items():
            with _Recorder() as recorder, FlopCounterMode(display=False) as counter:
                out = call()
            op = name.split('/')[0]
            assert f'backbonezoo.{op}_triton' in recorder.ops, (name, recorder.ops)
            assert f'backbonezoo.{op}' not in recorder.ops, (name, recorder.ops)
            assert out.device.type == 'cuda', name
            cpu_out, cpu_flops = expected[name]
            assert (out.shape, out.dtype) == (cpu_out.shape, cpu_out.dtype), name
            # the same FLOP count as the CPU operator (flop formulas registered for the CUDA operators too)
            assert counter.get_total_flops() == cpu_flops > 0, (name, counter.get_total_flops(), cpu_flops)


def _trace_cases(device: str) -> dict:
    """``name: (fn, args)`` for every CUDA operator, forward and backward, on zero tensors of ``device``."""
    half = dict(device=device, dtype=torch.float16)
    q = torch.zeros(1, 2, 9, 10, 16, **half)
    table, attn, lse = torch.zeros(2, 5, 5, **half), torch.zeros(1, 2, 9, 10, 9, **half), torch.zeros(1, 2, 9, 10)
    lse = lse.to(device)
    geo = ([3, 3], [1, 1], [1, 1], 'shift')
    index = torch.zeros(1, 16, 2, dtype=torch.int64, device=device)
    routing = ([4, 4], [3, 3])
    u = torch.zeros(2, 4, 11, device=device)
    A, B, states = (
        torch.zeros(4, 3, device=device),
        torch.zeros(2, 2, 3, 11, device=device),
        u[..., None, :].repeat(1, 1, 3, 1),
    )
    ops = _BNS
    return {
        'local_attention_triton': (lambda q, b: ops.local_attention_triton(q, q, q, b, *geo, 0.25), (q, table)),
        'local_attention_triton_backward': (
            lambda g, q, lse, b: ops.local_attention_triton_backward(g, q, q, q, q, lse, b, *geo, 0.25, True),
            (q, q, lse, table),
        ),
        'local_scores_triton': (lambda q, b: ops.local_scores_triton(q, q, b, *geo, 0.25), (q, table)),
        'local_scores_triton_backward': (
            lambda g, q, b: ops.local_scores_triton_backward(g, q, q, b, *geo, 0.25, True),
            (attn, q, table),
        ),
        'local_aggregate_triton': (lambda a, v: ops.local_aggregate_triton(a, v, *geo), (attn, q)),
        'local_aggregate_triton_backward': (
            lambda g, a, v: ops.local_aggregate_triton_backward(g, a, v, *geo),
            (q, attn, q),
        ),
        'routing_attention_triton': (lambda q, i: ops.routing_attention_triton(q, q, q, i, *routing, 0.25), (q, index)),
        'routing_attention_triton_backward': (
            lambda g, q, lse, i: ops.routing_attention_triton_backward(g, q, q, q, q, lse, i, *routing, 0.25),
            (q, q, lse, index),
        ),
        'selective_scan_triton': (
            lambda u, A, B: ops.selective_scan_triton(u, u, A, B, B, None, None, True),
            (u, A, B),
        ),
        'selective_scan_triton_backward': (
            lambda u, A, B, s: ops.selective_scan_triton_backward(u, s, u, u, A, B, B, u[0, :, 0], None, True, s),
            (u, A, B, states),
        ),
        'selective_scan_states_triton': (
            lambda u, A, B: ops.selective_scan_states_triton(u, u, A, B, None, False),
            (u, A, B),
        ),  # fmt: skip
        'selective_scan_states_triton_backward': (
            lambda u, A, B, s: ops.selective_scan_states_triton_backward(s, u, u, A, B, u[0, :, 0], True, s),
            (u, A, B, states),
        ),
    }


@pytest.fixture
def compile_target(monkeypatch):
    """A GPU target for Triton's front end where the machine has no GPU driver: torch reads it to analyse which
    tensors a traced kernel writes (sm_90, as tools/gpu_readiness.py compiles for)."""
    import triton
    from triton.backends.compiler import GPUTarget

    try:
        triton.runtime.driver.active.get_current_target()
    except RuntimeError:
        stub = type('TargetOnly', (), {'get_current_target': lambda self: GPUTarget('cuda', 90, 32)})()
        monkeypatch.setattr(triton.runtime.driver, '_active', stub)


def test_triton_ops_trace_down_to_their_kernels(compile_target):
    """What torch.compile's AOTAutograd sees of every CUDA operator (make_fx under functionalization, fake CUDA
    tensors, no GPU): the operator is decomposed into ``triton_kernel_wrapper_functional`` nodes (the Triton kernels
    Inductor schedules), and no kernel writes a tensor it did not allocate (nothing cloned from the inputs)."""
    _triton_or_skip()
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch._subclasses.functional_tensor import dispatch_functionalize
    from torch.fx.experimental.proxy_tensor import make_fx

    wrapper = torch.ops.higher_order.triton_kernel_wrapper_functional
    with FakeTensorMode():
        cases = _trace_cases('cuda')
        assert set(cases) == set(_TRITON_OPS) | set(_TRITON_OPS.values())
        for name, (fn, args) in cases.items():
            graph = make_fx(dispatch_functionalize(fn))(*args).graph
            inputs = {node for node in graph.nodes if node.op == 'placeholder'}
            launches = [node for node in graph.nodes if node.target is wrapper]
            assert launches, f'{name}: no Triton kernel in the trace: {[str(n.target) for n in graph.nodes]}'
            assert not any('backbonezoo' in str(node.target) for node in graph.nodes), f'{name}: not decomposed'
            for node in launches:
                written = [node.kwargs['kwargs'][arg] for arg in node.kwargs['tensors_to_clone']]
                assert not inputs.intersection(written), f'{name}: a kernel writes an input ({written})'


def test_triton_ops_export_as_one_node():
    """torch.export keeps a CUDA operator as one node (not its kernels: exported programs stay backend-neutral),
    traced on fake CUDA tensors without a GPU."""
    _triton_or_skip()
    from torch._subclasses.fake_tensor import FakeTensorMode

    class Block(torch.nn.Module):
        def forward(self, q, table):
            return kernels.local_attention(q, q, q, 3, bias=table) + 1

    with FakeTensorMode():
        q, table = torch.zeros(1, 2, 9, 10, 16, device='cuda'), torch.zeros(2, 5, 5, device='cuda')
        try:
            program = torch.export.export(Block(), (q, table))
        except Exception as error:  # noqa: BLE001 - torch versions differ in what export does with fake inputs
            pytest.skip(f'torch.export cannot trace fake CUDA inputs here: {type(error).__name__}: {error}')
    targets = [str(node.target) for node in program.graph.nodes if node.op == 'call_function']
    assert 'backbonezoo.local_attention_triton.default' in targets, targets
