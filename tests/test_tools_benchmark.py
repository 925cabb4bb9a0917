"""tools/benchmark.py: a --quick run writes the report, the CSV and the plot; rows merge; reference pairing.
The results store (backbonezoo.benchmarking): schema, merge, the shared timing loop and memory probe."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers import REPO

sys.path.insert(0, str(REPO / 'tools'))
import benchmark as tool  # noqa: E402

from backbonezoo import benchmarking as bm  # noqa: E402


def test_quick_run_writes_report_csv_and_plot(tmp_path: Path):
    argv = ['--models', 'test_resnet', '--img-size', '64', '--quick', '--out', str(tmp_path), '--threads', '1']
    assert tool.main(argv) == 0
    rows = list(csv.DictReader((tmp_path / 'results.csv').open()))
    assert len(rows) == 1
    row = rows[0]
    assert row['model'] == 'test_resnet' and row['impl'] == 'timm' and row['img_size'] == '64'
    for column in ('params', 'gmacs', 'infer_img_s', 'latency_ms', 'train_img_s', 'peak_mem_mb', 'pct_peak'):
        assert float(row[column]) > 0, column
    assert row['command'].startswith('python tools/benchmark.py --models test_resnet')
    report = (tmp_path / 'report.md').read_text()
    assert '| test_resnet | timm | cpu | 64 |' in report and 'GFLOP/s' in report and 'torch ' in report
    assert report.count('`python tools/benchmark.py --models test_resnet') == 1, 'one Runs line per command'
    assert (tmp_path / 'top1_vs_throughput.png').read_bytes()[:4] == b'\x89PNG'

    # A second run merges its rows into the CSV instead of replacing it.
    argv = ['--models', 'test_vit', '--img-size', '32', '--quick', '--out', str(tmp_path), '--no-memory', '--no-train']
    assert tool.main(argv) == 0
    models = {r.model for r in tool.read_rows(tmp_path / 'results.csv')}
    assert models == {'test_resnet', 'test_vit'}


def test_kernels_section_calls_bench_kernels(tmp_path: Path, monkeypatch):
    fake_repo = tmp_path / 'repo'
    (fake_repo / 'tools').mkdir(parents=True)
    monkeypatch.setattr(tool, 'REPO', fake_repo)
    out = tmp_path / 'out'
    assert tool.main(['--section', 'kernels', '--quick', '--out', str(out)]) == 0
    assert 'is not in the repository' in (out / 'report.md').read_text()

    script = 'import sys; print("| op | ms |"); print("| local_attention | 1.0 |"); print(sys.argv[1:])\n'
    (fake_repo / 'tools' / 'bench_kernels.py').write_text(script)
    assert tool.main(['--section', 'kernels', '--quick', '--out', str(out)]) == 0
    report = (out / 'report.md').read_text()
    assert '## Kernels' in report and '| local_attention | 1.0 |' in report and "'--quick'" in report
    assert "'--write'" not in report, 'a smoke run leaves the store alone'
    assert tool.main(['--section', 'kernels', '--out', str(out)]) == 0
    assert f"'--write', '--out', '{out}'" in (out / 'report.md').read_text(), 'kernel rows go into the same store'


def test_reference_pairing():
    target = tool.Target('x', 'fam', ('zoo', 'reference'), 224, 80.0, timm_owned=False)
    assert tool._impls_for(target, 'auto') == ('zoo', 'reference')
    assert tool._impls_for(target, 'none') == ('zoo',)
    with pytest.raises(SystemExit, match='not a timm-owned family'):
        tool._impls_for(target, 'timm')
    owned = tool.Target('y', 'fam', ('zoo', 'timm'), 224, None, timm_owned=True)
    assert tool._impls_for(owned, 'auto') == ('zoo', 'timm')
    assert tool._impls_for(owned, 'reference') == ('zoo', 'reference')
    stock = tool.Target('z', 'fam', ('timm',), 224, None, timm_owned=True)
    assert tool._impls_for(stock, 'reference') == ('timm',)


def test_peer_models_are_measured_beside_the_variant():
    # PATNet declares timm's FasterNet of the same tier as its peer: measured in the same run, before the reference.
    (target,) = tool.resolve_targets(['patnet_t0'], None)
    assert target.peer == 'fasternet_t0'
    assert tool._impls_for(target, 'auto') == ('zoo', 'timm:fasternet_t0', 'reference')
    assert tool._impls_for(target, 'timm') == ('zoo', 'timm:fasternet_t0')
    assert tool._impls_for(target, 'none') == ('zoo',)
    peer = tool.build_model(target, 'timm:fasternet_t0', torch.device('cpu'))
    assert type(peer).__name__ == 'FasterNet'
    assert type(tool.build_model(target, 'zoo', torch.device('cpu'))).__name__ == 'PATNet'
    # a peer named in the patterns is not measured twice; other plain timm models are
    names = [t.model for t in tool.resolve_targets(['patnet_t0', 'fasternet_t0', 'fasternet_t1'], None)]
    assert names == ['patnet_t0', 'fasternet_t1']


def test_reference_backend_env_is_restored(monkeypatch):
    monkeypatch.delenv(tool.KERNEL_ENV, raising=False)
    with tool.kernel_backend('reference'):
        assert os.environ[tool.KERNEL_ENV] == 'reference'
    assert tool.KERNEL_ENV not in os.environ


def test_unknown_pattern_is_an_error(tmp_path: Path):
    with pytest.raises(SystemExit, match='matches no backbonezoo or timm model'):
        tool.main(['--models', 'no_such_model_*', '--quick', '--out', str(tmp_path)])


def test_profile_writes_an_operator_table(tmp_path: Path):
    argv = ['--models', 'test_resnet', '--img-size', '32', '--quick', '--no-memory', '--no-train', '--profile']
    assert tool.main([*argv, '--out', str(tmp_path), '--threads', '1']) == 0
    table = (tmp_path / 'profiles' / 'test_resnet__timm.md').read_text()
    assert '| operator | calls | self CPU ms | share |' in table
    assert 'convolution' in table, 'a ResNet spends its time in convolutions'


def test_bench_kernels_times_and_measures_a_kernel_and_a_whole_backbone():
    """One local-attention case and one whole-backbone case (BiFormer-T at 224, batch 1) through the real workers:
    every implementation gets a time and a peak-memory figure, and the goal lines name both cases."""
    import bench_kernels

    cases = ['tic-56-k3-d2', 'biformer_tiny-224x224']
    rows = bench_kernels.run(cases, impls=('fast', 'materialising'), batch=1, repeats=1, threads=1)
    assert [(r['case'], r['impl']) for r in rows] == [(c, i) for c in cases for i in ('fast', 'materialising')]
    for row in rows:
        assert 'error' not in row, row
        assert row['ms'] > 0 and row['min_ms'] <= row['ms'], row
        assert row['peak_mb'] > 0, row  # the forward allocates: a reset high-water mark must see it
    # the fast MSA-Conv path never holds the unfolded windows the materialising path builds
    by = {(r['case'], r['impl']): r for r in rows}
    assert by['tic-56-k3-d2', 'fast']['peak_mb'] < by['tic-56-k3-d2', 'materialising']['peak_mb']
    text = bench_kernels.goals(rows)
    assert '- tic-56-k3-d2 (batch 1):' in text and '- biformer_tiny-224x224 (batch 1):' in text


# --------------------------------------------------------------------------------------------- GPU settings (issue 19)
def test_gpu_settings_are_csv_columns_and_part_of_the_key(tmp_path: Path):
    """--amp bf16|fp16, --channels-last and --backend run on CPU too; each is recorded and keys the row, so runs with
    other settings add rows instead of replacing them."""
    base = ['--models', 'test_resnet', '--img-size', '32', '--quick', '--out', str(tmp_path), '--threads', '1']
    assert tool.main([*base, '--no-memory', '--amp', 'fp16', '--channels-last', '--backend', 'torch']) == 0
    assert tool.main([*base, '--no-memory', '--amp']) == 0  # a bare --amp means bf16, as before
    assert tool.main([*base, '--no-memory', '--no-train']) == 0
    rows = {r.settings(): r for r in tool.read_rows(tmp_path / 'results.csv')}
    assert set(rows) == {'+fp16+cl+backend=torch', '+bf16', ''}
    fp16 = rows['+fp16+cl+backend=torch']
    assert (fp16.amp, fp16.amp_dtype, fp16.channels_last, fp16.backend) == (True, 'fp16', True, 'torch')
    assert fp16.train_img_s > 0 and rows['+bf16'].amp_dtype == 'bf16' and rows[''].amp is False
    assert fp16.device == 'cpu' and fp16.device_name, 'the device is named'
    report = (tmp_path / 'report.md').read_text()
    assert '| test_resnet | timm+fp16+cl+backend=torch | cpu | 32 |' in report
    with pytest.raises(SystemExit):
        tool.main([*base, '--backend', 'no_such_backend'])


def test_rows_written_before_the_gpu_columns_read_back(tmp_path: Path):
    old_columns = [f.name for f in dataclasses.fields(tool.Row)][
        : dataclasses.fields(tool.Row).index(_field('amp_dtype'))
    ]
    row = dict.fromkeys(old_columns, '1')
    row.update(model='m', family='f', impl='zoo', device='cpu', compile='False', amp='True', top1_paper='', date='d')
    with (tmp_path / 'results.csv').open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=old_columns)
        writer.writeheader()
        writer.writerow(row)
    (old,) = tool.read_rows(tmp_path / 'results.csv')
    assert old.amp_dtype == 'bf16', 'before --amp took a dtype it meant bf16'
    assert (old.channels_last, old.backend, old.deploy, old.note) == (False, '', False, '')
    assert old.train_peak_mb != old.train_peak_mb  # nan
    assert old.kind == 'model' and not old.backward, 'rows of the former results.csv are model rows'


def _field(name: str):
    return next(f for f in dataclasses.fields(tool.Row) if f.name == name)


@pytest.mark.parametrize('amp', [None, 'bf16'])
def test_training_step_runs_the_optimizer_under_autocast(amp):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    step = tool.train_step_fn(model, torch.randn(4, 8), torch.device('cpu'), amp)
    step()
    assert seen == [torch.bfloat16 if amp else torch.float32]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters())), 'every parameter took a step'
    assert all(p.grad is None for p in model.parameters()), 'gradients are cleared after the step'


def test_batch_size_search_stops_at_the_memory_cap_or_out_of_memory():
    linear = lambda batch: 100.0 * batch  # noqa: E731  (MB)
    assert tool.find_batch_size(linear, cap_mb=1000, max_batch=1024) == (8, {1: 100, 2: 200, 4: 400, 8: 800, 16: 1600})
    assert tool.find_batch_size(linear, cap_mb=10_000, max_batch=6)[0] == 6  # capped, not only powers of two

    def oom_from_4(batch):
        if batch >= 4:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
        return 1.0

    batch, tried = tool.find_batch_size(oom_from_4, cap_mb=1e9, max_batch=64)
    assert batch == 2 and set(tried) == {1, 2, 4} and tried[4] != tried[4]
    assert tool.find_batch_size(linear, cap_mb=50, max_batch=64)[0] == 1, 'nothing fits: the smallest is measured'

    def broken(batch):
        raise ValueError('not a memory problem')

    with pytest.raises(ValueError):
        tool.find_batch_size(broken, cap_mb=1e9, max_batch=4)


def test_batch_size_auto_measures_at_the_batch_it_found(tmp_path: Path):
    argv = ['--models', 'test_resnet', '--img-size', '32', '--quick', '--out', str(tmp_path), '--no-memory']
    assert tool.main([*argv, '--batch-size', 'auto', '--max-batch-size', '4', '--mem-cap-gb', '8']) == 0
    (row,) = tool.read_rows(tmp_path / 'results.csv')
    assert row.batch_size == 4 and 'auto' in row.command


def test_deploy_is_measured_beside_the_eager_implementations(tmp_path: Path, monkeypatch):
    """--deploy adds one implementation, 'deploy' (deploy() of the zoo's model), timed in the same run as the eager
    ones, recorded as impl 'deploy' and shown beside them in the report."""
    argv = ['--models', 'test_resnet', '--img-size', '32', '--quick', '--out', str(tmp_path), '--no-memory', '--deploy']
    monkeypatch.setitem(sys.modules, 'backbonezoo.deploy', None)  # the module absent
    with pytest.raises(SystemExit, match='--deploy needs backbonezoo.deploy'):
        tool.main(argv)

    deployed = []

    def deploy(model):
        deployed.append(type(model).__name__)
        return model

    monkeypatch.setitem(sys.modules, 'backbonezoo.deploy', types.SimpleNamespace(deploy=deploy))
    assert tool.main(argv) == 0
    assert deployed == ['ResNet'], 'only the deploy implementation is deployed'
    rows = {r.impl: r for r in tool.read_rows(tmp_path / 'results.csv')}
    assert set(rows) == {'deploy', 'timm'}
    assert rows['deploy'].deploy and rows['deploy'].settings() == '' and not rows['timm'].deploy
    assert math.isnan(rows['deploy'].train_img_s), 'a deployed model is measured for inference only'
    assert rows['timm'].train_img_s > 0 and rows['timm'].speedup == 1.0, 'the eager model stays the reference'
    assert rows['deploy'].latency_ms > 0 and rows['deploy'].infer_img_s > 0
    report = (tmp_path / 'report.md').read_text()
    side = report.split('## Implementations side by side')[1].split('## Models')[0]
    assert '| test_resnet | cpu 32 b2 1t | deploy |' in side or '| test_resnet | cpu 32 b2 2t | deploy |' in side
    assert side.index('| deploy |') < side.index('| timm |')

    def broken(model):
        raise RuntimeError('deploy: relative error 1e-2 > rtol')

    monkeypatch.setitem(sys.modules, 'backbonezoo.deploy', types.SimpleNamespace(deploy=broken))
    out = tmp_path / 'broken'
    assert tool.main([*argv[:-3], str(out), '--no-memory', '--deploy']) == 0, 'a failed deploy skips its row only'
    assert [r.impl for r in tool.read_rows(out / 'results.csv')] == ['timm']


def test_deploy_sits_after_the_zoo_implementation_and_before_the_reference():
    target = tool.Target('x', 'fam', ('zoo', 'reference'), 224, 80.0, timm_owned=False, peer='fasternet_t0')
    assert tool._impls_for(target, 'auto', deploy=True) == ('zoo', 'deploy', 'timm:fasternet_t0', 'reference')
    assert tool._impls_for(target, 'none', deploy=True) == ('deploy', 'zoo')
    stock = tool.Target('z', 'fam', ('timm',), 224, None, timm_owned=True)
    assert tool._impls_for(stock, 'auto', deploy=True) == ('deploy', 'timm')
    assert tool.deploy_source(stock) == 'timm' and tool.deploy_source(target) == 'zoo'


def _row(**changes) -> bm.Row:
    values = dict(
        model='biformer_tiny', family='biformer', impl='zoo', device='cpu', img_size=224, batch_size=16, threads=2,
        compile=False, amp=False, params=13_000_000, gmacs=2.2, infer_img_s=20.0, latency_ms=50.0, train_img_s=math.nan,
        peak_mem_mb=200.0, pct_peak=30.0, speedup=1.0, top1_paper=81.4, matmul_gflops=190.0,
        date='2026-12-04 00:00 UTC', torch='2.x', timm='1.x', machine='AMD EPYC, 2 cores, Linux',
        command='python tools/benchmark.py --deploy --models biformer_tiny',
    )  # fmt: skip
    values.update(changes)
    return bm.Row(**values)


def test_report_puts_zoo_deploy_official_and_reference_side_by_side(tmp_path: Path):
    """Every implementation of one setting in one table, in the order zoo, deploy, official, reference, each with
    img/s, batch-1 latency and peak memory and its ratios against official and reference; rows of another tool (the
    official comparison) form their own group; the Runs list has one line per command, with its dates."""
    official_cmd = 'python benchmarks/compare_official.py --official-root /tmp/official'
    rows = [
        _row(impl='reference', infer_img_s=10.0, latency_ms=80.0, peak_mem_mb=400.0, date='2026-12-04 00:01 UTC'),
        _row(impl='deploy', infer_img_s=30.0, latency_ms=40.0, peak_mem_mb=150.0, date='2026-12-04 00:02 UTC'),
        _row(),
        _row(impl='official', infer_img_s=15.0, latency_ms=70.0, peak_mem_mb=300.0, command=official_cmd),
        _row(impl='deploy', infer_img_s=31.0, latency_ms=39.0, peak_mem_mb=140.0, command=official_cmd),
        _row(model='biformer_small', impl='zoo', date='2026-12-05 10:00 UTC'),  # alone: no side-by-side line
    ]
    tool.write_report(tmp_path / 'report.md', rows)
    report = (tmp_path / 'report.md').read_text()
    runs = report.split('## Runs')[1].split('##')[0]
    assert runs.count('`python tools/benchmark.py --deploy --models biformer_tiny`') == 1
    assert '2026-12-04 00:00-00:02 UTC, 2026-12-05 10:00 UTC (4 rows)' in runs
    side = report.split('## Implementations side by side')[1].split('## Models')[0]
    ours = [line for line in side.splitlines() if '| cpu 224 b16 2t |' in line]
    assert [line.split(' | ')[2] for line in ours] == ['zoo', 'deploy', 'reference']
    assert ours[1] == '| biformer_tiny | cpu 224 b16 2t | deploy | 30.00 | 40.0 | 150 | - | - | 3.00x | 0.38x |'
    theirs = [line for line in side.splitlines() if '(compare_official.py)' in line]
    assert [line.split(' | ')[2] for line in theirs] == ['deploy', 'official']
    assert theirs[0].endswith('| 31.00 | 39.0 | 140 | 2.07x | 0.47x | - | - |')
    assert 'biformer_small' not in side
    models = report.split('## Models')[1]
    assert models.count('| biformer_tiny | deploy |') == 2 and '| biformer_tiny | official |' in models


def test_store_merges_by_key_and_keeps_every_kind(tmp_path: Path):
    store = tmp_path / 'results.csv'
    count = bm.count_row(
        'biformer_tiny', 'biformer', dict(params=13, gmacs=2.2, gmacs_bn_folded=2.1, img_size=[224, 224]), 81.4,
        'python tools/model_cards.py --measure', '2026-12-04 00:00 UTC',
    )  # fmt: skip
    kernel = _row(kind='kernel', model='na-56-k7-d1', impl='fast', command='python tools/bench_kernels.py --write')
    first = [_row(), _row(impl='reference'), count, kernel]
    bm.write_rows(store, first)
    assert [r.key() for r in bm.read_rows(store)] == [r.key() for r in first]
    newer = _row(infer_img_s=25.0)
    rows = bm.update_store(store, [newer, _row(impl='deploy')])
    assert [r.impl for r in rows] == ['zoo', 'reference', 'zoo', 'fast', 'deploy'], 'replaced in place, new appended'
    assert rows[0].infer_img_s == 25.0
    assert bm.counts(rows) == {
        'biformer_tiny': dict(params=13, gmacs=2.2, gmacs_bn_folded=2.1, img_size=[224, 224], uncounted_ops={})
    }
    assert [r.model for r in bm.read_rows(store, kind='kernel')] == ['na-56-k7-d1']
    # the same model and setting measured by another tool is another row, not a replacement
    other = _row(command='python benchmarks/compare_official.py')
    assert len(bm.update_store(store, [other])) == 6
    # --fresh drops the model rows only: the kernel and count rows stay in the store
    argv = ['--models', 'test_resnet', '--img-size', '32', '--quick', '--no-memory', '--no-train', '--fresh']
    assert tool.main([*argv, '--out', str(tmp_path), '--threads', '1']) == 0
    assert sorted(r.kind for r in bm.read_rows(store)) == ['count', 'kernel', 'model']


def test_interleaved_times_runs_round_robin_at_the_asked_thread_count():
    calls = []
    fns = {'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')}
    times = bm.interleaved_times(fns, repeats=3, warmup=1)
    assert calls == ['a', 'b'] * 4, 'one warm-up round, then three rounds, alternating'
    assert set(times) == {'a', 'b'} and all(len(t) == 3 and min(t) >= 0 for t in times.values())
    calls.clear()
    fast = bm.interleaved_times({'a': lambda: calls.append('a')}, repeats=2, warmup=0, min_time_s=0.01, max_repeats=9)
    assert len(fast['a']) == 9, 'fast functions get more rounds, up to max_repeats'
    # the calls run at the asked thread count, restored afterwards (as torch.utils.benchmark.Timer does)
    seen = []
    torch_threads = torch.get_num_threads()
    bm.interleaved_times({'t': lambda: seen.append(torch.get_num_threads())}, repeats=1, warmup=0, threads=1)
    assert seen == [1] and torch.get_num_threads() == torch_threads
    assert bm.median_time(lambda: None, 3, 1) >= 0
    assert bm.matmul_gflops('cpu', 128, min_run_time=0.01) > 0


def test_both_benchmarks_share_the_timing_loop_and_the_memory_probe(monkeypatch):
    """tools/benchmark.py and tools/bench_kernels.py time through backbonezoo.benchmarking.interleaved_times and
    measure through its PeakMemory; bench_kernels imports the package, never another script via sys.path."""
    import bench_kernels

    assert tool.PeakMemory is bm.PeakMemory and tool.median_time is bm.median_time
    assert tool.interleaved_medians is bm.interleaved_medians and tool.Row is bm.Row
    assert 'sys.path' not in inspect.getsource(bench_kernels)
    spy = []
    real = bm.interleaved_times

    def spying(fns, *args, **kwargs):
        spy.append(sorted(fns))
        return real(fns, *args, **kwargs)

    monkeypatch.setattr(bm, 'interleaved_times', spying)
    rows = bench_kernels.time_worker('window7-14x14', ['fast', 'partition_sdpa'], 1, 1, 1, False)
    assert spy == [['fast', 'partition_sdpa']] and {r['impl'] for r in rows} == {'fast', 'partition_sdpa'}
    target = tool.Target('test_resnet', 'timm', ('timm',), 32, None, True)
    args = types.SimpleNamespace(
        device='cpu', batch_size=2, channels_last=False, backend=None, compile=False, amp=None, repeats=1, warmup=0,
        deploy=False,
    )  # fmt: skip
    tool.interleaved_inference(target, ('timm',), args)
    assert spy[-1] == [('timm', 'batch'), ('timm', 'single')]


def test_peak_memory_sees_an_allocation_on_cpu():
    with bm.PeakMemory('cpu') as peak:
        block = torch.ones(64, 2**20 // 4)  # 64 MB, written
        del block
    assert peak.mb >= 48, peak.mb


def test_kernel_rows_go_to_the_store_and_render_kernels_md(tmp_path: Path):
    import bench_kernels

    measured = [
        dict(case='tic-56-k3-d2', impl='fast', batch=4, ms=5.0, min_ms=4.5, peak_mb=28.0),
        dict(case='tic-56-k3-d2', impl='materialising', batch=4, ms=25.0, min_ms=20.0, peak_mb=70.0),
        dict(case='biformer_tiny-800x1216-n16', impl='fast', batch=1, ms=1000.0, min_ms=990.0, peak_mb=260.0),
        dict(case='biformer_tiny-800x1216-n16', impl='materialising', batch=1, ms=2500.0, min_ms=2400.0, peak_mb=700.0),
        dict(case='na-56-k7-d1', impl='fast', batch=4, error='worker failed'),
    ]  # fmt: skip
    rows = bench_kernels.to_store_rows(measured, 2, False, 'python tools/bench_kernels.py --write')
    assert [r.kind for r in rows] == ['kernel'] * 4, 'failed cases are not stored'
    assert {r.family for r in rows} == {'kernels', 'biformer'}
    stored = bm.update_store(tmp_path / 'results.csv', rows)
    assert bench_kernels.main(['--render', '--out', str(tmp_path)]) == 0
    page = (tmp_path / 'kernels.md').read_text()
    assert page == bench_kernels.render_kernels_md(stored)
    assert '| tic-56-k3-d2 | 4 | fast | 5.0 | 4.5 | 28.0 | 0.20x | 0.40x |' in page
    assert '- biformer_tiny-800x1216-n16 (batch 1): 2.5x faster, 0.37x the peak memory' in page
    assert page.count('`python tools/bench_kernels.py --write`') == 1


def _gpu_row(**changes) -> tool.Row:
    values = dict(
        model='biformer_tiny', family='biformer', impl='zoo', device='cuda', img_size=224, batch_size=64, threads=4,
        compile=False, amp=True, params=13_000_000, gmacs=2.2, infer_img_s=4000.0, latency_ms=3.0, train_img_s=1200.0,
        peak_mem_mb=900.0, pct_peak=30.0, speedup=1.0, top1_paper=81.4, matmul_gflops=5e4, date='2026-12-04 00:00 UTC',
        torch='2.x', timm='1.x', machine='NVIDIA H200; CPU', command='python benchmarks/gpu_measure.py',
        amp_dtype='bf16', train_peak_mb=5000.0, device_name='NVIDIA H200',
    )  # fmt: skip
    values.update(changes)
    return tool.Row(**values)


def test_gpu_report_lists_gpu_rows_beside_the_official_implementation(tmp_path: Path):
    path = tmp_path / 'gpu.md'
    cpu_only = [_gpu_row(device='cpu', device_name='AMD EPYC')]
    tool.write_gpu_report(path, cpu_only)
    assert 'Not measured yet' in path.read_text()
    rows = [
        *cpu_only,
        _gpu_row(),
        _gpu_row(backend='torch', infer_img_s=3000.0),
        _gpu_row(impl='official', infer_img_s=2000.0, train_img_s=800.0, note='max |diff| 3.6e-07'),
    ]
    tool.write_rows(tmp_path / 'results.csv', rows)
    assert tool.main(['--gpu-report', '--out', str(tmp_path)]) == 0
    text = path.read_text()
    assert 'Not measured yet' not in text and '### biformer' in text and 'AMD EPYC' not in text
    assert '| biformer_tiny | zoo | bf16 | NVIDIA H200 | 224 | 64 | 4000.0 | 1200.0 | 900 | 5000 | 2.00x |' in text
    assert '| biformer_tiny | zoo | bf16+backend=torch | NVIDIA H200 | 224 | 64 | 3000.0 |' in text
    assert '| biformer_tiny | official | bf16 | NVIDIA H200 | 224 | 64 | 2000.0 | 800.0 |' in text
    assert 'max |diff| 3.6e-07' in text


def test_gpu_measure_smoke_run(tmp_path: Path, capsys):
    """The prepared GPU script end to end on CPU (--smoke): both kernel backends of the zoo models, the dense
    backbone, the official implementation skipped with the reason when its checkout is absent, gpu.md written."""
    sys.path.insert(0, str(REPO / 'benchmarks'))
    import gpu_measure

    argv = ['--smoke', '--families', 'shvit', 'biformer', '--smallest', '--out', str(tmp_path)]
    assert gpu_measure.main([*argv, '--official-root', str(tmp_path / 'official')]) == 0
    rows = tool.read_rows(tmp_path / 'results.csv')
    got = {(r.model, r.backend) for r in rows}
    for model in ('shvit_s1', 'biformer_tiny', 'biformer_tiny@224x224'):
        assert {(model, ''), (model, 'torch')} <= got, model
    assert all(r.amp_dtype == 'bf16' and r.infer_img_s > 0 and r.train_img_s > 0 for r in rows)
    out = capsys.readouterr().out
    assert f'official biformer: {tmp_path / "official" / "biformer"} not found, skipped' in out
    assert 'rayleizhu/BiFormer' in out
    report = (tmp_path / 'gpu.md').read_text()
    assert 'SMOKE RUN on CPU' in report and '| biformer_tiny@224x224 | zoo |' in report
