#!/usr/bin/env python
"""Evaluate a zoo / timm classifier on an ImageNet-style folder: top-1 / top-5, images/s, a JSON result.

Examples::

    python tools/eval_imagenet.py --model biformer_tiny --checkpoint biformer_tiny_best.pth --data data/imagenet
    python tools/eval_imagenet.py --model efficientvit_m0 --checkpoint work_dirs/demo/cls/epoch_30.pth \\
        --data work_dirs/demo/data/imagenet --num-classes 6 --img-size 64

The data config (resolution, crop_pct, interpolation, mean / std) comes from the model's ``pretrained_cfg``
unless overridden; images are prepared with timm's eval transform (PIL resize + centre crop, as the papers
evaluate). ``--split`` names a folder with one sub-folder per class, or a flat folder when ``--labels`` gives a
``file label`` list. ``--checkpoint`` accepts official, timm and mmengine files (converted with
``backbonezoo.convert_checkpoint``; read with ``weights_only=True``, except mmengine Runner checkpoints, which
need ``--trust-checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, help='timm / zoo model name')
    parser.add_argument('--checkpoint', help="weights to evaluate (default: the model's random init)")
    parser.add_argument('--trust-checkpoint', action='store_true', help='allow full unpickling (own Runner files)')
    parser.add_argument('--data', required=True, help='dataset root (holds the split folder)')
    parser.add_argument('--split', default='val', help='folder under --data (default: val)')
    parser.add_argument('--labels', help='label file for a flat split folder (lines: file label), relative to --data')
    parser.add_argument('--classes', help='class list file (one name per line), relative to --data')
    parser.add_argument('--num-classes', type=int, help="classifier size (default: the checkpoint's / model's)")
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--amp', action='store_true', help='autocast (bf16 on CPU, fp16 on GPU)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--img-size', type=int, help="input resolution (default: the pretrained_cfg's)")
    parser.add_argument('--crop-pct', type=float, help="centre-crop fraction (default: the pretrained_cfg's)")
    parser.add_argument('--interpolation', help="resize interpolation (default: the pretrained_cfg's)")
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', help='write the result to this JSON file')
    return parser.parse_args(argv)


def _checkpoint_state(path: str, trust: bool) -> dict:
    from backbonezoo.checkpoint import load_state_dict_file

    if not trust:
        return load_state_dict_file(path)
    return torch.load(path, map_location='cpu', weights_only=False)


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    import timm

    import backbonezoo
    from backbonezoo.checkpoint import strict_match, unwrap_state_dict

    if args.model not in timm.list_models():
        raise ValueError(f'--model {args.model!r}: not a timm / zoo model (see backbonezoo.list_models())')

    def create(num_classes: int) -> torch.nn.Module:
        if args.img_size:  # models with resolution-dependent layers (position tables) take img_size, others ignore it
            try:
                return timm.create_model(args.model, pretrained=False, num_classes=num_classes, img_size=args.img_size)
            except TypeError:
                pass
        return timm.create_model(args.model, pretrained=False, num_classes=num_classes)

    if args.checkpoint is None:
        return create(args.num_classes or 1000).eval()
    checkpoint = _checkpoint_state(args.checkpoint, args.trust_checkpoint)
    state_dict = unwrap_state_dict(checkpoint)
    if all(k.startswith('model.') for k in state_dict):  # saved from backbonezoo.mm's ZooClassifier
        state_dict = {k[len('model.') :]: v for k, v in state_dict.items()}
    num_classes = args.num_classes
    if num_classes is None:  # infer the classifier size from the file
        probe = timm.create_model(args.model, pretrained=False)
        head = probe.pretrained_cfg.get('classifier', 'head')
        head = head[0] if isinstance(head, (list, tuple)) else head
        bias = state_dict.get(f'{head}.bias')
        num_classes = int(bias.shape[0]) if bias is not None else 1000
    model = create(num_classes)
    try:
        state_dict = backbonezoo.convert_checkpoint(state_dict, args.model, model=model)
    except KeyError:  # not a zoo model: timm's layout, checked strictly
        strict_match(args.model, model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def build_loader(args: argparse.Namespace, model: torch.nn.Module):
    from timm.data import create_transform, resolve_data_config

    sys.path.insert(0, str(REPO))
    from backbonezoo.mm.classification import ImageFolderDataset  # noqa: E402

    overrides = {k: v for k, v in dict(crop_pct=args.crop_pct, interpolation=args.interpolation).items() if v}
    if args.img_size:
        overrides['input_size'] = (3, args.img_size, args.img_size)
    data_cfg = resolve_data_config(overrides, model=model)
    transform = create_transform(**data_cfg, is_training=False)

    def pipeline(results: dict) -> dict:
        from PIL import Image

        with Image.open(results['img_path']) as img:
            return dict(inputs=transform(img.convert('RGB')), gt_label=results['gt_label'])

    dataset = ImageFolderDataset(
        data_root=args.data,
        data_prefix=args.split,
        ann_file=args.labels or '',
        classes=args.classes,
        pipeline=[pipeline],
        test_mode=True,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, num_workers=args.workers, shuffle=False, pin_memory=args.device != 'cpu'
    )
    return loader, data_cfg


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from backbonezoo.mm.classification import accuracy

    device = torch.device(args.device)
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = torch.bfloat16 if device.type == 'cpu' else torch.float16
    top1 = top5 = seen = 0
    compute_time = 0.0
    for batch in tqdm(loader, desc=f'eval {args.model}', unit='batch'):
        images, labels = batch['inputs'].to(device), batch['gt_label'].to(device)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            logits = model(images)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        compute_time += time.perf_counter() - start
        hits1, hits5 = accuracy(logits.float(), labels, topk=(1, 5))
        top1, top5, seen = top1 + int(hits1), top5 + int(hits5), seen + len(labels)
    if not seen:
        raise ValueError(f'no images found in {args.data}/{args.split}')
    return dict(top1=100.0 * top1 / seen, top5=100.0 * top5 / seen, images=seen, img_per_s=seen / compute_time)


def main(argv: list[str] | None = None) -> dict:
    """Evaluate; returns (and prints, and with --out writes) the result dict."""
    sys.path.insert(0, str(REPO))
    args = parse_args(argv)
    if not Path(args.data, args.split).is_dir():
        raise FileNotFoundError(
            f'--data {args.data!r} --split {args.split!r}: folder {Path(args.data, args.split)} not found'
        )
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f'--checkpoint {args.checkpoint!r}: file not found')
    model = build_model(args)
    loader, data_cfg = build_loader(args, model)
    metrics = evaluate(model, loader, args)
    result = dict(
        model=args.model,
        checkpoint=args.checkpoint,
        data=str(Path(args.data, args.split)),
        **metrics,
        batch_size=args.batch_size,
        amp=args.amp,
        channels_last=args.channels_last,
        device=args.device,
        data_config={k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()},
    )
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == '__main__':
    main()
