"""mmengine classification: dataset layouts, timm's transforms as mmengine transforms (and the opt-in
albumentations ones), seeded samplers, repeated augmentation, optimizer constructor, metric, model (mixup,
distillation), a few training iterations through tools/train.py, tools/test.py and tools/eval_imagenet.py end to
end on the demo data."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmengine')

import backbonezoo.mm  # noqa: E402, F401
from backbonezoo.mm import (  # noqa: E402
    AlbuAugment,
    AlbuClsEval,
    AlbuClsTrain,
    ClsAccuracy,
    ImageFolderDataset,
    LoadImagePIL,
    LoadImageRGB,
    RepeatAugSampler,
    SeededSampler,
    TimmClsEval,
    TimmClsTrain,
    ZooClassifier,
    ZooOptimConstructor,
)

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
            '--data', str(demo_data / 'imagenet'), '--img-size', '64', '--crop-pct', '1.0', '--workers', '0',
            '--batch-size', '30', '--out', str(out), '--no-progress',
        ]
    )  # fmt: skip
    assert result['images'] == 60 and 0.0 <= result['top1'] <= 100.0 and result['img_per_s'] > 0
    assert json.loads(out.read_text())['top1'] == result['top1']
    # tools/test.py and eval_imagenet read the same weights and data through the same eval transform
    assert result['top1'] == pytest.approx(metrics['accuracy/top1'], abs=1e-3)


def test_untrusted_runner_checkpoint_is_refused(tmp_path):
    from mmengine.runner import CheckpointLoader

    path = tmp_path / 'runner.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'obj': object.__new__(_Opaque)}}, path)
    with pytest.raises(Exception, match='trust'):
        CheckpointLoader.load_checkpoint(str(path))
    from backbonezoo.checkpoint import trust_checkpoint

    trust_checkpoint(path)  # trust is given file by file
    assert 'state_dict' in CheckpointLoader.load_checkpoint(str(path))


class _Opaque:
    """A class torch's weights_only unpickler refuses."""


# ---------------------------------------------------------------------------------------------------------------
# timm's transforms, the opt-in albumentations stage
# ---------------------------------------------------------------------------------------------------------------
def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _step_names(transform) -> list[str]:
    return [type(t).__name__ for t in transform.transform.transforms]


def test_timm_train_transform_is_timms_create_transform(demo_data):
    from timm.data import create_transform

    from backbonezoo.data import load_image

    image = load_image(next((demo_data / 'imagenet' / 'train').rglob('*.JPEG')))
    default = TimmClsTrain(input_size=48)
    names = _step_names(default)
    assert 'RandAugment' in names and 'RandomErasing' in names, names  # the DeiT recipe by default
    reference = create_transform(
        48, is_training=True, auto_augment='rand-m9-mstd0.5-inc1', interpolation='bicubic', re_prob=0.25,
        re_mode='pixel', color_jitter=0.4,
    )  # fmt: skip
    for seed in range(3):
        _seed_all(seed)
        ours = default(dict(img=image))['inputs']
        _seed_all(seed)
        torch.testing.assert_close(ours, reference(image), rtol=0, atol=0)
    assert ours.shape == (3, 48, 48) and ours.dtype == torch.float32
    light = TimmClsTrain(input_size=48, auto_augment=None, re_prob=0.0, color_jitter=None, hflip=0.0)
    assert not {'RandAugment', 'RandomErasing', 'ColorJitter', 'RandomHorizontalFlip'} & set(_step_names(light))


def test_albumentations_decoding_feeds_the_timm_transforms_the_same_pixels(demo_data, tmp_path):
    """LoadImageRGB (numpy) in place of LoadImagePIL: bit-identical tensors through the eval and train transforms."""
    from PIL import Image

    files = sorted((demo_data / 'imagenet' / 'val').rglob('*.JPEG'))[:4]
    png = tmp_path / 'image.png'
    Image.open(files[0]).convert('RGB').save(png)
    evaluation = TimmClsEval(model_name='efficientvit_m0', input_size=56, crop_pct=0.875)
    train = TimmClsTrain(input_size=48)
    for path in [*files, png]:
        pil = LoadImagePIL()(dict(img_path=str(path)))
        arr = LoadImageRGB()(dict(img_path=str(path)))
        assert torch.equal(evaluation(dict(pil))['inputs'], evaluation(dict(arr))['inputs'])
        _seed_all(1)
        a = train(dict(pil))['inputs']
        _seed_all(1)
        assert torch.equal(a, train(dict(arr))['inputs'])


def test_albu_augment_is_an_extra_stage_following_the_sample_seed(demo_data):
    import numpy as np

    from backbonezoo.data import load_image, sample_rng

    image = load_image(next((demo_data / 'imagenet' / 'train').rglob('*.JPEG')))
    flip = AlbuAugment([dict(type='HorizontalFlip', p=1.0)])
    out = flip(dict(img=image))['img']
    assert np.array_equal(np.asarray(out), np.asarray(image)[:, ::-1])
    noisy = AlbuAugment([dict(type='GaussNoise', p=1.0)])
    with sample_rng(5):
        first = np.asarray(noisy(dict(img=image))['img'])
    with sample_rng(5):
        again = np.asarray(noisy(dict(img=image))['img'])
    with sample_rng(6):
        other = np.asarray(noisy(dict(img=image))['img'])
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    with pytest.raises(ValueError, match='no transform'):
        AlbuAugment([dict(type='NoSuchTransform')])


# ---------------------------------------------------------------------------------------------------------------
# samplers: augmentation from (seed, epoch, position)
# ---------------------------------------------------------------------------------------------------------------
def _augmented_dataset(demo_data, indices=16):
    pipeline = [dict(type='LoadImagePIL'), dict(type='TimmClsTrain', input_size=32, re_prob=0.5)]
    return ImageFolderDataset(
        data_root=str(demo_data / 'imagenet'), data_prefix='train', pipeline=pipeline, indices=indices
    )


def _epoch(dataset, sampler, num_workers: int) -> list[torch.Tensor]:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, sampler=sampler, num_workers=num_workers, collate_fn=lambda batch: batch
    )
    return [item['inputs'] for batch in loader for item in batch]


def test_seeded_sampler_augmentation_is_independent_of_workers_and_process_rng(demo_data):
    from mmengine.dataset import DefaultSampler

    dataset = _augmented_dataset(demo_data)
    sampler = SeededSampler(dataset, shuffle=True, seed=3)
    assert [int(i) for i in sampler] == list(DefaultSampler(dataset, shuffle=True, seed=3))
    torch.manual_seed(0)
    serial = _epoch(dataset, sampler, num_workers=0)
    state = torch.random.get_rng_state()
    torch.manual_seed(123)  # another process-wide state, two workers: the same augmentations
    parallel = _epoch(dataset, sampler, num_workers=2)
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel)) and len(serial) == 16
    torch.manual_seed(0)
    _epoch(dataset, sampler, num_workers=0)
    assert torch.equal(torch.random.get_rng_state(), state), 'preparing data must not consume the process RNG'
    sampler.set_epoch(1)
    next_epoch = dict(zip([int(i) for i in sampler], _epoch(dataset, sampler, 0)))
    first = dict(zip([int(i) for i in SeededSampler(dataset, shuffle=True, seed=3)], serial))
    assert not any(torch.equal(first[k], next_epoch[k]) for k in first), 'each epoch draws new augmentations'


def test_seeded_samplers_seed_by_global_position_across_ranks(demo_data):
    dataset = _augmented_dataset(demo_data, indices=10)
    for make in (lambda: SeededSampler(dataset, seed=1), lambda: RepeatAugSampler(dataset, num_repeats=2, seed=1)):
        single = make()
        ranks = []
        for rank in range(2):
            sampler = make()
            sampler.rank, sampler.world_size = rank, 2
            if isinstance(sampler, RepeatAugSampler):
                sampler.num_samples = -(-len(dataset) * 2 // 2)
                sampler.total_size = sampler.num_samples * 2
                sampler.num_selected_samples = -(-len(dataset) // 2)
            ranks.append([(int(i), i.seed) for i in sampler])
        merged = [pair for pairs in zip(*ranks) for pair in pairs]
        full = [(int(i), i.seed) for i in single]
        if isinstance(single, RepeatAugSampler):  # each rank keeps len / world_size of the repeated order
            repeated = [(int(i), i.seed) for i in RepeatAugSampler(dataset, num_repeats=2, seed=1, selected_ratio=0.5)]
            assert merged == repeated[: len(merged)]
        else:
            assert merged == full
        assert len({s for pairs in ranks for _, s in pairs}) == sum(map(len, ranks)), 'one seed per position'


def test_repeat_aug_sampler_semantics(demo_data):
    dataset = _augmented_dataset(demo_data, indices=12)
    sampler = RepeatAugSampler(dataset, num_repeats=3, shuffle=True, seed=0)
    assert len(sampler) == len(list(sampler)) == 12  # an epoch costs what a plain one does
    order = [int(i) for i in RepeatAugSampler(dataset, num_repeats=3, seed=0, selected_ratio=1 / 3)]
    assert len(order) == 36 and all(order[3 * k] == order[3 * k + 1] == order[3 * k + 2] for k in range(12))
    assert sorted(set(order)) == list(range(12))
    sampler.set_epoch(1)
    assert [int(i) for i in sampler] != order[:12]
    ranked = RepeatAugSampler(dataset, num_repeats=3, seed=0)
    ranked.rank, ranked.world_size = 1, 3  # the copies of a sample go to different ranks
    ranked.num_samples, ranked.total_size, ranked.num_selected_samples = 12, 36, 4
    assert [int(i) for i in ranked] == order[1:12:3]
    with pytest.raises(ValueError, match='num_repeats'):
        RepeatAugSampler(dataset, num_repeats=0)


# ---------------------------------------------------------------------------------------------------------------
# optimizer constructor
# ---------------------------------------------------------------------------------------------------------------
def test_optim_constructor_excludes_no_weight_decay_norms_biases_and_decays_layers():
    model = ZooClassifier('test_vit', num_classes=6, model_kwargs=dict(img_size=32))
    names = {id(p): n for n, p in model.model.named_parameters()}
    skip = model.model.no_weight_decay()
    assert skip, 'test_vit names parameters without weight decay'
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
    wrapper = ZooOptimConstructor(cfg, dict(norm_decay_mult=0.0, bias_decay_mult=0.0))(model)
    groups = wrapper.optimizer.param_groups
    decay = {names[id(p)] for g in groups if g['weight_decay'] > 0 for p in g['params']}
    no_decay = {names[id(p)] for g in groups if g['weight_decay'] == 0 for p in g['params']}
    assert decay and decay.isdisjoint(no_decay) and decay | no_decay == set(names.values())
    assert all(n.split('.')[-1] != 'bias' and n not in skip for n in decay)
    assert set(skip) & set(names.values()) and set(skip) & set(names.values()) <= no_decay
    assert any('norm' in n for n in no_decay)
    assert all(p.ndim > 1 for g in groups if g['weight_decay'] > 0 for p in g['params'])

    layered = ZooOptimConstructor(cfg, dict(layer_decay=0.5))(model).optimizer.param_groups
    lrs = {names[id(p)]: g['lr'] for g in layered for p in g['params']}
    assert lrs['head.weight'] == pytest.approx(1e-3) and lrs['patch_embed.proj.weight'] < lrs['blocks.0.mlp.fc1.weight']
    assert lrs['blocks.0.mlp.fc1.weight'] < lrs['head.weight']
    with pytest.raises(ValueError, match='unknown paramwise_cfg'):
        ZooOptimConstructor(cfg, dict(bias_lr_mult=2.0))
    with pytest.raises(ValueError, match='never decay'):
        ZooOptimConstructor(cfg, dict(norm_decay_mult=1.0))


# ---------------------------------------------------------------------------------------------------------------
# model: mixup at the model level, DeiT-style distillation
# ---------------------------------------------------------------------------------------------------------------
def test_model_level_mixup_and_label_smoothing():
    mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch')
    model = ZooClassifier('test_vit', num_classes=6, model_kwargs=dict(img_size=32), label_smoothing=0.1, mixup=mixup)
    mix = model.data_preprocessor.mixup
    assert mix is not None and mix.num_classes == 6 and mix.label_smoothing == 0.1
    batch = dict(inputs=[torch.randn(3, 32, 32) for _ in range(4)], gt_label=[0, 1, 2, 3])
    data = model.data_preprocessor(batch, training=True)
    assert data['gt_label'].shape == (4, 6) and torch.allclose(data['gt_label'].sum(-1), torch.ones(4))
    assert model(**data, mode='loss')['loss'].ndim == 0
    off = ZooClassifier('test_vit', num_classes=6, model_kwargs=dict(img_size=32), mixup=dict(mixup_alpha=0.0))
    assert off.data_preprocessor.mixup is None
    with pytest.raises(ValueError, match='both'):
        ZooClassifier(
            'test_vit',
            num_classes=6,
            mixup=mixup,
            data_preprocessor=dict(type='ClsDataPreprocessor', mixup=dict(mixup_alpha=0.8, num_classes=6)),
        )


@pytest.mark.parametrize('kind', ['hard', 'soft'])
def test_deit_distillation_from_a_frozen_teacher(tmp_path, kind):
    import timm
    import torch.nn.functional as F

    torch.manual_seed(0)
    teacher = timm.create_model('test_resnet', num_classes=6)
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=teacher.state_dict()), path)
    distill = dict(teacher='test_resnet', teacher_checkpoint=str(path), type=kind, alpha=0.5, tau=2.0)
    model = ZooClassifier('test_vit', num_classes=6, model_kwargs=dict(img_size=32), distill=distill)
    assert not any(k.startswith(('distill', 'teacher')) for k in model.state_dict())
    assert all(not p.requires_grad for p in model.distill['teachers'][0].parameters())
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model.train()
    losses = model(x, labels, mode='loss')
    with torch.no_grad():
        t, s = teacher.eval()(x), model.model(x)
    if kind == 'hard':
        kd = F.cross_entropy(s, t.argmax(1))
    else:  # KL(teacher || student) at temperature 2, times T^2, averaged over the logits
        p_t, log_s = (t / 2.0).softmax(1), (s / 2.0).log_softmax(1)
        kd = (p_t * (p_t.log() - log_s)).sum() * 4.0 / s.numel()
    torch.testing.assert_close(losses['loss_kd'], 0.5 * kd)
    torch.testing.assert_close(losses['loss_cls'], 0.5 * F.cross_entropy(s, labels))
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match='distill.type'):
        ZooClassifier('test_vit', num_classes=6, distill=dict(distill, type='nope'))


def test_rng_state_round_trip_is_weights_only_readable(tmp_path):
    import random

    import numpy as np

    from backbonezoo.data import get_rng_state, set_rng_state

    _seed_all(7)
    state = get_rng_state()
    path = tmp_path / 'rng.pth'
    torch.save(state, path)
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    _seed_all(8)
    set_rng_state(torch.load(path, weights_only=True))
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
