#!/usr/bin/env python
"""Kernels section of the benchmark: local / routing attention, fast path vs reference vs what the official code does.

    python tools/bench_kernels.py                 # markdown table on stdout
    python tools/bench_kernels.py --write         # rows into benchmarks/results.csv, kernels.md rewritten from it
    python tools/bench_kernels.py --render        # only rewrite benchmarks/kernels.md from the store
    python tools/bench_kernels.py --quick         # batch 1, fewer repeats (smoke run)
    python tools/benchmark.py --section kernels   # the same, inside the full report

Shapes come from the families (56x56 neighbourhoods at dilation 1-3 as in A2Mamba / OverLoCK stage 1, HaloNet's
64x64 map with block 8 / halo 3, EfficientViT-M's 7x7 windows on a 14x14 map, TiC's 3x3 zero-padded window at
dilation 2; BiFormer-T's routing attention, stages 1-3 at 224 and at 512) and whole BiFormer-T / S backbones
(``features_only``, batch 1) at 224 and at the dense-task sizes 512x512 and 800x1216 with 16 regions, where the
issue's goal is stated. Implementations:

- ``fast``: ``backend='torch'`` (what backbonezoo runs on CPU);
- ``reference``: ``backend='reference'`` (the specification: gathers every window);
- ``materialising``: what official / stand-in code does: unfold (``F.unfold`` / ``Tensor.unfold``) or gather every
  window's keys and values, then einsum + softmax + einsum (timm HaloAttn, TiC's validation, the sheets' NATTEN
  stand-ins); for routing, BiFormer's ``torch.gather`` of ``topk`` copies of the routed keys / values;
- whole backbones: ``fast`` = the default backends, ``materialising`` = ``BACKBONEZOO_KERNEL_BACKEND=reference``;
- ``partition_sdpa``: window partition + ``F.scaled_dot_product_attention`` (the bar for blocked windows).

Times: one process per case calls the implementations round-robin (so load swings hit them alike) and reports the
median and minimum of ``--repeats`` calls after a warm-up (fast cases get more calls: ~2 s of the slowest
implementation, at most 200): ``backbonezoo.benchmarking.interleaved_times``, the loop ``tools/benchmark.py`` uses
(each call on ``torch.utils.benchmark.Timer``'s clock). Peak memory: one fresh process per (case, implementation),
increase of the process's max RSS over one call (inputs already allocated; ``backbonezoo.benchmarking.PeakMemory``).
Rows go into the results store (``benchmarks/results.csv``, kind ``kernel``) with ``--write``; ``kernels.md`` is
rendered from the store. fp32, eval (``torch.no_grad()``); ``--backward``
times forward + backward instead. Single figures on a shared machine vary: compare ratios of one run. On a loaded
machine use ``--threads 1``: two OpenMP threads fighting other processes for two cores stall at every barrier
(a 0.5 ms call then takes 300 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _case(hw, heads, dqk, dv, kernel, stride, dilation, border, bias):
    return dict(op='local', hw=hw, heads=heads, dqk=dqk, dv=dv, kernel=kernel, stride=stride, dilation=dilation,
                border=border, bias=bias)  # fmt: skip


def _routing_case(hw, heads, n_win, topk):
    """BiFormer's bi-level routing attention: head dim 32, ``n_win x n_win`` regions, softmax scale (heads*d)^-0.5."""
    return dict(op='routing', hw=hw, heads=heads, dqk=32, dv=32, n_win=n_win, topk=topk, bias=None)


# name -> geometry; q/k: (B, heads, H, W, dqk), v: (B, heads, H, W, dv)
CASES = {
    'na-56-k7-d1': _case((56, 56), 2, 32, 32, kernel=7, stride=1, dilation=1, border='shift', bias='table'),
    'na-56-k7-d2': _case((56, 56), 2, 32, 32, kernel=7, stride=1, dilation=2, border='shift', bias='table'),
    'na-56-k7-d3': _case((56, 56), 2, 32, 32, kernel=7, stride=1, dilation=3, border='shift', bias='table'),
    'halo-64-b8-h3': _case((64, 64), 8, 16, 16, kernel=14, stride=8, dilation=1, border='zero', bias=None),
    'window7-14x14': _case((14, 14), 4, 16, 64, kernel=7, stride=7, dilation=1, border='zero', bias='table'),
    'tic-56-k3-d2': _case((56, 56), 2, 32, 32, kernel=3, stride=1, dilation=2, border='zero', bias=None),
    # BiFormer-T stages 1-3 at 224 (n_win 7) and at 512 (n_win 16, the segmentation setting)
    'bra-56-n7-top1': _routing_case((56, 56), 2, n_win=7, topk=1),
    'bra-28-n7-top4': _routing_case((28, 28), 4, n_win=7, topk=4),
    'bra-14-n7-top16': _routing_case((14, 14), 8, n_win=7, topk=16),
    'bra-128-n16-top1': _routing_case((128, 128), 2, n_win=16, topk=1),
    'bra-64-n16-top4': _routing_case((64, 64), 4, n_win=16, topk=4),
    'bra-32-n16-top16': _routing_case((32, 32), 8, n_win=16, topk=16),
}


def _model_case(model, hw, **kwargs):
    """A whole backbone (``features_only``, batch 1, the dense-task setting): ``fast`` = the default kernel backend,
    ``materialising`` = ``BACKBONEZOO_KERNEL_BACKEND=reference`` (BiFormer: the official top-k key / value copies)."""
    return dict(op='model', model=model, hw=hw, kwargs=kwargs, batch=1, bias=None)


# BiFormer-T / S at the classification size and at the segmentation / detection sizes (n_win 16, auto-padded)
CASES.update(
    {
        f'{model}-{h}x{w}' + ('' if n_win == 7 else f'-n{n_win}'): _model_case(
            model, (h, w), n_win=n_win, auto_pad=n_win != 7
        )
        for model in ('biformer_tiny', 'biformer_small')
        for (h, w), n_win in (((224, 224), 7), ((512, 512), 16), ((800, 1216), 16))
    }
)
IMPLS = ('fast', 'reference', 'materialising', 'partition_sdpa')


def _applicable(case: dict, impl: str) -> bool:
    if case['op'] == 'model':
        return impl in ('fast', 'materialising')
    if impl == 'partition_sdpa':
        return case['op'] == 'local' and case['kernel'] == case['stride']
    return True


# ---------------------------------------------------------------------------------------------------------------------
# Worker side: one (case, implementation) per process.


def _inputs(case: dict, batch: int, grad: bool):
    import torch

    gen = torch.Generator().manual_seed(0)
    if case['op'] == 'model':  # its own batch size
        return [torch.randn(case['batch'], 3, *case['hw'], generator=gen).requires_grad_(grad)]
    (height, width), heads = case['hw'], case['heads']
    shape = (batch, heads, height, width)
    if case['op'] == 'routing':  # BiFormer's layout: views of one token-major qkv projection output
        dims = [heads * d for d in (case['dqk'], case['dqk'], case['dv'])]
        qkv = torch.randn(batch, height, width, sum(dims), generator=gen).requires_grad_(grad)
        return [x.unflatten(-1, (heads, -1)).permute(0, 3, 1, 2, 4) for x in qkv.split(dims, dim=-1)] + [None]
    q, key, v = (torch.randn(*shape, d, generator=gen) for d in (case['dqk'], case['dqk'], case['dv']))
    k = case.get('kernel')
    bias = torch.randn(heads, 2 * k - 1, 2 * k - 1, generator=gen) if case['bias'] == 'table' else None
    return [t.requires_grad_(grad) if t is not None else None for t in (q, key, v, bias)]


def _materialising(case: dict):
    """Unfold / gather every window, then einsum + softmax + einsum (what the official code does)."""
    import torch
    import torch.nn.functional as F

    from backbonezoo.kernels.local import axis_windows

    k, s, d = case['kernel'], case['stride'], case['dilation']
    scale = case['dqk'] ** -0.5

    def table_bias(bias, rel_h, rel_w):
        return bias[:, rel_h[:, None, :, None], rel_w[None, :, None, :]].flatten(-2)

    if case['border'] == 'shift':  # gather with NATTEN's clamped windows (the sheets' pure-PyTorch stand-ins)

        def run(q, key, v, bias):
            (height, width), idx = q.shape[2:4], []
            for length in (height, width):
                keys, rel = axis_windows(length, k, 1, d, 'shift')
                idx += [torch.tensor(keys), torch.tensor(rel)]
            rows, cols = idx[0][:, None, :, None], idx[2][None, :, None, :]
            k_win, v_win = key[:, :, rows, cols].flatten(4, 5), v[:, :, rows, cols].flatten(4, 5)
            logits = torch.einsum('bnhwc,bnhwkc->bnhwk', q * scale, k_win)
            if bias is not None:
                logits = logits + table_bias(bias, idx[1], idx[3])
            return torch.einsum('bnhwk,bnhwkc->bnhwc', logits.softmax(-1), v_win)

        return run
    if s == 1:  # TiC's MSA-Conv reference: F.unfold with zero padding

        def run(q, key, v, bias):
            batch, heads, height, width, _ = q.shape
            unfold = lambda x: F.unfold(
                x.permute(0, 1, 4, 2, 3).flatten(0, 1), k, dilation=d, padding=d * (k - 1) // 2
            ).unflatten(1, (x.shape[-1], k * k))  # (B*heads, c, K, HW)
            logits = torch.einsum('bchw,bckhw->bkhw', q.permute(0, 1, 4, 2, 3).flatten(0, 1) * scale,
                                  unfold(key).unflatten(-1, (height, width)))  # fmt: skip
            out = torch.einsum('bkhw,bckhw->bchw', logits.softmax(1), unfold(v).unflatten(-1, (height, width)))
            return out.unflatten(0, (batch, heads)).permute(0, 1, 3, 4, 2)

        return run

    def run(q, key, v, bias):  # timm HaloAttn: pad by the halo, unfold tiles of keys / values, attend per block
        batch, heads, height, width, _ = q.shape
        halo = (k - s) // 2
        pad = lambda x: F.pad(x, (0, 0, halo, k, halo, k))
        tiles = lambda x: pad(x).unfold(2, k, s).unfold(3, k, s)[:, :, : height // s, : width // s]
        k_t = tiles(key).flatten(-2).transpose(-1, -2).flatten(2, 3)  # (B, heads, nB, K, d)
        v_t = tiles(v).flatten(-2).transpose(-1, -2).flatten(2, 3)
        q_t = q.unflatten(3, (width // s, s)).unflatten(2, (height // s, s)).permute(0, 1, 2, 4, 3, 5, 6)
        q_t = q_t.flatten(4, 5).flatten(2, 3)
        logits = q_t @ k_t.transpose(-1, -2) * scale
        if bias is not None:
            offset = torch.arange(k) - halo - torch.arange(s)[:, None] + k - 1  # (s, k)
            table = bias[:, offset[:, None, :, None], offset[None, :, None, :]].flatten(1, 2).flatten(-2)
            logits = logits + table[:, None]
        out = logits.softmax(-1) @ v_t
        out = out.unflatten(3, (s, s)).unflatten(2, (height // s, width // s)).permute(0, 1, 2, 4, 3, 5, 6)
        return out.flatten(4, 5).flatten(2, 3)

    return run


def _routing_materialising(case: dict):
    """The official BiFormer path (``bra_legacy.py``): route, gather ``topk`` copies of every region's keys / values
    (``torch.gather`` on an expanded view), then per-region matmul + softmax + matmul."""
    import torch

    from backbonezoo.kernels import region_routing

    n_win, topk = case['n_win'], case['topk']
    scale = (case['heads'] * case['dqk']) ** -0.5

    def run(q, key, v, bias):
        batch, heads, height, width, _ = q.shape
        rh, rw = height // n_win, width // n_win
        routes = region_routing(q, key, n_win, topk, scale=scale)  # (B, R, topk)

        def regions(x):  # (B, R, w2, heads * d), the official (n, p^2, w^2, c) layout
            x = x.permute(0, 2, 3, 1, 4).reshape(batch, n_win, rh, n_win, rw, -1).transpose(2, 3)
            return x.reshape(batch, n_win * n_win, rh * rw, x.shape[-1])

        q_r, k_r, v_r = regions(q), regions(key), regions(v)
        num, w2 = n_win * n_win, rh * rw

        def gather(x):  # (B, R, topk, w2, c): the k-fold copy
            expanded = x.unsqueeze(1).expand(-1, num, -1, -1, -1)
            index = routes.view(batch, num, topk, 1, 1).expand(-1, -1, -1, w2, x.shape[-1])
            return torch.gather(expanded, 2, index)

        split = lambda x: x.unflatten(-1, (heads, -1)).transpose(-2, -3)  # (..., heads, tokens, d)
        k_sel = split(gather(k_r).flatten(2, 3))  # (B, R, heads, topk * w2, d)
        v_sel = split(gather(v_r).flatten(2, 3))
        attn = (split(q_r) * scale) @ k_sel.transpose(-1, -2)
        out = attn.softmax(-1) @ v_sel  # (B, R, heads, w2, d)
        out = out.unflatten(1, (n_win, n_win)).unflatten(4, (rh, rw))  # (B, nh, nw, heads, rh, rw, d)
        return out.permute(0, 3, 1, 4, 2, 5, 6).reshape(batch, heads, height, width, -1)

    return run


def _partition_sdpa(case: dict):
    import torch
    import torch.nn.functional as F

    w = case['kernel']

    def run(q, key, v, bias):
        batch, heads, height, width, _ = q.shape
        part = lambda x: x.unflatten(3, (width // w, w)).unflatten(2, (height // w, w)).permute(0, 1, 2, 4, 3, 5, 6)
        part2 = lambda x: part(x).flatten(4, 5).flatten(1, 3)  # (B, heads * windows, w*w, c)
        mask = None
        if bias is not None:
            offset = torch.arange(w) - torch.arange(w)[:, None] + w - 1
            mask = bias[:, offset[:, None, :, None], offset[None, :, None, :]].flatten(1, 2).flatten(-2)
            mask = mask.unsqueeze(1).expand(-1, (height // w) * (width // w), -1, -1).flatten(0, 1)
        out = F.scaled_dot_product_attention(part2(q), part2(key), part2(v), attn_mask=mask)
        out = out.unflatten(1, (heads, height // w, width // w)).unflatten(-2, (w, w))
        return out.permute(0, 1, 2, 4, 3, 5, 6).flatten(4, 5).flatten(2, 3)

    return run


def _model_callable(case: dict, impl: str):
    import timm

    import backbonezoo  # noqa: F401  (registers the zoo's models)
    from backbonezoo.benchmarking import kernel_backend

    model = timm.create_model(case['model'], features_only=True, **case['kwargs']).eval()
    backend = 'reference' if impl == 'materialising' else 'auto'  # 'auto': an outer setting must not leak in

    def run(x):
        with kernel_backend(backend):
            return model(x)[-1]

    return run


def _callable(case: dict, impl: str):
    if case['op'] == 'model':
        return _model_callable(case, impl)
    if case['op'] == 'routing':
        if impl == 'materialising':
            return _routing_materialising(case)
        from backbonezoo.kernels import routing_attention

        backend = 'torch' if impl == 'fast' else 'reference'
        scale = (case['heads'] * case['dqk']) ** -0.5
        return lambda q, k, v, bias: routing_attention(q, k, v, case['n_win'], case['topk'], scale=scale,
                                                       backend=backend)  # fmt: skip
    if impl in ('fast', 'reference'):
        from backbonezoo.kernels import local_attention

        backend = 'torch' if impl == 'fast' else 'reference'
        kwargs = dict(stride=case['stride'], dilation=case['dilation'], border=case['border'], backend=backend)
        return lambda q, k, v, bias: local_attention(q, k, v, case['kernel'], bias=bias, **kwargs)
    return _materialising(case) if impl == 'materialising' else _partition_sdpa(case)


def _caller(case: dict, impl: str, inputs: list, backward: bool):
    import torch

    fn = _callable(case, impl)

    def call():
        if backward:
            out = fn(*inputs)
            out.backward(torch.ones_like(out))
            return out
        with torch.no_grad():
            return fn(*inputs)

    return call


def memory_worker(name: str, impl: str, batch: int, threads: int, backward: bool) -> dict:
    """Peak memory increase (MB) of one call in this (fresh) process, inputs already allocated
    (``backbonezoo.benchmarking.PeakMemory``: the RSS high-water mark, reset when the block begins)."""
    import torch

    from backbonezoo.benchmarking import PeakMemory

    torch.set_num_threads(threads)
    case = CASES[name]
    call = _caller(case, impl, _inputs(case, batch, backward), backward)
    with PeakMemory('cpu') as peak:  # building a model can peak above its forward: measure from here
        call()
    return dict(case=name, impl=impl, peak_mb=peak.mb)


def time_worker(name: str, impls: list[str], batch: int, repeats: int, threads: int, backward: bool) -> list[dict]:
    """Median / min ms per implementation, calls interleaved round-robin so that load swings hit all alike
    (``backbonezoo.benchmarking.interleaved_times``, the model benchmark's loop). Fast cases get more calls (about
    2 s of the slowest implementation, at most 200) so that load spikes do not decide."""
    import torch

    from backbonezoo.benchmarking import interleaved_times

    torch.set_num_threads(threads)
    case = CASES[name]
    inputs = _inputs(case, batch, backward)
    calls = {impl: _caller(case, impl, inputs, backward) for impl in impls}
    times = interleaved_times(calls, repeats, warmup=1, min_time_s=2.0, max_repeats=200, threads=threads)
    return [dict(case=name, impl=i, ms=statistics.median(t) * 1e3, min_ms=min(t) * 1e3) for i, t in times.items()]


# ---------------------------------------------------------------------------------------------------------------------
# Driver side.


def _worker_json(args: list[str]):
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'worker failed')
    return json.loads(done.stdout.strip().splitlines()[-1])


def case_batch(name: str, batch: int) -> int:
    """The batch a case runs at: whole-backbone cases have their own (1), the others take ``--batch``."""
    return CASES[name].get('batch', batch) if CASES[name]['op'] == 'model' else batch


def run(
    cases: list[str] | None = None,
    impls: tuple[str, ...] = IMPLS,
    batch: int = 4,
    repeats: int = 7,
    threads: int | None = None,
    backward: bool = False,
) -> list[dict]:
    """Rows (case, impl, batch, ms, min_ms, peak_mb): times from one process per case (interleaved), memory from one
    fresh process per (case, implementation)."""
    threads = threads or min(2, os.cpu_count() or 1)
    common = ['--batch', str(batch), '--threads', str(threads)] + (['--backward'] if backward else [])
    rows = []
    for name in cases or list(CASES):
        chosen = [impl for impl in impls if _applicable(CASES[name], impl)]
        try:
            timed = _worker_json(['--time-worker', name, *chosen, '--repeats', str(repeats), *common])
        except RuntimeError as error:
            rows += [dict(case=name, impl=impl, batch=case_batch(name, batch), error=str(error)) for impl in chosen]
            continue
        for row in timed:
            row['batch'] = case_batch(name, batch)
            try:
                row.update(_worker_json(['--memory-worker', name, row['impl'], *common]))
            except RuntimeError as error:
                row['error'] = str(error)
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# The results store: rows of kind 'kernel' (backbonezoo.benchmarking), rendered into benchmarks/kernels.md.


def _family_of_case(name: str) -> str:
    case = CASES.get(name, {})
    return case['model'].split('_')[0] if case.get('op') == 'model' else 'kernels'


def to_store_rows(rows: list[dict], threads: int, backward: bool, command: str, note: str = '') -> list:
    """Store rows (kind 'kernel') of one run's measured rows; rows with an error are left out."""
    import datetime

    import timm
    import torch

    from backbonezoo.benchmarking import Row, device_name, machine_name

    date = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    nan = float('nan')
    stored = []
    for row in rows:
        if 'error' in row:
            continue
        case = CASES[row['case']]
        detail = json.dumps({'op': case['op'], 'hw': list(case['hw'])})
        stored.append(
            Row(
                model=row['case'], family=_family_of_case(row['case']), impl=row['impl'], device='cpu',
                img_size=case['hw'][0], batch_size=row['batch'], threads=threads, compile=False, amp=False, params=0,
                gmacs=nan, infer_img_s=nan, latency_ms=row['ms'], train_img_s=nan, peak_mem_mb=row['peak_mb'],
                pct_peak=nan, speedup=nan, top1_paper=None, matmul_gflops=nan, date=date, torch=torch.__version__,
                timm=timm.__version__, machine=machine_name(), command=command, device_name=device_name(
                    torch.device('cpu')), note=note, kind='kernel', backward=backward, min_ms=row['min_ms'],
                detail=detail,
            )
        )  # fmt: skip
    return stored


def from_store_rows(rows) -> list[dict]:
    """The measured rows (case, impl, batch, ms, min_ms, peak_mb) of the store's kernel rows."""
    return [
        dict(case=r.model, impl=r.impl, batch=r.batch_size, ms=r.latency_ms, min_ms=r.min_ms, peak_mb=r.peak_mem_mb)
        for r in rows
    ]


def _baseline(rows: list[dict], name: str, batch: int | None = None) -> dict | None:
    by_impl = {r['impl']: r for r in rows if r['case'] == name and 'error' not in r and batch in (None, r.get('batch'))}
    return by_impl.get('partition_sdpa') or by_impl.get('materialising')


def markdown(rows: list[dict], threads: int, backward: bool, header: str = '') -> str:
    """The table of one run's rows (or the store's rows of one thread count and mode)."""
    mode = 'forward + backward' if backward else 'forward (no_grad)'
    lines = [
        f"Local / routing attention, fp32, {threads} threads, {mode}. Peak = increase of a fresh process's peak RSS "
        'over one call (model cases: after building the model). x = relative to the baseline (materialising, or '
        'partition + SDPA for blocked windows): time ratio < 1 is faster, memory ratio < 1 is smaller.',
        '',
        *([header, ''] if header else []),
        '| case | batch | implementation | median ms | min ms | peak MB | time vs baseline | memory vs baseline |',
        '|---|---|---|---|---|---|---|---|',
    ]
    order = {name: i for i, name in enumerate(CASES)}
    impl_order = {impl: i for i, impl in enumerate(IMPLS)}
    ordered = sorted(
        rows, key=lambda r: (order.get(r['case'], len(order)), r.get('batch', 0), impl_order.get(r['impl'], 9))
    )
    for row in ordered:
        batch = row.get('batch', '')
        if 'error' in row:
            lines.append(f'| {row["case"]} | {batch} | {row["impl"]} | error: {row["error"][:80]} | | | | |')
            continue
        base = _baseline(rows, row['case'], row.get('batch'))
        ratio_t = f'{row["ms"] / base["ms"]:.2f}x' if base else ''
        ratio_m = f'{row["peak_mb"] / base["peak_mb"]:.2f}x' if base and base['peak_mb'] > 0 else ''
        times = f'{row["ms"]:.1f} | {row["min_ms"]:.1f}'
        lines.append(
            f'| {row["case"]} | {batch} | {row["impl"]} | {times} | {row["peak_mb"]:.1f} | {ratio_t} | {ratio_m} |'
        )
    return '\n'.join(lines) + '\n'


def goals(rows: list[dict]) -> str:
    """The issue's goals for the fast path, checked on these rows (median times)."""
    lines = ['', 'Goals (fast path, median times):', '']
    for name, case in CASES.items():
        for batch in sorted({r.get('batch') for r in rows if r['case'] == name}, key=str):
            by_impl = {r['impl']: r for r in rows if r['case'] == name and r.get('batch') == batch and 'error' not in r}
            fast, base = by_impl.get('fast'), _baseline(rows, name, batch)
            if not fast or not base:
                continue
            t = fast['ms'] / base['ms']
            m = fast['peak_mb'] / base['peak_mb'] if base['peak_mb'] > 0 else float('nan')
            if case['op'] in ('routing', 'model') or case['stride'] == 1:
                ok = 1 / t >= 2 and m <= 0.5
                verdict = (
                    f'{1 / t:.1f}x faster, {m:.2f}x the peak memory of materialising (goal >= 2x, <= 0.5x): '
                    f'{"met" if ok else "NOT met"}'
                )
            elif case['kernel'] == case['stride']:
                verdict = f'time {t:.2f}x partition + SDPA (goal <= 1.2x): {"met" if t <= 1.2 else "NOT met"}'
            else:
                verdict = f'{1 / t:.1f}x faster, {m:.2f}x the peak memory of materialising (no stated goal)'
            lines.append(f'- {name} (batch {batch}): {verdict}')
    return '\n'.join(lines) + '\n'


READING = """## Reading

- Times are interleaved round-robin within one process per case (`backbonezoo.benchmarking.interleaved_times`);
  memory comes from one fresh process per case and implementation (`backbonezoo.benchmarking.PeakMemory`). Single
  figures on a shared machine vary: compare the ratios of one run (one command above).
- Routing attention: the gain grows with the number of routed regions. With topk 1 (BiFormer stage 1) the official
  path's gather copies each key region once, which is what any path must read, so the fast path cannot be much
  faster there; topk 16 routes a small map to most regions and runs as one masked all-pairs attention.
- Whole BiFormer backbones at 224: the linear layers and convolutions dominate the time (profile:
  `benchmarks/profiles/biformer_tiny__zoo.md`); the routing gain shows at the dense-task sizes.
- NATTEN's CPU path is not measured: natten does not install in the project environment (CPU-only torch; the
  families' notes say `na2d_qk` / `na2d_av` were removed in NATTEN 0.20).
"""


def render_kernels_md(store_rows) -> str:
    """``benchmarks/kernels.md`` from the store's kernel rows: one table per thread count and mode, its runs, goals."""
    from backbonezoo.benchmarking import runs

    lines = [
        '# Kernel benchmark',
        '',
        'Written by `tools/bench_kernels.py --write` from `benchmarks/results.csv` (rows of kind `kernel`; do not edit '
        'by hand). Method: the docstring of `tools/bench_kernels.py`.',
        '',
    ]
    kernel_rows = [r for r in store_rows if r.kind == 'kernel']
    if not kernel_rows:
        return (
            '\n'.join([*lines, 'No kernel rows in the store yet: run `python tools/bench_kernels.py --write`.']) + '\n'
        )
    for backward, threads in sorted({(r.backward, r.threads) for r in kernel_rows}):
        group = [r for r in kernel_rows if (r.backward, r.threads) == (backward, threads)]
        mode = 'Forward + backward' if backward else 'Forward'
        lines += [f'## {mode}, {threads} threads', '', 'Runs:', '']
        for run in runs(group):
            notes = sorted({r.note for r in group if r.command == run['command'] and r.note})
            note = ''.join(f'; {n}' for n in notes)
            lines.append(f'- `{run["command"]}` on {run["machine"]}; torch {run["torch"]}; {run["dates"]}{note}')
        lines += ['', markdown(from_store_rows(group), threads, backward).rstrip('\n'), goals(from_store_rows(group))]
    lines.append(READING)
    return '\n'.join(lines).rstrip('\n') + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cases', nargs='+', choices=list(CASES), default=None)
    parser.add_argument('--impls', nargs='+', choices=IMPLS, default=list(IMPLS))
    parser.add_argument('--batch', type=int, default=None, help='batch size (default 4; 1 with --quick)')
    parser.add_argument('--repeats', type=int, default=None, help='timed calls, median (default 7; 2 with --quick)')
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores, at most 2)')
    parser.add_argument('--backward', action='store_true', help='time forward + backward')
    parser.add_argument('--quick', action='store_true', help='smoke run: batch 1, 2 repeats')
    parser.add_argument(
        '--write',
        action='store_true',
        help='merge the rows into the results store (OUT/results.csv) and rewrite OUT/kernels.md from it',
    )
    parser.add_argument('--append', action='store_true', help='the same as --write (rows always merge)')
    parser.add_argument('--render', action='store_true', help='only rewrite OUT/kernels.md from the store')
    parser.add_argument('--out', type=Path, default=REPO / 'benchmarks', help='folder of results.csv / kernels.md')
    parser.add_argument('--memory-worker', nargs=2, metavar=('CASE', 'IMPL'), help=argparse.SUPPRESS)
    parser.add_argument('--time-worker', nargs='+', metavar='CASE_THEN_IMPLS', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch = args.batch or (1 if args.quick else 4)
    repeats = args.repeats or (2 if args.quick else 7)
    threads = args.threads or min(2, os.cpu_count() or 1)
    if args.memory_worker:
        print(json.dumps(memory_worker(*args.memory_worker, batch, threads, args.backward)))
        return 0
    if args.time_worker:
        name, *impls = args.time_worker
        print(json.dumps(time_worker(name, impls, batch, repeats, threads, args.backward)))
        return 0
    from backbonezoo.benchmarking import read_rows, update_store

    store, page = args.out / 'results.csv', args.out / 'kernels.md'
    if args.render:
        page.write_text(render_kernels_md(read_rows(store)))
        print(f'wrote {page}')
        return 0
    rows = run(args.cases, tuple(args.impls), batch, repeats, threads, args.backward)
    command = 'python tools/bench_kernels.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    print(markdown(rows, threads, args.backward, f'Command: `{command.strip()}`') + goals(rows))
    if args.write or args.append:
        stored = update_store(store, to_store_rows(rows, threads, args.backward, command.strip()))
        page.write_text(render_kernels_md(stored))
        print(f'wrote {store} and {page}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
