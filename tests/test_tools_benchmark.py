"""tools/benchmark.py: a --quick run writes the report, the CSV and the plot; rows merge; reference pairing."""

from __future__ import annotations

import csv
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers import REPO

sys.path.insert(0, str(REPO / 'tools'))
import benchmark as tool  # noqa: E402


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
    assert '- tic-56-k3-d2:' in text and '- biformer_tiny-224x224:' in text


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
    old_columns = [f.name for f in tool.fields(tool.Row)][: tool.fields(tool.Row).index(_field('amp_dtype'))]
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


def _field(name: str):
    return next(f for f in tool.fields(tool.Row) if f.name == name)


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


def test_deploy_is_optional_and_applied_to_every_implementation(tmp_path: Path, monkeypatch):
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
    assert deployed == ['ResNet']
    (row,) = tool.read_rows(tmp_path / 'results.csv')
    assert row.deploy and row.settings() == '+deploy'
    assert row.train_img_s != row.train_img_s, 'a deployed model is measured for inference only'


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
