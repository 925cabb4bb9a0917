"""tools/model_cards.py: cards rendered from metadata + measurements + benchmark rows; --check catches staleness."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import REPO

import backbonezoo
from backbonezoo.flops import CONVENTION
from backbonezoo.zoo import Family, Variant, Weights

sys.path.insert(0, str(REPO / 'tools'))
import model_cards as tool  # noqa: E402

CARDS = REPO / 'model_cards'


def _small_family() -> str:
    """A measured family that is cheap to re-count (the check builds every variant on the meta device)."""
    measured = tool.load_measurements(CARDS / tool.MEASUREMENTS)
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
    assert (CARDS / tool.MEASUREMENTS).is_file(), 'run: python tools/model_cards.py'
    code = tool.main(['--check'])
    assert code == 0, capsys.readouterr().err


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


def test_check_detects_missing_and_wrong_measurements(cards_copy: Path, capsys):
    family = _small_family()
    path = cards_copy / tool.MEASUREMENTS
    measurements = json.loads(path.read_text())
    first, second = backbonezoo.list_models(family=family)[:2]
    del measurements[first]
    measurements[second]['params'] += 1
    path.write_text(json.dumps(measurements))
    assert tool.main(['--check', '--family', family, '--out', str(cards_copy)]) == 1
    err = capsys.readouterr().err
    assert f'no measurement for registered variant {first!r}' in err
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
        dict(
            model='toy_small', impl='zoo', img_size='224', batch_size='16', threads='2', compile='False', amp='False',
            infer_img_s='123.4', latency_ms='9.5', train_img_s='40', peak_mem_mb='55', pct_peak='33', speedup='1.5',
            date='2026-11-22 00:00 UTC', device='cpu', machine='AMD EPYC, 2 cores, Linux',
        ),
        dict(model='other_model', impl='zoo'),
    ]  # fmt: skip
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
