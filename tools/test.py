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

**The authors' detection / segmentation checkpoints** evaluate directly: CHECKPOINT may be an official mmdet 2.x /
mmseg 0.x file (backbone in the official dense wrapper's names, neck, heads) for the matching config under
``configs/detection/<family>/`` / ``configs/segmentation/<family>/`` (``backbonezoo.get_family(NAME).dense`` lists
them with the published numbers); it is converted on the fly by the same converter as ``tools/convert_checkpoint.py
--config`` and refused, with the keys named, when it does not fit. The configs carry the official test-time settings
(BiFormer's ``n_win``, ``AlignResize``); ``--tta`` runs the config's ``tta_pipeline`` / ``tta_model`` (multi-scale +
flip, where the official results report them)::

    CONFIG=configs/segmentation/biformer/biformer_s_upernet_512x512_160k_ade20k.py
    python tools/test.py $CONFIG upernet_biformer_s.pth          # mIoU 49.8 published
    python tools/test.py $CONFIG upernet_biformer_s.pth --tta    # ms + flip: 50.8 published
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
    parser.add_argument(
        '--tta', action='store_true', help="test-time augmentation: the config's tta_pipeline and tta_model"
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
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise ValueError(f'--tta: {args.config} defines no tta_model / tta_pipeline')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
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
