"""tools/model_cards.py: cards rendered from metadata + the results store; --check catches staleness."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import types
from pathlib import Path

import pytest
from helpers import REPO

import backbonezoo
from backbonezoo import benchmarking as bm
from backbonezoo import zoo
from backbonezoo.flops import CONVENTION
from backbonezoo.zoo import Family, Variant, Weights

sys.path.insert(0, str(REPO / 'tools'))
import model_cards as tool  # noqa: E402

CARDS = REPO / 'model_cards'


def _small_family() -> str:
    """A measured family that is cheap to re-count (the check builds every variant on the meta device)."""
    measured = tool.load_measurements(bm.STORE)
    names = [n for n in ('efficientvit', 'shvit', *backbonezoo.families()) if n in backbonezoo.families()]
    for name in names:
        models = backbonezoo.list_models(family=name)
        if models and all(m in measured for m in models):
            return name
    pytest.skip('no family has committed measurements yet (run: python tools/model_cards.py)')


@pytest.fixture
def cards_copy(tmp_path: Path) -> Path:
    out = tmp_path / 'cards'
    shutil.copytree(CARDS, out)
    return out


def test_check_passes_on_the_repository(capsys):
    assert bm.read_rows(bm.STORE, kind='count'), 'run: python tools/model_cards.py'
    code = tool.main(['--check'])
    assert code == 0, capsys.readouterr().err


def test_counts_have_one_home_the_store(capsys):
    """Params / GMACs counts live in the results store only: the hub card reads them from there, no copy exists."""
    import timm

    from backbonezoo import hub

    name = backbonezoo.list_models(family=_small_family())[0]
    stats = hub.measured_stats(timm.create_model(name), measure=False)
    assert stats['gmacs'] == tool.load_measurements(bm.STORE)[name]['gmacs']
    assert stats['gmacs_source'].endswith('benchmarks/results.csv')
    assert not list((REPO / 'model_cards').glob('*.json')), 'a second copy of the counts'


def test_check_detects_a_stale_card(cards_copy: Path, capsys):
    family = _small_family()
    argv = ['--check', '--family', family, '--out', str(cards_copy)]
    assert tool.main(argv) == 0
    card = cards_copy / f'{family}.md'
    card.write_text(card.read_text().replace('paper-reported', 'paper reported', 1))
    assert tool.main(argv) == 1
    assert f'{card}: out of date' in capsys.readouterr().err
    card.unlink()
    assert tool.main(argv) == 1
    assert f'{card}: missing' in capsys.readouterr().err
    # A normal run rewrites it and the check passes again.
    assert tool.main(['--family', family, '--out', str(cards_copy)]) == 0
    assert tool.main(argv) == 0


def test_check_detects_missing_and_wrong_measurements(cards_copy: Path, tmp_path: Path, capsys):
    family = _small_family()
    store = tmp_path / 'results.csv'
    first, second = backbonezoo.list_models(family=family)[:2]
    rows = [r for r in bm.read_rows(bm.STORE) if not (r.kind == 'count' and r.model == first)]
    for row in rows:
        if row.kind == 'count' and row.model == second:
            row.params += 1
    bm.write_rows(store, rows)
    assert tool.main(['--check', '--family', family, '--out', str(cards_copy), '--results', str(store)]) == 1
    err = capsys.readouterr().err
    assert f'no measurement (count row) for registered variant {first!r}' in err
    assert f'{second} params' in err and 'stored' in err


def _toy_family(**extra) -> Family:
    return Family(
        name='toy',
        title='ToyNet',
        paper='Toy Networks (NeurIPS 2099)',
        arxiv='9901.00001',
        code='https://example.org/toy',
        code_license='MIT',
        weights_license='CC-BY-4.0',
        module='backbonezoo.backbones.toy',
        variants=(
            Variant(
                'toy_small',
                'Toy-S',
                1_000_000,
                0.5,
                70.1,
                224,
                pretrained=(Weights('in1k', url='https://example.org/toy_s.pth'),),
            ),
            Variant('toy_big', 'Toy-B', 2_000_000, 1.0, 75.2, 224, notes='not released'),
        ),
        citation='@article{toy2099, title={Toy}}',
        summary='A toy family for the card test.',
        extra=extra,
    )


def test_card_content():
    family = _toy_family(
        mm_type='ToyNet',
        notes=['toy notes', 'second note'],
        flops_note='counted with care',
        timm_conformance_known_failures={'test_model_forward_fx': 'a size-dependent branch'},
    )
    measurements = {
        'toy_small': {'params': 1_000_000, 'gmacs': 0.5123, 'gmacs_bn_folded': 0.5, 'img_size': [224, 224]},
    }
    results = [
        _bench_row(),
        _bench_row(impl='reference', infer_img_s=61.7, latency_ms=12.0, peak_mem_mb=110.0, speedup=1.0),
        _bench_row(model='other_model'),
    ]
    card = tool.render_card(family, {'toy_small'}, measurements, results)
    assert card.startswith('# ToyNet\n')
    assert 'A toy family for the card test.' in card
    assert (
        '| `toy_small` | Toy-S | 224x224 | 1.00M (1,000,000) | 1.00M (1,000,000) | 0.500 '
        '| 0.512 (+2.5 %) | 0.500 (+0.0 %) | 70.1 |' in card
    )
    assert '`toy_big` (not registered yet)' in card
    assert 'paper-reported' in card and CONVENTION in card
    assert '| `toy_small` | zoo | 224 | 16 | 2 | 123.40 | 9.5 | 40.00 | 55 | 33 % | 1.50x |' in card
    assert '| `toy_small` | cpu 224 b16 2t | zoo | 123.40 | 9.5 | 55 | - | - | 2.00x | 0.50x |' in card
    assert 'other_model' not in card
    assert "custom_imports = dict(imports=['backbonezoo.mm']" in card and "type='ToyNet'" in card
    assert "arch='small'" in card
    assert "pretrained_cfg_overlay=dict(file='/path/to/file.pth')" in card
    assert 'python tools/convert_checkpoint.py /path/to/file.pth toy_small.safetensors --model toy_small' in card
    assert 'code MIT; weights CC-BY-4.0' in card
    assert '@article{toy2099, title={Toy}}' in card
    assert '- toy notes\n- second note\n' in card and '- **Flops note**: counted with care' in card
    assert '## timm conformance' in card and '| `test_model_forward_fx` | a size-dependent branch |' in card
    assert 'https://example.org/toy_s.pth' in card and 'not released' in card
    assert tool.render_card(family, {'toy_small'}, measurements, results) == card  # deterministic


def test_card_without_mm_type_or_benchmark():
    card = tool.render_card(_toy_family(), {'toy_small'}, {}, [])
    assert 'Not benchmarked yet' in card and "--models 'toy_*'" in card
    assert "Family.extra['mm_type']" in card
    assert 'Official dense checkpoints' not in card, 'no table without dense checkpoints'


def _bench_row(**changes) -> bm.Row:
    values = dict(
        model='toy_small', family='toy', impl='zoo', device='cpu', img_size=224, batch_size=16, threads=2,
        compile=False, amp=False, params=1_000_000, gmacs=0.5, infer_img_s=123.4, latency_ms=9.5, train_img_s=40.0,
        peak_mem_mb=55.0, pct_peak=33.0, speedup=1.5, top1_paper=70.1, matmul_gflops=190.0,
        date='2026-11-22 00:00 UTC', torch='2.x', timm='1.x', machine='AMD EPYC, 2 cores, Linux',
        command='python tools/benchmark.py --deploy --models toy_small',
    )  # fmt: skip
    values.update(changes)
    return bm.Row(**values)


def test_card_shows_deploy_and_official_beside_zoo_and_reference():
    """The measured rows of every implementation, in the order zoo, deploy, official, reference, each with img/s
    beside batch-1 latency and its ratios; the official comparison's rows form their own group."""
    official_cmd = 'python benchmarks/compare_official.py --official-root /tmp/official'
    results = [
        _bench_row(impl='reference', infer_img_s=50.0, latency_ms=20.0, peak_mem_mb=100.0, speedup=1.0),
        _bench_row(impl='deploy', infer_img_s=150.0, latency_ms=8.0, peak_mem_mb=40.0, train_img_s=math.nan),
        _bench_row(),
        _bench_row(impl='official', infer_img_s=60.0, latency_ms=18.0, peak_mem_mb=90.0, command=official_cmd),
        _bench_row(impl='deploy', infer_img_s=140.0, latency_ms=8.5, peak_mem_mb=42.0, command=official_cmd),
        _bench_row(model='na-56-k7-d1', family='kernels', kind='kernel', impl='fast'),  # not this family's
    ]
    card = tool.render_card(_toy_family(), {'toy_small'}, {}, results)
    side = card.split('## Measured throughput')[1].split('| model | impl | input |')[0]
    ours = [line.split(' | ')[2] for line in side.splitlines() if '| cpu 224 b16 2t |' in line]
    assert ours == ['zoo', 'deploy', 'reference']
    assert '| `toy_small` | cpu 224 b16 2t | deploy | 150.00 | 8.0 | 40 | - | - | 3.00x | 0.40x |' in side
    assert (
        '| `toy_small` | cpu 224 b16 2t (compare_official.py) | deploy | 140.00 | 8.5 | 42 | 2.33x | 0.47x | - | - |'
        in side
    )
    assert '| `toy_small` | deploy | 224 | 16 | 2 | 150.00 | 8.0 | - | 40 |' in card
    assert '| `toy_small` | official | 224 | 16 | 2 | 60.00 | 18.0 |' in card
    assert 'Whole backbones' not in card


def test_card_lists_the_familys_whole_backbone_kernel_rows():
    kernel = dict(kind='kernel', family='toy', batch_size=1, latency_ms=100.0, peak_mem_mb=50.0, min_ms=90.0)
    results = [
        _bench_row(model='toy_small-800x1216', impl='fast', **kernel),
        _bench_row(
            model='toy_small-800x1216', impl='materialising', **dict(kernel, latency_ms=250.0, peak_mem_mb=125.0)
        ),
    ]
    card = tool.render_card(_toy_family(), {'toy_small'}, {}, results)
    assert '| toy_small-800x1216 | forward | 1 | 2 | fast | 100.0 | 50 | 0.40x | 0.40x |' in card


def test_card_renders_official_dense_checkpoints():
    make = getattr(zoo, 'DenseCheckpoint', None) or types.SimpleNamespace
    dense = (
        make(
            task='detection', method='Mask R-CNN 1x', config='configs/detection/toy/mask_rcnn_toy_s_fpn_1x_coco.py',
            official_file='mask_rcnn_toy_s.pth', url='https://example.org/mask_rcnn_toy_s.pth',
            published={'box AP': 43.0, 'mask AP': 39.4}, source='official README',
        ),
        make(
            task='segmentation', method='UPerNet 160k', config='configs/segmentation/toy/upernet_toy_s.py',
            official_file='upernet_toy_s.pth', url='', published={'mIoU': 47.1}, source='official README',
        ),
    )  # fmt: skip
    family = _toy_family()
    if any(f.name == 'dense' for f in dataclasses.fields(family)):
        family = dataclasses.replace(family, dense=dense)
    else:  # before Family had the field
        object.__setattr__(family, 'dense', dense)
    card = tool.render_card(family, {'toy_small'}, {}, [])
    assert '## Official dense checkpoints' in card
    assert (
        '| detection | Mask R-CNN 1x | `configs/detection/toy/mask_rcnn_toy_s_fpn_1x_coco.py` '
        '| [`mask_rcnn_toy_s.pth`](https://example.org/mask_rcnn_toy_s.pth) | box AP 43.0, mask AP 39.4 '
        '| official README |' in card
    )
    assert '| segmentation | UPerNet 160k | `configs/segmentation/toy/upernet_toy_s.py` | `upernet_toy_s.pth` ' in card
