"""backbonezoo.kernels.routing_attention / region_routing: spec, fast path, gradients, errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from backbonezoo.kernels import region_routing, routing_attention
from backbonezoo.kernels import routing as routing_module

REPO = Path(__file__).resolve().parents[1]

# (H, W, num_regions, region_size, topk): divisible grids, non-square, and zero-padded grids.
CASES = [
    (8, 12, 4, None, 3),
    (6, 6, (2, 3), None, 6),
    (9, 11, None, (2, 3), 5),
    (7, 8, None, 3, 2),
]


def qkv(h, w, dtype=torch.float64, heads=2, d_qk=3, d_v=4, batch=2, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, heads, h, w, d_qk, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(batch, heads, h, w, d_v, generator=g, dtype=dtype)
    return [t.requires_grad_(grad) for t in (q, k, v)]


def brute_force(q, k, v, num_regions, region_size, topk, scale):
    """Per query token: softmax over the tokens of its region's routed regions (zero keys / values for padding)."""
    b, heads, h, w, _ = q.shape
    if num_regions is not None:
        nh, nw = (num_regions, num_regions) if isinstance(num_regions, int) else num_regions
        rh, rw = h // nh, w // nw
    else:
        rh, rw = (region_size, region_size) if isinstance(region_size, int) else region_size
        nh, nw = math.ceil(h / rh), math.ceil(w / rw)
    region_of = lambda y, x: (y // rh) * nw + x // rw  # noqa: E731
    means_q = torch.zeros(b, nh * nw, heads * q.shape[-1], dtype=torch.float64)
    means_k = torch.zeros_like(means_q)
    counts = torch.zeros(nh * nw, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            r = region_of(y, x)
            means_q[:, r] += q[:, :, y, x].reshape(b, -1).double()
            means_k[:, r] += k[:, :, y, x].reshape(b, -1).double()
            counts[r] += 1
    routes = ((means_q / counts[:, None]) @ (means_k / counts[:, None]).transpose(1, 2)).topk(topk, dim=-1).indices
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                keys, values = [], []
                for region in routes[bi, region_of(y, x)].tolist():
                    ry, rx = divmod(region, nw)
                    for yy in range(ry * rh, ry * rh + rh):
                        for xx in range(rx * rw, rx * rw + rw):
                            inside = yy < h and xx < w
                            keys.append(k[bi, :, yy, xx] if inside else torch.zeros_like(k[bi, :, 0, 0]))
                            values.append(v[bi, :, yy, xx] if inside else torch.zeros_like(v[bi, :, 0, 0]))
                logits = torch.einsum('hd,nhd->hn', q[bi, :, y, x] * scale, torch.stack(keys))
                out[bi, :, y, x] = torch.einsum('hn,nhd->hd', logits.softmax(-1), torch.stack(values))
    return out, routes


@pytest.mark.parametrize('h,w,num_regions,region_size,topk', CASES)
def test_reference_matches_brute_force(h, w, num_regions, region_size, topk):
    q, k, v = qkv(h, w)
    out, index = routing_attention(
        q, k, v, num_regions, topk, region_size=region_size, scale=0.7, backend='reference', return_index=True
    )
    expected, routes = brute_force(q, k, v, num_regions, region_size, topk, 0.7)
    assert torch.equal(index, routes)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def force_torch_path(monkeypatch, path: str) -> None:
    """'chunks': never the dense path; 'dense': the dense path wherever the map needs no padding."""
    monkeypatch.setattr(routing_module, '_DENSE_MAX_WASTE', 0 if path == 'chunks' else 10**9)


@pytest.mark.parametrize('path', ['chunks', 'dense'])
@pytest.mark.parametrize('h,w,num_regions,region_size,topk', CASES)
def test_torch_path_matches_reference_float32(h, w, num_regions, region_size, topk, path, monkeypatch):
    """Both torch paths: routed chunks, and masked all-pairs attention (small maps routed to many regions)."""
    if path == 'dense' and region_size is not None:
        pytest.skip('padded maps always take the chunks')
    force_torch_path(monkeypatch, path)
    q, k, v = qkv(h, w, dtype=torch.float32, grad=True, d_qk=8, d_v=8, heads=3)
    args = (num_regions, topk)
    ref = routing_attention(q, k, v, *args, region_size=region_size, backend='reference')
    fast = routing_attention(q, k, v, *args, region_size=region_size, backend='torch')
    assert fast.shape == ref.shape == (2, 3, h, w, 8)
    assert (fast - ref).abs().max() <= 1e-5 * ref.abs().max()
    grad = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    fast_grads = torch.autograd.grad(fast, (q, k, v), grad)
    for name, a, e in zip('qkv', fast_grads, ref_grads):
        assert (a - e).abs().max() <= 1e-4 * e.abs().max(), name


@pytest.mark.parametrize('backend', ['reference', 'torch', 'torch-dense'])
@pytest.mark.parametrize('case', [(4, 6, 2, None, 2), (5, 3, None, 2, 2)])
def test_gradcheck_float64(backend, case, monkeypatch):
    h, w, num_regions, region_size, topk = case
    if backend.startswith('torch'):
        force_torch_path(monkeypatch, 'dense' if backend == 'torch-dense' else 'chunks')
        backend = 'torch'
    q, k, v = qkv(h, w, grad=True, batch=1, heads=1, d_qk=2, d_v=2)
    index = region_routing(q, k, num_regions, topk, region_size=region_size)  # fixed routes: a smooth function

    def fn(q, k, v):
        return routing_attention(q, k, v, num_regions, topk, region_size=region_size, index=index, backend=backend)

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-5, fast_mode=True)


def test_routing_is_detached_float32_and_excludes_padding():
    q, k, v = qkv(7, 8, dtype=torch.bfloat16, grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        index = region_routing(q, k, None, 2, region_size=3)
    assert index.dtype == torch.int64 and not index.requires_grad
    assert torch.equal(index, region_routing(q.float(), k.float(), None, 2, region_size=3))
    # gradients reach q and k only through the token attention, never through the routing
    out = routing_attention(q.float(), k.float(), v.float(), None, 2, region_size=3)
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad.float()).all()
    # padding is excluded from the means: one real token in the last region row means its mean is that token
    q1, k1, _ = qkv(4, 3, heads=1, d_qk=1, batch=1)
    routes = region_routing(q1, k1, None, 1, region_size=3)
    mean_q = torch.stack([q1[0, 0, :3].mean((0, 1)), q1[0, 0, 3:].mean((0, 1))])
    mean_k = torch.stack([k1[0, 0, :3].mean((0, 1)), k1[0, 0, 3:].mean((0, 1))])
    assert torch.equal(routes[0, :, 0], (mean_q @ mean_k.T).argmax(-1))


@pytest.mark.parametrize('topk', [2, 16])  # 2 of 16 regions: routed chunks; 16 of 16: masked all-pairs attention
def test_output_layout_is_a_view_of_token_major_memory(topk):
    q, k, v = qkv(8, 8, dtype=torch.float32)
    out = routing_attention(q, k, v, 4, topk, backend='torch')
    assert out.permute(0, 2, 3, 1, 4).is_contiguous()  # (B, H, W, heads, d) memory: free to merge heads
    assert routing_module._dense_is_cheaper(16, topk, 8, 8) == (topk == 16)


def test_torch_path_gathers_one_chunk_at_a_time():
    """The fast path never allocates the k-fold gathered keys / values at once: about one copy of K per chunk."""
    q, k, v = qkv(64, 64, dtype=torch.float32, heads=2, d_qk=32, d_v=32, batch=1)
    from torch.profiler import ProfilerActivity, profile

    peaks = {}
    for backend in ('reference', 'torch'):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            routing_attention(q, k, v, 8, 16, backend=backend)
        peaks[backend] = max(e.self_cpu_memory_usage for e in prof.events())  # largest single allocation
    k_bytes = k.numel() * 4
    assert peaks['reference'] >= 16 * k_bytes  # the materialised gather: 16 copies of K
    assert peaks['torch'] <= 2 * k_bytes


def test_bad_inputs_are_named_errors():
    q, k, v = qkv(8, 8, dtype=torch.float32)
    with pytest.raises(ValueError, match='num_regions'):
        routing_attention(q, k, v, 3, 2)  # 8 not divisible by 3
    with pytest.raises(ValueError, match='exactly one'):
        routing_attention(q, k, v, 4, 2, region_size=2)
    with pytest.raises(ValueError, match='topk'):
        routing_attention(q, k, v, 2, 5)
    with pytest.raises(ValueError, match='shape of q'):
        routing_attention(q, k[..., :2], v, 2, 2)
    with pytest.raises(ValueError, match='B, heads, H, W'):
        routing_attention(q[0], k[0], v[0], 2, 2)
    with pytest.raises(ValueError, match='share a dtype'):
        routing_attention(q, k, v.double(), 2, 2)
    with pytest.raises(ValueError, match='floating point'):
        routing_attention(q.long(), k.long(), v.long(), 2, 2)
    with pytest.raises(ValueError, match='backend'):
        routing_attention(q, k, v, 2, 2, backend='cuda')
    with pytest.raises(ValueError, match='index'):
        routing_attention(q, k, v, 2, 2, index=torch.zeros(2, 4, 3, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------------------------------
# Triton kernels: under TRITON_INTERPRET=1 (set before triton is imported, hence a fresh interpreter), and on CUDA.

# (H, W, num_regions, region_size, topk): a divisible grid, a zero-padded grid, regions of more tokens than one block
TRITON_CASES = [(8, 12, 4, None, 3), (7, 8, None, 3, 2), (18, 9, (2, 1), None, 2)]


def check_triton_against_reference(h, w, num_regions, region_size, topk, device='cpu', heads=2, batch=1):
    """Forward and q / k / v gradients of the Triton path vs the reference on the same routes (fp32, 1e-5 / 1e-4)."""
    q, k, v = (t.to(device) for t in qkv(h, w, dtype=torch.float32, heads=heads, d_qk=5, d_v=6, batch=batch))
    index = region_routing(q, k, num_regions, topk, region_size=region_size)
    results = {}
    for backend in ('reference', 'triton'):
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        out = routing_attention(*leaves, num_regions, topk, region_size=region_size, index=index, backend=backend)
        grad = torch.linspace(-1, 1, out.numel(), device=device).reshape(out.shape)
        (out * grad).sum().backward()
        results[backend] = [out] + [t.grad for t in leaves]
    for name, got, expected in zip(('out', 'grad q', 'grad k', 'grad v'), results['triton'], results['reference']):
        rel = ((got - expected).abs().max() / expected.abs().max()).item()
        assert rel <= (1e-5 if name == 'out' else 1e-4), f'{name}: {rel:.2e}'


def test_triton_backend_needs_cuda_or_interpreter(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    q, k, v = qkv(4, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match='TRITON_INTERPRET'):
        routing_attention(q, k, v, 2, 2, backend='triton')


@pytest.mark.triton
def test_triton_kernels_match_reference_interpreted():
    pytest.importorskip('triton')
    script = textwrap.dedent(
        f"""
        import sys
        import torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(REPO / 'tests')!r})
        import test_kernels_routing as t
        for case in t.TRITON_CASES:
            t.check_triton_against_reference(*case)
            print('ok', case, flush=True)
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
@pytest.mark.parametrize('h,w,num_regions,region_size,topk', CASES + TRITON_CASES)
def test_triton_kernels_match_reference_cuda(h, w, num_regions, region_size, topk):
    check_triton_against_reference(h, w, num_regions, region_size, topk, device='cuda', heads=3, batch=2)


class _Routing(torch.nn.Module):
    def forward(self, q, k, v):
        return routing_attention(q, k, v, 4, 3)


@pytest.mark.slow
def test_onnx_export_with_dynamic_height_width(tmp_path):
    """Region sizes stay symbolic (region means by reshape, no static pooling kernel): one export, other sizes."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    dims = {2: 4 * torch.export.Dim('h', min=2, max=32), 3: 4 * torch.export.Dim('w', min=2, max=32)}
    example = tuple(qkv(16, 24, dtype=torch.float32, batch=1))
    path = tmp_path / 'routing.onnx'
    torch.onnx.export(_Routing(), example, str(path), dynamo=True, dynamic_shapes={n: dims for n in 'qkv'})
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [i.name for i in session.get_inputs()]
    for h, w in [(12, 8), (20, 28)]:
        inputs = qkv(h, w, dtype=torch.float32, batch=1, seed=1)
        (actual,) = session.run(None, dict(zip(names, (t.numpy() for t in inputs))))
        expected = routing_attention(*inputs, 4, 3, backend='reference')
        torch.testing.assert_close(torch.from_numpy(actual), expected, rtol=1e-4, atol=1e-5, msg=f'{h}x{w}')
