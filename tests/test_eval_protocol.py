"""One evaluation protocol, standalone evaluation (issue 21 items 3 and 4, issue 20 item 3).

- ``tools/eval_imagenet.py``, mmengine validation (the config's ``val_dataloader``) and ``tools/test.py`` (its
  ``test_dataloader``) feed the model bit-identical tensors for every image, for the demo protocol and for a
  centre crop with another interpolation, and report the same top-1 for the same checkpoint.
- ``tools/eval_imagenet.py`` runs where mmengine / mmcv / mmdet / mmseg cannot be imported, writes timm's
  ``validate.py`` columns and appends one row per model, refuses a class-count mismatch unless told how to read it.
- ImageNet-ReaL labels on a flat, listed folder; ``--deploy`` calls ``backbonezoo.deploy.deploy``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CLS_CONFIG = REPO / 'configs' / 'demo' / 'efficientvit_m0_cls_demo.py'
CSV_COLUMNS = ['model', 'top1', 'top1_err', 'top5', 'top5_err', 'param_count', 'img_size', 'crop_pct', 'interpolation']
HIDE_OPENMMLAB = """
import importlib.abc
import sys


class _HideOpenMMLab(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'}:
            raise ImportError(f'{name} is hidden: this test runs without the [mm] extra')
        return None


sys.meta_path.insert(0, _HideOpenMMLab())
"""


def _tool(name: str):
    sys.path.insert(0, str(REPO / 'tools'))
    spec = importlib.util.spec_from_file_location(f'bz_tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory) -> Path:
    return _tool('make_demo_data').make_demo_data(tmp_path_factory.mktemp('demo') / 'data')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> Path:
    """EfficientViT-M0 (6 classes, 64 px) in ZooClassifier's layout, as a plain weights file."""
    import timm

    import backbonezoo  # noqa: F401

    torch.manual_seed(0)
    model = timm.create_model('efficientvit_m0', num_classes=6, img_size=64)
    path = tmp_path_factory.mktemp('ckpt') / 'efficientvit_m0_6.pth'
    torch.save(dict(state_dict={f'model.{k}': v for k, v in model.state_dict().items()}), path)
    return path


PROTOCOLS = {
    'demo': dict(input_size=64, crop_pct=1.0, interpolation=None),
    'center_crop_bilinear': dict(input_size=56, crop_pct=0.875, interpolation='bilinear'),
}


@pytest.mark.mm
@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_eval_tool_validation_and_test_config_feed_identical_tensors(demo_data, monkeypatch, protocol):
    pytest.importorskip('mmengine')
    from mmengine.config import Config
    from mmengine.registry import DATASETS

    import backbonezoo.mm  # noqa: F401

    settings = PROTOCOLS[protocol]
    monkeypatch.setenv('BACKBONEZOO_DEMO_DATA', str(demo_data))
    cfg = Config.fromfile(str(CLS_CONFIG))
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        eval_step = loader.dataset.pipeline[-1]
        assert eval_step.type == 'TimmClsEval', 'every evaluation route must use the shared protocol'
        eval_step.update({k: v for k, v in settings.items() if v is not None})

    eval_tool = _tool('eval_imagenet')
    options = ['--input-size', str(settings['input_size']), '--crop-pct', str(settings['crop_pct'])]
    if settings['interpolation']:
        options += ['--interpolation', settings['interpolation']]
    args = eval_tool.parse_args(['--model', 'efficientvit_m0', '--data', str(demo_data / 'imagenet'), *options])
    model = eval_tool.build_model('efficientvit_m0', args)
    from backbonezoo.data import eval_transform

    transform = eval_transform(
        model, input_size=args.input_size, crop_pct=args.crop_pct, interpolation=args.interpolation
    )
    dataset, classes = eval_tool.build_dataset(args, transform)
    assert classes == 6
    tool_inputs = {
        Path(path).resolve(): dataset[i] for i, path in enumerate(dataset.filenames(basename=False, absolute=True))
    }
    assert len(tool_inputs) == 60

    for name, loader in (('validation', cfg.val_dataloader), ('tools/test.py', cfg.test_dataloader)):
        mm_dataset = DATASETS.build(loader.dataset)
        assert len(mm_dataset) == len(tool_inputs)
        classes_mm = mm_dataset.metainfo['classes']
        for i in range(len(mm_dataset)):
            item = mm_dataset[i]
            image, label = tool_inputs[Path(item['img_path']).resolve()]
            assert item['inputs'].shape == (3, settings['input_size'], settings['input_size'])
            assert item['inputs'].dtype == image.dtype == torch.float32
            assert torch.equal(item['inputs'], image), f'{name}: {item["img_path"]} differs from eval_imagenet'
            assert classes_mm[item['gt_label']] == Path(item['img_path']).parent.name
            assert label == item['gt_label']


@pytest.mark.mm
def test_eval_tool_and_test_tool_report_the_same_top1(demo_data, checkpoint, tmp_path, monkeypatch):
    pytest.importorskip('mmengine')
    monkeypatch.setenv('BACKBONEZOO_DEMO_DATA', str(demo_data))
    result = _tool('eval_imagenet').main(
        [
            '--model', 'efficientvit_m0', '--checkpoint', str(checkpoint), '--data', str(demo_data / 'imagenet'),
            '--input-size', '64', '--crop-pct', '1.0', '--batch-size', '30', '--workers', '0', '--no-progress',
        ]
    )  # fmt: skip
    metrics = _tool('test').main([str(CLS_CONFIG), str(checkpoint), '--work-dir', str(tmp_path / 'test')])
    assert result['images'] == 60
    for k in ('top1', 'top5'):  # the same number of hits (the tools round differently)
        assert round(result[k] * 60 / 100) == round(metrics[f'accuracy/{k}'] * 60 / 100)
        assert result[k] == pytest.approx(metrics[f'accuracy/{k}'], abs=1e-3)


def _run_without_openmmlab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    site = tmp_path / 'hide_openmmlab'
    site.mkdir(exist_ok=True)
    (site / 'sitecustomize.py').write_text(HIDE_OPENMMLAB)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )


def test_eval_imagenet_runs_without_openmmlab(demo_data, checkpoint, tmp_path):
    hidden = _run_without_openmmlab(tmp_path, '-c', 'import mmengine')
    assert hidden.returncode != 0 and 'hidden' in hidden.stderr, 'the import blocker is not active'

    tool = str(REPO / 'tools' / 'eval_imagenet.py')
    data = ['--data', str(demo_data / 'imagenet'), '--input-size', '64', '--workers', '0', '--no-progress']
    table = tmp_path / 'results.csv'
    first = _run_without_openmmlab(
        tmp_path, tool, '--model', 'efficientvit_m0', '--checkpoint', str(checkpoint), *data,
        '--crop-pct', '1.0', '--results-file', str(table), '--out', str(tmp_path / 'one.json'),
    )  # fmt: skip
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    one = json.loads((tmp_path / 'one.json').read_text())
    assert one['images'] == 60 and 0.0 <= one['top1'] <= 100.0

    # a 1000-class model on 6-class data: refused, then read through a class map, then evaluated anyway
    refused = _run_without_openmmlab(tmp_path, tool, '--model', 'test_vit', *data)
    assert refused.returncode != 0 and '--class-map' in refused.stderr + refused.stdout
    class_map = tmp_path / 'class_map.txt'
    shutil.copy(demo_data / 'imagenet' / 'meta' / 'classes.txt', class_map)
    mapped = _run_without_openmmlab(tmp_path, tool, '--model', 'test_vit', *data, '--class-map', str(class_map))
    assert mapped.returncode == 0, mapped.stderr[-3000:]
    sweep = _run_without_openmmlab(
        tmp_path, tool, '--model', 'test_vit[23]', *data, '--ignore-class-count', '--results-file', str(table)
    )
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]

    with table.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert reader.fieldnames == CSV_COLUMNS
    assert [r['model'] for r in rows] == ['efficientvit_m0', 'test_vit2', 'test_vit3']
    assert float(rows[0]['top1']) == pytest.approx(one['top1'])
    for row in rows:
        assert float(row['top1']) + float(row['top1_err']) == pytest.approx(100.0)
        assert float(row['top5']) + float(row['top5_err']) == pytest.approx(100.0)
        assert int(row['img_size']) == 64 and float(row['param_count']) > 0
    assert float(rows[0]['crop_pct']) == 1.0 and rows[0]['interpolation']


def test_real_labels_on_a_flat_listed_folder(demo_data, checkpoint, tmp_path):
    """ImageNet-ReaL reads file names ILSVRC2012_val_<n>.JPEG; with each image's one true label as its ReaL set,
    ReaL top-1 equals top-1."""
    root = tmp_path / 'flat'
    (root / 'val').mkdir(parents=True)
    lines, real = [], []
    for n, line in enumerate((demo_data / 'imagenet' / 'meta' / 'val.txt').read_text().split('\n')[:30], 1):
        name, label = line.split()
        target = f'ILSVRC2012_val_{n:08d}.JPEG'
        shutil.copy(demo_data / 'imagenet' / 'val_flat' / name, root / 'val' / target)
        lines.append(f'{target} {label}')
        real.append([int(label)])
    (root / 'val.txt').write_text('\n'.join(lines) + '\n')
    (root / 'real.json').write_text(json.dumps(real))
    result = _tool('eval_imagenet').main(
        [
            '--model', 'efficientvit_m0', '--checkpoint', str(checkpoint), '--data', str(root), '--labels', 'val.txt',
            '--real-labels', str(root / 'real.json'), '--input-size', '64', '--workers', '0', '--no-progress',
        ]
    )  # fmt: skip
    assert result['images'] == 30
    assert result['real_top1'] == pytest.approx(result['top1'])


def test_deploy_flag_calls_backbonezoo_deploy(demo_data, checkpoint, monkeypatch):
    calls = []

    def deploy(model):
        calls.append(type(model).__name__)
        return model

    tool = _tool('eval_imagenet')
    args = [
        '--model', 'efficientvit_m0', '--checkpoint', str(checkpoint), '--data', str(demo_data / 'imagenet'),
        '--input-size', '64', '--workers', '0', '--no-progress', '--deploy',
    ]  # fmt: skip
    monkeypatch.setitem(sys.modules, 'backbonezoo.deploy', types.SimpleNamespace(deploy=deploy))
    assert tool.main(args)['deploy'] is True and len(calls) == 1
    monkeypatch.setitem(sys.modules, 'backbonezoo.deploy', None)  # an installation without the module
    with pytest.raises(SystemExit, match='backbonezoo.deploy'):
        tool.main(args)
