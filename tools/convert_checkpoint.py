#!/usr/bin/env python
"""Convert an official, timm or OpenMMLab checkpoint to a safetensors file in the zoo's (timm's) layout.

    python tools/convert_checkpoint.py efficientvit_m4.pth efficientvit_m4.safetensors --model efficientvit_m4

The file is unwrapped ('model', 'state_dict', ... nests; 'module.' / 'backbone.' prefixes), converted by the
family's ``checkpoint_filter_fn`` (``backbonezoo.convert_checkpoint``), written, read back and loaded strictly
into ``timm.create_model(NAME)``: a file that does not fit fails with the missing / unexpected keys named.
Models timm has but the zoo does not describe are converted with timm's own filter for that model.
The result loads with ``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=DST))``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class ConversionError(RuntimeError):
    """A conversion that cannot go ahead; the message says what was expected."""


def _timm_filter(model_name: str):
    """timm's ``checkpoint_filter_fn`` for a model outside the zoo, or None when its module has none."""
    import timm

    module = importlib.import_module(timm.models.model_entrypoint(model_name).__module__)
    return getattr(module, 'checkpoint_filter_fn', None)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model_name: str,
    *,
    prefer_ema: bool = False,
    model_kwargs: dict | None = None,
    overwrite: bool = False,
) -> dict:
    """Convert ``src`` for ``model_name`` and write ``dst`` (safetensors); returns a summary dict.

    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``num_classes=0`` for a detection backbone checkpoint
    that has no classifier).
    """
    import timm
    from safetensors.torch import load_file, save_file

    import backbonezoo
    from backbonezoo.checkpoint import load_state_dict_file, strict_match, unwrap_state_dict

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConversionError(f'SRC {str(src)!r} is not a file; expected a checkpoint (.pth / .pt / .safetensors)')
    if dst.suffix != '.safetensors':
        raise ConversionError(f'DST {str(dst)!r} must end in .safetensors')
    if dst.exists() and not overwrite:
        raise ConversionError(f'DST {str(dst)!r} exists; pass --force to overwrite it')
    if model_name not in timm.list_models():
        close = timm.list_models(f'*{model_name.split("_")[0]}*')[:10]
        raise ConversionError(f'--model {model_name!r} is not a timm / backbonezoo model; similar names: {close}')
    model_kwargs = dict(model_kwargs or {})
    model = timm.create_model(model_name, pretrained=False, **model_kwargs)

    try:
        backbonezoo.family_of(model_name)
        in_zoo = True
    except KeyError:
        in_zoo = False

    checkpoint = load_state_dict_file(src)
    try:
        if in_zoo:
            converter = f'{backbonezoo.family_of(model_name).module}.checkpoint_filter_fn'
            state_dict = backbonezoo.convert_checkpoint(checkpoint, model_name, model=model, prefer_ema=prefer_ema)
        else:
            state_dict = unwrap_state_dict(checkpoint, prefer_ema=prefer_ema)
            timm_filter = _timm_filter(model_name)
            converter = f'{timm_filter.__module__}.checkpoint_filter_fn' if timm_filter else 'none (timm layout)'
            if timm_filter is not None:
                state_dict = timm_filter(state_dict, model)
            strict_match(model_name, model, state_dict)
    except (backbonezoo.CheckpointMismatchError, ConversionError):
        raise
    except Exception as err:  # a filter failing on a foreign layout (another variant / family) says little by itself
        raise ConversionError(
            f'{converter} could not convert {str(src)!r} for {model_name!r} ({type(err).__name__}: {err}); '
            f'expected a checkpoint of {model_name} in the official, timm or OpenMMLab layout'
        ) from err

    # safetensors refuses shared storage and non-contiguous views: write independent copies.
    tensors = {k: v.detach().to('cpu').contiguous().clone() for k, v in state_dict.items()}
    metadata = {
        'format': 'pt',
        'model': model_name,
        'source': src.name,
        'converter': converter,
        'backbonezoo': backbonezoo.__version__,
    }
    if model_kwargs:
        metadata['model_kwargs'] = repr(model_kwargs)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + '.tmp')
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, dst)

    # Verify what is on disk, not what is in memory: a fresh model must take it strictly and unchanged.
    reloaded = load_file(str(dst))
    fresh = timm.create_model(model_name, pretrained=False, **model_kwargs)
    fresh.load_state_dict(reloaded, strict=True)
    for key, value in fresh.state_dict().items():
        if not torch.equal(value, tensors[key]):
            raise ConversionError(f'verification failed: {key!r} changed when loaded into {model_name!r}')
    return {
        'model': model_name,
        'tensors': len(tensors),
        'params': sum(v.numel() for k, v in tensors.items() if v.is_floating_point()),
        'converter': converter,
        'dst': str(dst),
    }


def _parse_kwargs(items: list[str]) -> dict:
    """``key=value`` pairs; values are Python literals where they parse (``num_classes=0``)."""
    import ast

    kwargs = {}
    for item in items:
        if '=' not in item:
            raise ConversionError(f'--model-kwargs entry {item!r} is not key=value')
        key, value = item.split('=', 1)
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Example: python tools/convert_checkpoint.py m4.pth m4.safetensors --model efficientvit_m4',
    )
    parser.add_argument('src', help='checkpoint to convert: official .pth, timm file, or mmdet / mmseg checkpoint')
    parser.add_argument('dst', help='output file (.safetensors)')
    parser.add_argument('--model', required=True, help='timm / backbonezoo model name, e.g. efficientvit_m4')
    parser.add_argument('--ema', action='store_true', help="take the EMA weights ('state_dict_ema' / 'model_ema')")
    parser.add_argument('--num-classes', type=int, default=None, help='classifier size (0: no head, for backbones)')
    parser.add_argument('--model-kwargs', nargs='*', default=[], metavar='K=V', help='more timm.create_model kwargs')
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import backbonezoo

    try:
        kwargs = _parse_kwargs(args.model_kwargs)
        if args.num_classes is not None:
            kwargs['num_classes'] = args.num_classes
        summary = convert(
            args.src, args.dst, args.model, prefer_ema=args.ema, model_kwargs=kwargs, overwrite=args.force
        )
    except (ConversionError, backbonezoo.CheckpointMismatchError, FileNotFoundError, ValueError, TypeError) as err:
        hint = ''
        if isinstance(err, backbonezoo.CheckpointMismatchError) and err.missing and not err.unexpected:
            hint = (
                '\nhint: a backbone-only (detection / segmentation) checkpoint has no classifier: try --num-classes 0'
            )
        print(f'error: {err}{hint}', file=sys.stderr)
        return 1
    print(
        f'wrote {summary["dst"]}: {summary["tensors"]} tensors, {summary["params"]:,} float values, '
        f'converted by {summary["converter"]}; verified by a strict load into {summary["model"]!r}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
