"""Every family config in configs/{classification,detection,segmentation}: it parses and builds; per family and task,
the config with the smallest backbone runs two training iterations and a validation pass on the generated demo data
(the dataset, image sizes and head classes are swapped for the demo's; the model and optimiser are the config's).
"""

from __future__ import annotations

import copy
import functools
import re
import sys
from pathlib import Path
from unittest.mock import MagicMock

import pytest

pytestmark = pytest.mark.mm

REPO = Path(__file__).resolve().parents[1]
TASKS = ('classification', 'detection', 'segmentation')
CONFIGS = sorted(p for task in TASKS for p in (REPO / 'configs' / task).glob('*/*.py'))


def config_id(path: Path) -> str:
    return str(path.relative_to(REPO / 'configs'))


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / 'tools'))
    from make_demo_data import make_demo_data

    root = tmp_path_factory.mktemp('demo')
    make_demo_data(root)
    return root


@functools.cache
def load(path: Path):
    """A parsed config (cached: treat as read-only, deep-copy before changing it)."""
    from mmengine.config import Config

    return Config.fromfile(str(path))


def backbone_model_name(cfg) -> str | None:
    """The timm model a config's backbone builds (through the mm type's arch table), or None."""
    from mmengine.registry import MODELS

    import backbonezoo.mm  # noqa: F401

    if 'backbone' not in cfg.model:  # classification: the zoo / timm model itself
        return cfg.model.get('model_name')
    backbone = cfg.model.backbone
    cls = MODELS.get(backbone['type'])
    if cls is None or not hasattr(cls, 'arch_zoo'):
        return None
    arch = backbone.get('arch')
    return cls.arch_zoo.get(arch, arch) if arch is not None else next(iter(cls.arch_zoo.values()))


# Detectors that cost more to train than their one-stage-of-heads peers (three box / mask head stages): among one
# family's configs with the same backbone, `make test` trains the lighter one (A2Mamba-T: Mask R-CNN, not Cascade).
HEAVY_DETECTORS = ('CascadeRCNN', 'HybridTaskCascade')


def training_cost(path: Path) -> tuple[int, int, str]:
    """Sort key: backbone parameters (official count), then the detector's weight, then the path."""
    import backbonezoo

    cfg = load(path)
    name = backbone_model_name(cfg)
    try:
        params = backbonezoo.variant_info(name).params or 0
    except (KeyError, TypeError):
        params = 0
    return params, int(cfg.model.get('type') in HEAVY_DETECTORS), str(path)


def smallest_per_family_and_task() -> set[Path]:
    """The config of each (task, family) with the smallest backbone (ties: the lighter detector); the others train
    under ``-m slow``."""
    best: dict[tuple[str, str], Path] = {}
    for path in CONFIGS:
        key = tuple(path.relative_to(REPO / 'configs').parts[:2])
        if key not in best or training_cost(path) < training_cost(best[key]):
            best[key] = path
    return set(best.values())


TRAINED = smallest_per_family_and_task() if CONFIGS else set()


def drop_pretrained(cfg) -> None:
    """No network and no weight files in tests: the backbone starts from its own initialisation."""
    backbone = cfg.model.get('backbone')
    if backbone is not None:
        backbone.pop('init_cfg', None)
    cfg.model.pop('checkpoint', None)
    if cfg.model.get('distill'):  # teachers: small random timm models instead of downloaded ones
        cfg.model.distill.update(teachers=['test_resnet'], pretrained=False, checkpoints=None)


def short_schedule(cfg, work_dir: Path) -> None:
    cfg.work_dir = str(work_dir)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=2)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000, by_epoch=False, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False)
    cfg.custom_hooks = []
    cfg.pop('auto_scale_lr', None)
    cfg.randomness = dict(seed=0)


def demo_detection(cfg, data: Path) -> None:
    root = f'{data}/coco/'
    classes = ('circle', 'square', 'triangle')
    with_mask = 'roi_head' in cfg.model and 'mask_head' in cfg.model.roi_head
    load_ann = dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask, poly2mask=True)
    scale = (256, 192)
    train = [
        dict(type='LoadImageFromFile'),
        load_ann,
        dict(type='Resize', scale=scale, keep_ratio=True),
        dict(type='PackDetInputs'),
    ]
    test = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=scale, keep_ratio=True),
        load_ann,
        dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
    ]
    dataset = dict(type='CocoDataset', data_root=root, metainfo=dict(classes=classes))
    cfg.train_dataloader = dict(
        batch_size=2,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            dataset,
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            filter_cfg=dict(filter_empty_gt=True),
            pipeline=train,
        ),
    )
    cfg.val_dataloader = dict(
        batch_size=1,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            dataset,
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img='val/'),
            pipeline=test,
            indices=2,
            test_mode=True,
        ),
    )
    cfg.test_dataloader = cfg.val_dataloader
    metrics = ['bbox', 'segm'] if with_mask else ['bbox']
    cfg.val_evaluator = dict(type='CocoMetric', ann_file=root + 'annotations/instances_val.json', metric=metrics)
    cfg.test_evaluator = cfg.val_evaluator
    model = cfg.model
    if 'bbox_head' in model:
        model.bbox_head.num_classes = len(classes)
        model.test_cfg.score_thr = 0.0
    if 'roi_head' in model:
        heads = model.roi_head.bbox_head  # one dict, or one per stage (Cascade R-CNN)
        for head in heads if isinstance(heads, list) else [heads]:
            head.num_classes = len(classes)
        if with_mask:
            model.roi_head.mask_head.num_classes = len(classes)
        model.test_cfg.rcnn.score_thr = 0.0


def demo_segmentation(cfg, data: Path) -> None:
    classes = ('background', 'circle', 'square', 'triangle')
    crop = (128, 128)
    dataset = dict(
        type='BaseSegDataset',
        data_root=f'{data}/ade',
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        metainfo=dict(classes=classes, palette=[[0, 0, 0]] * len(classes)),
    )
    train = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomCrop', crop_size=crop),
        dict(type='PackSegInputs'),
    ]
    test = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(160, 128), keep_ratio=True),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs'),
    ]
    cfg.train_dataloader = dict(
        batch_size=2,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(
            dataset, data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'), pipeline=train
        ),
    )
    cfg.val_dataloader = dict(
        batch_size=1,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            dataset,
            data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
            pipeline=test,
            indices=2,
        ),
    )
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
    cfg.test_evaluator = cfg.val_evaluator
    cfg.model.data_preprocessor.size = crop
    cfg.model.decode_head.num_classes = len(classes)
    if cfg.model.get('auxiliary_head'):
        cfg.model.auxiliary_head.num_classes = len(classes)


def demo_classification(cfg, data: Path) -> None:
    import backbonezoo

    model_name = cfg.model.model_name
    family = backbonezoo.family_of(model_name)
    # small images, but at least what the family accepts (A2Mamba needs 193 px, BiFormer multiples of 112)
    size = max(64, -(-family.min_size // family.size_divisor) * family.size_divisor)
    root = f'{data}/imagenet'
    cfg.model.num_classes = 6
    if cfg.model.get('data_preprocessor', {}).get('mixup'):
        cfg.model.data_preprocessor.mixup.num_classes = 6
    train = [dict(type='LoadImageRGB'), dict(type='AlbuClsTrain', img_size=size)]
    test = [dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name, img_size=size)]
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.update(data_root=root, pipeline=train)
    cfg.val_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.val_dataloader.dataset.update(data_root=root, pipeline=test, indices=4)
    cfg.test_dataloader = cfg.val_dataloader


@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_config_parses_with_the_zoo_imports(path):
    cfg = load(path)
    task = path.relative_to(REPO / 'configs').parts[0]
    if task != 'classification':
        assert 'backbonezoo.mm' in cfg.custom_imports['imports'], 'dense configs must import backbonezoo.mm'
        assert cfg.model.backbone.get('type'), 'the backbone type must be set'
    name = backbone_model_name(cfg)
    assert name is not None, f'{config_id(path)}: backbone does not resolve to a zoo / timm model'
    import timm

    import backbonezoo  # noqa: F401

    assert timm.is_model(name), f'{config_id(path)}: {name!r} is not a registered timm model'


@pytest.mark.parametrize(
    'path',
    [pytest.param(p, marks=pytest.mark.heavy if p in TRAINED else pytest.mark.slow) for p in CONFIGS],
    ids=config_id,
)
def test_config_trains_two_iterations_and_validates(path, demo_data, tmp_path):
    from mmengine.runner import Runner

    import backbonezoo.mm  # noqa: F401

    task = path.relative_to(REPO / 'configs').parts[0]
    cfg = copy.deepcopy(load(path))
    drop_pretrained(cfg)
    {'classification': demo_classification, 'detection': demo_detection, 'segmentation': demo_segmentation}[task](
        cfg, demo_data
    )
    short_schedule(cfg, tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    metrics = runner.val_loop.run()
    assert metrics, f'{config_id(path)}: the validation pass reported no metric'


# --------------------------------------------------------------------------------------------- batch and lr scaling
DENSE = [p for p in CONFIGS if p.relative_to(REPO / 'configs').parts[0] != 'classification']
BATCH_LINE = re.compile(r'^# Batch: (\d+) in total = (\d+) GPUs x (\d+) images', re.MULTILINE)


def stated_batch(path: Path) -> tuple[int, int, int]:
    """(total, GPUs, images per GPU) as the config's '# Batch: ...' line states them."""
    found = BATCH_LINE.findall(path.read_text())
    assert len(found) == 1, f'{config_id(path)}: expected one "# Batch: N in total = G GPUs x B images" line'
    return tuple(int(v) for v in found[0])


@pytest.mark.parametrize('path', DENSE, ids=config_id)
def test_dense_config_states_its_batch_per_gpu_and_the_lr_base(path):
    total, gpus, per_gpu = stated_batch(path)
    cfg = load(path)
    assert gpus * per_gpu == total, f'{config_id(path)}: {gpus} x {per_gpu} != {total}'
    assert cfg.train_dataloader.batch_size == per_gpu, 'train_dataloader.batch_size must be the per-GPU batch'
    # the papers' batch is the base the config's lr was tuned for; scaling is opt-in (tools/train.py --auto-scale-lr)
    assert dict(cfg.auto_scale_lr) == dict(enable=False, base_batch_size=total)


@pytest.mark.parametrize('path', DENSE, ids=config_id)
def test_auto_scale_lr_scales_the_configs_lr_by_actual_over_base(path, tmp_path):
    """What ``tools/train.py CONFIG --auto-scale-lr`` does to the optimizer mmengine builds from the config: on the
    stated number of GPUs nothing changes, on other counts every parameter group's lr is multiplied by
    GPUs x per-GPU batch / base."""
    import types

    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    sys.path.insert(0, str(REPO / 'tools'))
    import train

    total, gpus, per_gpu = stated_batch(path)
    cfg = train.build_cfg(train.parse_args([str(path), '--auto-scale-lr', '--work-dir', str(tmp_path)]))
    assert cfg.auto_scale_lr.enable is True and cfg.auto_scale_lr.base_batch_size == total
    init_default_scope(cfg.default_scope)
    lr = cfg.optim_wrapper.optimizer.lr
    toy = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    for world_size in (gpus, 1, 2 * gpus):
        wrapper = build_optim_wrapper(toy, copy.deepcopy(cfg.optim_wrapper))
        before = [group['lr'] for group in wrapper.optimizer.param_groups]
        assert before[0] == pytest.approx(lr)
        runner = types.SimpleNamespace(
            _train_dataloader=cfg.train_dataloader, world_size=world_size, param_schedulers=None, logger=MagicMock()
        )
        Runner.scale_lr(runner, wrapper, cfg.auto_scale_lr)
        after = [group['lr'] for group in wrapper.optimizer.param_groups]
        expected = [value * world_size * per_gpu / total for value in before]
        assert after == pytest.approx(expected), f'{world_size} GPUs x {per_gpu}: base {total}'
