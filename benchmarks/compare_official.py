#!/usr/bin/env python
"""The zoo against the authors' code on CPU (issue 24): throughput, batch-1 latency and peak memory, same weights.

    python benchmarks/compare_official.py --official-root /tmp/official                 # the six families
    python benchmarks/compare_official.py --official-root /tmp/official --families patnet sret --passes 1
    python benchmarks/compare_official.py --official-root /tmp/official --smoke         # checks the script

``--official-root`` holds one checkout per family (``<root>/<family>``: the pinned commits of ``--list-official``,
fetched by whoever measures, never inside the repository; this script fetches nothing and skips a family whose folder
is absent, saying so). The official code's imports that are not installed come from ``--official-deps`` (a folder put
on ``sys.path``, e.g. ``pip install --target DIR einops``) or from stand-ins:

- BiFormer, LITv2, SReT, PATNet: as ``benchmarks/gpu_measure.py`` builds them (fairscale's checkpoint wrapper as the
  identity, LITv2's DCN extension as ``torchvision.ops.deform_conv2d``, easydict);
- OverLoCK-XT in the official ``deploy=True`` (reparameterised) form, ``use_ds=False``, ``use_gemm=False``; NATTEN
  0.17's ``na2d_av`` (no build for current torch) as the kernels' plain-PyTorch specification
  (``backend='reference'``: gathers every window, NATTEN's border rule);
- A2Mamba-N: ``na2d_qk`` / ``na2d_av`` the same way, and the repo's CUDA-only scan extension
  (``selective_scan_cuda_oflex_rh.fwd``: every hidden state) as the kernels' sequential float32 recurrence
  (``--official-scan reference``, the default; ``torch`` takes the log-depth scan instead).

Per family, in one fresh process (the official modules register timm names and packages called ``models``): our
model is built first, then the official one (seed 0; both in their default inference mode: SReT's shuffles draw from
the global generator in either, seeded alike for the output check); the official state dict goes through the family's
``checkpoint_filter_fn`` into ours (strict), and the largest relative output difference on a fixed input is recorded
(fp32). Then the forms, all in that process and timed round-robin (``backbonezoo.benchmarking.interleaved_times``:
the machine's load swings hit every form alike), ``--passes`` times: ``official``, ``zoo`` (eager), ``deploy``
(``backbonezoo.deploy.deploy`` with its defaults: folded, channels-last, family blocks on batch slices of at most 2 MB
of input) and, with ``--compile``, ``deploy`` + ``torch.compile`` (inductor, which runs the blocks unsliced; compile
time reported). Batch ``--batch-size`` (16) at 224, fp32, ``--threads`` (2) threads; batch-1 latency in the same way.
Peak memory: the RSS increase of one batch forward over the built model, each form in its own fresh process, once per
pass.

Rows go into the results store (``--out``, default ``benchmarks/results.csv``): impl ``official`` / ``zoo`` /
``deploy`` (``compile=True`` for the compiled one), throughput and latency the median over all passes' rounds, peak
memory the median of the passes; the note holds each pass's figures and the output difference. The printed table is
the issue's: zoo / official and deploy / official per pass, img/s and peak memory.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

import gpu_measure  # noqa: E402  (the official specs, builders and stand-ins)

# family: (our variant, the official builder's name)
VARIANTS = {
    'biformer': ('biformer_tiny', 'biformer_tiny'),
    'litv2': ('litv2_small', 'litv2-small'),
    'overlock': ('overlock_xt', 'overlock_xt'),
    'a2mamba': ('a2mamba_nano', 'a2mamba_n'),
    'patnet': ('patnet_t0', 'PartialNet_t0'),
    'sret': ('sret_tiny', 'SReT_T'),
}
OFFICIAL = {
    **gpu_measure.OFFICIAL,
    'overlock': gpu_measure.Official(
        'LMMMEng/OverLoCK', '2c8ab3b29e3a11fb4a2510d98e4d9ed8b33cf091', {'overlock_xt': 'overlock_xt'}
    ),
    'a2mamba': gpu_measure.Official(
        'LMMMEng/A2Mamba', 'a9ea14c6ab11d3cfd5cbc600651d710397a707ad', {'a2mamba_nano': 'a2mamba_n'}
    ),
}
FORMS = ('official', 'zoo', 'deploy')


# --------------------------------------------------------------------------------------------- official models
def _install_cpu_stubs(family: str, scan_backend: str) -> None:
    """NATTEN 0.17 and A2Mamba's scan extension (CUDA-only / unbuildable here) as plain PyTorch."""
    from backbonezoo.kernels import local_aggregate, local_scores, selective_scan

    stub = gpu_measure._stub_module
    if family in ('overlock', 'a2mamba'):

        def na2d_qk(q, k, kernel_size, dilation=1, rpb=None):
            return local_scores(q, k, kernel_size, dilation=dilation, bias=rpb, backend='reference')

        def na2d_av(attn, v, kernel_size, dilation=1):
            return local_aggregate(attn, v, kernel_size, dilation=dilation, backend='reference')

        stub('natten')
        stub('natten.functional', na2d_qk=na2d_qk, na2d_av=na2d_av)
        stub('natten.flops', qk_2d_rpb_flop=lambda *a, **k: None, av_2d_flop=lambda *a, **k: None)
    if family == 'a2mamba':

        def fwd(u, delta, A, B, D, delta_bias, delta_softplus, nrows=1, out_float=True):
            states = selective_scan(
                u, delta, A, B, delta_bias=delta_bias, delta_softplus=delta_softplus, backend=scan_backend
            )
            return states, states  # (out, x): the hidden states (B, C, d_state, L); x only feeds last_state

        stub('selective_scan_cuda_oflex_rh', fwd=fwd)


def build_official(family: str, root: Path, name: str, scan_backend: str):
    if family in gpu_measure.OFFICIAL:
        return gpu_measure.build_official(family, root, name)
    sys.path.insert(0, str(root))
    _install_cpu_stubs(family, scan_backend)
    if family == 'overlock':  # the reparameterised form the authors publish checkpoints of
        return getattr(importlib.import_module('models.overlock'), name)(deploy=True, use_ds=False, use_gemm=False)
    if family == 'a2mamba':
        return getattr(importlib.import_module('models.a2mamba'), name)()
    raise KeyError(family)


def _build_form(job: dict, form: str, model=None):
    """``form``'s model: 'zoo' / 'deploy' from our (converted) ``model`` or a fresh one; 'official' from the code."""
    import timm
    import torch

    from backbonezoo.deploy import deploy

    if form == 'official':
        torch.manual_seed(0)
        return build_official(job['family'], Path(job['root']), job['official'], job['scan']).eval()
    if model is None:
        torch.manual_seed(0)
        model = timm.create_model(job['model']).eval()
    if form == 'zoo':
        return model
    return deploy(model, check=job.get('check', True), compile=form == 'deploy+compile')


def memory_worker(job: dict) -> float:
    """In a fresh process: MB of RSS increase of one batch forward over the built ``job['form']`` model."""
    import torch

    from backbonezoo.benchmarking import PeakMemory

    torch.set_num_threads(job['threads'])
    for path in job['deps']:
        sys.path.insert(0, path)
    model = _build_form(dict(job, check=False), job['form'])
    x = torch.randn(job['batch_size'], 3, job['img_size'], job['img_size'])
    with PeakMemory('cpu') as peak, torch.no_grad():
        model(x)
    return peak.mb


def timing_worker(job: dict) -> dict:
    """In a fresh process: our model with the official weights, the forms timed round-robin, ``passes`` times."""
    import timm
    import torch

    import backbonezoo
    from backbonezoo.benchmarking import interleaved_times

    torch.set_num_threads(job['threads'])
    for path in job['deps']:
        sys.path.insert(0, path)
    torch.manual_seed(0)
    ours = timm.create_model(job['model']).eval()  # before the official code registers timm names of its own
    official = _build_form(job, 'official')
    convert = importlib.import_module(backbonezoo.family_of(job['model']).module).checkpoint_filter_fn
    ours.load_state_dict(convert(dict(official.state_dict()), ours), strict=True)
    probe = torch.randn(2, 3, job['img_size'], job['img_size'], generator=torch.Generator().manual_seed(0))
    outputs = {}
    models = {'official': official, 'zoo': ours}
    started = time.perf_counter()
    models['deploy'] = _build_form(job, 'deploy', ours)
    deploy_s = time.perf_counter() - started
    compile_s = math.nan
    if job['compile']:
        models['deploy+compile'] = _build_form(job, 'deploy+compile', ours)
    for form, model in models.items():
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # SReT's shuffles draw from the global generator
            if form == 'deploy+compile':
                started = time.perf_counter()
            outputs[form] = model(probe).float()
            if form == 'deploy+compile':
                compile_s = time.perf_counter() - started
    scale = outputs['official'].abs().max().item() or 1.0
    rel = {f: (out - outputs['official']).abs().max().item() / scale for f, out in outputs.items() if f != 'official'}
    batch = torch.randn(job['batch_size'], 3, job['img_size'], job['img_size'])
    single = batch[:1].clone()

    def runner(model, x):
        def run():
            with torch.no_grad():
                return model(x)

        return run

    passes = []
    for _ in range(job['passes']):
        fns = {(form, 'batch'): runner(model, batch) for form, model in models.items()}
        fns.update({(form, 'single'): runner(model, single) for form, model in models.items()})
        times = interleaved_times(fns, job['repeats'], job['warmup'], threads=job['threads'])
        passes.append({f'{form}|{kind}': values for (form, kind), values in times.items()})
    params = {form: sum(p.numel() for p in model.parameters()) for form, model in models.items()}
    return dict(passes=passes, rel_diff=rel, params=params, deploy_s=deploy_s, compile_s=compile_s)


# --------------------------------------------------------------------------------------------- driver
def _run_worker(flag: str, job: dict, cwd: Path, timeout: float) -> dict | float | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(job)]
    env = dict(os.environ, OMP_NUM_THREADS=str(job['threads']))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(cwd), timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(
            f'[compare_official] {job["model"]} {flag} {job.get("form", "")}: over {timeout:.0f} s, stopped', flush=True
        )
        return None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ['(no output)'])[-3:]
        print(f'[compare_official] {job["model"]} {flag} {job.get("form", "")} failed: {" | ".join(tail)}', flush=True)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(opts, model: str, family: str, form: str, params: int, img_s: float, latency_ms: float, peak: float, note):
    import timm
    import torch

    from backbonezoo import benchmarking as bm

    return bm.Row(
        model=model, family=family, impl='deploy' if form.startswith('deploy') else form, device='cpu',
        img_size=opts.img_size, batch_size=opts.batch_size, threads=opts.threads, compile=form == 'deploy+compile',
        amp=False, params=params, gmacs=math.nan, infer_img_s=img_s, latency_ms=latency_ms, train_img_s=math.nan,
        peak_mem_mb=peak, pct_peak=math.nan, speedup=math.nan, top1_paper=None, matmul_gflops=math.nan,
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), torch=torch.__version__,
        timm=timm.__version__, machine=bm.machine_name(torch.device('cpu')), command=opts.command,
        device_name=bm.device_name(torch.device('cpu')), note=note,
    )  # fmt: skip


def compare_family(family: str, opts: argparse.Namespace) -> list:
    spec = OFFICIAL[family]
    model, official_name = VARIANTS[family]
    root = opts.official_root / family
    if not root.is_dir():
        print(
            f'[compare_official] {family}: {root} not found, skipped (a checkout of https://github.com/{spec.repo} '
            f'at {spec.commit} there measures it)',
            flush=True,
        )
        return []
    forms = list(FORMS) + (['deploy+compile'] if opts.compile else [])
    job = dict(
        family=family, model=model, official=official_name, root=str(root), scan=opts.official_scan,
        threads=opts.threads, batch_size=opts.batch_size, img_size=opts.img_size, passes=opts.passes,
        repeats=opts.repeats, warmup=opts.warmup, compile=opts.compile, deps=[str(p) for p in opts.official_deps],
    )  # fmt: skip
    print(f'[compare_official] {family}: timing {", ".join(forms)} ({opts.passes} passes)', flush=True)
    timed = _run_worker('--timing-worker', job, root, opts.timeout_s)
    if timed is None:
        return []
    peaks = {form: [] for form in forms if form != 'deploy+compile'}  # compiled: the deploy model's memory
    if not opts.no_memory:
        for _ in range(opts.passes):
            for form in peaks:
                mb = _run_worker('--memory-worker', dict(job, form=form), root, opts.timeout_s)
                peaks[form].append(math.nan if mb is None else mb)
    rows = []
    for form in forms:
        batch = [p[f'{form}|batch'] for p in timed['passes']]
        single = [p[f'{form}|single'] for p in timed['passes']]
        img_s = [opts.batch_size / statistics.median(t) for t in batch]
        latency = [1e3 * statistics.median(t) for t in single]
        form_peaks = peaks.get(form, [])
        note = 'img/s per pass ' + ' / '.join(f'{v:.2f}' for v in img_s)
        note += '; batch-1 ms per pass ' + ' / '.join(f'{v:.1f}' for v in latency)
        if form_peaks:
            note += '; peak MB per pass ' + ' / '.join(f'{v:.0f}' for v in form_peaks)
        if form == 'official':
            note += f"; the authors' code ({spec.repo}@{spec.commit[:7]}"
            note += ', NATTEN / scan as plain PyTorch)' if family in ('overlock', 'a2mamba') else ')'
        else:
            note += f'; official weights converted, max rel. output diff vs official {timed["rel_diff"][form]:.1e}'
        if form == 'deploy':
            note += f'; deploy() took {timed["deploy_s"]:.1f} s'
        if form == 'deploy+compile':
            note += f'; compile (first call) {timed["compile_s"]:.0f} s'
        rows.append(
            _row(opts, model, family, form, timed['params'][form],
                 opts.batch_size / statistics.median([t for ts in batch for t in ts]),
                 1e3 * statistics.median([t for ts in single for t in ts]),
                 statistics.median(form_peaks) if form_peaks else math.nan, note)
        )  # fmt: skip
        rows[-1].per_pass = dict(img_s=img_s, latency=latency, peak=form_peaks)
    _print_family(family, rows)
    return rows


def _ratios(a: list[float], b: list[float]) -> str:
    return ' / '.join(f'{x / y:.2f}x' for x, y in zip(a, b)) if a and b else 'n/a'


def _print_family(family: str, rows: list) -> None:
    by = {('deploy+compile' if r.compile else r.impl): r.per_pass for r in rows}
    ref = by['official']
    for form in ('zoo', 'deploy', 'deploy+compile'):
        if form in by:
            cur = by[form]
            print(
                f'[compare_official] {family} {form}/official: img/s {_ratios(cur["img_s"], ref["img_s"])}, '
                f'batch-1 latency {_ratios(cur["latency"], ref["latency"])} (lower: faster), '
                f'peak memory {_ratios(cur["peak"], ref["peak"])}',
                flush=True,
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--official-root', type=Path, default=Path('/tmp/official'), help='holds <family>/ checkouts')
    parser.add_argument(
        '--official-deps', type=Path, nargs='*', default=[], help="folders on sys.path for the official code's imports"
    )
    parser.add_argument('--families', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--passes', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=10, help='timed rounds per pass')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--compile', action='store_true', help='also deploy + torch.compile (inductor)')
    parser.add_argument('--official-scan', default='reference', choices=('reference', 'torch'))
    parser.add_argument('--no-memory', action='store_true', help='skip the fresh-process memory probes')
    parser.add_argument('--out', type=Path, default=None, help='results store (default benchmarks/results.csv)')
    parser.add_argument('--timeout-s', type=float, default=3600.0, help='per worker process')
    parser.add_argument('--smoke', action='store_true', help='batch 2, one pass, one round: checks the script')
    parser.add_argument('--list-official', action='store_true', help='print "family repo commit" lines and exit')
    parser.add_argument('--timing-worker', help=argparse.SUPPRESS)
    parser.add_argument('--memory-worker', help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    opts.command = 'python benchmarks/compare_official.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    opts.official_root = opts.official_root.resolve()
    opts.official_deps = [p.resolve() for p in opts.official_deps]
    if opts.smoke:
        opts.batch_size, opts.passes, opts.repeats, opts.warmup = 2, 1, 1, 0
        opts.out = opts.out or Path(tempfile.mkdtemp(prefix='compare_official_smoke_')) / 'results.csv'
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.list_official:
        for family in VARIANTS:
            print(family, OFFICIAL[family].repo, OFFICIAL[family].commit)
        return 0
    for flag, worker in (('timing_worker', timing_worker), ('memory_worker', memory_worker)):
        if getattr(opts, flag):
            print(json.dumps(worker(json.loads(getattr(opts, flag)))))
            return 0
    from backbonezoo import benchmarking as bm

    out = opts.out or bm.STORE
    rows = []
    for family in opts.families:
        rows += compare_family(family, opts)
    if rows:
        bm.update_store(out, rows)
        print(f'[compare_official] {len(rows)} rows merged into {out}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
