"""Mixed precision with one switch (``tools/train.py --amp``) for every config: mmengine's AmpOptimWrapper on GPUs,
bf16 autocast on CPU, the config's optimizer settings kept; the smallest detection and segmentation configs take
optimizer steps under bf16 autocast on CPU. ``--auto-scale-lr`` turns the configs' lr scaling on (its arithmetic:
tests/test_configs.py)."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from test_configs import (  # noqa: F401  (demo_data: the shared demo-data fixture)
    CONFIGS,
    REPO,
    backbone_model_name,
    config_id,
    demo_data,
    demo_detection,
    demo_segmentation,
    drop_pretrained,
    load,
    short_schedule,
)

pytestmark = pytest.mark.mm

sys.path.insert(0, str(REPO / 'tools'))
import train  # noqa: E402


def amp_cfg(path, work_dir, *extra):
    return train.build_cfg(train.parse_args([str(path), '--amp', '--work-dir', str(work_dir), *extra]))


@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_amp_switch_keeps_the_configs_optimizer(path, tmp_path, monkeypatch):
    from mmengine.registry import OPTIM_WRAPPERS

    import backbonezoo.mm  # noqa: F401  (registers CPUAmpOptimWrapper)

    plain = load(path).optim_wrapper
    for cuda, wrapper, extra in ((True, 'AmpOptimWrapper', 'loss_scale'), (False, 'CPUAmpOptimWrapper', 'dtype')):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda cuda=cuda: cuda)
        switched = amp_cfg(path, tmp_path).optim_wrapper
        assert switched.type == wrapper and OPTIM_WRAPPERS.get(wrapper) is not None
        assert extra in switched
        # the optimizer, its parameter-wise settings and gradient clipping are the config's
        for key, value in plain.items():
            if key != 'type':
                assert switched[key] == value, key
        assert set(switched) - set(plain) <= {'type', extra}


def test_auto_scale_lr_flag_enables_the_configs_scaling(tmp_path):
    path = next(p for p in CONFIGS if 'detection' in p.parts)
    assert load(path).auto_scale_lr.enable is False
    cfg = train.build_cfg(train.parse_args([str(path), '--auto-scale-lr', '--work-dir', str(tmp_path)]))
    assert (
        cfg.auto_scale_lr.enable is True
        and cfg.auto_scale_lr.base_batch_size == load(path).auto_scale_lr.base_batch_size
    )
    bare = tmp_path / 'bare.py'
    bare.write_text("optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))\n")
    with pytest.raises(ValueError, match='auto_scale_lr.base_batch_size'):
        train.build_cfg(train.parse_args([str(bare), '--auto-scale-lr', '--work-dir', str(tmp_path)]))


def smallest(task: str):
    """The task's config with the fewest backbone parameters (RetinaNet before Mask R-CNN on a tie)."""
    import backbonezoo

    def size(path):
        try:
            params = backbonezoo.variant_info(backbone_model_name(load(path))).params or 0
        except (KeyError, TypeError):
            params = 10**12
        return params, 'retinanet' not in path.name, 'fpn_' in path.name, path.name

    return min((p for p in CONFIGS if p.relative_to(REPO / 'configs').parts[0] == task), key=size)


@pytest.mark.parametrize('task', ['detection', 'segmentation'])
def test_amp_config_steps_under_bf16_autocast_on_cpu(task, demo_data, tmp_path, monkeypatch):  # noqa: F811
    from mmengine.runner import Runner

    from backbonezoo.mm import CPUAmpOptimWrapper

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    path = smallest(task)
    cfg = amp_cfg(path, tmp_path)
    drop_pretrained(cfg)
    (demo_detection if task == 'detection' else demo_segmentation)(cfg, demo_data)
    short_schedule(cfg, tmp_path)
    cfg.train_cfg.val_interval = 1000  # training steps only: validation is test_configs.py's
    runner = Runner.from_cfg(cfg)
    backbone = runner.model.backbone
    start = copy.deepcopy({k: v for k, v in backbone.state_dict().items() if v.is_floating_point()})
    seen = []

    def record(module, inputs, outputs):
        if module.training:
            seen.append((torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu')))

    backbone.register_forward_hook(record)
    runner.train()
    assert isinstance(runner.optim_wrapper, CPUAmpOptimWrapper), type(runner.optim_wrapper)
    assert runner.iter == 2 and len(seen) == 2
    assert all(enabled and dtype == torch.bfloat16 for enabled, dtype in seen), seen
    after = backbone.state_dict()
    assert all(torch.isfinite(after[k]).all() for k in start), 'non-finite weights after bf16 steps'
    assert any(not torch.equal(start[k], after[k]) for k in start), 'the optimizer did not step'
    # parameters stay fp32 (autocast casts per op; the master weights are not lowered)
    assert all(p.dtype == torch.float32 for p in backbone.parameters())
