#!/usr/bin/env python
"""Convert an official, timm or OpenMMLab checkpoint to a safetensors file in the zoo's (timm's) layout.

    python tools/convert_checkpoint.py efficientvit_m4.pth efficientvit_m4.safetensors --model efficientvit_m4

The file is unwrapped ('model', 'state_dict', ... nests; 'module.' / 'backbone.' prefixes), converted by the
family's ``checkpoint_filter_fn`` (``backbonezoo.convert_checkpoint``), written, read back and loaded strictly
into ``timm.create_model(NAME)``: a file that does not fit fails with the missing / unexpected keys named.
Models timm has but the zoo does not describe are converted with timm's own filter for that model.
The result loads with ``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=DST))``.

``--hub-dir OUT`` (with or without DST) also writes a Hugging Face Hub folder, ``model.safetensors``, ``config.json``
and a ``README.md`` model card, laid out as timm's ``push_to_hf_hub`` does (``backbonezoo.hub.save_for_hub``) and
verified by loading it back through ``timm.create_model('local-dir:OUT', pretrained=True)``. ``--push ORG/NAME``
uploads that folder (a temporary one without ``--hub-dir``) with ``huggingface_hub``; it needs network access and a
token (``HF_TOKEN`` or ``hf auth login``). The result loads with ``timm.create_model('hf-hub:ORG/NAME',
pretrained=True)`` (after ``import backbonezoo`` for the zoo's own architectures)::

    python tools/convert_checkpoint.py efficientvit_m4.pth --model efficientvit_m4 --hub-dir hub/efficientvit_m4
    python tools/convert_checkpoint.py efficientvit_m4.pth --model efficientvit_m4 --push my-org/efficientvit_m4.in1k

``--config CONFIG`` converts a whole detection / segmentation checkpoint instead (the authors' mmdet 2.x / mmseg 0.x
files: backbone in the official dense wrapper's names, neck, heads, auxiliary heads) for the model that mmdet / mmseg
config builds (``backbonezoo.convert_checkpoint(SRC, CONFIG)``, strict: every key used, every parameter filled, or an
error naming the missing / unexpected / mis-shaped keys). DST is a ``.pth`` (``{'meta': ..., 'state_dict': ...}``,
what ``tools/test.py`` and mmengine's ``load_from`` read) or a ``.safetensors`` file::

    python tools/convert_checkpoint.py --config configs/detection/biformer/mask_rcnn_biformer_s_fpn_1x_coco.py \
        official_maskrcnn_biformer_s.pth work_dirs/mask_rcnn_biformer_s.pth

SRC is read safely: safetensors (recognised by its header) or ``torch.load(weights_only=True)``. A file that needs
full unpickling (an mmengine Runner checkpoint: message hub, numpy objects) can run code and is refused unless
``--trust-checkpoint`` vouches for it. Unreadable files (empty, truncated, not a checkpoint) give one error line
and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys
import tempfile
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
    dst: str | os.PathLike | None,
    model_name: str,
    *,
    prefer_ema: bool = False,
    model_kwargs: dict | None = None,
    overwrite: bool = False,
    trust: bool = False,
    hub_dir: str | os.PathLike | None = None,
    push: str | None = None,
    license: str | None = None,
    private: bool | None = None,
) -> dict:
    """Convert ``src`` for ``model_name`` and write ``dst`` (safetensors) and / or a hub folder; returns a summary.

    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``num_classes=0`` for a detection backbone checkpoint
    that has no classifier). ``trust=True`` allows full unpickling of ``src`` (only for files you know).
    ``hub_dir``: write a Hugging Face Hub folder there (:func:`backbonezoo.hub.save_for_hub`). ``push``: upload the
    hub folder to that ORG/NAME repository (``''``: the pretrained cfg's ``hf_hub_id``); ``license`` overrides the
    weights' license in the card, ``private`` makes a new repository private.
    """
    import timm
    from safetensors.torch import load_file, save_file

    import backbonezoo
    from backbonezoo import hub
    from backbonezoo.checkpoint import load_state_dict_file, strict_match, strip_classifier_prefix, unwrap_state_dict

    src = Path(src)
    dst = Path(dst) if dst is not None else None
    if not src.is_file():
        raise ConversionError(f'SRC {str(src)!r} is not a file; expected a checkpoint (.pth / .pt / .safetensors)')
    if dst is None and hub_dir is None and push is None:
        raise ConversionError('nothing to write: give DST (.safetensors), --hub-dir OUT and / or --push ORG/NAME')
    if dst is not None and dst.suffix != '.safetensors':
        raise ConversionError(f'DST {str(dst)!r} must end in .safetensors')
    if dst is not None and dst.exists() and not overwrite:
        raise ConversionError(f'DST {str(dst)!r} exists; pass --force to overwrite it')
    if hub_dir is not None:
        clashes = [f for f in hub.HUB_FILES if (Path(hub_dir) / f).exists()]
        if clashes and not overwrite:
            raise ConversionError(f'--hub-dir {str(hub_dir)!r} already holds {clashes}; pass --force to overwrite')
    if model_name not in timm.list_models():
        close = timm.list_models(f'*{model_name.split("_")[0]}*')[:10]
        raise ConversionError(f'--model {model_name!r} is not a timm / backbonezoo model; similar names: {close}')
    model_kwargs = dict(model_kwargs or {})
    model = timm.create_model(model_name, pretrained=False, **model_kwargs)
    repo_id = (push or hub.default_repo_id(model)) if (hub_dir is not None or push is not None) else None
    if push is not None:  # fail before converting when an upload cannot work (no name, offline, no token)
        if not repo_id:
            raise ConversionError(f'--push needs ORG/NAME: {model_name!r} has no hf_hub_id of its own to default to')
        hub.check_can_push(repo_id)

    try:
        backbonezoo.family_of(model_name)
        in_zoo = True
    except KeyError:
        in_zoo = False

    checkpoint = load_state_dict_file(src, trusted=trust or None)
    try:
        if in_zoo:
            converter = f'{backbonezoo.family_of(model_name).module}.checkpoint_filter_fn'
            state_dict = backbonezoo.convert_checkpoint(checkpoint, model_name, model=model, prefer_ema=prefer_ema)
        else:
            state_dict = strip_classifier_prefix(unwrap_state_dict(checkpoint, prefer_ema=prefer_ema), model)
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
    summary = {
        'model': model_name,
        'tensors': len(tensors),
        'params': sum(v.numel() for k, v in tensors.items() if v.is_floating_point()),
        'converter': converter,
        'dst': str(dst) if dst is not None else None,
    }
    if dst is not None:
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

    if hub_dir is not None or push is not None:
        model.load_state_dict(tensors, strict=True)
        with tempfile.TemporaryDirectory() as tmp_dir:
            folder = Path(hub_dir) if hub_dir is not None else Path(tmp_dir)
            summary['hub'] = hub.save_for_hub(
                model,
                folder,
                repo_id=repo_id,
                license=license,
                source=src.name,
                converter=converter,
                overwrite=overwrite,
            )
            if hub_dir is None:
                summary['hub']['dir'] = None
            if push is not None:
                commit = hub.push_to_hub(folder, repo_id, private=private)
                summary['pushed'] = repo_id
                summary['commit'] = str(getattr(commit, 'commit_url', '') or '')
    return summary


def convert_dense(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    config: str | os.PathLike,
    *,
    cfg_options: dict | None = None,
    overwrite: bool = False,
    trust: bool = False,
) -> dict:
    """Convert a whole official dense checkpoint ``src`` for the model ``config`` builds and write ``dst`` (``.pth``
    in mmengine's layout, or ``.safetensors``); verified by a strict load of the file read back. Returns a summary."""
    from safetensors.torch import load_file, save_file

    import backbonezoo
    from backbonezoo.checkpoint import load_state_dict_file
    from backbonezoo.mm.dense_convert import build_dense_model, convert_dense_checkpoint

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConversionError(f'SRC {str(src)!r} is not a file; expected a detection / segmentation checkpoint')
    if not Path(config).is_file():
        raise ConversionError(f'--config {str(config)!r} is not a file; expected an mmdet / mmseg config (.py)')
    if dst.suffix not in ('.pth', '.safetensors'):
        raise ConversionError(f'DST {str(dst)!r} must end in .pth or .safetensors')
    if dst.exists() and not overwrite:
        raise ConversionError(f'DST {str(dst)!r} exists; pass --force to overwrite it')
    model = build_dense_model(config, cfg_options)
    checkpoint = load_state_dict_file(src, trusted=trust or None)
    state_dict = convert_dense_checkpoint(checkpoint, config, model=model, source=str(src))
    tensors = {k: v.detach().to('cpu').contiguous().clone() for k, v in state_dict.items()}
    meta = {
        'config': os.fspath(config),
        'source': src.name,
        'converter': 'backbonezoo.mm.dense_convert.convert_dense_checkpoint',
        'backbonezoo': backbonezoo.__version__,
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + '.tmp')
    if dst.suffix == '.safetensors':
        save_file(tensors, str(tmp), metadata=meta)
    else:
        torch.save({'meta': meta, 'state_dict': tensors}, tmp)
    os.replace(tmp, dst)
    reloaded = load_file(str(dst)) if dst.suffix == '.safetensors' else load_state_dict_file(dst)['state_dict']
    model.load_state_dict(reloaded, strict=True)
    for key, value in model.state_dict().items():
        if not torch.equal(value, tensors[key]):
            raise ConversionError(f'verification failed: {key!r} changed when loaded into the model of {config}')
    return {
        'model': type(model).__name__,
        'config': os.fspath(config),
        'tensors': len(tensors),
        'params': sum(v.numel() for v in tensors.values() if v.is_floating_point()),
        'converter': meta['converter'],
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
        epilog='Example: python tools/convert_checkpoint.py m4.pth m4.safetensors --model efficientvit_m4; '
        'python tools/convert_checkpoint.py --config CONFIG OFFICIAL.pth OUT.pth',
    )
    parser.add_argument('src', help='checkpoint to convert: official .pth, timm file, or mmdet / mmseg checkpoint')
    parser.add_argument(
        'dst', nargs='?', default=None, help='output file (.safetensors); optional with --hub-dir / --push'
    )
    parser.add_argument('--model', default=None, help='timm / backbonezoo model name, e.g. efficientvit_m4')
    parser.add_argument(
        '--config',
        default=None,
        help='an mmdet / mmseg config: convert a whole detection / segmentation checkpoint for the model it builds',
    )
    parser.add_argument(
        '--cfg-options', nargs='+', default=[], metavar='K=V', help='--config: override config entries (Python values)'
    )
    parser.add_argument('--ema', action='store_true', help="take the EMA weights ('state_dict_ema' / 'model_ema')")
    parser.add_argument('--num-classes', type=int, default=None, help='classifier size (0: no head, for backbones)')
    parser.add_argument('--model-kwargs', nargs='*', default=[], metavar='K=V', help='more timm.create_model kwargs')
    parser.add_argument('--force', action='store_true', help='overwrite DST and the --hub-dir files if they exist')
    parser.add_argument(
        '--hub-dir',
        default=None,
        metavar='OUT',
        help="write a Hugging Face Hub folder (model.safetensors, config.json, README.md) that timm's hf-hub: loads",
    )
    parser.add_argument(
        '--push',
        nargs='?',
        const='',
        default=None,
        metavar='ORG/NAME',
        help="upload the hub folder to this repository (needs network and a token: HF_TOKEN or 'hf auth login'); "
        "without a value: the model's own hf_hub_id",
    )
    parser.add_argument('--license', default=None, help="the weights' license for the model card (hub id, e.g. mit)")
    parser.add_argument('--private', action='store_true', help='--push: create the repository as private')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='SRC is your own file: allow full unpickling (can run code), e.g. for an mmengine Runner checkpoint',
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import backbonezoo
    from backbonezoo.hub import HubError

    if (args.model is None) == (args.config is None):
        print('error: give exactly one of --model NAME (classification / backbone files) and --config CONFIG '
              '(whole detection / segmentation files)', file=sys.stderr)  # fmt: skip
        return 2
    if args.config is not None:
        try:
            if args.dst is None:
                raise ConversionError('--config needs DST (.pth or .safetensors)')
            summary = convert_dense(
                args.src,
                args.dst,
                args.config,
                cfg_options=_parse_kwargs(args.cfg_options),
                overwrite=args.force,
                trust=args.trust_checkpoint,
            )
        except (ConversionError, backbonezoo.CheckpointMismatchError, OSError, ValueError, TypeError) as err:
            print(f'error: {err}', file=sys.stderr)
            return 1
        except pickle.UnpicklingError as err:
            print(f'error: {err}', file=sys.stderr)
            return 1
        print(
            f'wrote {summary["dst"]}: {summary["tensors"]} tensors, {summary["params"]:,} float values of the '
            f'{summary["model"]} that {summary["config"]} builds; verified by a strict load'
        )
        return 0
    try:
        kwargs = _parse_kwargs(args.model_kwargs)
        if args.num_classes is not None:
            kwargs['num_classes'] = args.num_classes
        summary = convert(
            args.src,
            args.dst,
            args.model,
            prefer_ema=args.ema,
            model_kwargs=kwargs,
            overwrite=args.force,
            trust=args.trust_checkpoint,
            hub_dir=args.hub_dir,
            push=args.push,
            license=args.license,
            private=args.private or None,
        )
    except (
        ConversionError,
        HubError,
        backbonezoo.CheckpointMismatchError,
        OSError,
        ValueError,
        TypeError,
    ) as err:
        hint = ''
        if isinstance(err, backbonezoo.CheckpointMismatchError) and err.missing and not err.unexpected:
            hint = (
                '\nhint: a backbone-only (detection / segmentation) checkpoint has no classifier: try --num-classes 0'
            )
        print(f'error: {err}{hint}', file=sys.stderr)
        return 1
    except pickle.UnpicklingError as err:  # backbonezoo.checkpoint.UnsafeCheckpointError: says how to trust SRC
        print(f'error: {err}', file=sys.stderr)
        return 1
    if summary['dst'] is not None:
        print(
            f'wrote {summary["dst"]}: {summary["tensors"]} tensors, {summary["params"]:,} float values, '
            f'converted by {summary["converter"]}; verified by a strict load into {summary["model"]!r}'
        )
    if summary.get('hub', {}).get('dir'):
        info = summary['hub']
        print(
            f'wrote hub folder {info["dir"]} ({", ".join(info["files"])}): license {info["license"]}, '
            f"verified by timm.create_model('local-dir:{info['dir']}', pretrained=True)"
        )
    if summary.get('pushed'):
        repo_id = summary['pushed']
        print(f'pushed to {repo_id} {summary["commit"]}'.rstrip())
        print(f"load with timm.create_model('hf-hub:{repo_id}', pretrained=True)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
