"""Exact resume with random augmentation (issue 20, fault 6).

A real ``tools/train.py`` run of the demo classification config with the training pipeline at its randomest
(timm's RandAugment + random erasing, shuffling, mixup / cutmix, a per-iteration cosine LR, two persistent data-loader
workers, validation every epoch) is killed with SIGKILL once its first epoch checkpoint is written, then resumed with
``--resume``; its final weights must equal, bit for bit, those of the same run left uninterrupted, and so must the
training losses logged after the resume point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmengine')

pytestmark = pytest.mark.mm
REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / 'tools'))
    from make_demo_data import make_demo_data

    return make_demo_data(tmp_path_factory.mktemp('demo') / 'data')


def _config(tmp_path: Path, data: Path) -> Path:
    config = tmp_path / 'resume_cfg.py'
    config.write_text(
        f"""_base_ = ['{REPO / 'configs' / 'demo' / 'efficientvit_m0_cls_demo.py'}']
data_root = '{data / 'imagenet'}'
max_epochs = {EPOCHS}
model = dict(mixup=dict(_delete_=True, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1), label_smoothing=0.1)
train_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmClsTrain', input_size=64, auto_augment='rand-m9-mstd0.5-inc1', re_prob=0.5, re_mode='pixel'),
]
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True, drop_last=True,
    dataset=dict(data_root=data_root, pipeline=train_pipeline, indices=24),
)
val_dataloader = dict(batch_size=6, num_workers=1, dataset=dict(data_root=data_root, indices=12))
test_dataloader = val_dataloader
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=5, save_best=None))
"""
    )
    return config


def _train(config: Path, work_dir: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    command = [sys.executable, str(REPO / 'tools' / 'train.py'), str(config), '--work-dir', str(work_dir), *extra]
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> None:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-4000:]


def _weights(path: Path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


def _losses(work_dir: Path) -> dict[int, float]:
    """Logged training loss per iteration (1-based), from the run's scalars.json files."""
    losses = {}
    for path in sorted(work_dir.rglob('scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record and 'iter' in record and 'lr' in record:
                losses[int(record['iter'])] = record['loss']
    return losses


@pytest.mark.heavy
def test_killed_and_resumed_run_equals_the_uninterrupted_one(demo_data, tmp_path):
    config = _config(tmp_path, demo_data)
    full, parts = tmp_path / 'full', tmp_path / 'parts'
    uninterrupted = _train(config, full)
    interrupted = _train(config, parts)
    try:
        _interrupt_resume_and_compare(config, full, parts, uninterrupted, interrupted)
    finally:
        for process in (uninterrupted, interrupted):
            if process.poll() is None:
                process.kill()
                process.communicate()


def _interrupt_resume_and_compare(config, full, parts, uninterrupted, interrupted) -> None:
    first = parts / 'epoch_1.pth'
    deadline = time.time() + 600
    while interrupted.poll() is None and time.time() < deadline:
        pointer = parts / 'last_checkpoint'
        if pointer.is_file() and pointer.read_text().strip().endswith('epoch_1.pth'):
            break
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGKILL)
    out, _ = interrupted.communicate()
    assert first.is_file(), out[-4000:]
    # resume from the first checkpoint even if the kill landed later: the run's own files, as a crash leaves them
    for later in range(2, EPOCHS + 1):
        (parts / f'epoch_{later}.pth').unlink(missing_ok=True)
    (parts / 'last_checkpoint').write_text(str(first))
    _finish(_train(config, parts, '--resume'))
    _finish(uninterrupted)

    final = f'epoch_{EPOCHS}.pth'
    expected, resumed = _weights(full / final), _weights(parts / final)
    assert expected.keys() == resumed.keys()
    different = [k for k in expected if not torch.equal(expected[k], resumed[k])]
    assert not different, f'{len(different)} tensors differ after the resume, e.g. {different[:3]}'
    initial = _weights(first)
    assert any(not torch.equal(initial[k], expected[k]) for k in expected), 'training after epoch 1 changed nothing'

    full_losses, resumed_losses = _losses(full), _losses(parts)
    after = sorted(i for i in full_losses if i > 3)  # 24 images / batch 8: epoch 1 is iterations 1-3
    assert after and all(i in resumed_losses for i in after), (sorted(full_losses), sorted(resumed_losses))
    assert [resumed_losses[i] for i in after] == [full_losses[i] for i in after]
