"""Measured numbers in one place: the results store, its schema, and the one timing loop and memory probe.

Every measured number of the repository lives in one CSV file, the *results store* (``benchmarks/results.csv``,
:data:`STORE`), one :class:`Row` per line, and every view of it is rendered from there:
``benchmarks/report.md``, ``benchmarks/gpu.md``, ``benchmarks/top1_vs_throughput.png`` (``tools/benchmark.py``),
``benchmarks/kernels.md`` (``tools/bench_kernels.py``) and the model cards (``tools/model_cards.py``). A row's
``kind`` says what it measured:

- ``'model'``: a model's inference / training throughput, batch-1 latency and peak memory (``tools/benchmark.py``,
  ``benchmarks/gpu_measure.py``). ``impl`` names the implementation: ``'zoo'`` (what backbonezoo runs),
  ``'deploy'`` (``backbonezoo.deploy.deploy`` of the zoo model), ``'reference'`` (the kernels' materialising
  reference), ``'timm'`` (timm's stock model), ``'timm:<name>'`` (a peer timm model), ``'official'`` (the authors'
  code with our weights converted).
- ``'kernel'``: one kernel benchmark case (``tools/bench_kernels.py``): ``model`` is the case, ``latency_ms`` the
  median time of one call at ``batch_size``, ``min_ms`` the fastest call, ``peak_mem_mb`` the call's peak memory.
- ``'count'``: a variant's parameters and GMACs at its native input (``tools/model_cards.py --measure``); ``detail``
  holds the counter and the ops it had no formula for.

Writers add rows with :func:`update_store` (rows with the same :meth:`Row.key` are replaced in place, so re-measuring
updates a row instead of duplicating it); readers call :func:`read_rows` (``kind=`` filters). Another measurement
(e.g. the comparison against the official code) records its rows the same way::

    from backbonezoo import benchmarking as bm

    row = bm.Row(model='biformer_tiny', family='biformer', impl='official', device='cpu', img_size=224,
                 batch_size=16, threads=2, ..., infer_img_s=14.9, latency_ms=59.5, peak_mem_mb=519.0, ...)
    bm.update_store(bm.STORE, [row])

Timing: :func:`interleaved_times` calls several functions round-robin (so that a shared machine's load swings hit
all of them alike), each call timed on ``torch.utils.benchmark.Timer``'s clock (the accelerator synchronised before
the clock is read) under the given thread count; :func:`matmul_gflops` uses ``Timer.blocked_autorange`` itself.
Memory: :class:`PeakMemory` (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's RSS high-water mark,
reset on entry).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import statistics
import timeit
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

__all__ = [
    'IMPL_ORDER',
    'KINDS',
    'STORE',
    'PeakMemory',
    'Row',
    'counts',
    'comparison_table',
    'count_row',
    'device_name',
    'impl_rank',
    'interleaved_medians',
    'interleaved_times',
    'kernel_backend',
    'machine_name',
    'matmul_gflops',
    'median_time',
    'merge_rows',
    'read_rows',
    'run_label',
    'runs',
    'same_run_groups',
    'update_store',
    'write_rows',
]

#: The results store of this checkout.
STORE = Path(__file__).resolve().parents[1] / 'benchmarks' / 'results.csv'
KINDS = ('model', 'kernel', 'count')
KERNEL_ENV = 'BACKBONEZOO_KERNEL_BACKEND'
#: The order implementations are listed in: ours first, then the comparisons, the reference last.
IMPL_ORDER = ('zoo', 'deploy', 'official', 'timm', 'reference')


@dataclass
class Row:
    """One measurement: the store's columns (``kind`` says which of them apply; see the module docstring)."""

    model: str  # the model, or the kernel case (kind 'kernel')
    family: str
    # 'zoo', 'deploy', 'official', 'reference', 'timm', 'timm:<name>'; kernels: 'fast', 'reference', ...
    impl: str
    device: str
    img_size: int
    batch_size: int
    threads: int
    compile: bool
    amp: bool
    params: int
    gmacs: float
    infer_img_s: float
    latency_ms: float  # model rows: batch-1 latency; kernel rows: median ms of one call at batch_size
    train_img_s: float
    peak_mem_mb: float
    pct_peak: float
    speedup: float  # infer img/s over the reference row ('reference' / 'timm') of the same run (1.0 for it)
    top1_paper: float | None
    matmul_gflops: float
    date: str
    torch: str
    timm: str
    machine: str
    command: str
    # added with the GPU settings (older CSV rows read back with these defaults)
    amp_dtype: str = ''  # 'bf16' / 'fp16' when amp, else ''
    channels_last: bool = False
    backend: str = ''  # the zoo implementation's kernel backend ('' = the default, 'auto')
    deploy: bool = False  # ran through backbonezoo.deploy.deploy (always for impl 'deploy')
    train_peak_mb: float = math.nan  # the training step's peak
    device_name: str = ''  # 'NVIDIA H200', or the CPU
    note: str = ''  # e.g. an official row's output difference against ours
    # added with the single store (rows of the former results.csv read back as kind 'model')
    kind: str = 'model'  # 'model', 'kernel' or 'count'
    backward: bool = False  # kernel rows: forward + backward timed
    min_ms: float = math.nan  # kernel rows: the fastest call
    gmacs_bn_folded: float = math.nan  # count rows: GMACs with BatchNorm folded away
    detail: str = ''  # JSON: count rows {'counter', 'uncounted_ops', 'input_hw'}; kernel rows {'hw', 'op'}

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f'Row.kind {self.kind!r}: expected one of {KINDS}')
        if self.impl == 'deploy':
            self.deploy = True

    @property
    def tool(self) -> str:
        """The script that measured the row (``'tools/benchmark.py'``), from its command."""
        words = self.command.split()
        if words and words[0].startswith('python') and len(words) > 1:
            return words[1]
        return words[0] if words else ''

    def key(self) -> tuple:
        """Rows with equal keys measure the same thing: a newer one replaces the older. The measuring script is part
        of the key, so two tools' rows of one model and setting (e.g. ``tools/benchmark.py``'s zoo row and the
        official comparison's zoo row) are kept side by side, each beside the rows of its own run."""
        return (
            self.tool,
            self.kind,
            self.model,
            self.impl,
            self.device,
            self.img_size,
            self.batch_size,
            self.threads,
            self.compile,
            self.amp,
            self.amp_dtype,
            self.channels_last,
            self.backend,
            self.deploy,
            self.backward,
        )

    def settings(self) -> str:
        """'+compile+bf16+cl+torch+deploy': the settings besides device, size and batch, as the reports print them."""
        parts = ['compile'] if self.compile else []
        if self.amp:
            parts.append(self.amp_dtype or 'bf16')
        if self.channels_last:
            parts.append('cl')
        if self.backend and self.backend != 'auto':
            parts.append(f'backend={self.backend}')
        if self.deploy and self.impl != 'deploy':
            parts.append('deploy')
        return ''.join(f'+{p}' for p in parts)

    def run_key(self) -> tuple:
        """What the implementations compared in one run share: model, device, size, batch, threads, settings and the
        measuring script."""
        return (
            self.tool,
            self.model,
            self.device,
            self.img_size,
            self.batch_size,
            self.threads,
            self.compile,
            self.amp_dtype if self.amp else '',
            self.channels_last,
        )

    @property
    def details(self) -> dict:
        return json.loads(self.detail) if self.detail else {}


# --------------------------------------------------------------------------------------------- the store
def read_rows(path: Path | str = STORE, kind: str | None = None) -> list[Row]:
    """The store's rows (of one ``kind`` if given); ``[]`` when the file does not exist. Columns added after a row
    was written read back as the field's default."""
    path = Path(path)
    if not path.is_file():
        return []
    types = {f.name: f.type for f in fields(Row)}
    rows = []
    with path.open(newline='') as handle:
        for record in csv.DictReader(handle):
            values = {}
            for name, type_ in types.items():
                if name not in record or record[name] is None:
                    continue
                raw = record[name]
                if type_ == 'int':
                    values[name] = int(float(raw)) if raw not in ('', 'nan') else 0
                elif type_ in ('float', 'float | None'):
                    values[name] = float(raw) if raw not in ('', 'None') else (None if 'None' in type_ else math.nan)
                elif type_ == 'bool':
                    values[name] = raw == 'True'
                else:
                    values[name] = raw
            if values.get('amp') and not values.get('amp_dtype'):
                values['amp_dtype'] = 'bf16'  # before --amp took a dtype it meant bf16
            row = Row(**values)
            if kind is None or row.kind == kind:
                rows.append(row)
    return rows


def write_rows(path: Path | str, rows: Iterable[Row]) -> None:
    """Write ``rows`` as the whole store (floats to 8 significant digits)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(Row)])
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            for name, value in record.items():
                if isinstance(value, float) and not math.isnan(value):
                    record[name] = f'{value:.8g}'
            writer.writerow(record)


def merge_rows(rows: Iterable[Row], new: Iterable[Row]) -> list[Row]:
    """``rows`` with ``new`` merged in: a new row replaces the old one with its key where it stood, others append."""
    new = list(new)
    latest = {row.key(): row for row in new}
    merged, placed = [], set()
    for row in rows:
        key = row.key()
        if key in latest:
            if key not in placed:
                merged.append(latest[key])
                placed.add(key)
        else:
            merged.append(row)
    merged += [row for key, row in latest.items() if key not in placed]
    return merged


def update_store(path: Path | str, new: Iterable[Row], drop: Callable[[Row], bool] | None = None) -> list[Row]:
    """Merge ``new`` into the store at ``path`` (after removing the rows ``drop`` selects), write it, return it."""
    rows = [r for r in read_rows(path) if not (drop and drop(r))]
    rows = merge_rows(rows, new)
    write_rows(path, rows)
    return rows


def counts(rows: Iterable[Row]) -> dict[str, dict]:
    """``{model: {'params', 'gmacs', 'gmacs_bn_folded', 'img_size', 'uncounted_ops', 'counter'}}`` from the count
    rows (the latest per model)."""
    result = {}
    for row in rows:
        if row.kind != 'count':
            continue
        detail = row.details
        result[row.model] = {
            'params': row.params,
            'gmacs': row.gmacs,
            'gmacs_bn_folded': row.gmacs_bn_folded,
            'img_size': list(detail.get('input_hw', (row.img_size, row.img_size))),
            'uncounted_ops': detail.get('uncounted_ops', {}),
        }
        if detail.get('counter'):
            result[row.model]['counter'] = detail['counter']
    return result


def count_row(model: str, family: str, measured: Mapping, top1: float | None, command: str, date: str) -> Row:
    """The count row of a variant from ``{'params', 'gmacs', 'gmacs_bn_folded', 'img_size', 'uncounted_ops',
    'counter'}`` (what :func:`counts` gives back)."""
    import timm

    hw = list(measured['img_size'])
    detail = {'counter': measured.get('counter', ''), 'uncounted_ops': measured.get('uncounted_ops') or {}}
    detail['input_hw'] = hw
    nan = math.nan
    return Row(
        model=model, family=family, impl='zoo', device='cpu', img_size=hw[0], batch_size=1, threads=0, compile=False,
        amp=False, params=int(measured['params']), gmacs=float(measured['gmacs']), infer_img_s=nan, latency_ms=nan,
        train_img_s=nan, peak_mem_mb=nan, pct_peak=nan, speedup=nan, top1_paper=top1, matmul_gflops=nan, date=date,
        torch=torch.__version__, timm=timm.__version__, machine='', command=command, kind='count',
        gmacs_bn_folded=float(measured.get('gmacs_bn_folded', nan)), detail=json.dumps(detail, sort_keys=True),
    )  # fmt: skip


def impl_rank(impl: str) -> tuple[int, str]:
    """Sort key of an implementation (:data:`IMPL_ORDER`; peers ``timm:<name>`` beside ``timm``)."""
    base = 'timm' if impl.startswith('timm:') else impl
    return (IMPL_ORDER.index(base) if base in IMPL_ORDER else len(IMPL_ORDER), impl)


def same_run_groups(rows: Iterable[Row]) -> dict[tuple, dict[str, Row]]:
    """Model rows grouped by :meth:`Row.run_key`: ``{run key: {impl: row}}``. Where an implementation was measured
    with several kernel backends, the default backend's row represents it. Ratios are taken within a group only: the
    rows of one measuring script, one model and one setting."""
    groups: dict[tuple, dict[str, Row]] = {}
    for row in rows:
        if row.kind != 'model':
            continue
        group = groups.setdefault(row.run_key(), {})
        held = group.get(row.impl)
        if held is None or (held.backend not in ('', 'auto') and row.backend in ('', 'auto')):
            group[row.impl] = row
    return groups


def runs(rows: Iterable[Row]) -> list[dict]:
    """The distinct runs behind ``rows``, one per command (and machine): ``{'command', 'machine', 'torch', 'timm',
    'dates', 'matmul', 'rows'}``; ``dates``: first - last minute of each day it ran; ``matmul``: the peaks measured."""
    by_command: dict[tuple, dict] = {}
    for row in rows:
        run = by_command.setdefault(
            (row.command, row.machine),
            dict(command=row.command, machine=row.machine, torch=set(), timm=set(), stamps=[], matmul=[], rows=0),
        )
        run['torch'].add(row.torch)
        run['timm'].add(row.timm)
        run['stamps'].append(row.date)
        run['rows'] += 1
        if row.matmul_gflops is not None and not math.isnan(row.matmul_gflops):
            run['matmul'].append(row.matmul_gflops)
    result = []
    for run in by_command.values():
        days: dict[str, list[str]] = {}
        for stamp in sorted(set(run.pop('stamps'))):
            day, _, rest = stamp.partition(' ')
            days.setdefault(day, []).append(rest.removesuffix(' UTC'))
        spans = [
            f'{day} {t[0]}' + (f'-{t[-1]}' if t[-1] != t[0] else '') + ' UTC' for day, t in days.items() if t and t[0]
        ]
        spans += [day for day, t in days.items() if not (t and t[0])]
        run['dates'] = ', '.join(spans)
        run['first'] = min(days) if days else ''
        run['torch'] = ', '.join(sorted(v for v in run['torch'] if v))
        run['timm'] = ', '.join(sorted(v for v in run['timm'] if v))
        result.append(run)
    return sorted(result, key=lambda r: (r['first'], r['dates'], r['command']))


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, spec)


def _ratio(a: float, b: float | None) -> str:
    if b is None or not b or math.isnan(b) or math.isnan(a):
        return '-'
    return f'{a / b:.2f}x'


def run_label(row: Row) -> str:
    """'cpu 224 b16 2t+bf16': device, input side, batch, threads and settings of a row (and the measuring script
    where it is not ``tools/benchmark.py``)."""
    settings = row.settings().replace('+deploy', '')
    tool = '' if row.tool in ('tools/benchmark.py', '') else f' ({row.tool.rsplit("/", 1)[-1]})'
    return f'{row.device} {row.img_size} b{row.batch_size} {row.threads}t{settings}{tool}'


def comparison_table(rows: Iterable[Row], code_names: bool = False) -> list[str]:
    """Markdown lines: every model measured with more than one of zoo / deploy / official / reference / timm in the
    same setting, one line per implementation (:data:`IMPL_ORDER`): img/s at batch B, batch-1 latency, peak memory,
    and img/s and peak memory against the official implementation and against the reference (timm's model for the
    timm-owned families). Empty when no model has two. Used by the benchmark report and the model cards."""
    groups = same_run_groups(rows)
    lines = []
    for key in sorted(groups, key=lambda k: (next(iter(groups[k].values())).family, k[1], *map(str, k))):
        members = {impl: r for impl, r in groups[key].items() if not impl.startswith('timm:')}
        if len(members) < 2:
            continue
        official = members.get('official')
        reference = members.get('reference') or members.get('timm')
        for impl in sorted(members, key=impl_rank):
            r = members[impl]
            name = f'`{r.model}`' if code_names else r.model
            lines.append(
                f'| {name} | {run_label(r)} | {impl} | {_fmt(r.infer_img_s, ".2f")} | {_fmt(r.latency_ms, ".1f")} '
                f'| {_fmt(r.peak_mem_mb, ".0f")} '
                f'| {_ratio(r.infer_img_s, official and official.infer_img_s)} '
                f'| {_ratio(r.peak_mem_mb, official and official.peak_mem_mb)} '
                f'| {_ratio(r.infer_img_s, reference and reference.infer_img_s)} '
                f'| {_ratio(r.peak_mem_mb, reference and reference.peak_mem_mb)} |'
            )
    if not lines:
        return []
    return [
        '| model | run | impl | img/s | batch-1 ms | peak MB | img/s vs official | peak vs official '
        '| img/s vs reference | peak vs reference |',
        '|---|---|---|---|---|---|---|---|---|---|',
        *lines,
    ]


# --------------------------------------------------------------------------------------------- environment
def machine_name(device: torch.device | None = None) -> str:
    """The CPU (cores, OS); with a CUDA device, the GPU first."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    name = f'{cpu}, {os.cpu_count()} cores, {platform.system()}'
    if device is not None and device.type == 'cuda':
        name = f'{device_name(device)}; {name}'
    return name


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return machine_name().split(',')[0]


@contextlib.contextmanager
def kernel_backend(backend: str | None):
    """Set ``BACKBONEZOO_KERNEL_BACKEND`` for the block (None: leave it as it is)."""
    if backend is None:
        yield
        return
    old = os.environ.get(KERNEL_ENV)
    os.environ[KERNEL_ENV] = backend
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(KERNEL_ENV, None)
        else:
            os.environ[KERNEL_ENV] = old


# --------------------------------------------------------------------------------------------- timing
def _clock() -> float:
    """Seconds, read after the accelerator's queued work has finished: the clock of ``torch.utils.benchmark.Timer``
    (its default timer synchronises the current accelerator, then reads ``timeit.default_timer``)."""
    if torch.accelerator.is_available():
        torch.accelerator.synchronize()
    return timeit.default_timer()


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Run the block with ``threads`` torch threads (None: as they are), restored afterwards, as ``Timer`` does."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def interleaved_times(
    fns: Mapping[Hashable, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    *,
    min_time_s: float = 0.0,
    max_repeats: int = 200,
    threads: int | None = None,
) -> dict[Hashable, list[float]]:
    """Seconds of each call of each function: ``warmup`` untimed rounds, then ``repeats`` rounds in which every
    function is called once, round-robin, so that load swings and frequency drift hit every implementation alike.

    Each call is timed on the clock of ``torch.utils.benchmark.Timer`` (the accelerator synchronised before the
    clock is read), with ``threads`` torch threads (default: the current setting). ``Timer`` itself measures one
    function at a time and adds warm-up calls of its own, so it cannot alternate implementations call by call:
    :func:`matmul_gflops` uses it whole. ``min_time_s``: fast functions get more rounds, about ``min_time_s`` of the
    slowest one's warm-up time, at most ``max_repeats`` (a load spike then cannot decide a sub-millisecond median).
    """
    times: dict[Hashable, list[float]] = {name: [] for name in fns}
    with _torch_threads(threads):
        slowest = 0.0
        for _ in range(max(warmup, 1 if min_time_s else 0)):
            for fn in fns.values():
                start = _clock()
                fn()
                slowest = max(slowest, _clock() - start)
        rounds = max(1, repeats)
        if min_time_s:
            rounds = max(rounds, min(max_repeats, int(min_time_s / max(slowest, 1e-6))))
        for _ in range(rounds):
            for name, fn in fns.items():
                start = _clock()
                fn()
                times[name].append(_clock() - start)
    return times


def matmul_gflops(device: torch.device | str = 'cpu', size: int = 2048, min_run_time: float = 0.5) -> float:
    """fp32 GFLOP/s of a ``size``^3 matmul (``torch.utils.benchmark.Timer.blocked_autorange``, median of blocks): the
    ceiling the benchmark's '% of peak' column is measured against."""
    from torch.utils.benchmark import Timer

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    timer = Timer(stmt='a @ b', globals={'a': a, 'b': b}, num_threads=torch.get_num_threads())
    return 2 * size**3 / timer.blocked_autorange(min_run_time=min_run_time).median / 1e9


def interleaved_medians(fns: Mapping[Hashable, Callable[[], object]], repeats: int, warmup: int, *_, **kwargs) -> dict:
    """Median seconds per call of each function (:func:`interleaved_times`)."""
    return {name: statistics.median(t) for name, t in interleaved_times(fns, repeats, warmup, **kwargs).items()}


def median_time(fn: Callable[[], object], repeats: int, warmup: int, *_, **kwargs) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` calls (:func:`interleaved_times`)."""
    return interleaved_medians({0: fn}, repeats, warmup, **kwargs)[0]


# --------------------------------------------------------------------------------------------- memory
class PeakMemory:
    """``with PeakMemory(device) as peak: ...``; then ``peak.mb``: the block's peak memory in MB over what was
    allocated when it began (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's RSS high-water mark,
    reset on entry, so measure in a fresh process), or with ``absolute=True`` on CUDA everything allocated at the
    peak."""

    def __init__(self, device: torch.device | str = 'cpu', absolute: bool = False):
        self.device, self.absolute, self.mb = torch.device(device), absolute, math.nan

    def __enter__(self) -> PeakMemory:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = 0 if self.absolute else torch.cuda.memory_allocated(self.device)
        else:
            self.base = _rss_mb()
            _reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        else:
            self.mb = max(0.0, _peak_rss_mb() - self.base)


def _status_kb(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith(f'{field}:'):
                return int(line.split()[1])
    return None


def _rss_mb() -> float:
    kb = _status_kb('VmRSS')
    if kb is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kb / 1024


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS, so the peak is the block's.
    with contextlib.suppress(OSError):
        Path('/proc/self/clear_refs').write_text('5')


def _peak_rss_mb() -> float:
    kb = _status_kb('VmHWM')
    if kb is None:  # no /proc: ru_maxrss only counts peaks above earlier ones
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kb / 1024
