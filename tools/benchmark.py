#!/usr/bin/env python
"""Benchmark zoo models side by side with their reference: params, GMACs, throughput, latency, memory.

    python tools/benchmark.py --models 'efficientvit_*' --threads 2
    python tools/benchmark.py --deploy --no-train --models biformer_tiny   # zoo, deploy and reference side by side
    python tools/benchmark.py --section kernels
    python tools/benchmark.py --device cuda --amp bf16 --channels-last --batch-size 64 --models 'biformer_*'
    python tools/benchmark.py --device cuda --batch-size auto --mem-cap-gb 40 --models overlock_xt
    python tools/benchmark.py --gpu-report     # rewrite benchmarks/gpu.md from the CSV, measure nothing
    python tools/benchmark.py --render         # rewrite report.md, gpu.md and the plot from the CSV

Per model (``--models`` fnmatch patterns over ``backbonezoo.list_models()``; plain timm names work too):
parameters, GMACs per image (``backbonezoo.flops``: 1 multiply-add = 1 MAC, softmax / elementwise not counted),
inference throughput at batch B and batch-1 latency (medians over repeats after a warm-up), training throughput
(forward + backward + AdamW step; fp16 with a GradScaler), peak memory (CPU: RSS increase over the built model for
one batch-B forward, in a fresh process; CUDA: ``torch.cuda.max_memory_allocated`` over the built model, in
process) and the training step's peak (CUDA: everything allocated, model and optimizer state included; CPU: RSS
increase), and % of this machine's fp32 matmul peak (a 2048^3 matmul measured in the same run; GMACs count 2
FLOPs each). Times come from ``backbonezoo.benchmarking.interleaved_times`` (round-robin calls on the clock of
``torch.utils.benchmark.Timer``: the device synchronised before it is read), memory from its ``PeakMemory``: the
loop and the probe ``tools/bench_kernels.py`` uses too.

Settings: ``--device cpu|cuda[:N]``, ``--amp bf16|fp16`` (autocast; bf16 works on CPU too), ``--channels-last``,
``--compile``, ``--backend auto|torch|triton|reference`` (the kernel backend of the zoo's implementation; the
'reference' row keeps the reference), ``--deploy`` (one more implementation, 'deploy':
``backbonezoo.deploy.deploy`` of the zoo's model, timed in the same round-robin; inference only), ``--batch-size
auto`` (doubling from 1 up to ``--max-batch-size`` while the training step, or the forward with ``--no-train``,
stays under ``--mem-cap-gb``; one batch for all of a model's implementations). Each setting is a column of the
CSV and part of a row's key. Rows measured on a GPU also go into ``OUT/gpu.md`` (img/s and peak memory per family
and variant, beside the official implementation where ``benchmarks/gpu_measure.py`` measured one). Each model is
measured against its reference in the same process, their inference calls alternated round-robin so that a shared
machine's load swings hit both alike:

- timm-owned families (``Family.timm_owned``): timm's stock model ('timm') vs the family's kernel-backed version
  ('zoo', from ``to_kernel_backed(model)`` in the family module, when it has one);
- other families: the model with the default kernel backend ('zoo') vs ``BACKBONEZOO_KERNEL_BACKEND=reference``
  (the plain, materialising math: what the authors' code computes);
- a family may also name a timm model each variant is measured against
  (``Family.extra['benchmark_peers'] = {variant: timm_name}``, e.g. PATNet vs timm's FasterNet of the same tier):
  that row's implementation is ``timm:<name>``, with its own params and GMACs.

Results are merged into ``OUT/results.csv``, the results store (``backbonezoo.benchmarking``: rows keyed by model,
implementation and settings; it also holds the kernel benchmark's and the model cards' rows), and ``OUT/report.md``
plus ``OUT/top1_vs_throughput.png`` are rewritten from it. The report lists the implementations side by side (zoo,
deploy, official where ``benchmarks/`` recorded one, reference): img/s, batch-1 latency, peak memory and ratios.
Single figures on a shared 2-core machine vary by 10-30 % between sittings: compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import fnmatch
import functools
import importlib
import json
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The store, its schema and the shared timing loop / memory probe live in the package; the names stay importable from
# here (benchmarks/gpu_measure.py uses them).
from backbonezoo.benchmarking import (  # noqa: E402
    KERNEL_ENV,
    PeakMemory,
    Row,
    comparison_table,
    device_name,
    impl_rank,
    interleaved_medians,
    kernel_backend,
    machine_name,
    matmul_gflops,
    median_time,
    merge_rows,
    read_rows,
    runs,
    write_rows,
)

__all__ = ['KERNEL_ENV', 'PeakMemory', 'Row', 'device_name', 'kernel_backend', 'machine_name', 'median_time']
__all__ += ['read_rows', 'write_rows', 'interleaved_medians', 'main']

CSV_NAME, REPORT_NAME, PLOT_NAME = 'results.csv', 'report.md', 'top1_vs_throughput.png'


# --------------------------------------------------------------------------------------------- environment
def matmul_peak_gflops(device: torch.device, size: int = 2048, repeats: int = 3) -> float:
    """fp32 GFLOP/s of a size^3 matmul: the ceiling the '% of peak' column is measured against
    (``backbonezoo.benchmarking.matmul_gflops``: ``torch.utils.benchmark.Timer``)."""
    return matmul_gflops(device, size, min_run_time=0.1 * repeats)


# --------------------------------------------------------------------------------------------- models
@dataclass
class Target:
    model: str
    family: str
    impls: tuple[str, ...]  # first = the zoo's implementation, last = the reference (when there are two)
    img_size: int
    top1: float | None
    timm_owned: bool
    peer: str | None = None  # a timm model measured side by side (Family.extra['benchmark_peers'])


def resolve_targets(patterns: list[str], img_size: int | None) -> list[Target]:
    import timm

    import backbonezoo

    targets = []
    zoo_names = backbonezoo.list_models(patterns)
    for name in zoo_names:
        family = backbonezoo.family_of(name)
        variant = backbonezoo.variant_info(name)
        if family.timm_owned:
            impls = ('zoo', 'timm') if _kernel_backed_fn(family) is not None else ('timm',)
        else:
            impls = ('zoo', 'reference')
        peer = family.extra.get('benchmark_peers', {}).get(name)
        size = img_size or variant.input_hw[0]
        targets.append(Target(name, family.name, impls, size, variant.top1, family.timm_owned, peer))
    # plain timm models (not zoo variants, not already measured as a peer): measured alone
    peers = {t.peer for t in targets}
    for pattern in patterns:
        if any(fnmatch.fnmatch(name, pattern) for name in zoo_names):
            continue
        for name in timm.list_models(pattern):
            if name in peers:
                continue
            size = img_size or timm.models.get_pretrained_cfg(name).input_size[-1]
            targets.append(Target(name, 'timm', ('timm',), size, None, True))
    if not targets:
        raise SystemExit(f'error: --models {patterns} matches no backbonezoo or timm model')
    return targets


def _kernel_backed_fn(family) -> Callable | None:
    module = importlib.import_module(family.module)
    return getattr(module, 'to_kernel_backed', None)


def build_model(
    target: Target, impl: str, device: torch.device, channels_last: bool = False, check: bool = True
) -> torch.nn.Module:
    """The model an implementation runs, in eval mode (channels-last when asked): timm's stock model, its
    kernel-backed version, the zoo model, or ('deploy') ``backbonezoo.deploy.deploy`` of the zoo's implementation
    (``check=False``: without deploy's output check, whose forward would pre-grow a memory probe's heap)."""
    import timm

    import backbonezoo

    if impl == 'deploy':
        source = build_model(target, deploy_source(target), device)
        model = deploy_fn()(source) if check else deploy_fn()(source, check=False)
        return model.to(memory_format=torch.channels_last) if channels_last else model
    name = impl.removeprefix('timm:') if impl.startswith('timm:') else target.model
    kwargs = {}
    cfg_size = timm.models.get_pretrained_cfg(name)
    if cfg_size is not None and cfg_size.input_size[-1] != target.img_size:
        kwargs['img_size'] = target.img_size
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError:  # models without an img_size argument run at any size
        model = timm.create_model(name, pretrained=False)
    if impl in ('zoo', 'reference') and target.timm_owned:
        converted = _kernel_backed_fn(backbonezoo.get_family(target.family))(model)
        model = converted if converted is not None else model
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def deploy_fn() -> Callable[[torch.nn.Module], torch.nn.Module]:
    """``backbonezoo.deploy.deploy``, imported when first asked for (the module is optional)."""
    try:
        module = importlib.import_module('backbonezoo.deploy')
    except ModuleNotFoundError as err:
        if err.name not in ('backbonezoo.deploy', 'backbonezoo'):
            raise
        raise SystemExit('error: --deploy needs backbonezoo.deploy (deploy(model)), which this checkout lacks') from err
    if not hasattr(module, 'deploy'):
        raise SystemExit('error: --deploy: backbonezoo.deploy has no deploy(model) function')
    return module.deploy


def deploy_source(target: Target) -> str:
    """The implementation the 'deploy' row deploys: the zoo's (the kernel-backed model where a timm-owned family
    has one, else timm's)."""
    return 'zoo' if 'zoo' in target.impls else target.impls[0]


def make_input(batch_size: int, img_size: int, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def impl_backend(impl: str, backend: str | None) -> str | None:
    """The kernel backend an implementation runs under: the reference row keeps the reference; the others take
    ``--backend`` (None: whatever the environment says)."""
    return 'reference' if impl == 'reference' else backend


def memory_probe(
    target: Target,
    impl: str,
    batch_size: int,
    device: torch.device,
    amp: str | bool | None,
    channels_last: bool = False,
) -> float:
    """MB: peak increase over the built model for one batch forward (runs in its own, fresh process)."""
    model = build_model(target, impl, device, channels_last, check=False)
    x = make_input(batch_size, target.img_size, device, channels_last)
    with PeakMemory(device) as peak, torch.no_grad(), _autocast(device, amp):
        model(x)
    return peak.mb


AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def _amp_name(amp: str | bool | None) -> str:
    """'' (no autocast), 'bf16' or 'fp16'; ``True`` (the old flag) means bf16."""
    if not amp:
        return ''
    return 'bf16' if amp is True else str(amp)


def _autocast(device: torch.device, amp: str | bool | None):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[_amp_name(amp)])


def train_step_fn(model: torch.nn.Module, batch: torch.Tensor, device: torch.device, amp, compile_: bool = False):
    """One training step as a closure: forward under autocast, backward, AdamW step (fp16: through a GradScaler, as
    mmengine's AmpOptimWrapper does), gradients cleared."""
    runner = torch.compile(model) if compile_ else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type) if _amp_name(amp) == 'fp16' and device.type == 'cuda' else None

    def step():
        with _autocast(device, amp):
            out = runner(batch)
        loss = out.float().mean()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ('out of memory' in text or "can't allocate memory" in text)


def find_batch_size(peak_mb: Callable[[int], float], cap_mb: float, max_batch: int, start: int = 1) -> tuple[int, dict]:
    """The largest batch (``start`` doubled, capped at ``max_batch``) whose ``peak_mb(batch)`` stays under
    ``cap_mb`` and does not run out of memory; ``(batch, {batch tried: MB, or nan for out of memory})``. The first
    batch that exceeds the cap or runs out of memory ends the search; when even ``start`` does not fit, the answer
    is ``start`` (measured anyway, the caller sees the trials)."""
    tried: dict[int, float] = {}
    best, batch = None, max(1, start)
    while True:
        try:
            mb = peak_mb(batch)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            mb = math.nan
        tried[batch] = mb
        if math.isnan(mb) or mb > cap_mb:
            break
        best = batch
        if batch >= max_batch:
            break
        batch = min(batch * 2, max_batch)
    return (best if best is not None else max(1, start)), tried


def search_batch_size(target: Target, impl: str, args: argparse.Namespace) -> int:
    """``--batch-size auto``: the largest batch whose training step (or forward, with ``--no-train``) stays under
    ``--mem-cap-gb`` on this device; measured with the first implementation, used for all of them."""
    device = torch.device(args.device)
    inference_only = args.no_train or impl == 'deploy'

    def peak_mb(batch: int) -> float:
        with kernel_backend(impl_backend(impl, args.backend)):
            model = build_model(target, impl, device, args.channels_last)
            x = make_input(batch, target.img_size, device, args.channels_last)
            try:
                with PeakMemory(device, absolute=True) as peak:
                    if inference_only:
                        with torch.no_grad(), _autocast(device, args.amp):
                            model(x)
                    else:
                        train_step_fn(model.train(), x, device, args.amp)()
                return peak.mb
            finally:
                del model, x
                if device.type == 'cuda':
                    torch.cuda.empty_cache()

    # training starts at 2: BatchNorm in train mode refuses one value per channel (1x1 maps at batch 1)
    start = 1 if inference_only else min(2, args.max_batch_size)
    batch, tried = find_batch_size(peak_mb, args.mem_cap_gb * 1024, args.max_batch_size, start)
    trials = ', '.join(f'{b}: {"OOM" if math.isnan(mb) else f"{mb:.0f} MB"}' for b, mb in tried.items())
    print(f'{target.model}: batch {batch} (cap {args.mem_cap_gb:g} GB; {trials})')
    return batch


def run_memory_subprocess(target: Target, impl: str, args: argparse.Namespace) -> float:
    probe = dict(asdict(target), impl=impl, batch_size=args.batch_size, device=args.device, amp=_amp_name(args.amp))
    probe.update(channels_last=args.channels_last)
    env = dict(os.environ)
    backend = impl_backend(impl, args.backend)
    if backend is not None:
        env[KERNEL_ENV] = backend
    cmd = [sys.executable, str(Path(__file__).resolve()), '--memory-probe', json.dumps(probe), '--threads']
    cmd.append(str(args.threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ['(no output)']
        print(f'warning: memory probe for {target.model} ({impl}) failed: {tail[0]}', file=sys.stderr)
        return math.nan
    return float(done.stdout.strip().splitlines()[-1])


def interleaved_inference(target: Target, impls: tuple[str, ...], args: argparse.Namespace) -> dict[str, tuple]:
    """``{impl: (model, batch seconds, batch-1 seconds)}``: every implementation's model built side by side and timed
    round-robin (``interleaved_medians``), each call under its own kernel backend."""
    device = torch.device(args.device)
    batch = make_input(args.batch_size, target.img_size, device, args.channels_last)
    single = batch[:1].clone()
    fns, models = {}, {}
    for impl in impls:
        backend = impl_backend(impl, args.backend)
        with kernel_backend(backend):
            try:
                model = models[impl] = build_model(target, impl, device, args.channels_last)
            except Exception as err:
                if impl != 'deploy':
                    raise
                # one model deploy() cannot handle must not cost a long run the other models' rows
                print(f'warning: {target.model}: deploy failed, no deploy row ({type(err).__name__}: {err})')
                continue
        runner = torch.compile(model) if args.compile else model

        def infer(x, runner=runner, backend=backend):
            with kernel_backend(backend), torch.no_grad(), _autocast(device, args.amp):
                return runner(x)

        fns[(impl, 'batch')] = functools.partial(infer, batch)
        fns[(impl, 'single')] = functools.partial(infer, single)
    medians = interleaved_medians(fns, args.repeats, args.warmup, device)
    return {impl: (models[impl], medians[(impl, 'batch')], medians[(impl, 'single')]) for impl in models}


def measure(target: Target, impl: str, args: argparse.Namespace, peak: float, gmacs: float, timed: tuple) -> Row:
    """The row of one implementation; ``timed`` = its (model, batch seconds, batch-1 seconds) from
    ``interleaved_inference``."""
    import timm

    device = torch.device(args.device)
    backend = impl_backend(impl, args.backend)
    model, throughput_s, latency_s = timed
    peak_mem = math.nan
    with kernel_backend(backend):
        params = sum(p.numel() for p in model.parameters())
        batch = make_input(args.batch_size, target.img_size, device, args.channels_last)

        def infer(x):
            with torch.no_grad(), _autocast(device, args.amp):
                return model(x)

        if device.type == 'cuda' and not args.no_memory:  # the caching allocator's own count: no fresh process needed
            with PeakMemory(device) as forward_peak:
                infer(batch)
            peak_mem = forward_peak.mb

        train_img_s = train_peak = math.nan
        if not (args.no_train or impl == 'deploy'):  # a deployed model is for inference only
            train_model = copy.deepcopy(model).train()
            step = train_step_fn(train_model, batch, device, args.amp, args.compile)
            train_img_s = args.batch_size / median_time(step, max(1, args.repeats // 2), args.warmup, device)
            if not args.no_memory:
                with PeakMemory(device, absolute=True) as train_mem:
                    step()
                train_peak = train_mem.mb
            del train_model, step

        if args.profile:
            write_profile(args.out / 'profiles', target, impl, lambda: infer(batch), args)

    infer_img_s = args.batch_size / throughput_s
    if device.type != 'cuda' and not args.no_memory:
        peak_mem = run_memory_subprocess(target, impl, args)
    return Row(
        model=target.model,
        family=target.family,
        impl=impl,
        device=device.type,
        img_size=target.img_size,
        batch_size=args.batch_size,
        threads=args.threads,
        compile=args.compile,
        amp=bool(args.amp),
        params=params,
        gmacs=gmacs,
        infer_img_s=infer_img_s,
        latency_ms=latency_s * 1e3,
        train_img_s=train_img_s,
        peak_mem_mb=peak_mem,
        pct_peak=100 * 2 * gmacs * infer_img_s / peak if gmacs == gmacs else math.nan,
        speedup=1.0,
        top1_paper=target.top1,
        matmul_gflops=peak,
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        torch=torch.__version__,
        timm=timm.__version__,
        machine=machine_name(device),
        command=args.command,
        amp_dtype=_amp_name(args.amp),
        channels_last=args.channels_last,
        backend='' if impl == 'reference' or args.backend in (None, 'auto') else args.backend,
        deploy=impl == 'deploy',
        train_peak_mb=train_peak,
        device_name=device_name(device),
    )


def write_profile(folder: Path, target: Target, impl: str, fn: Callable[[], object], args) -> Path:
    """Where the batch forward's time goes, by operator: the evidence behind a speedup, or behind its absence."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith('cuda') else [])
    fn()  # warm caches (folded weights, index tables) outside the profile
    with profile(activities=activities) as prof:
        for _ in range(max(1, min(args.repeats, 3))):
            fn()
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages) or 1.0
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:25]
    lines = [
        f'# Profile: {target.model} ({impl}), batch {args.batch_size} at {target.img_size}, {args.threads} threads',
        '',
        f'`{args.command}`; torch.profiler, self CPU time per operator over the timed forwards.',
        '',
        '| operator | calls | self CPU ms | share |',
        '|---|---|---|---|',
    ]
    for event in top:
        ms = event.self_cpu_time_total / 1e3
        lines.append(f'| `{event.key}` | {event.count} | {ms:.1f} | {100 * event.self_cpu_time_total / total:.1f} % |')
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{target.model}__{impl.replace(":", "_")}.md'
    path.write_text('\n'.join(lines) + '\n')
    return path


def count_gmacs(target: Target, impl: str) -> float:
    from backbonezoo.flops import count_flops

    impl = deploy_source(target) if impl == 'deploy' else impl  # the architecture's count, as the papers give it
    with kernel_backend('reference' if impl == 'reference' else None):
        model = build_model(target, impl, torch.device('cpu'))
        try:
            return count_flops(model, (3, target.img_size, target.img_size)).gmacs
        except Exception as err:  # a model fvcore cannot trace still gets timed
            print(f'warning: GMACs of {target.model} ({impl}) not counted: {err}', file=sys.stderr)
            return math.nan


# --------------------------------------------------------------------------------------------- output
def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, spec)


def write_report(path: Path, rows: list[Row], kernels_section: str = '') -> None:
    """``report.md`` from the store's model rows: the runs (one line per command), the implementations side by side
    (zoo, deploy, official, reference: throughput, batch-1 latency, memory and their ratios), every row in full."""
    rows = [r for r in rows if r.kind == 'model']
    lines = [
        '# backbonezoo benchmark',
        '',
        'Written by `tools/benchmark.py` from `results.csv` (do not edit by hand). GMACs: 1 multiply-add = 1 MAC',
        '(the papers\' "FLOPs"), softmax / elementwise ops not counted, batch 1 (`backbonezoo.flops`). img/s:',
        'inference at batch B, no grad; batch-1 ms: latency of one image; train: forward + backward + AdamW step at',
        'batch B; memory: peak increase over the built model for one batch-B forward (CPU: RSS in a fresh process;',
        "CUDA: `max_memory_allocated`); train MB: the training step's peak (CUDA: all memory allocated); % of peak:",
        '2 x GMACs x img/s over the fp32 2048^3 matmul rate measured in the same run. Implementations: `zoo` (what',
        'backbonezoo runs), `deploy` (`backbonezoo.deploy.deploy` of it: BatchNorm folded, blocks re-parameterised;',
        "`--deploy`), `official` (the authors' code with our weights converted), `reference`",
        "(`BACKBONEZOO_KERNEL_BACKEND=reference`, the materialising math) or `timm` (timm's model, for the timm-owned",
        'families), `timm:<name>` (a peer model). speedup: img/s over the reference row of the same run. Single',
        'figures vary 10-30 % between sittings on a shared machine: compare ratios from one run.',
        '',
        '## Runs',
        '',
    ]
    for run in runs(rows):
        matmul = sorted(run['matmul'])
        peak = (
            ''
            if not matmul
            else f'; matmul {matmul[0]:.1f}'
            + (f'-{matmul[-1]:.1f}' if f'{matmul[-1]:.1f}' != f'{matmul[0]:.1f}' else '')
        )
        lines.append(
            f'- `{run["command"]}` on {run["machine"]}; torch {run["torch"]}, timm {run["timm"]}{peak} GFLOP/s; '
            f'{run["dates"]} ({run["rows"]} rows)'
        )
    comparison = comparison_table(rows)
    if comparison:
        lines += ['', '## Implementations side by side', '', *comparison]
    lines += [
        '',
        '## Models',
        '',
        '| model | impl | device | img | batch | threads | params (M) | GMACs | img/s | batch-1 ms | train img/s '
        '| peak MB | train MB | % of peak | speedup | paper top-1 |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in sorted(rows, key=_row_order):
        lines.append(
            f'| {r.model} | {r.impl}{r.settings()} | {r.device} | {r.img_size} | {r.batch_size} | {r.threads} '
            f'| {r.params / 1e6:.3f} | {_fmt(r.gmacs, ".3f")} | {_fmt(r.infer_img_s, ".2f")} '
            f'| {_fmt(r.latency_ms, ".1f")} | {_fmt(r.train_img_s, ".2f")} | {_fmt(r.peak_mem_mb, ".0f")} '
            f'| {_fmt(r.train_peak_mb, ".0f")} | {_fmt(r.pct_peak, ".0f")} | {_fmt(r.speedup, ".2f")}x '
            f'| {_fmt(r.top1_paper, ".1f")} |'
        )
    if kernels_section:
        lines += ['', '## Kernels', '', kernels_section.strip()]
    elif (path.parent / 'kernels.md').is_file():
        lines += ['', '## Kernels', '', 'See [kernels.md](kernels.md) (`tools/bench_kernels.py --write`).']
    path.write_text('\n'.join(lines) + '\n')


def _row_order(r: Row) -> tuple:
    return (r.family, r.model, r.device, r.img_size, r.batch_size, r.settings(), impl_rank(r.impl), r.backend)


GPU_REPORT_NAME = 'gpu.md'


def write_gpu_report(path: Path, rows: list[Row], smoke: bool = False) -> None:
    """``gpu.md``: the rows measured on a GPU, per family and variant: inference and training img/s and peak memory,
    the official implementation (impl 'official', from ``benchmarks/gpu_measure.py``) beside ours. Without GPU rows
    the file says so. ``smoke``: every row (a CPU check of the script; its numbers mean nothing)."""
    gpu_rows = [r for r in rows if r.kind == 'model' and (smoke or r.device.startswith('cuda'))]
    lines = [
        '# backbonezoo on a GPU',
        '',
        'Written by `tools/benchmark.py` from `results.csv` (do not edit by hand; `python tools/benchmark.py',
        "--gpu-report` rewrites it). Prepared measurement: `bash benchmarks/gpu_measure.sh` (each family's smallest",
        'and a mid-size variant, batch 64 at 224, BiFormer and A2Mamba also at 512x512 and 800x1216 batch 2, bf16,',
        "default kernel backend against `backend='torch'`, official implementations beside where they run on a GPU).",
        'img/s: inference at batch B (no grad) and training (forward + backward + AdamW step); memory: peak',
        '`torch.cuda.max_memory_allocated` over the built model for the forward, everything allocated for the',
        "training step. 'official' rows: the authors' code with our weights converted through the family's",
        'converter; max |diff|: largest output difference against ours on the same input.',
        '',
    ]
    if smoke:
        lines += ['**SMOKE RUN on CPU** (`gpu_measure.py --smoke`): checks the script; the numbers mean nothing.', '']
    if not gpu_rows:
        lines += [
            '**Not measured yet.** No row of `results.csv` was measured on a GPU: run `bash benchmarks/gpu_measure.sh`',
            'on a machine with one (about 8 minutes on one H200), then commit `results.csv` and this file.',
        ]
        path.write_text('\n'.join(lines) + '\n')
        return
    lines += ['## Runs', '']
    lines += [f'- `{r["command"]}` on {r["machine"]}; torch {r["torch"]}; {r["dates"]}' for r in runs(gpu_rows)]
    lines += ['', '## Models', '']
    for family in sorted({r.family for r in gpu_rows}):
        lines += [
            f'### {family}',
            '',
            '| model | impl | settings | GPU | img | batch | infer img/s | train img/s | infer peak MB | train peak MB '
            '| vs official | note |',
            '|---|---|---|---|---|---|---|---|---|---|---|---|',
        ]
        members = sorted((r for r in gpu_rows if r.family == family), key=_row_order)
        for r in members:
            official = [
                o
                for o in members
                if o.impl == 'official'
                and o.model == r.model
                and o.img_size == r.img_size
                and r.impl != 'official'
                and o.batch_size == r.batch_size
                and o.amp_dtype == r.amp_dtype
            ]
            versus = f'{r.infer_img_s / official[0].infer_img_s:.2f}x' if official else '-'
            lines.append(
                f'| {r.model} | {r.impl} | {r.settings().lstrip("+") or "fp32"} | {r.device_name or r.device} '
                f'| {r.img_size} | {r.batch_size} | {_fmt(r.infer_img_s, ".1f")} | {_fmt(r.train_img_s, ".1f")} '
                f'| {_fmt(r.peak_mem_mb, ".0f")} | {_fmt(r.train_peak_mb, ".0f")} | {versus} | {r.note} |'
            )
        lines.append('')
    path.write_text('\n'.join(lines).rstrip('\n') + '\n')


def write_plot(path: Path, rows: list[Row]) -> None:
    """Paper top-1 against measured inference throughput (the zoo's implementation of each model)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    best = {}
    for r in rows:  # the eager CPU fp32 rows: one setting for every point
        if r.kind != 'model' or r.device != 'cpu' or r.amp or r.compile or r.deploy:
            continue
        if r.impl in ('zoo', 'timm') and not math.isnan(r.infer_img_s):
            if r.model not in best or (r.impl == 'zoo' and best[r.model].impl != 'zoo'):
                best[r.model] = r
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    plotted = [r for r in best.values() if r.top1_paper is not None and not math.isnan(r.top1_paper)]
    for family in sorted({r.family for r in plotted}):
        members = sorted((r for r in plotted if r.family == family), key=lambda r: r.infer_img_s)
        ax.plot([r.infer_img_s for r in members], [r.top1_paper for r in members], 'o-', label=family)
        for r in members:
            ax.annotate(r.model, (r.infer_img_s, r.top1_paper), fontsize=6, xytext=(3, 3), textcoords='offset points')
    if not plotted:
        ax.text(0.5, 0.5, 'no measured model has a paper top-1', ha='center', va='center', transform=ax.transAxes)
    else:
        ax.set_xscale('log')
        ax.legend(fontsize=7)
    ax.set_xlabel('measured CPU inference throughput, fp32 (img/s, see report.md for settings)')
    ax.set_ylabel('ImageNet-1k top-1, paper-reported (%)')
    ax.set_title('backbonezoo: paper top-1 vs measured throughput')
    ax.grid(True, which='both', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def kernels_section(quick: bool, threads: int, out: Path) -> str:
    """The kernel benchmark (tools/bench_kernels.py): its rows go into ``out``'s store and ``kernels.md`` (not those
    of a ``--quick`` smoke run), its stdout (the table) into the report."""
    script = REPO / 'tools' / 'bench_kernels.py'  # read at call time: tests point REPO elsewhere
    if not script.is_file():
        return '`tools/bench_kernels.py` is not in the repository: no kernel benchmark.'
    cmd = [sys.executable, str(script), '--threads', str(threads)]
    cmd += ['--quick'] if quick else ['--write', '--out', str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=3600)
    if done.returncode != 0:
        return f'`{shlex.join(cmd)}` failed:\n\n```\n{done.stderr.strip()[-2000:]}\n```'
    return done.stdout


# --------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--models', nargs='+', default=['*'], help="fnmatch patterns, e.g. 'efficientvit_*' shvit_s1")
    parser.add_argument(
        '--batch-size',
        type=_batch_size_arg,
        default=None,
        help="inference / training batch (default 16), or 'auto': the largest power of two (from 2; 1 with "
        '--no-train) whose peak memory stays under --mem-cap-gb',
    )
    parser.add_argument('--max-batch-size', type=int, default=1024, help='--batch-size auto: at most this (1024)')
    parser.add_argument(
        '--mem-cap-gb',
        type=float,
        default=None,
        help="--batch-size auto: peak memory cap in GB (default: 90%% of the GPU's memory; 4 on CPU)",
    )
    parser.add_argument('--img-size', type=int, default=None, help="input side (default: each variant's native)")
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores, at most 2)')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--compile', action='store_true', help='time torch.compile(model)')
    parser.add_argument(
        '--amp',
        nargs='?',
        const='bf16',
        default=None,
        choices=tuple(AMP_DTYPES),
        help='autocast to bf16 (also the default of a bare --amp) or fp16 (training through a GradScaler on CUDA)',
    )
    parser.add_argument('--channels-last', action='store_true', help='model and inputs in channels-last memory format')
    parser.add_argument(
        '--backend',
        default=None,
        help="kernel backend of the zoo's implementation: auto (default), torch, triton, reference "
        '(sets BACKBONEZOO_KERNEL_BACKEND around its calls)',
    )
    parser.add_argument(
        '--deploy',
        action='store_true',
        help="also measure 'deploy': backbonezoo.deploy.deploy(model) of the zoo's implementation, beside it in the "
        'same run (inference only)',
    )
    parser.add_argument('--no-gmacs', action='store_true', help='skip counting GMACs (fvcore tracing on CPU)')
    parser.add_argument('--no-plot', action='store_true', help='do not redraw OUT/top1_vs_throughput.png')
    parser.add_argument(
        '--gpu-report', action='store_true', help='only rewrite OUT/gpu.md from OUT/results.csv (measures nothing)'
    )
    parser.add_argument(
        '--render',
        action='store_true',
        help='only rewrite OUT/report.md, OUT/gpu.md and the plot from OUT/results.csv (measures nothing)',
    )
    parser.add_argument('--vs', choices=('auto', 'timm', 'reference', 'none'), default='auto', help='reference side')
    parser.add_argument('--section', choices=('models', 'kernels', 'all'), default='models')
    parser.add_argument('--out', type=Path, default=REPO / 'benchmarks', help='folder for report.md / results.csv')
    parser.add_argument('--repeats', type=int, default=None, help='timed repeats (median; default 5)')
    parser.add_argument('--warmup', type=int, default=None, help='warm-up calls before timing (default 2)')
    parser.add_argument('--no-train', action='store_true', help='skip the training-throughput measurement')
    parser.add_argument('--no-memory', action='store_true', help='skip the fresh-process memory measurement')
    parser.add_argument(
        '--fresh', action='store_true', help="drop results.csv's model rows instead of merging into them"
    )
    parser.add_argument('--quick', action='store_true', help='smoke test: batch 2, 1 repeat, small matmul')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='also write OUT/profiles/<model>__<impl>.md: torch.profiler operator table of the batch forward',
    )
    parser.add_argument('--memory-probe', help=argparse.SUPPRESS)
    return parser


def _batch_size_arg(text: str) -> int | str:
    if text == 'auto':
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def _check_backend(parser: argparse.ArgumentParser, backend: str | None) -> None:
    if backend is None:
        return
    from backbonezoo.kernels._backend import BACKENDS

    if backend not in ('auto', *BACKENDS):
        parser.error(f"--backend {backend!r}: expected one of 'auto', {', '.join(map(repr, BACKENDS))}")


def _impls_for(target: Target, vs: str, deploy: bool = False) -> tuple[str, ...]:
    """Implementations to measure, the reference last (speedups are over it); a peer sits before it, 'deploy'
    (``--deploy``) right after the zoo's implementation (first, when that one is measured alone)."""
    impls = _impls_without_deploy(target, vs)
    if not deploy:
        return impls
    return ('deploy', *impls) if len(impls) == 1 else (impls[0], 'deploy', *impls[1:])


def _impls_without_deploy(target: Target, vs: str) -> tuple[str, ...]:
    if target.peer and vs == 'timm' and not target.timm_owned:
        return ('zoo', f'timm:{target.peer}')
    impls = _reference_pairing(target, vs)
    if target.peer and vs == 'auto':
        return (*impls[:-1], f'timm:{target.peer}', impls[-1]) if len(impls) > 1 else (*impls, f'timm:{target.peer}')
    return impls


def _reference_pairing(target: Target, vs: str) -> tuple[str, ...]:
    if vs == 'none':
        return target.impls[:1]
    if vs == 'timm' and not target.timm_owned and not target.peer:
        raise SystemExit(f'error: --vs timm: {target.model} is not a timm-owned family; use --vs reference')
    if vs == 'reference' and target.timm_owned:
        # the kernel-backed model against itself on the reference backend; timm's model alone has no kernels
        return ('zoo', 'reference') if 'zoo' in target.impls else target.impls[:1]
    return target.impls


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.threads = args.threads or min(2, os.cpu_count() or 1)
    torch.set_num_threads(args.threads)
    if args.memory_probe:  # internal: one forward in this fresh process, print MB
        probe = json.loads(args.memory_probe)
        impl, batch, device, amp = (probe.pop(k) for k in ('impl', 'batch_size', 'device', 'amp'))
        options = {k: probe.pop(k) for k in ('channels_last',) if k in probe}
        print(memory_probe(Target(**probe), impl, batch, torch.device(device), amp, **options))
        return 0

    csv_path = args.out / CSV_NAME
    if args.gpu_report:
        args.out.mkdir(parents=True, exist_ok=True)
        write_gpu_report(args.out / GPU_REPORT_NAME, read_rows(csv_path))
        print(f'wrote {args.out / GPU_REPORT_NAME}')
        return 0
    if args.render:
        rows = read_rows(csv_path)
        write_report(args.out / REPORT_NAME, rows)
        write_gpu_report(args.out / GPU_REPORT_NAME, rows)
        if not args.no_plot:
            write_plot(args.out / PLOT_NAME, rows)
        print(
            f'wrote {args.out / REPORT_NAME}, {args.out / GPU_REPORT_NAME}' + ('' if args.no_plot else ' and the plot')
        )
        return 0
    args.batch_size = args.batch_size or (2 if args.quick else 16)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if (args.batch_size != 'auto' and args.batch_size < 1) or args.repeats < 1 or args.max_batch_size < 1:
        parser.error(f'--batch-size and --repeats must be >= 1, got {args.batch_size} and {args.repeats}')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available on this machine')
    _check_backend(parser, args.backend)
    if args.deploy:
        deploy_fn()  # fail now, with the reason, rather than after the first model
    if args.batch_size == 'auto' and args.mem_cap_gb is None:
        device = torch.device(args.device)
        total = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == 'cuda' else 4.0 / 0.9
        args.mem_cap_gb = 0.9 * total
    args.command = 'python tools/benchmark.py ' + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    # the store also holds kernel and count rows: --fresh drops the model rows only
    rows = [r for r in read_rows(csv_path) if not (args.fresh and r.kind == 'model')]
    if args.section in ('models', 'all'):
        import backbonezoo  # noqa: F401  (registers the zoo's models with timm)

        targets = resolve_targets(args.models, args.img_size)
        peak = matmul_peak_gflops(torch.device(args.device), 1024 if args.quick else 2048)
        print(f'fp32 matmul peak: {peak:.1f} GFLOP/s')
        plan = [(t, impl) for t in targets for impl in _impls_for(t, args.vs, args.deploy)]
        new_rows: dict[str, list[Row]] = {}
        gmacs: dict[str, float] = {}
        timed: tuple[str | None, dict[str, tuple]] = (None, {})  # the current model's implementations only
        model_args = args
        for index, (target, impl) in enumerate(tqdm(plan, desc='benchmark', unit='model')):
            counted = impl if impl.startswith('timm:') else target.model  # a peer is another architecture
            if counted not in gmacs:
                gmacs[counted] = math.nan if args.no_gmacs else count_gmacs(target, impl)
            if timed[0] != target.model:  # all of a model's implementations, timed together
                model_args = copy.copy(args)
                if args.batch_size == 'auto':
                    model_args.batch_size = search_batch_size(target, impl, args)
                impls = _impls_for(target, args.vs, args.deploy)
                timed = (target.model, interleaved_inference(target, impls, model_args))
            if impl not in timed[1]:  # its model could not be built (deploy failed: warned above)
                continue
            row = measure(target, impl, model_args, peak, gmacs[counted], timed[1][impl])
            new_rows.setdefault(target.model, []).append(row)
            tqdm.write(
                f'{row.model:<28} {row.impl:<9} {row.infer_img_s:8.2f} img/s {row.latency_ms:8.1f} ms '
                f'{row.gmacs:.3f} GMACs {row.peak_mem_mb:6.0f} MB'
            )
            if index + 1 == len(plan) or plan[index + 1][0].model != target.model:
                # the model's implementations are all measured: record them now, so an interrupted run keeps them
                measured = new_rows[target.model]
                for done in measured:
                    done.speedup = done.infer_img_s / measured[-1].infer_img_s
                rows = merge_rows(rows, measured)
                write_rows(csv_path, rows)
                write_report(args.out / REPORT_NAME, rows)
                if any(r.device.startswith('cuda') for r in rows):
                    write_gpu_report(args.out / GPU_REPORT_NAME, rows)
        if not args.no_plot:
            write_plot(args.out / PLOT_NAME, rows)

    section = kernels_section(args.quick, args.threads, args.out) if args.section in ('kernels', 'all') else ''
    write_report(args.out / REPORT_NAME, rows, section)
    print(f'wrote {args.out / REPORT_NAME}' + (f', {csv_path} and {args.out / PLOT_NAME}' if rows else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
