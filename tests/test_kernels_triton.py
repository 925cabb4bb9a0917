"""Triton kernels under TRITON_INTERPRET=1 against the reference: local attention / scores / aggregate, forward and
backward, for the geometries the models use (NATTEN neighbourhoods k 7 at dilation 1 / 2, TiC's zero-border
windows, HaloNet's halo tiles, blocked windows incl. partial ones, strided dilated windows), every bias form, head
dims 16 / 32 / 64, in float32, float16 (against a float64 reference, no worse than the reference's own float16
rounding) and float64 (computed in float64, not float32). bfloat16 is left out on purpose: the interpreter's bf16
``tl.dot`` multiplies raw bits. The interpreter must be on before triton is imported, hence a fresh process per
group of cases (each prints one line per case it checked)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import REPO

pytestmark = [pytest.mark.triton, pytest.mark.xdist_group('triton_interpreter')]

# (height, width, geometry, bias form, head dim, batch); maps kept small: the interpreter is slow
CASES = {
    'nbhd-k7-table': (14, 15, dict(kernel_size=7), 'table', 16, 1),
    'nbhd-k7-dil2-query': (14, 16, dict(kernel_size=7, dilation=2), 'query', 32, 1),
    'nbhd-k5x3-dil-mixed': (11, 9, dict(kernel_size=(5, 3), dilation=(2, 1)), 'table', 16, 2),
    'zero-k3-dil2-table': (11, 9, dict(kernel_size=3, dilation=2, border='zero'), 'table', 16, 1),
    'zero-k5-d64': (10, 13, dict(kernel_size=5, border='zero'), None, 64, 1),
    'halo-k14-s8-query': (12, 11, dict(kernel_size=14, stride=8, border='zero'), 'query-broadcast', 16, 2),
    'blocked-k7-partial': (9, 10, dict(kernel_size=7, stride=7, border='zero'), 'table', 32, 1),
    'strided-k4-s2-dil2': (10, 11, dict(kernel_size=4, stride=2, dilation=2, border='zero'), None, 16, 1),
    'blocked-k2': (8, 10, dict(kernel_size=2, stride=2, border='zero'), None, 32, 1),
}
HALF_CASES = ['nbhd-k7-table', 'halo-k14-s8-query', 'zero-k5-d64']
DOUBLE_CASES = ['nbhd-k7-dil2-query', 'halo-k14-s8-query']


def _inputs(name: str, dtype: torch.dtype, seed: int = 0):
    height, width, geometry, bias_kind, dim, batch = CASES[name]
    gen = torch.Generator().manual_seed(seed)
    heads = 2
    kh, kw = (geometry['kernel_size'],) * 2 if isinstance(geometry['kernel_size'], int) else geometry['kernel_size']
    q, k, v = (torch.randn(batch, heads, height, width, dim, generator=gen, dtype=torch.float64) for _ in range(3))
    v = v[..., : dim // 2 + 8] if dim > 16 else v  # d_v != d_qk where the head allows (EfficientViT, HaloNet)
    bias = None
    if bias_kind == 'table':
        bias = torch.randn(heads, 2 * kh - 1, 2 * kw - 1, generator=gen, dtype=torch.float64)
    elif bias_kind == 'query':
        bias = torch.randn(batch, heads, height, width, kh * kw, generator=gen, dtype=torch.float64)
    elif bias_kind == 'query-broadcast':
        bias = torch.randn(1, heads, 1, width, kh * kw, generator=gen, dtype=torch.float64)
    tensors = [t.to(dtype) for t in (q, k, v)] + ([bias.to(dtype)] if bias is not None else [])
    return tensors, geometry


def _run(tensors, geometry, backend, compute=None):
    """Outputs and gradients of local_attention, local_scores and local_aggregate (fixed cotangents)."""
    from backbonezoo.kernels import local_aggregate, local_attention, local_scores

    leaves = [t.detach().to(compute or t.dtype).requires_grad_() for t in tensors]
    q, k, v = leaves[:3]
    bias = leaves[3] if len(leaves) > 3 else None
    gen = torch.Generator().manual_seed(1)
    results = []
    out = local_attention(q, k, v, bias=bias, backend=backend, **geometry)
    cot = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)
    results += [out, *torch.autograd.grad(out, leaves, cot)]
    scores = local_scores(q, k, bias=bias, scale=0.4, backend=backend, **geometry)
    cot = torch.randn(scores.shape, generator=gen, dtype=torch.float64).to(scores.dtype)
    results += [scores, *torch.autograd.grad(scores, [q, k] + ([bias] if bias is not None else []), cot)]
    attn = torch.randn(scores.shape, generator=gen, dtype=torch.float64).to(q.dtype).requires_grad_()
    agg = local_aggregate(attn, v, backend=backend, **geometry)
    cot = torch.randn(agg.shape, generator=gen, dtype=torch.float64).to(agg.dtype)
    results += [agg, *torch.autograd.grad(agg, [attn, v], cot)]
    return [r.detach().double() for r in results]


_LABELS = ['out', 'dq', 'dk', 'dv', 'dbias', 'scores', 'scores.dq', 'scores.dk', 'scores.dbias', 'aggregate',
           'aggregate.dattn', 'aggregate.dv']  # fmt: skip


def _labels(with_bias: bool) -> list[str]:
    return [name for name in _LABELS if with_bias or not name.endswith('dbias')]


def check_case(name: str, dtype: torch.dtype) -> str:
    """Triton vs reference for one case; raises AssertionError naming the first tensor off. float32 / float64:
    relative to the reference at the dtype's precision; float16: against a float64 reference, allowed 4x the
    reference backend's own float16 error (plus a floor)."""
    tensors, geometry = _inputs(name, dtype)
    got = _run(tensors, geometry, 'triton')
    labels = _labels(len(tensors) > 3)
    if dtype == torch.float16:
        exact = _run(tensors, geometry, 'reference', compute=torch.float64)
        lossy = _run(tensors, geometry, 'reference')
        for label, g, e, rounded in zip(labels, got, exact, lossy):
            allowed = 4 * (rounded - e).abs().max().item() + 2e-3 * e.abs().max().item() + 1e-3
            error = (g - e).abs().max().item()
            assert error <= allowed, f'{name} {dtype} {label}: max error {error:.3g} > {allowed:.3g}'
    else:
        expected = _run(tensors, geometry, 'reference')
        rtol = 2e-5 if dtype == torch.float32 else 1e-12
        for label, g, e in zip(labels, got, expected):
            error = (g - e).abs().max().item() / max(e.abs().max().item(), 1e-6)
            assert error <= rtol, f'{name} {dtype} {label}: max relative error {error:.3g} > {rtol}'
    return f'ok {name} {dtype}'


def check_launchers() -> str:
    """The plain launchers: lse is the log-sum-exp of the reference logits, the backward equals autograd's, and
    repeated backwards are bitwise equal (no atomics: deterministic)."""
    from backbonezoo.kernels import local_scores, ops, triton_local
    from backbonezoo.kernels.local import _geometry

    tensors, geometry = _inputs('nbhd-k7-dil2-query', torch.float32)
    q, k, v, bias = tensors
    kw = dict(stride=geometry.get('stride', 1), dilation=geometry.get('dilation', 1),
              border=geometry.get('border', 'shift'))  # fmt: skip
    geo = _geometry('test', q.shape[2], q.shape[3], geometry['kernel_size'], kw['stride'], kw['dilation'], kw['border'])
    scale = q.shape[-1] ** -0.5
    out, lse = triton_local.attention_fwd(q, k, v, geo, bias, 'query', scale)
    logits = local_scores(q, k, bias=bias, scale=scale, backend='reference', **geometry)
    torch.testing.assert_close(lse, logits.logsumexp(-1), rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    first = triton_local.attention_bwd(grad, q, k, v, out, lse, geo, bias, 'query', scale)
    second = triton_local.attention_bwd(grad, q, k, v, out, lse, geo, bias, 'query', scale)
    assert all(torch.equal(a, b) for a, b in zip(first, second)), 'attention_bwd is not deterministic'
    # the registered CUDA operator (triton_ops.py) runs exactly these launchers, its autograd the plain backward
    leaves = [t.clone().requires_grad_() for t in tensors]
    out_op, lse_op = torch.ops.backbonezoo.local_attention_triton(*leaves, *ops.geometry_args(geo), scale)
    assert torch.equal(out_op, out) and torch.equal(lse_op, lse) and not lse_op.requires_grad
    expected = torch.autograd.grad(out_op, leaves, grad)
    for a, b in zip(first, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    return 'ok launchers'


# (H, W, num_regions, region_size, topk): a divisible grid, a zero-padded grid, regions of more tokens than one block
ROUTING_CASES = [(8, 12, 4, None, 3), (7, 8, None, 3, 2), (18, 9, (2, 1), None, 2)]


def check_routing(case: tuple, dtype: torch.dtype) -> str:
    """Routing token attention (Triton) vs the reference on the same routes, forward and q / k / v gradients; the
    plain launchers' backward is bitwise repeatable (no atomics)."""
    from backbonezoo.kernels import region_routing, routing_attention, triton_routing
    from backbonezoo.kernels.routing import _region_grid

    height, width, num_regions, region_size, topk = case
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, height, width, 24, generator=gen, dtype=torch.float64) for _ in range(3))
    v = v[..., :20]
    index = region_routing(q, k, num_regions, topk, region_size=region_size)
    cot = torch.randn(*q.shape[:4], 20, generator=gen, dtype=torch.float64)
    results = {}
    for backend, compute in (('triton', dtype), ('reference', dtype), ('exact', torch.float64)):
        leaves = [t.to(compute).requires_grad_() for t in (q, k, v)]
        out = routing_attention(*leaves, num_regions, topk, region_size=region_size, index=index,
                                backend='reference' if backend == 'exact' else backend)  # fmt: skip
        grads = torch.autograd.grad(out, leaves, cot.to(compute))
        results[backend] = [t.double() for t in (out, *grads)]
    for label, got, lossy, exact in zip(('out', 'dq', 'dk', 'dv'), *results.values()):
        if dtype == torch.float16:
            allowed = 4 * (lossy - exact).abs().max().item() + 1e-3 * exact.abs().max().item() + 1e-3
        else:
            allowed = (2e-5 if dtype == torch.float32 else 1e-12) * exact.abs().max().item()
        error = (got - exact).abs().max().item()
        assert error <= allowed, f'routing {case} {dtype} {label}: max error {error:.3g} > {allowed:.3g}'
    grid, size, _ = _region_grid(height, width, num_regions, region_size)
    args = [t.to(dtype) for t in (q, k, v)]
    out, lse = triton_routing.routing_fwd(*args, index, grid, size, 0.3)
    first = triton_routing.routing_bwd(cot.to(dtype), *args, out, lse, index, grid, size, 0.3)
    second = triton_routing.routing_bwd(cot.to(dtype), *args, out, lse, index, grid, size, 0.3)
    assert all(torch.equal(a, b) for a, b in zip(first, second)), 'routing_bwd is not deterministic'
    return f'ok routing {case} {dtype}'


def check_scan(dtype: torch.dtype) -> str:
    """The scan launchers: scan_fwd is the recurrence, scan_bwd its adjoint (vs autograd through the loop)."""
    from backbonezoo.kernels import triton_scan
    from backbonezoo.kernels.scan import _scan_reference

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 4, 37, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    b = torch.randn(3, 4, 37, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    expected = _scan_reference(a, b)
    cot = torch.randn(expected.shape, generator=gen, dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(expected, (a, b), cot)
    h = triton_scan.scan_fwd(a.detach(), b.detach())
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(h, expected.detach(), rtol=rtol, atol=rtol)
    for got, want in zip(triton_scan.scan_bwd(cot, a.detach(), h), grads):
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol)
    return f'ok scan {dtype}'


# (readout, groups, softplus): every input's gradient path of the hand-written backward (triton_ops._scan_backward)
SCAN_CASES = [('y', 1, False), ('y+D+bias', 2, True), ('states', 2, True), ('states', 1, False)]


def check_selective_scan(case: tuple, dtype: torch.dtype) -> str:
    """selective_scan on 'triton' (the registered operators selective_scan[_states]_triton: discretisation around the
    scan kernel, hand-written backward) vs the reference loop: outputs and the gradient of every input, deltas above
    the softplus threshold included."""
    from backbonezoo.kernels import selective_scan

    readout, groups, softplus = case
    gen = torch.Generator().manual_seed(0)
    batch, dim, d_state, length = 2, 4, 3, 19
    u = torch.randn(batch, dim, length, generator=gen, dtype=torch.float64)
    delta = torch.randn(batch, dim, length, generator=gen, dtype=torch.float64)
    delta[0, 0, :3] = 25.0  # past softplus' threshold (linear there)
    A = -torch.rand(dim, d_state, generator=gen, dtype=torch.float64) - 0.2
    B, C = (torch.randn(batch, groups, d_state, length, generator=gen, dtype=torch.float64) for _ in range(2))
    D, bias = torch.randn(dim, generator=gen, dtype=torch.float64), torch.randn(dim, generator=gen, dtype=torch.float64)
    if not softplus:
        delta = delta.abs() * 0.3
    inputs = {'u': u, 'delta': delta, 'A': A, 'B': B}
    if readout != 'states':
        inputs['C'] = C
    if readout == 'y+D+bias':
        inputs['D'] = D
    if readout != 'y':
        inputs['delta_bias'] = bias
    results = {}
    for backend in ('triton', 'reference'):
        leaves = {name: t.to(dtype).requires_grad_() for name, t in inputs.items()}
        out = selective_scan(leaves['u'], leaves['delta'], leaves['A'], leaves['B'], leaves.get('C'), leaves.get('D'),
                             delta_bias=leaves.get('delta_bias'), delta_softplus=softplus, backend=backend)  # fmt: skip
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(out.dtype)
        results[backend] = [out, *torch.autograd.grad(out, list(leaves.values()), cot)]
    rtol = 2e-5 if dtype == torch.float32 else 1e-12
    for label, got, want in zip(['out', *inputs], *results.values()):
        assert got.dtype == want.dtype, f'scan {case} {label}: dtype {got.dtype} != {want.dtype}'
        error = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-6)
        assert error <= rtol, f'scan {case} {dtype} {label}: max relative error {error:.3g} > {rtol}'
    return f'ok selective_scan {case} {dtype}'


def check_triton_opcheck() -> str:
    """torch.library.opcheck of every CUDA operator (triton_ops.py) on CPU tensors under the interpreter: the schema
    (no input mutated or aliased by an output) and the autograd registration. The fake-tensor and AOT checks need
    traced launches, which the interpreter cannot do: tests/test_kernels_ops.py traces them on fake CUDA tensors."""
    import backbonezoo.kernels.triton_ops  # noqa: F401
    from backbonezoo.kernels import region_routing

    ops = torch.ops.backbonezoo
    checks = ('test_schema', 'test_autograd_registration')
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 7, 8, 16, generator=gen, requires_grad=True) for _ in range(3))
    table = torch.randn(2, 5, 5, generator=gen, requires_grad=True)
    query_bias = torch.randn(1, 2, 7, 8, 9, generator=gen, requires_grad=True)
    geometry = ([3, 3], [1, 1], [1, 1], 'shift')
    attn = torch.randn(1, 2, 7, 8, 9, generator=gen, requires_grad=True)
    grad = torch.randn(1, 2, 7, 8, 16, generator=gen)
    for bias in (None, table, query_bias):
        torch.library.opcheck(ops.local_attention_triton, (q, k, v, bias, *geometry, 0.5), test_utils=checks)
        torch.library.opcheck(ops.local_scores_triton, (q, k, bias, *geometry, 0.5), test_utils=checks)
        # the backward operators too: e.g. a full-size per-query bias' gradient is the incoming gradient's values,
        # which must be returned as a tensor of its own
        out, lse = ops.local_attention_triton(q, k, v, bias, *geometry, 0.5)
        args = (grad, q, k, v, out.detach(), lse, bias, *geometry, 0.5, True)
        torch.library.opcheck(ops.local_attention_triton_backward, args, test_utils=('test_schema',))
        args = (attn.detach(), q, k, bias, *geometry, 0.5, True)
        torch.library.opcheck(ops.local_scores_triton_backward, args, test_utils=('test_schema',))
    torch.library.opcheck(ops.local_aggregate_triton, (attn, v, *geometry), test_utils=checks)
    torch.library.opcheck(ops.local_aggregate_triton_backward, (grad, attn, v, *geometry), test_utils=('test_schema',))
    index = region_routing(q, k, None, 2, region_size=3)
    torch.library.opcheck(ops.routing_attention_triton, (q, k, v, index, [3, 3], [3, 3], 0.5), test_utils=checks)
    u, delta = torch.randn(1, 4, 9, generator=gen), torch.rand(1, 4, 9, generator=gen)
    A, B = -torch.rand(4, 3, generator=gen), torch.randn(1, 2, 3, 9, generator=gen)
    for t in (u, delta, A, B):
        t.requires_grad_()
    torch.library.opcheck(ops.selective_scan_triton, (u, delta, A, B, B, None, None, True), test_utils=checks)
    torch.library.opcheck(ops.selective_scan_states_triton, (u, delta, A, B, None, False), test_utils=checks)
    return 'ok triton opcheck'


def _interpreted(calls: list[str]) -> subprocess.CompletedProcess:
    script = textwrap.dedent(
        f"""
        import sys
        import torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(REPO / 'tests')!r})
        import test_kernels_triton as t
        for call in {calls!r}:
            print(eval(call), flush=True)
        """
    )
    env = {**os.environ, 'TRITON_INTERPRET': '1', 'OMP_NUM_THREADS': '1'}
    env.pop('BACKBONEZOO_KERNEL_BACKEND', None)
    return subprocess.run([sys.executable, '-c', script], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


def _assert_all_ok(calls: list[str]) -> None:
    pytest.importorskip('triton')
    result = _interpreted(calls)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert result.stdout.count('ok ') == len(calls), result.stdout


def test_float32_every_geometry_matches_reference():
    """Every geometry and bias form, forward and backward of the three operators, float32 (IEEE dots)."""
    _assert_all_ok([f't.check_case({name!r}, torch.float32)' for name in CASES] + ['t.check_launchers()'])


def test_routing_and_scan_match_reference():
    """Routing token attention in float32 / float16 / float64 (deterministic backward), the scan launchers, the
    selective scan's CUDA operators (forward and every gradient), opcheck of every CUDA operator."""
    calls = [f't.check_routing({case!r}, torch.float32)' for case in ROUTING_CASES]
    calls += [f't.check_routing({case!r}, torch.float16)' for case in ROUTING_CASES[1:]]
    calls += [f't.check_routing({ROUTING_CASES[1]!r}, torch.float64)', 't.check_scan(torch.float32)',
              't.check_scan(torch.float64)']  # fmt: skip
    calls += [f't.check_selective_scan({case!r}, torch.float32)' for case in SCAN_CASES]
    calls += [f't.check_selective_scan({SCAN_CASES[1]!r}, torch.float64)', 't.check_triton_opcheck()']
    _assert_all_ok(calls)


def test_float16_and_float64_match_reference():
    """float16 on the tensor-core path (float32 accumulation) and float64 computed in float64."""
    calls = [f't.check_case({name!r}, torch.float16)' for name in HALF_CASES]
    calls += [f't.check_case({name!r}, torch.float64)' for name in DOUBLE_CASES]
    _assert_all_ok(calls)


# ---------------------------------------------------------------------------------------------------------------------
# FlexAttention backend (kernels/flex.py): forward against the reference on CPU in float32 (torch 2.14's FlexAttention
# runs eagerly on CPU, without a backward there).


def _flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _flex_available(), reason='needs torch.nn.attention.flex_attention')
@pytest.mark.filterwarnings('ignore::UserWarning')
def test_flex_local_attention_matches_reference():
    from backbonezoo.kernels import flex
    from backbonezoo.kernels.local import _geometry, local_attention

    for name in CASES:
        tensors, geometry = _inputs(name, torch.float32)
        q, k, v = tensors[:3]
        bias = tensors[3] if len(tensors) > 3 else None
        kind = None if bias is None else 'table' if bias.dim() == 3 else 'query'
        geo = _geometry('test', q.shape[2], q.shape[3], geometry['kernel_size'], geometry.get('stride', 1),
                        geometry.get('dilation', 1), geometry.get('border', 'shift'))  # fmt: skip
        expected = local_attention(q, k, v, bias=bias, backend='reference', **geometry)
        got = flex.attention(q, k, v, geo, bias, kind, q.shape[-1] ** -0.5)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f'{name}: {m}')


@pytest.mark.skipif(not _flex_available(), reason='needs torch.nn.attention.flex_attention')
@pytest.mark.filterwarnings('ignore::UserWarning')
@pytest.mark.parametrize('case', ROUTING_CASES)
def test_flex_routing_attention_matches_reference(case):
    from backbonezoo.kernels import flex, region_routing, routing_attention
    from backbonezoo.kernels.routing import _region_grid

    height, width, num_regions, region_size, topk = case
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, height, width, 8, generator=gen) for _ in range(3))
    index = region_routing(q, k, num_regions, topk, region_size=region_size)
    expected = routing_attention(q, k, v, num_regions, topk, region_size=region_size, index=index, backend='reference')
    grid, size, _ = _region_grid(height, width, num_regions, region_size)
    got = flex.routing_attention(q, k, v, index, grid, size, 8**-0.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_launch_grid_puts_batch_heads_on_axis_0():
    """CUDA caps grid axes 1 / 2 at 65535: batch x heads x tiles all go on axis 0 (limit 2**31 - 1), and a problem
    past that is refused by name instead of launching a wrapped grid."""
    pytest.importorskip('triton')
    from backbonezoo.kernels import triton_local
    from backbonezoo.kernels.local import _geometry

    geo = _geometry('test', 56, 56, 7, 1, 2, 'shift')
    grid, counts, static = triton_local._plan(geo, 70000)
    assert len(grid) == 1 and grid[0] == 70000 * static['GH'] * counts[0] * static['GW'] * counts[1]
    with pytest.raises(ValueError, match='grid limit'):
        triton_local._plan(geo, 2**27)
