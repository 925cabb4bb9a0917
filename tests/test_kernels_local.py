"""Local attention operators: reference vs a per-query brute force, fast paths vs reference, named errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from backbonezoo.kernels import local_aggregate, local_aggregate_probs, local_attention, local_probs, local_scores

REPO = Path(__file__).resolve().parents[1]

# (id, H, W, kwargs): every border / stride / dilation combination the families use, plus awkward sizes.
CASES = [
    ('shift-k3', 6, 7, dict(kernel_size=3)),
    ('shift-k5x3-nonsquare', 7, 9, dict(kernel_size=(5, 3))),
    ('shift-dil2-uneven', 7, 10, dict(kernel_size=3, dilation=2)),
    ('shift-dil3x2', 10, 8, dict(kernel_size=(3, 3), dilation=(3, 2))),
    ('shift-k5-exact-fit', 5, 6, dict(kernel_size=5)),
    ('zero-k3', 6, 7, dict(kernel_size=3, border='zero')),
    ('zero-k3-dil2', 7, 6, dict(kernel_size=3, dilation=2, border='zero')),
    ('zero-k5-larger-than-map', 3, 4, dict(kernel_size=5, border='zero')),
    ('zero-halo-k5-s3', 7, 8, dict(kernel_size=5, stride=3, border='zero')),
    ('zero-halo-k4x6-s2', 6, 7, dict(kernel_size=(4, 6), stride=2, border='zero')),
    ('zero-blocked-3', 7, 8, dict(kernel_size=3, stride=3, border='zero')),
    ('zero-blocked-4x2', 6, 5, dict(kernel_size=(4, 2), stride=(4, 2), border='zero')),
    ('zero-mixed-stride-dil', 7, 9, dict(kernel_size=(4, 3), stride=(2, 1), dilation=(1, 2), border='zero')),
]
CASES_NO_TABLE = [('zero-halo-s2-dil2', 7, 6, dict(kernel_size=4, stride=2, dilation=2, border='zero'))]
BIASES = ['none', 'table', 'query', 'query-broadcast']


# ---------------------------------------------------------------------------------------------------------------------
# Brute force: one query at a time, windows from scalar ports of NATTEN 0.17.1's window / bias start functions.


def _natten_window_start(index: int, length: int, kernel: int, dilation: int) -> int:
    ns = kernel // 2
    if dilation <= 1:
        return max(index - ns, 0) + (index + ns >= length) * (length - index - ns - 1)
    if index - ns * dilation < 0:
        return index % dilation
    if index + ns * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * ns * dilation
        return a + imodd - kernel * dilation
    return index - ns * dilation


def _natten_pb_start(index: int, length: int, kernel: int, dilation: int) -> int:
    ns = kernel // 2
    if dilation <= 1:
        return ns + (index < ns) * (ns - index) + (index + ns >= length) * (length - index - 1 - ns)
    if index - ns * dilation < 0:
        return kernel - 1 - (index // dilation)
    if index + ns * dilation >= length:
        return (length - index - 1) // dilation
    return ns


def _axis(index: int, length: int, kernel: int, stride: int, dilation: int, border: str) -> list[tuple[int, int]]:
    """[(key position or -1, table row or -1)] for one query along one axis."""
    if border == 'shift':
        start = _natten_window_start(index, length, kernel, dilation)
        pb = _natten_pb_start(index, length, kernel, dilation)
        return [(start + j * dilation, pb + j) for j in range(kernel)]
    tile_start = index // stride * stride
    start = tile_start - dilation * ((kernel - stride) // 2)
    out = []
    for j in range(kernel):
        pos = start + j * dilation
        offset = pos - index
        row = offset // dilation + kernel - 1 if offset % dilation == 0 else -1
        out.append((pos if 0 <= pos < length else -1, row))
    return out


def brute_force(q, k, v, bias, kind, scale, kernel_size, stride=1, dilation=1, border='shift', attn=None):
    """(logits, out) computed query by query; ``attn`` replaces the softmax when given (aggregate check)."""
    pair = lambda x: (x, x) if isinstance(x, int) else x
    (kh, kw), (sh, sw), (dh, dw) = pair(kernel_size), pair(stride), pair(dilation)
    batch, heads, height, width, _ = q.shape
    logits = torch.zeros(batch, heads, height, width, kh * kw, dtype=q.dtype)
    out = torch.zeros(batch, heads, height, width, v.shape[-1], dtype=q.dtype)
    for b in range(batch):
        for n in range(heads):
            for y in range(height):
                rows = _axis(y, height, kh, sh, dh, border)
                for x in range(width):
                    cols = _axis(x, width, kw, sw, dw, border)
                    values = []
                    for iy, (py, ry) in enumerate(rows):
                        for ix, (px, rx) in enumerate(cols):
                            inside = py >= 0 and px >= 0
                            key = k[b, n, py, px] if inside else torch.zeros_like(k[b, n, 0, 0])
                            values.append(v[b, n, py, px] if inside else torch.zeros_like(v[b, n, 0, 0]))
                            logit = scale * (q[b, n, y, x] * key).sum()
                            if kind == 'table':
                                logit = logit + bias[n, ry, rx]
                            elif kind == 'query':
                                full = bias.expand(batch, heads, height, width, kh * kw)
                                logit = logit + full[b, n, y, x, iy * kw + ix]
                            logits[b, n, y, x, iy * kw + ix] = logit
                    weights = logits[b, n, y, x].softmax(-1) if attn is None else attn[b, n, y, x]
                    out[b, n, y, x] = (weights[:, None] * torch.stack(values)).sum(0)
    return logits, out


def _inputs(height, width, kwargs, bias_kind, dtype=torch.float64, batch=2, heads=2, seed=0, device='cpu'):
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=gen, dtype=dtype).to(device)
    shape = (batch, heads, height, width)
    q, k, v = rand(*shape, 3), rand(*shape, 3), rand(*shape, 4)
    kh, kw = (kwargs['kernel_size'],) * 2 if isinstance(kwargs['kernel_size'], int) else kwargs['kernel_size']
    bias, kind = None, None
    if bias_kind == 'table':
        bias, kind = rand(heads, 2 * kh - 1, 2 * kw - 1), 'table'
    elif bias_kind == 'query':
        bias, kind = rand(batch, heads, height, width, kh * kw), 'query'
    elif bias_kind == 'query-broadcast':
        bias, kind = rand(1, heads, 1, width, kh * kw), 'query'
    return q, k, v, bias, kind


def _all_cases():
    for name, h, w, kw in CASES:
        for b in BIASES:
            yield pytest.param(h, w, kw, b, id=f'{name}-{b}')
    for name, h, w, kw in CASES_NO_TABLE:
        for b in ('none', 'query'):
            yield pytest.param(h, w, kw, b, id=f'{name}-{b}')


@pytest.mark.parametrize('height,width,kwargs,bias_kind', list(_all_cases()))
def test_reference_matches_brute_force(height, width, kwargs, bias_kind):
    q, k, v, bias, kind = _inputs(height, width, kwargs, bias_kind, batch=1)
    logits, out = brute_force(q, k, v, bias, kind, 0.7, **kwargs)
    got = local_attention(q, k, v, bias=bias, scale=0.7, backend='reference', **kwargs)
    torch.testing.assert_close(got, out, rtol=1e-12, atol=1e-12)
    scores = local_scores(q, k, bias=bias, scale=0.7, backend='reference', **kwargs)
    torch.testing.assert_close(scores, logits, rtol=1e-12, atol=1e-12)
    attn = torch.rand_like(scores)  # arbitrary weights: aggregate must not assume a softmax
    _, expected = brute_force(q, k, v, None, None, 1.0, attn=attn, **kwargs)
    torch.testing.assert_close(local_aggregate(attn, v, backend='reference', **kwargs), expected)


@pytest.mark.parametrize(
    'height,width,kwargs,bias_kind',
    [
        (7, 5, dict(kernel_size=3, dilation=(2, 1)), 'table'),
        (5, 4, dict(kernel_size=3, dilation=2, border='zero'), 'table'),
        (5, 7, dict(kernel_size=4, stride=2, border='zero'), 'query'),
        (5, 5, dict(kernel_size=2, stride=2, border='zero'), 'table'),
    ],
)
def test_reference_gradcheck(height, width, kwargs, bias_kind):
    q, k, v, bias, _ = _inputs(height, width, kwargs, bias_kind, batch=1, heads=1)
    inputs = [t.requires_grad_() for t in (q, k, v, bias)]
    check = lambda fn, args: torch.autograd.gradcheck(fn, args, fast_mode=True)
    assert check(lambda *t: local_attention(*t[:3], bias=t[3], backend='reference', **kwargs), inputs)
    assert check(
        lambda q, k, b: local_scores(q, k, bias=b, scale=0.5, backend='reference', **kwargs), inputs[:2] + inputs[3:]
    )
    attn = torch.rand(*q.shape[:4], local_scores(q, k, **kwargs).shape[-1], dtype=q.dtype, requires_grad=True)
    assert check(lambda a, v: local_aggregate(a, v, backend='reference', **kwargs), (attn, v))


def test_border_semantics_differ_where_expected():
    """'zero' keeps outside keys in the softmax (TiC / HaloNet), 'shift' moves the window: equal only inside."""
    q, k, v, _, _ = _inputs(9, 9, dict(kernel_size=3), 'none', dtype=torch.float32)
    shift = local_attention(q, k, v, 3, border='shift', backend='reference')
    zero = local_attention(q, k, v, 3, border='zero', backend='reference')
    torch.testing.assert_close(shift[:, :, 1:-1, 1:-1], zero[:, :, 1:-1, 1:-1])
    assert (shift[:, :, 0, 0] - zero[:, :, 0, 0]).abs().max() > 1e-3


def test_blocked_window_equals_window_partition_attention():
    """kernel == stride == window, 'zero': plain attention inside each window (map divisible by the window)."""
    q, k, v, _, _ = _inputs(6, 4, dict(kernel_size=2), 'none', dtype=torch.float64)
    out = local_attention(q, k, v, 2, stride=2, border='zero', backend='reference')
    part = lambda x: x.unflatten(2, (3, 2)).unflatten(4, (2, 2)).permute(0, 1, 2, 4, 3, 5, 6).flatten(4, 5)
    expected = torch.nn.functional.scaled_dot_product_attention(part(q), part(k), part(v))
    expected = expected.unflatten(4, (2, 2)).permute(0, 1, 2, 4, 3, 5, 6).flatten(2, 3).flatten(3, 4)
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------------------------------------------------------------
# Fast PyTorch path vs reference (float32): forward rel <= 1e-5, gradients rel <= 1e-4.


def _rel(a: torch.Tensor, e: torch.Tensor) -> float:
    return ((a.double() - e.double()).abs().max() / e.double().abs().max().clamp_min(1e-30)).item()


FAST_CASES = [pytest.param(h, w, kw, b, id=f'{name}-{b}') for name, h, w, kw in CASES for b in BIASES] + [
    pytest.param(h, w, kw, b, id=f'{name}-{b}') for name, h, w, kw in CASES_NO_TABLE for b in ('none', 'query')
]


def _check_against_reference(height, width, kwargs, bias_kind, backend, batch=2, heads=2, device='cpu'):
    q, k, v, bias, _ = _inputs(height, width, kwargs, bias_kind, torch.float32, batch, heads, device=device)
    results = {}
    for name in ('reference', backend):
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        b = bias.detach().clone().requires_grad_() if bias is not None else None
        out = local_attention(*leaves, bias=b, backend=name, **kwargs)
        scores = local_scores(leaves[0], leaves[1], bias=b, scale=0.3, backend=name, **kwargs)
        agg = local_aggregate(scores.softmax(-1), leaves[2], backend=name, **kwargs)
        # the same map applied twice from local_probs' layout (the second time to other values)
        probs = local_probs(leaves[0], leaves[1], bias=b, scale=0.7, backend=name, **kwargs)
        twice = local_aggregate_probs(probs, leaves[2], backend=name, **kwargs)
        twice = twice + local_aggregate_probs(probs, leaves[2].flip(-1) * 2, backend=name, **kwargs)
        grad_out = torch.linspace(-1, 1, out.numel(), device=device).reshape(out.shape)
        loss = (out * grad_out).sum() + (agg * grad_out.flip(0)).sum() + scores.square().sum() * 1e-2
        (loss + (twice * grad_out.flip(-1)).sum()).backward()
        results[name] = [out, scores, agg, twice] + [t.grad for t in leaves] + ([b.grad] if b is not None else [])
    labels = ['attention', 'scores', 'aggregate', 'probs, aggregated twice', 'grad q', 'grad k', 'grad v', 'grad bias']
    for label, got, expected in zip(labels, results[backend], results['reference']):
        assert _rel(got, expected) <= (1e-5 if label[:4] != 'grad' else 1e-4), f'{label}: {_rel(got, expected):.2e}'


@pytest.mark.parametrize('height,width,kwargs,bias_kind', FAST_CASES)
def test_torch_backend_matches_reference(height, width, kwargs, bias_kind):
    _check_against_reference(height, width, kwargs, bias_kind, 'torch')


def test_torch_backend_realistic_shapes():
    """Shapes where the fast path's tiling / chunking differs from the tiny cases (several tiles, long rows)."""
    for height, width, kwargs in [
        (21, 30, dict(kernel_size=7, dilation=(3, 2))),
        (20, 22, dict(kernel_size=10, stride=6, border='zero')),
        (16, 17, dict(kernel_size=7, stride=7, border='zero')),
        (19, 18, dict(kernel_size=3, dilation=2, border='zero')),
    ]:
        _check_against_reference(height, width, kwargs, 'table' if 'dilation' in kwargs else 'query', 'torch', 1, 2)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_torch_backend_low_precision(dtype):
    """Half inputs run forward and backward (the softmax runs in float32), close to the float32 reference."""
    kwargs = dict(kernel_size=5, dilation=2)
    q, k, v, bias, _ = _inputs(12, 11, kwargs, 'table', dtype=torch.float32)
    expected = local_attention(q, k, v, bias=bias, backend='reference', **kwargs)
    leaves = [t.to(dtype).requires_grad_() for t in (q, k, v, bias)]
    out = local_attention(*leaves[:3], bias=leaves[3], backend='torch', **kwargs)
    out.float().square().sum().backward()
    assert out.dtype == dtype and all(t.grad.dtype == dtype and t.grad.isfinite().all() for t in leaves)
    assert _rel(out, expected) <= 2e-2


def test_backend_env_default(monkeypatch):
    q, k, v, _, _ = _inputs(5, 5, dict(kernel_size=3), 'none', dtype=torch.float32)
    monkeypatch.setenv('BACKBONEZOO_KERNEL_BACKEND', 'bogus')
    with pytest.raises(ValueError, match='BACKBONEZOO_KERNEL_BACKEND'):
        local_attention(q, k, v, 3)
    monkeypatch.setenv('BACKBONEZOO_KERNEL_BACKEND', 'reference')
    torch.testing.assert_close(local_attention(q, k, v, 3), local_attention(q, k, v, 3, backend='torch'))


# ---------------------------------------------------------------------------------------------------------------------
# Named errors.


@pytest.mark.parametrize(
    'call,match',
    [
        (lambda q, k, v: local_attention(q[0], k[0], v[0], 3), 'q must be 5-D'),
        (lambda q, k, v: local_attention(q, k[..., :2], v, 3), 'k shape'),
        (lambda q, k, v: local_attention(q, k, v[:, :1], 3), 'v shape'),
        (lambda q, k, v: local_attention(q, k.double(), v, 3), 'k dtype'),
        (lambda q, k, v: local_attention(q.int(), k.int(), v.int(), 3), 'floating-point'),
        (lambda q, k, v: local_attention(q, k, v, 9), r'kernel \* dilation'),
        (lambda q, k, v: local_attention(q, k, v, 3, dilation=3), r'kernel \* dilation'),
        (lambda q, k, v: local_attention(q, k, v, 4), 'must be odd'),
        (lambda q, k, v: local_attention(q, k, v, 4, border='zero'), 'must be odd'),
        (lambda q, k, v: local_attention(q, k, v, 3, stride=2), "border='shift' is not supported"),
        (lambda q, k, v: local_attention(q, k, v, 2, stride=3, border='zero'), 'stride <= kernel'),
        (lambda q, k, v: local_attention(q, k, v, 3, border='mask'), 'border'),
        (lambda q, k, v: local_attention(q, k, v, 0), 'kernel_size'),
        (lambda q, k, v: local_attention(q, k, v, (3, 3, 3)), 'kernel_size'),
        (lambda q, k, v: local_attention(q, k, v, 3, bias=torch.zeros(2, 3, 3)), 'bias table shape'),
        (lambda q, k, v: local_attention(q, k, v, 3, bias=torch.zeros(1, 2, 5, 5, 8)), 'broadcastable'),
        (lambda q, k, v: local_attention(q, k, v, 3, bias=torch.zeros(2, 5, 5).double()), 'bias dtype'),
        (
            lambda q, k, v: local_attention(q, k, v, 4, stride=2, dilation=2, border='zero', bias=torch.zeros(2, 7, 7)),
            'undefined',
        ),
        (lambda q, k, v: local_attention(q, k, v, 3, backend='cuda'), 'backend'),
        (lambda q, k, v: local_aggregate(torch.zeros(1, 2, 5, 5, 8), v, 3), 'attn shape'),
        (lambda q, k, v: local_aggregate(torch.zeros(1, 2, 5, 5, 9).double(), v, 3), 'attn dtype'),
        (lambda q, k, v: local_aggregate_probs(torch.zeros(1, 2, 5, 5, 9), v, 3), 'the layout local_probs gives'),
        (
            lambda q, k, v: local_aggregate_probs(
                local_probs(*[q.repeat(1, 1, 3, 3, 1)] * 2, 3), v.repeat(1, 1, 3, 3, 1), 5
            ),
            'the layout local_probs',
        ),
        (lambda q, k, v: local_aggregate_probs(local_probs(q, k, 3), v.double(), 3), 'probs is torch.float32'),
    ],
)
def test_named_errors(call, match):
    q, k, v, _, _ = _inputs(5, 5, dict(kernel_size=3), 'none', dtype=torch.float32, batch=1)
    with pytest.raises((ValueError, TypeError), match=match):
        call(q, k, v)


def test_triton_backend_needs_cuda_or_interpreter(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    q, k, v, _, _ = _inputs(5, 5, dict(kernel_size=3), 'none', dtype=torch.float32, batch=1)
    with pytest.raises(ValueError, match='TRITON_INTERPRET'):
        local_attention(q, k, v, 3, backend='triton')


# ---------------------------------------------------------------------------------------------------------------------
# Triton kernels under TRITON_INTERPRET=1 (set before triton is imported, hence a fresh interpreter).

TRITON_CASES = [  # every border / stride / dilation / bias form once (the interpreter is slow)
    ('shift-dil2-uneven', 'table'),
    ('shift-k3', 'query-broadcast'),
    ('zero-k3-dil2', 'query'),
    ('zero-halo-k5-s3', 'table'),
    ('zero-halo-s2-dil2', 'none'),
]


@pytest.mark.triton
def test_triton_kernels_match_reference_interpreted():
    """Forward and backward of attention / scores / aggregate vs the reference (fp32 rel 1e-5 / 1e-4)."""
    pytest.importorskip('triton')
    script = textwrap.dedent(
        f"""
        import sys
        import torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(REPO / 'tests')!r})
        import test_kernels_local as t
        cases = {{name: (h, w, kw) for name, h, w, kw in t.CASES + t.CASES_NO_TABLE}}
        for name, bias in {TRITON_CASES!r}:
            t._check_against_reference(*cases[name], bias, 'triton', batch=1, heads=2)
            print('ok', name, bias, flush=True)
        """
    )
    env = {**os.environ, 'TRITON_INTERPRET': '1', 'BACKBONEZOO_KERNEL_BACKEND': 'auto'}
    result = subprocess.run(
        [sys.executable, '-c', script], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert result.stdout.count('ok ') == len(TRITON_CASES), result.stdout


@pytest.mark.triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('height,width,kwargs,bias_kind', FAST_CASES)
def test_triton_kernels_match_reference_cuda(height, width, kwargs, bias_kind):
    _check_against_reference(height, width, kwargs, bias_kind, 'triton', device='cuda')


# ---------------------------------------------------------------------------------------------------------------------
# Index tables are built with tensor ops from the sizes (dynamic-shape export): they must equal the Python spec.


@pytest.mark.parametrize('border,stride', [('shift', 1), ('zero', 1), ('zero', 2), ('zero', 3)])
def test_window_tables_match_the_python_specification(border, stride):
    from backbonezoo.kernels._geometry import axis_window_tensors as _axis_window_tensors
    from backbonezoo.kernels._geometry import axis_windows

    for length in range(1, 24):
        for kernel in (1, 3, 5) if stride == 1 else (stride, stride + 1, stride + 4):
            for dilation in (1, 2, 3):
                if border == 'shift' and kernel * dilation > length:
                    continue
                keys, rel = axis_windows(length, kernel, stride, dilation, border)
                got_keys, got_rel = _axis_window_tensors(length, kernel, stride, dilation, border, torch.device('cpu'))
                assert got_keys.tolist() == [list(r) for r in keys], (length, kernel, dilation)
                assert got_rel.tolist() == [list(r) for r in rel], (length, kernel, dilation)


class _LocalAttention(torch.nn.Module):
    def __init__(self, kwargs: dict, heads: int, table: bool, split: bool):
        super().__init__()
        self.kwargs, self.split, self.backend = kwargs, split, None
        kh, kw = (kwargs['kernel_size'],) * 2 if isinstance(kwargs['kernel_size'], int) else kwargs['kernel_size']
        self.table = torch.nn.Parameter(torch.randn(heads, 2 * kh - 1, 2 * kw - 1)) if table else None

    def forward(self, q, k, v):
        kwargs = self.kwargs
        if kwargs.get('dilation') == 'from-size':  # A2Mamba's size-dependent dilation: symbolic under export
            kwargs = {**kwargs, 'dilation': (q.shape[2] // 5, q.shape[3] // 5)}
        if self.split:  # the two halves, as A2Mamba / OverLoCK call them
            scale = q.shape[-1] ** -0.5
            attn = local_scores(q, k, bias=self.table, scale=scale, backend=self.backend, **kwargs).softmax(-1)
            return local_aggregate(attn, v, backend=self.backend, **kwargs)
        return local_attention(q, k, v, bias=self.table, backend=self.backend, **kwargs)


@pytest.mark.parametrize(
    'kwargs,table,split',
    [
        (dict(kernel_size=3, dilation=2, border='shift'), True, False),
        (dict(kernel_size=3, border='zero'), False, False),
        pytest.param(dict(kernel_size=(5, 3), dilation=(1, 2), border='shift'), True, True, marks=pytest.mark.slow),
        pytest.param(dict(kernel_size=2, stride=2, border='zero'), False, False, marks=pytest.mark.slow),
        pytest.param(dict(kernel_size=3, dilation='from-size'), True, True, marks=pytest.mark.slow),
    ],
    ids=['shift-dil2-table', 'zero-k3', 'scores-aggregate-shift', 'zero-blocked', 'shift-size-dependent-dilation'],
)
def test_onnx_export_with_dynamic_height_width(kwargs, table, split, tmp_path):
    """The fast path's index tables are computed in the graph: one export runs at other sizes in onnxruntime."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    torch.manual_seed(0)
    model = _LocalAttention(kwargs, heads=2, table=table, split=split).eval()
    example = tuple(torch.randn(1, 2, 12, 13, 4) for _ in range(3))
    dynamic = {name: {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO} for name in 'qkv'}
    path = tmp_path / 'local.onnx'
    torch.onnx.export(model, example, str(path), dynamo=True, dynamic_shapes=dynamic, external_data=False)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [i.name for i in session.get_inputs()]
    model.backend = 'reference'
    for height, width in [(10, 17), (21, 7)]:  # uneven dilation groups, other tile counts (one tile for 7 wide)
        inputs = [torch.randn(1, 2, height, width, 4) for _ in range(3)]
        with torch.no_grad():
            expected = model(*inputs)
        (actual,) = session.run(None, dict(zip(names, (t.numpy() for t in inputs))))
        torch.testing.assert_close(torch.from_numpy(actual), expected, rtol=1e-4, atol=1e-5, msg=f'{height}x{width}')
