"""mmengine classification: dataset layouts, albumentations pipelines, metric, model, a few training iterations
through tools/train.py, tools/test.py and tools/eval_imagenet.py end to end on the demo data."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmengine')

import backbonezoo.mm  # noqa: E402, F401
from backbonezoo.mm import AlbuClsEval, AlbuClsTrain, ClsAccuracy, ImageFolderDataset, ZooClassifier  # noqa: E402

pytestmark = pytest.mark.mm
REPO = Path(__file__).resolve().parents[1]
CLS_CONFIG = str(REPO / 'configs' / 'demo' / 'efficientvit_m0_cls_demo.py')


def _tool(name: str):
    sys.path.insert(0, str(REPO / 'tools'))
    spec = importlib.util.spec_from_file_location(f'bz_tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory) -> Path:
    return _tool('make_demo_data').make_demo_data(tmp_path_factory.mktemp('demo') / 'data')


def test_dataset_folder_and_flat_layouts_agree(demo_data):
    root = str(demo_data / 'imagenet')
    folder = ImageFolderDataset(data_root=root, data_prefix='val', test_mode=True)
    flat = ImageFolderDataset(
        data_root=root, data_prefix='val_flat', ann_file='meta/val.txt', classes='meta/classes.txt', test_mode=True
    )
    assert len(folder) == len(flat) == 60
    assert folder.metainfo['classes'] == flat.metainfo['classes']
    assert sorted(d['gt_label'] for d in folder) == sorted(d['gt_label'] for d in flat)
    with pytest.raises(FileNotFoundError, match='data_prefix'):
        ImageFolderDataset(data_root=root, data_prefix='nope')


def test_pipelines_shapes_normalisation_and_worker_seeding():
    import numpy as np

    image = np.random.RandomState(0).randint(0, 256, (90, 70, 3), dtype=np.uint8)
    train = AlbuClsTrain(img_size=48, color_jitter=0.4, rand_ops=1.0)
    out = train(dict(img=image.copy()))['inputs']
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32
    torch.manual_seed(3)
    first = AlbuClsTrain(img_size=48)(dict(img=image.copy()))['inputs']
    torch.manual_seed(3)
    second = AlbuClsTrain(img_size=48)(dict(img=image.copy()))['inputs']
    torch.testing.assert_close(first, second)  # follows torch's (mmengine's) seed, not OS entropy
    evaluation = AlbuClsEval(model_name='efficientvit_m0')
    assert evaluation.cfg['img_size'] == 224 and evaluation.cfg['crop_pct'] == 0.875
    assert evaluation(dict(img=image))['inputs'].shape == (3, 224, 224)


def test_metric_top1_top5():
    metric = ClsAccuracy(topk=(1, 5))
    scores = torch.eye(6)
    metric.process(None, [dict(pred_score=scores[i], gt_label=torch.tensor(i)) for i in range(4)])
    metric.process(None, [dict(pred_score=scores[0], gt_label=torch.tensor(1))])
    result = metric.compute_metrics(metric.results)
    assert result == {'top1': 80.0, 'top5': 100.0}


def test_classifier_modes_and_mixup():
    model = ZooClassifier(
        'efficientvit_m0',
        num_classes=6,
        model_kwargs=dict(img_size=64),
        data_preprocessor=dict(type='ClsDataPreprocessor', mixup=dict(mixup_alpha=0.8, num_classes=6)),
    )
    batch = dict(inputs=[torch.randn(3, 64, 64) for _ in range(4)], gt_label=[0, 1, 2, 3])
    data = model.data_preprocessor(batch, training=True)
    assert data['gt_label'].shape == (4, 6), 'mixup gives soft targets'
    assert model(**data, mode='loss')['loss'].ndim == 0
    model.eval()
    data = model.data_preprocessor(batch, training=False)
    predictions = model(**data, mode='predict')
    assert len(predictions) == 4 and predictions[0]['pred_score'].shape == (6,)
    with pytest.raises(ValueError, match='even batch'):
        model.data_preprocessor(dict(inputs=[torch.randn(3, 64, 64)] * 3, gt_label=[0, 1, 2]), training=True)


def test_distillation_from_frozen_teachers(tmp_path):
    import timm

    torch.manual_seed(0)
    teacher = timm.create_model('test_resnet', num_classes=6)
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=teacher.state_dict()), path)
    distill = dict(teachers=['test_resnet', 'test_resnet'], checkpoints=[str(path), str(path)], temperature=2.0)
    model = ZooClassifier('test_vit', num_classes=6, model_kwargs=dict(img_size=32), distill=distill)
    # teachers are frozen, loaded from the file, and not part of what is saved or optimised
    assert not any(k.startswith(('distill', 'teacher')) for k in model.state_dict())
    assert all(not p.requires_grad for t in model.distill['teachers'] for p in t.parameters())
    torch.testing.assert_close(model.distill['teachers'][0].state_dict(), teacher.state_dict())
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model.train()
    losses = model(x, labels, mode='loss')
    assert set(losses) == {'loss_kd'}, 'weight=1 is soft-label-only distillation (MEAL V2)'
    with torch.no_grad():
        target = (teacher.eval()(x) / 2.0).softmax(-1)
        student = model.model(x) / 2.0
    expected = 4.0 * torch.sum(-target * student.log_softmax(-1), dim=-1).mean()
    torch.testing.assert_close(losses['loss_kd'], expected)
    losses['loss_kd'].backward()
    assert all(p.grad is not None for p in model.model.parameters() if p.requires_grad)

    half = ZooClassifier('test_vit', num_classes=6, model_kwargs=dict(img_size=32), distill=dict(distill, weight=0.5))
    assert set(half(x, labels, mode='loss')) == {'loss_kd', 'loss_cls'}
    with pytest.raises(ValueError, match='distill.teachers'):
        ZooClassifier('test_vit', num_classes=6, distill=dict(teachers=[]))
    with pytest.raises(ValueError, match='unknown keys'):
        ZooClassifier('test_vit', num_classes=6, distill=dict(teachers=['test_resnet'], alpha=0.5))


def test_train_test_and_eval_imagenet_end_to_end(demo_data, tmp_path, monkeypatch):
    monkeypatch.setenv('BACKBONEZOO_DEMO_DATA', str(demo_data))
    work_dir = tmp_path / 'cls'
    runner = _tool('train').main(
        [
            CLS_CONFIG,
            '--work-dir',
            str(work_dir),
            '--cfg-options',
            'train_cfg.max_epochs=1',
            'train_cfg.val_interval=1',
            'default_hooks.checkpoint.interval=1',
            'train_dataloader.batch_size=60',
        ]
    )
    assert runner.iter == 4  # 240 images, batch 60
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()

    metrics = _tool('test').main(
        [CLS_CONFIG, str(checkpoint), '--work-dir', str(tmp_path / 'test'), '--trust-checkpoint']
    )
    assert set(metrics) == {'accuracy/top1', 'accuracy/top5'}

    out = tmp_path / 'eval.json'
    result = _tool('eval_imagenet').main(
        [
            '--model', 'efficientvit_m0', '--checkpoint', str(checkpoint), '--trust-checkpoint',
            '--data', str(demo_data / 'imagenet'), '--img-size', '64', '--workers', '0', '--batch-size', '30',
            '--out', str(out),
        ]
    )  # fmt: skip
    assert result['images'] == 60 and 0.0 <= result['top1'] <= 100.0 and result['img_per_s'] > 0
    assert json.loads(out.read_text())['top1'] == result['top1']
    # tools/test.py and eval_imagenet read the same weights and data: the same top-1 up to resize differences
    assert abs(result['top1'] - metrics['accuracy/top1']) <= 25.0


def test_untrusted_runner_checkpoint_is_refused(tmp_path):
    from mmengine.runner import CheckpointLoader

    path = tmp_path / 'runner.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'obj': object.__new__(_Opaque)}}, path)
    with pytest.raises(Exception, match='trust'):
        CheckpointLoader.load_checkpoint(str(path))
    backbonezoo.mm.trust_checkpoint_dir(tmp_path)
    assert 'state_dict' in CheckpointLoader.load_checkpoint(str(path))


class _Opaque:
    """A class torch's weights_only unpickler refuses."""
