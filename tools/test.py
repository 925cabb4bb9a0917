#!/usr/bin/env python
"""Evaluate a checkpoint with an mmengine Runner's test loop (classification, mmdet or mmseg config).

Example::

    python tools/test.py configs/demo/efficientvit_m0_cls_demo.py work_dirs/demo/cls/epoch_8.pth --trust-checkpoint

Plain weight files (and safetensors) are read with ``weights_only=True``. A Runner checkpoint (optimizer state,
message hub) needs full unpickling, which can run code: it is done only for the file a training run of the same
work dir listed in ``last_checkpoint``, or when ``--trust-checkpoint`` vouches for CHECKPOINT (this one file).
The weights go through the zoo's converters (official, timm, OpenMMLab layouts, safetensors) and load strictly:
a checkpoint that does not fit the model is an error naming the keys, never an evaluation of random weights
(``--load-partial`` allows a deliberate partial load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the logs go (default: work_dirs/<config name>)')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help="CHECKPOINT is your own run's: allow full unpickling (can run code) of this one file",
    )
    parser.add_argument(
        '--load-partial', action='store_true', help='load only the weights that fit (default: misfit is an error)'
    )
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none', help='job launcher')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the test loop; returns the metrics."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mmengine.config import Config
    from train import build_runner, setup_distributed

    args = parse_args(argv)
    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{what} file not found: {path!r}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or os.path.join('work_dirs', Path(args.config).stem)
    cfg.load_from, cfg.resume = args.checkpoint, False
    if args.load_partial:
        cfg.load_partial = True
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg, [args.checkpoint] if args.trust_checkpoint else [])
    metrics = runner.test()
    if args.out:
        Path(args.out).write_text(json.dumps({k: float(v) for k, v in metrics.items()}, indent=2))
    return metrics


if __name__ == '__main__':
    main()
