"""tools/benchmark.py: a --quick run writes the report, the CSV and the plot; rows merge; reference pairing."""

from __future__ import annotations

import csv
import os
import sys
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
