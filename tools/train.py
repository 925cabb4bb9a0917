#!/usr/bin/env python
"""Train with an mmengine Runner: classification, mmdet and mmseg configs alike (the config's scope decides).

Examples::

    python tools/train.py configs/demo/efficientvit_m0_cls_demo.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --resume           # continue from the latest checkpoint
    torchrun --nproc-per-node 2 tools/train.py CONFIG --launcher pytorch      # DDP (gloo on CPU, nccl on GPU)

Without a GPU, ``--launcher pytorch`` initialises a gloo process group before the Runner (mmengine's launcher
would call ``torch.cuda.set_device``) and wraps the model with ``CPUDistributedDataParallel``; ``--amp`` uses bf16
autocast on CPU and mmengine's ``AmpOptimWrapper`` on GPU.

Checkpoints (see ``backbonezoo.mm.runtime``): the run's own checkpoints are fully unpickled for ``--resume``: the
files this run saves, and the one a previous run of the same work dir listed in ``last_checkpoint`` (an
``epoch_N.pth`` / ``iter_N.pth`` / ``best_*.pth`` directly in the work dir). Nothing else is, whatever folder it
lies in: a Runner checkpoint given with ``--resume FILE`` or ``load_from`` outside that rule needs
``--trust-checkpoint FILE``. ``load_from`` goes through the zoo's converters (official, timm, OpenMMLab layouts,
safetensors) and loads strictly; ``--load-partial`` allows a deliberate partial load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        help='resume from CHECKPOINT, or from the latest checkpoint in the work dir when no path is given',
    )
    parser.add_argument(
        '--trust-checkpoint',
        action='append',
        default=[],
        metavar='FILE',
        help='allow full unpickling (can run code) of this one checkpoint file; repeat for more files',
    )
    parser.add_argument(
        '--load-partial',
        action='store_true',
        help='let load_from fill only the weights that fit (default: a checkpoint that does not fit is an error)',
    )
    parser.add_argument('--amp', action='store_true', help='mixed precision (bf16 autocast on CPU, fp16 on GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help="scale the lr by (processes x per-process batch) / the config's auto_scale_lr.base_batch_size",
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value (e.g. train_cfg.max_epochs=2 train_dataloader.batch_size=8)',
    )
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none', help='job launcher (pytorch = torchrun)'
    )
    parser.add_argument('--seed', type=int, default=None, help='random seed (overrides randomness.seed)')
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ and args.launcher == 'pytorch':
        parser.error('--launcher pytorch expects to be started by torchrun (LOCAL_RANK is not set)')
    return args


def setup_distributed(cfg, launcher: str) -> None:
    """Start the process group ourselves on CPU (gloo) and pick the CPU DDP wrapper; GPUs keep mmengine's path."""
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist

    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', init_method='env://')
    wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper_cfg['type'] = 'CPUDistributedDataParallel'
    cfg.model_wrapper_cfg = wrapper_cfg


def setup_amp(cfg) -> None:
    optim_wrapper = cfg.optim_wrapper
    if torch.cuda.is_available():
        optim_wrapper.type = 'AmpOptimWrapper'
        optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:
        optim_wrapper.type = 'CPUAmpOptimWrapper'
        optim_wrapper.setdefault('dtype', 'bfloat16')


def build_cfg(args: argparse.Namespace):
    from mmengine.config import Config

    if not os.path.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config!r}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('work_dirs', Path(args.config).stem)
    if args.seed is not None:
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=args.seed)
    if args.amp:
        setup_amp(cfg)
    if args.auto_scale_lr:
        if not (cfg.get('auto_scale_lr') or {}).get('base_batch_size'):
            raise ValueError(f'--auto-scale-lr: {args.config} sets no auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        if not os.path.isfile(args.resume):
            raise FileNotFoundError(f'--resume {args.resume!r}: checkpoint file not found')
        cfg.resume, cfg.load_from = True, args.resume
    if args.load_partial:
        cfg.load_partial = True
    return cfg


def build_runner(cfg, trusted_files: list[str] = ()):
    """The config's Runner with the zoo's trust boundary and strict loading (``backbonezoo.mm.runtime``)."""
    from backbonezoo.checkpoint import trust_checkpoint
    from backbonezoo.mm.runtime import build_runner as build_zoo_runner

    for path in trusted_files:  # named one by one on the command line; never a folder
        trust_checkpoint(path)
    return build_zoo_runner(cfg)


def main(argv: list[str] | None = None):
    """Train; returns the Runner (handy in tests)."""
    sys.path.insert(0, str(REPO))  # `backbonezoo` importable from a plain checkout too
    args = parse_args(argv)
    cfg = build_cfg(args)
    setup_distributed(cfg, args.launcher)
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    runner = build_runner(cfg, args.trust_checkpoint)
    runner.train()
    return runner


if __name__ == '__main__':
    main()
