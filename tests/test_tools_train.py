"""tools/train.py on the demo data: RetinaNet and UPerNet configs (2 iterations + validation), exact resume,
2-process DDP on CPU (gloo, torchrun) matching a single process on the same global batch."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

pytestmark = pytest.mark.mm
REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / 'configs' / 'demo'


def _tool(name: str):
    sys.path.insert(0, str(REPO / 'tools'))
    spec = importlib.util.spec_from_file_location(f'bz_tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory) -> Path:
    return _tool('make_demo_data').make_demo_data(tmp_path_factory.mktemp('demo') / 'data')


@pytest.fixture
def demo_env(demo_data, monkeypatch) -> Path:
    monkeypatch.setenv('BACKBONEZOO_DEMO_DATA', str(demo_data))
    return demo_data


def _val_scalars(runner) -> dict:
    return {k: v.current() for k, v in runner.message_hub.log_scalars.items() if k.startswith('val/')}


@pytest.mark.heavy
@pytest.mark.parametrize(
    'config, metric',
    [('efficientvit_m0_retinanet_demo.py', 'val/coco/bbox_mAP'), ('shvit_s1_upernet_demo.py', 'val/mIoU')],
)
def test_dense_demo_config_trains_and_validates(demo_env, tmp_path, config, metric):
    options = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2']
    runner = _tool('train').main([str(DEMO / config), '--work-dir', str(tmp_path), '--cfg-options', *options])
    assert runner.iter == 2
    scalars = _val_scalars(runner)
    assert metric in scalars, f'no {metric} among {sorted(scalars)}'
    assert (tmp_path / 'iter_2.pth').is_file()


def _deterministic_cls_config(tmp_path: Path, model: str, optimizer: str, max_iters: int, batch_size: int) -> Path:
    """The demo classification config with deterministic data (eval pipeline, no shuffle) and an iteration loop."""
    config = tmp_path / f'cls_{model}_{batch_size}.py'
    config.write_text(
        f"""_base_ = ['{DEMO / 'efficientvit_m0_cls_demo.py'}']
model = dict(model_name='{model}', model_kwargs=dict(_delete_=True, img_size=64), label_smoothing=0.0)
deterministic = [dict(type='LoadImageRGB'), dict(type='AlbuClsEval', img_size=64, crop_pct=1.0)]
train_dataloader = dict(batch_size={batch_size}, sampler=dict(shuffle=False), dataset=dict(pipeline=deterministic))
optim_wrapper = dict(optimizer={optimizer})
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end={max_iters})]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={max_iters}, val_interval=1000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2, save_best=None), logger=dict(interval=1))
log_processor = dict(by_epoch=False)
"""
    )
    return config


def _weights(path: Path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


@pytest.mark.heavy
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(demo_env, tmp_path):
    config = _deterministic_cls_config(tmp_path, 'efficientvit_m0', 'dict(lr=1e-3)', max_iters=4, batch_size=30)
    train = _tool('train').main
    train([str(config), '--work-dir', str(tmp_path / 'full')])
    # "interrupted" after 2 iterations (the schedule is fixed in the config, so stopping early changes nothing else)
    train([str(config), '--work-dir', str(tmp_path / 'parts'), '--cfg-options', 'train_cfg.max_iters=2'])
    runner = train([str(config), '--work-dir', str(tmp_path / 'parts'), '--resume'])
    assert runner.iter == 4
    full, resumed = _weights(tmp_path / 'full' / 'iter_4.pth'), _weights(tmp_path / 'parts' / 'iter_4.pth')
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=0, msg=key)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.heavy
def test_ddp_two_cpu_processes_match_one_process(demo_env, tmp_path):
    """One SGD step (no momentum, no decay) on a LayerNorm model: equal weights after it mean equal gradients."""
    sgd = "dict(_delete_=True, type='SGD', lr=0.5, momentum=0.0, weight_decay=0.0)"
    single = _deterministic_cls_config(tmp_path, 'test_vit', sgd, max_iters=2, batch_size=16)
    per_rank = _deterministic_cls_config(tmp_path, 'test_vit', sgd, max_iters=2, batch_size=8)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--master-port', str(_free_port()),
        str(REPO / 'tools' / 'train.py'), str(per_rank), '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'ddp'),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'CPUDistributedDataParallel' in (tmp_path / 'ddp' / per_rank.name).read_text()
    _tool('train').main([str(single), '--work-dir', str(tmp_path / 'single')])
    ddp, one = _weights(tmp_path / 'ddp' / 'iter_2.pth'), _weights(tmp_path / 'single' / 'iter_2.pth')
    initial = _initial_weights(single)
    assert ddp.keys() == one.keys()
    moved = 0
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-4, atol=1e-6, msg=key)
        moved += int(not torch.equal(one[key], initial[key]))
    assert moved > len(one) // 2, 'the step must change the weights for the comparison to mean anything'


def _initial_weights(config: Path) -> dict:
    """The model's weights as the Runner initialises them (same seed), before any step."""
    from mmengine.config import Config
    from mmengine.registry import MODELS
    from mmengine.runner import set_random_seed

    cfg = Config.fromfile(str(config))
    set_random_seed(cfg.randomness['seed'])
    return {f'{k}': v for k, v in MODELS.build(cfg.model).state_dict().items()}
