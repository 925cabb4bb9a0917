#!/usr/bin/env python
"""``make demo``: generate the demo data, train a small zoo classifier, evaluate it, run RetinaNet and UPerNet.

Steps (each prints what it does; everything goes under ``--work-dir``, default ``work_dirs/demo``):

1. ``tools/make_demo_data.py`` into ``<work-dir>/data`` (skipped when it exists).
2. ``tools/train.py configs/demo/efficientvit_m0_cls_demo.py``: EfficientViT-M0 from scratch on the 6-class
   ImageNet-folder data with timm's training transform (a few minutes on 2 CPU cores).
3. ``tools/eval_imagenet.py`` on the last checkpoint (val split), with the evaluation protocol mmengine's validation
   uses (64 px, crop_pct 1.0): the same top-1 the training log reports for that checkpoint.
4. ``tools/train.py`` on the RetinaNet and UPerNet demo configs for a few iterations, with a validation pass
   (CocoMetric / IoUMetric).
5. A summary: accuracy, where the logs and checkpoints went.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLS_CONFIG = 'configs/demo/efficientvit_m0_cls_demo.py'
DENSE_CONFIGS = {
    'RetinaNet (COCO-style demo)': 'configs/demo/efficientvit_m0_retinanet_demo.py',
    'UPerNet (ADE-style demo)': 'configs/demo/shvit_s1_upernet_demo.py',
}


def run(step: str, cmd: list[str], env: dict) -> float:
    print(f'\n==> [demo] {step}\n    $ {" ".join(cmd)}', flush=True)
    start = time.time()
    result = subprocess.run(cmd, cwd=REPO, env=env)
    if result.returncode:
        sys.exit(f'!! [demo] failed during: {step} (exit code {result.returncode})')
    return time.time() - start


def last_checkpoint(work_dir: Path) -> Path:
    pointer = work_dir / 'last_checkpoint'
    if not pointer.is_file():
        sys.exit(f'!! [demo] no checkpoint found in {work_dir}')
    return Path(pointer.read_text().strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo', help='where data, logs and checkpoints go')
    parser.add_argument('--epochs', type=int, help="classification epochs (default: the demo config's)")
    parser.add_argument('--dense-iters', type=int, default=20, help='training iterations of each dense config')
    parser.add_argument('--skip-dense', action='store_true', help='only the classification part')
    args = parser.parse_args(argv)

    work_dir = (REPO / args.work_dir).resolve()
    data_dir = work_dir / 'data'
    env = dict(
        os.environ,
        BACKBONEZOO_DEMO_DATA=str(data_dir),
        PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
    )
    python = sys.executable
    timings = {}

    if not (data_dir / 'imagenet' / 'train').is_dir():
        timings['data'] = run('generate the demo data', [python, 'tools/make_demo_data.py', str(data_dir)], env)
    else:
        print(f'==> [demo] demo data found in {data_dir}')

    cls_dir = work_dir / 'cls'
    train_cmd = [python, 'tools/train.py', CLS_CONFIG, '--work-dir', str(cls_dir)]
    if args.epochs:
        train_cmd += ['--cfg-options', f'train_cfg.max_epochs={args.epochs}', f'train_cfg.val_interval={args.epochs}']
    timings['classification training'] = run('train EfficientViT-M0 on the demo ImageNet data', train_cmd, env)
    checkpoint = last_checkpoint(cls_dir)

    result_file = cls_dir / 'eval_imagenet.json'
    eval_cmd = [
        python, 'tools/eval_imagenet.py', '--model', 'efficientvit_m0', '--checkpoint', str(checkpoint),
        '--trust-checkpoint', '--data', str(data_dir / 'imagenet'), '--split', 'val', '--input-size', '64',
        '--crop-pct', '1.0', '--batch-size', '30', '--workers', '0', '--out', str(result_file),
    ]  # fmt: skip
    timings['evaluation'] = run('evaluate the checkpoint with tools/eval_imagenet.py', eval_cmd, env)
    accuracy = json.loads(result_file.read_text())

    dense_dirs = {}
    if not args.skip_dense:
        for title, config in DENSE_CONFIGS.items():
            out = work_dir / Path(config).stem
            cmd = [
                python, 'tools/train.py', config, '--work-dir', str(out), '--cfg-options',
                f'train_cfg.max_iters={args.dense_iters}', f'train_cfg.val_interval={args.dense_iters}',
                f'default_hooks.checkpoint.interval={args.dense_iters}',
            ]  # fmt: skip
            timings[title] = run(f'{title}: {args.dense_iters} iterations + validation', cmd, env)
            dense_dirs[title] = out

    chance = 100.0 / 6
    print('\n==> [demo] summary')
    print(f'    data:            {data_dir}')
    print(
        f'    classification:  EfficientViT-M0, val top-1 {accuracy["top1"]:.1f} % (chance {chance:.1f} %), '
        f'top-5 {accuracy["top5"]:.1f} %, on {accuracy["images"]} images'
    )
    print(f'    checkpoint:      {checkpoint}')
    print(f'    logs:            {cls_dir}')
    print(f'    eval result:     {result_file}')
    for title, out in dense_dirs.items():
        print(f'    {title}: logs and checkpoint in {out}')
    print('    time:            ' + ', '.join(f'{k} {v:.0f} s' for k, v in timings.items()))


if __name__ == '__main__':
    main()
