"""tools/make_demo_data.py: deterministic, in the three layouts the configs and tools read."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _load_tool():
    spec = importlib.util.spec_from_file_location('make_demo_data', REPO / 'tools' / 'make_demo_data.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory) -> Path:
    return tool.make_demo_data(tmp_path_factory.mktemp('demo') / 'data')


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob('*') if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(demo_data, tmp_path):
    again = tool.make_demo_data(tmp_path / 'again', seed=0)
    assert _digest(again) == _digest(demo_data)
    other = tool.make_demo_data(tmp_path / 'other', seed=1)
    assert _digest(other) != _digest(demo_data)


def test_imagenet_layout(demo_data):
    root = demo_data / 'imagenet'
    wnids = (root / 'meta' / 'classes.txt').read_text().split()
    assert wnids == list(tool.CLASS_WNIDS)
    for split, per_class in tool.IMAGENET_SPLITS.items():
        assert sorted(p.name for p in (root / split).iterdir()) == wnids
        for wnid in wnids:
            files = sorted((root / split / wnid).glob('*.JPEG'))
            assert len(files) == per_class
    with Image.open(files[0]) as img:
        assert img.mode == 'RGB' and 64 <= min(img.size) and max(img.size) <= 96
    lines = (root / 'meta' / 'val.txt').read_text().splitlines()
    assert len(lines) == len(wnids) * tool.IMAGENET_SPLITS['val']
    name, label = lines[0].split()
    assert (root / 'val_flat' / name).is_file() and 0 <= int(label) < len(wnids)


def test_coco_layout(demo_data):
    root = demo_data / 'coco'
    for split, count in tool.COCO_SPLITS.items():
        data = json.loads((root / 'annotations' / f'instances_{split}.json').read_text())
        assert [c['name'] for c in data['categories']] == list(tool.COCO_CATEGORIES)
        assert len(data['images']) == count
        sizes = {img['id']: (img['width'], img['height']) for img in data['images']}
        for img in data['images']:
            with Image.open(root / split / img['file_name']) as pil:
                assert pil.size == (img['width'], img['height'])
        assert data['annotations'], 'every split needs objects'
        for ann in data['annotations']:
            x, y, w, h = ann['bbox']
            width, height = sizes[ann['image_id']]
            assert 0 <= x and 0 <= y and x + w <= width + 1e-6 and y + h <= height + 1e-6 and w > 4 and h > 4
            polygon = np.array(ann['segmentation'][0]).reshape(-1, 2)
            assert len(polygon) >= 3 and 0 < ann['area'] <= w * h + 1e-6


def test_ade_layout(demo_data):
    root = demo_data / 'ade'
    for split, count in tool.ADE_SPLITS.items():
        images = sorted((root / 'images' / split).glob('*.jpg'))
        labels = sorted((root / 'annotations' / split).glob('*.png'))
        assert len(images) == len(labels) == count
        assert [p.stem for p in images] == [p.stem for p in labels]
    label = np.array(Image.open(labels[0]))
    assert label.dtype == np.uint8 and label.ndim == 2
    assert set(np.unique(label)) <= set(range(len(tool.ADE_CLASSES) + 1))
    assert (label[0] == 0).all(), 'the border is "other" (0), ignored under reduce_zero_label'


def test_demo_classification_config_uses_the_timm_pipeline_and_the_shared_eval_protocol(demo_data, monkeypatch):
    """The demo trains with timm's transform and evaluates with TimmClsEval; one sample of each passes through."""
    pytest.importorskip('mmengine')
    from mmengine.config import Config
    from mmengine.registry import DATASETS

    import backbonezoo.mm  # noqa: F401

    monkeypatch.setenv('BACKBONEZOO_DEMO_DATA', str(demo_data))
    cfg = Config.fromfile(str(REPO / 'configs' / 'demo' / 'efficientvit_m0_cls_demo.py'))
    assert [t.type for t in cfg.train_dataloader.dataset.pipeline] == ['LoadImagePIL', 'TimmClsTrain']
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert [t.type for t in loader.dataset.pipeline] == ['LoadImagePIL', 'TimmClsEval']
    assert cfg.train_dataloader.sampler.type in ('SeededSampler', 'RepeatAugSampler'), 'exact resume needs it'
    assert cfg.default_hooks.rng_state.type == 'RNGStateHook'
    train = DATASETS.build(cfg.train_dataloader.dataset)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(train) == 6 * tool.IMAGENET_SPLITS['train'] and len(val) == 6 * tool.IMAGENET_SPLITS['val']
    assert train[0]['inputs'].shape == val[0]['inputs'].shape == (3, 64, 64)
