#!/usr/bin/env python
"""Evaluate zoo / timm classifiers on ImageNet-style data: top-1 / top-5, a results table in timm's columns.

Needs only torch, timm and the package (no mmengine / mmcv). Examples::

    python tools/eval_imagenet.py --model biformer_tiny --checkpoint biformer_tiny_best.pth --data data/imagenet
    python tools/eval_imagenet.py --model 'biformer_*' --pretrained --data data/imagenet --results-file sweep.csv
    python tools/eval_imagenet.py --model efficientvit_m0 --checkpoint work_dirs/demo/cls/epoch_40.pth \\
        --trust-checkpoint --data work_dirs/demo/data/imagenet --input-size 64 --crop-pct 1.0

Data: ``--data ROOT --split val`` is an ImageNet folder (one sub-folder per class; timm's ``create_dataset``, so
ImageNet-V2's numbered folders work too); ``--labels FILE`` makes the split a flat folder listed by ``file label``
lines. ``--real-labels real.json`` adds ImageNet-ReaL top-1 / top-5 (timm's ``RealLabelsImagenet``).

Evaluation protocol: :func:`backbonezoo.data.eval_transform` (timm's ``resolve_data_config`` + ``create_transform``
on the model's ``pretrained_cfg``: resolution, ``crop_pct``, interpolation, mean / std), the same transform
mmengine validation (``TimmClsEval``) and ``tools/test.py`` use. ``--input-size`` / ``--crop-pct`` /
``--interpolation`` / ``--crop-mode`` override it.

Checkpoints: ``--checkpoint`` takes official, timm, safetensors and mmengine files, converted with
``backbonezoo.convert_checkpoint`` and loaded strictly; read with ``weights_only=True`` unless
``--trust-checkpoint`` (your own Runner checkpoints; unpickling those needs mmengine installed). ``--pretrained``
uses timm's pretrained weights instead. The model's class count must equal the data's, unless ``--class-map FILE``
(timm's class map: the data's class names in the model's order) or ``--ignore-class-count``.

Output: one line per model on stdout, ``--out FILE.json`` (the last model's result, with details),
``--results-file FILE.csv`` appends one row per model in the columns of timm's ``validate.py`` (model, top1,
top1_err, top5, top5_err, param_count, img_size, crop_pct, interpolation), so a sweep lands in one table.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CSV_COLUMNS = ('model', 'top1', 'top1_err', 'top5', 'top5_err', 'param_count', 'img_size', 'crop_pct', 'interpolation')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, help="timm / zoo model name, or a wildcard ('biformer_*')")
    parser.add_argument('--checkpoint', help='weights to evaluate (one model only)')
    parser.add_argument('--pretrained', action='store_true', help="timm's pretrained weights (hub / cache)")
    parser.add_argument('--trust-checkpoint', action='store_true', help='allow full unpickling (own Runner files)')
    parser.add_argument('--use-ema', action='store_true', help='take the EMA weights of a checkpoint holding both')
    parser.add_argument('--data', required=True, help='dataset root (holds the split folder)')
    parser.add_argument('--split', default='val', help='folder under --data (default: val)')
    parser.add_argument('--labels', help='label file for a flat split folder (lines: file label), relative to --data')
    parser.add_argument('--classes', help='class list file (one name per line) for --labels, relative to --data')
    parser.add_argument('--class-map', default='', help="timm class map file: the data's class names, model order")
    parser.add_argument(
        '--ignore-class-count', action='store_true', help="evaluate although the model's class count differs"
    )
    parser.add_argument('--real-labels', help='ImageNet-ReaL real.json: also report ReaL top-1 / top-5')
    parser.add_argument('--num-classes', type=int, help="classifier size (default: the checkpoint's / model's)")
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--amp', action='store_true', help='autocast (bf16 on CPU, fp16 on GPU)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--deploy', action='store_true', help='backbonezoo.deploy.deploy(model) before evaluating')
    parser.add_argument('--input-size', '--img-size', dest='input_size', type=int, help='input resolution')
    parser.add_argument('--crop-pct', type=float, help="centre-crop fraction (default: the pretrained_cfg's)")
    parser.add_argument('--crop-mode', help="crop mode: center / squash / border (default: the pretrained_cfg's)")
    parser.add_argument('--interpolation', help="resize interpolation (default: the pretrained_cfg's)")
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--out', help="write the (last) model's result to this JSON file")
    parser.add_argument('--results-file', help='append one CSV row per model (timm validate.py columns)')
    args = parser.parse_args(argv)
    if args.checkpoint and args.pretrained:
        parser.error('--checkpoint and --pretrained exclude each other')
    return args


def model_names(pattern: str) -> list[str]:
    import timm

    import backbonezoo  # noqa: F401  (registers the zoo's models)

    if any(c in pattern for c in '*?['):
        names = [n for n in timm.list_models() if fnmatch.fnmatch(n, pattern)]
        if not names:
            raise ValueError(f'--model {pattern!r}: matches no timm / zoo model')
        return names
    if not timm.is_model(pattern):
        raise ValueError(f'--model {pattern!r}: not a timm / zoo model (see backbonezoo.list_models())')
    return [pattern]


def _checkpoint_state(path: str, trust: bool, prefer_ema: bool) -> dict:
    from backbonezoo import checkpoint as ckpt

    if trust and hasattr(ckpt, 'trust_checkpoint'):
        ckpt.trust_checkpoint(path)
    checkpoint = ckpt.load_state_dict_file(path)
    state_dict = ckpt.unwrap_state_dict(checkpoint, prefer_ema=prefer_ema)
    if all(k.startswith('model.') for k in state_dict):  # saved from backbonezoo.mm's ZooClassifier
        state_dict = {k[len('model.') :]: v for k, v in state_dict.items()}
    return state_dict


def _create(name: str, args: argparse.Namespace, **kwargs) -> torch.nn.Module:
    import timm

    if args.input_size:  # models with resolution-dependent layers (position tables) take img_size, others ignore it
        try:
            return timm.create_model(name, img_size=args.input_size, **kwargs)
        except TypeError:
            pass
    return timm.create_model(name, **kwargs)


def build_model(name: str, args: argparse.Namespace) -> torch.nn.Module:
    import timm

    import backbonezoo
    from backbonezoo.checkpoint import strict_match

    if args.checkpoint is None:
        kwargs = dict(pretrained=args.pretrained)
        if args.num_classes:
            kwargs['num_classes'] = args.num_classes
        return _create(name, args, **kwargs).eval()
    state_dict = _checkpoint_state(args.checkpoint, args.trust_checkpoint, args.use_ema)
    num_classes = args.num_classes
    if num_classes is None:  # infer the classifier size from the file
        head = timm.models.get_pretrained_cfg(name).to_dict().get('classifier') or 'head'
        head = head[0] if isinstance(head, (list, tuple)) else head
        bias = state_dict.get(f'{head}.bias')
        num_classes = int(bias.shape[0]) if bias is not None else 1000
    model = _create(name, args, pretrained=False, num_classes=num_classes)
    try:
        state_dict = backbonezoo.convert_checkpoint(state_dict, name, model=model)
    except KeyError:  # not a zoo model: timm's layout, checked strictly
        strict_match(name, model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def deploy(model: torch.nn.Module) -> torch.nn.Module:
    try:
        from backbonezoo.deploy import deploy as deploy_fn
    except ImportError as err:
        raise SystemExit(f'--deploy needs backbonezoo.deploy, which this installation lacks ({err})') from err
    out = deploy_fn(model)
    return (out if isinstance(out, torch.nn.Module) else model).eval()


def build_dataset(args: argparse.Namespace, transform):
    """The evaluation data, items ``(tensor, label)``, and its class count (None when unknown)."""
    from timm.data import create_dataset

    from backbonezoo.data import ImageListDataset

    root = Path(args.data)
    if args.labels:
        classes = str(root / args.classes) if args.classes else None
        dataset = ImageListDataset(root / args.split, root / args.labels, classes=classes, transform=transform)
        if dataset.classes is not None:
            return dataset, len(dataset.classes)
        return dataset, None
    dataset = create_dataset(
        '',
        root=str(root / args.split),
        split=args.split,
        search_split=False,
        class_map=args.class_map,
        is_training=False,
        transform=transform,
    )
    if len(dataset) == 0:
        raise ValueError(f'no images found in {root / args.split}')
    class_to_idx = getattr(dataset.reader, 'class_to_idx', None)
    return dataset, len(class_to_idx) if class_to_idx else None


def check_class_count(model: torch.nn.Module, dataset_classes: int | None, args: argparse.Namespace) -> None:
    num_classes = getattr(model, 'num_classes', None)
    if dataset_classes is None or num_classes is None or args.ignore_class_count:
        return
    if args.class_map:  # the map puts the data's classes at the model's indices: they must exist in the model
        if dataset_classes > num_classes:
            raise SystemExit(f'--class-map maps {dataset_classes} classes, the model has {num_classes}')
        return
    if num_classes != dataset_classes:
        raise SystemExit(
            f'the model has {num_classes} classes, the data {dataset_classes}: its labels would be read as the '
            "model's classes. Pass --class-map FILE (the data's class names in the model's order) or "
            '--ignore-class-count to evaluate anyway.'
        )


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, args: argparse.Namespace, real_labels=None, desc: str = '') -> dict:
    from timm.utils import accuracy
    from tqdm import tqdm

    device = torch.device(args.device)
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = torch.bfloat16 if device.type == 'cpu' else torch.float16
    maxk = min(5, getattr(model, 'num_classes', 5) or 5)
    top1 = topk = seen = 0.0
    compute_time = 0.0
    for images, labels in tqdm(loader, desc=desc, unit='batch', disable=args.no_progress):
        images, labels = images.to(device), labels.to(device)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            logits = model(images)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        compute_time += time.perf_counter() - start
        logits = logits.float()
        if real_labels is not None:
            real_labels.add_result(logits)
        acc1, acck = accuracy(logits, labels, topk=(1, maxk))
        n = labels.shape[0]
        top1, topk, seen = top1 + float(acc1) * n, topk + float(acck) * n, seen + n
    if not seen:
        raise ValueError(f'no images found in {args.data}/{args.split}')
    result = dict(top1=top1 / seen, top5=topk / seen, images=int(seen), img_per_s=seen / max(compute_time, 1e-9))
    if real_labels is not None:
        result['real_top1'] = real_labels.get_accuracy(k=1)
        result['real_top5'] = real_labels.get_accuracy(k=5)
    return result


def append_results(path: str, row: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with path.open('a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction='ignore')
        if new:
            writer.writeheader()
        writer.writerow(row)


def evaluate_model(name: str, args: argparse.Namespace) -> dict:
    from timm.data import RealLabelsImagenet

    from backbonezoo.data import eval_transform

    model = build_model(name, args)
    if args.deploy:
        model = deploy(model)
    transform = eval_transform(
        model,
        input_size=args.input_size,
        crop_pct=args.crop_pct,
        interpolation=args.interpolation,
        crop_mode=args.crop_mode,
    )
    data_cfg = transform.data_config
    dataset, dataset_classes = build_dataset(args, transform)
    check_class_count(model, dataset_classes, args)
    real_labels = None
    if args.real_labels:
        real_labels = RealLabelsImagenet(dataset.filenames(basename=True), real_json=args.real_labels)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, num_workers=args.workers, shuffle=False, pin_memory=args.device != 'cpu'
    )
    metrics = evaluate(model, loader, args, real_labels, desc=f'eval {name}')
    return dict(
        model=name,
        top1=round(metrics['top1'], 4),
        top1_err=round(100.0 - metrics['top1'], 4),
        top5=round(metrics['top5'], 4),
        top5_err=round(100.0 - metrics['top5'], 4),
        param_count=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        img_size=data_cfg['input_size'][-1],
        crop_pct=data_cfg['crop_pct'],
        interpolation=data_cfg['interpolation'],
        **{k: v for k, v in metrics.items() if k not in ('top1', 'top5')},
        checkpoint=args.checkpoint,
        data=str(Path(args.data, args.split)),
        batch_size=args.batch_size,
        amp=args.amp,
        channels_last=args.channels_last,
        deploy=args.deploy,
        device=args.device,
        data_config={k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()},
    )


def main(argv: list[str] | None = None) -> dict:
    """Evaluate; returns the (last) model's result dict (a sweep's results are in ``result['sweep']``)."""
    sys.path.insert(0, str(REPO))
    args = parse_args(argv)
    if not Path(args.data, args.split).is_dir():
        raise FileNotFoundError(
            f'--data {args.data!r} --split {args.split!r}: folder {Path(args.data, args.split)} not found'
        )
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f'--checkpoint {args.checkpoint!r}: file not found')
    names = model_names(args.model)
    if args.checkpoint and len(names) > 1:
        raise SystemExit(f'--checkpoint fits one model; --model {args.model!r} matches {len(names)}')
    results = []
    for name in names:
        result = evaluate_model(name, args)
        results.append(result)
        line = ', '.join(f'{k} {result[k]}' for k in CSV_COLUMNS[1:])
        print(f'{name}: {line}', flush=True)
        if args.results_file:
            append_results(args.results_file, result)
    result = dict(results[-1])
    if len(results) > 1:
        result['sweep'] = [{k: r[k] for k in CSV_COLUMNS} for r in results]
    print(json.dumps({k: v for k, v in result.items() if k != 'sweep'}, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == '__main__':
    main()
