"""Converted weights as Hugging Face Hub repositories that ``timm.create_model('hf-hub:ORG/NAME')`` reads.

The route, from an authors' checkpoint to a hub repository::

    python tools/convert_checkpoint.py official.pth --model efficientvit_m0 --hub-dir hub/efficientvit_m0
    python tools/convert_checkpoint.py official.pth --model efficientvit_m0 --push ORG/efficientvit_m0.in1k

or, from Python, with a model that holds the weights::

    state_dict = backbonezoo.convert_checkpoint('official.pth', 'efficientvit_m0')  # the authors' layout -> timm's
    model = timm.create_model('efficientvit_m0', pretrained=True, pretrained_cfg_overlay=dict(state_dict=state_dict))
    backbonezoo.hub.save_for_hub(model, 'hub/efficientvit_m0', repo_id='ORG/efficientvit_m0.in1k')
    backbonezoo.hub.push_to_hub('hub/efficientvit_m0', 'ORG/efficientvit_m0.in1k')

A hub folder holds what timm's ``push_to_hf_hub`` uploads, laid out the same way:

- ``model.safetensors``: the model's state dict in timm's layout (the family's converter has already run).
- ``config.json``: written by timm's own ``save_config_for_hf``: ``architecture``, ``num_classes``, ``num_features``,
  ``global_pool``, ``model_args`` (the constructor arguments that differ from the registered defaults) and the full
  ``pretrained_cfg`` (input size, interpolation, crop_pct, mean / std, first_conv, classifier, license, paper ids),
  plus the ImageNet-1k ``label_names`` / ``label_descriptions`` for 1000-class heads, and a ``backbonezoo`` block
  saying where the weights came from (source file, converter, version).
- ``README.md``: the model card. Its YAML metadata is built with ``huggingface_hub.ModelCardData``: ``license``
  (the weights' license), ``library_name: timm``, ``tags`` (image-classification, timm, backbonezoo, the paper's
  ``arxiv:`` id; ``transformers`` only for timm's own architectures, which load without backbonezoo), ``datasets``,
  ``pipeline_tag`` and a ``model-index`` entry holding the paper's top-1, whose source names the paper (it was not
  measured on these weights). The body lists the measured parameter count and GMACs, the paper's figures labelled as
  the paper's, the official code and weights, usage and citation.

Loading: ``timm.create_model('hf-hub:ORG/NAME', pretrained=True)`` once the folder is on the hub (or in a local
Hugging Face cache, which also works with ``HF_HUB_OFFLINE=1``), or ``timm.create_model('local-dir:FOLDER',
pretrained=True)`` straight from the folder. Zoo architectures need ``import backbonezoo`` first (it registers them
with timm); timm-owned ones (EfficientViT-M, SHViT, HaloNet) do not. ``save_for_hub`` checks its own output by
loading the folder through the ``local-dir:`` route and comparing every tensor.

``push_to_hub`` uploads a folder with ``huggingface_hub`` (``create_repo`` then ``upload_folder``); it needs network
access and a token (``HF_TOKEN`` or ``hf auth login``) and says so before it tries.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = [
    'HUB_FILES',
    'HubError',
    'check_can_push',
    'default_repo_id',
    'hub_license',
    'measured_stats',
    'model_card',
    'push_to_hub',
    'save_for_hub',
]

WEIGHTS_NAME = 'model.safetensors'  # timm.models._hub.HF_SAFE_WEIGHTS_NAME
CONFIG_NAME = 'config.json'
CARD_NAME = 'README.md'
HUB_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)

# Family.weights_license / code_license wording -> Hugging Face Hub license identifiers.
_HF_LICENSES = {
    'mit': 'mit',
    'apache-2.0': 'apache-2.0',
    'apache 2.0': 'apache-2.0',
    'bsd-3-clause': 'bsd-3-clause',
    'cc-by-4.0': 'cc-by-4.0',
    'cc-by-nc-4.0': 'cc-by-nc-4.0',
    'cc-by-nc-sa-4.0': 'cc-by-nc-sa-4.0',
}
_IMAGENET_1K = 'imagenet-1k'


class HubError(RuntimeError):
    """A hub export or upload that cannot go ahead; the message says what is needed."""


# --------------------------------------------------------------------------------------------- metadata
def _architecture(model: torch.nn.Module) -> str:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    name = cfg.get('architecture')
    if not name:
        raise HubError(
            f'{type(model).__name__} has no pretrained_cfg["architecture"]: build it with timm.create_model(NAME)'
        )
    return name


def _family(name: str):
    from .zoo import family_of

    try:
        return family_of(name)
    except KeyError:
        return None


def _variant(name: str):
    from .zoo import variant_info

    try:
        return variant_info(name)
    except KeyError:
        return None


def hub_license(model: torch.nn.Module, license: str | None = None) -> tuple[str, str | None]:
    """``(hub license id, license_name or None)`` for the model's weights.

    An explicit ``license`` wins; then timm's ``pretrained_cfg['license']`` (the weights' license in timm's
    convention, already a hub id); then the family's ``weights_license`` when it names a known license. Anything else
    is ``('other', name)``.
    """
    if license:
        key = license.strip().lower()
        return (_HF_LICENSES.get(key, key), None) if key != 'other' else ('other', 'other')
    cfg_license = (getattr(model, 'pretrained_cfg', None) or {}).get('license')
    if cfg_license:
        return _HF_LICENSES.get(cfg_license.lower(), cfg_license.lower()), None
    family = _family(_architecture(model))
    if family is not None:
        key = family.weights_license.split(' (')[0].strip().lower()
        if key in _HF_LICENSES:
            return _HF_LICENSES[key], None
        return 'other', family.weights_license
    return 'other', 'unknown'


def default_repo_id(model: torch.nn.Module) -> str | None:
    """The ``hf_hub_id`` of the model's pretrained cfg, unless it is timm's own repository (``timm/...``)."""
    hub_id = (getattr(model, 'pretrained_cfg', None) or {}).get('hf_hub_id')
    if not hub_id or hub_id.split('/')[0] == 'timm':
        return None
    return hub_id.split('@')[0]


def _input_hw(model: torch.nn.Module) -> tuple[int, int]:
    from timm.models._input import get_model_input_config

    return tuple(get_model_input_config(model)['input_size'][1:])


def measured_stats(model: torch.nn.Module, measure: bool = True) -> dict:
    """Parameters (counted) and GMACs of ``model`` at its input size, with where the GMACs come from.

    GMACs come from the count rows of the results store (``benchmarks/results.csv``, written by
    ``tools/model_cards.py``; :mod:`backbonezoo.benchmarking`) when it holds the same architecture
    (same parameter count and input size); otherwise they are counted with :func:`backbonezoo.flops.count_flops`
    (``measure=False`` leaves them out).
    """
    params = sum(p.numel() for p in model.parameters())
    hw = _input_hw(model)
    stats = {'params': params, 'img_size': hw, 'gmacs': None, 'gmacs_source': None}
    name = _architecture(model)
    entry = {}
    from . import benchmarking

    if benchmarking.STORE.is_file():
        entry = benchmarking.counts(benchmarking.read_rows(kind='count')).get(name, {})
    if entry.get('params') == params and tuple(entry.get('img_size', ())) == hw and entry.get('gmacs') is not None:
        stats.update(gmacs=entry['gmacs'], gmacs_source=f'{entry.get("counter")}, benchmarks/results.csv')
    elif measure:
        from .flops import count_flops

        result = count_flops(model, (3, *hw))
        stats.update(gmacs=round(result.gmacs, 4), gmacs_source=f'{result.method}, backbonezoo.flops.count_flops')
    return stats


def _label_info(num_classes: int) -> dict:
    """ImageNet-1k synsets and descriptions for a 1000-class head (timm's ``ImageNetInfo``); nothing otherwise."""
    if num_classes != 1000:
        return {}
    from timm.data import ImageNetInfo

    info = ImageNetInfo(_IMAGENET_1K)
    return {'label_names': list(info.label_names()), 'label_descriptions': info.label_descriptions(as_dict=True)}


def _slug(text: str) -> str:
    """A hub ``license_name``: lower case letters, digits, dots and dashes."""
    return re.sub(r'[^a-z0-9.]+', '-', text.lower()).strip('-')[:64] or 'other'


def _fmt_millions(value: int) -> str:
    return f'{value / 1e6:.2f}'


def model_card(
    model: torch.nn.Module,
    repo_id: str | None = None,
    *,
    license: str | None = None,
    stats: Mapping | None = None,
    source: str | None = None,
    converter: str | None = None,
) -> str:
    """The README.md model card for ``model``'s weights: hub YAML metadata, then timm-style sections."""
    from huggingface_hub import EvalResult, ModelCardData

    from . import __version__

    name = _architecture(model)
    family, variant = _family(name), _variant(name)
    cfg = dict(getattr(model, 'pretrained_cfg', None) or {})
    stats = dict(stats) if stats is not None else measured_stats(model)
    license_id, license_name = hub_license(model, license)
    repo_id = repo_id or default_repo_id(model) or f'<org>/{name}'
    num_classes = getattr(model, 'num_classes', 0)
    task = 'image-classification' if num_classes else 'image-feature-extraction'
    arxiv = family.arxiv if family is not None else None
    if arxiv is None and str(cfg.get('paper_ids', '')).startswith('arXiv:'):
        arxiv = str(cfg['paper_ids']).split(',')[0].split(':', 1)[1].strip()
    in1k = num_classes == 1000

    tags = [task, 'timm', 'backbonezoo']
    if family is None or family.timm_owned:
        tags.append('transformers')  # timm's own architecture: transformers' TimmWrapper can build it
    if arxiv:
        tags.append(f'arxiv:{arxiv}')
    eval_results = None
    if variant is not None and variant.top1 is not None and in1k:
        paper = f'{family.title} paper (arXiv:{arxiv})' if arxiv else f'{family.title} paper'
        eval_results = [
            EvalResult(
                task_type='image-classification',
                task_name='Image Classification',
                dataset_type=_IMAGENET_1K,
                dataset_name='ImageNet-1k',
                dataset_split='validation',
                metric_type='accuracy',
                metric_name='Top-1 accuracy (reported in the paper, not measured on these weights)',
                metric_value=variant.top1,
                source_name=paper,
                source_url=f'https://arxiv.org/abs/{arxiv}' if arxiv else (family.code or None),
            )
        ]
    data = ModelCardData(
        license=license_id,
        license_name=_slug(license_name) if license_name else None,
        license_link=(family.code if family is not None and license_name else None),
        library_name='timm',
        tags=tags,
        datasets=[_IMAGENET_1K] if in1k else None,
        pipeline_tag=task,
        model_name=repo_id.split('/')[-1] if eval_results else None,
        eval_results=eval_results,
    )

    title = family.title if family is not None else name
    what = 'image classification model' if num_classes else 'feature backbone (no classifier)'
    lines = ['---', data.to_yaml(), '---', f'# Model card for {repo_id.split("/")[-1]}', '']
    origin = f' ({variant.paper_name})' if variant is not None else ''
    lines.append(f'{title}{origin} {what}: `{name}` in timm.')
    if source:
        via = f' by `{converter}`' if converter else ''
        lines.append(f'Weights converted from `{source}`{via} with backbonezoo {__version__}.')
    lines += [
        '',
        '## Model Details',
        f'- **Model Type:** {"Image classification / feature backbone" if num_classes else "Feature backbone"}',
    ]
    h, w = stats['img_size']
    lines += ['- **Model Stats (measured on this model):**', f'  - Params (M): {_fmt_millions(stats["params"])}']
    if stats.get('gmacs') is not None:
        lines.append(f'  - GMACs: {stats["gmacs"]:.4g} ({stats["gmacs_source"]})')
    lines.append(f'  - Image size: {h} x {w}')
    if variant is not None:
        lines.append('- **Reported by the authors (paper / official code; not measured on these weights):**')
        if variant.params is not None:
            lines.append(f'  - Params (M): {_fmt_millions(variant.params)}')
        if variant.gmacs is not None:
            lines.append(f'  - GMACs: {variant.gmacs} at {variant.input_hw[0]} x {variant.input_hw[1]}')
        top1 = f'{variant.top1}' if variant.top1 is not None else 'not reported'
        lines.append(f'  - ImageNet-1k top-1 (paper): {top1}')
    if family is not None:
        lines.append('- **Papers:**')
        link = f'https://arxiv.org/abs/{arxiv}' if arxiv else family.code
        lines.append(f'  - {family.paper}: {link}')
        lines.append(f'- **Original:** {family.code}')
        lines.append(
            f'- **License:** weights `{license_id}`{f" ({license_name})" if license_name else ""}; '
            f'official weights: {family.weights_license}; code: {family.code_license}'
        )
    elif cfg.get('origin_url'):
        lines.append(f'- **Original:** {cfg["origin_url"]}')
    if in1k:
        lines.append('- **Dataset:** ImageNet-1k')
    lines += ['', '## Model Usage', '```python', 'import timm']
    if family is not None and not family.timm_owned:
        lines.append('import backbonezoo  # registers the architecture with timm')
    lines += [
        '',
        f"model = timm.create_model('hf-hub:{repo_id}', pretrained=True).eval()",
        'data_config = timm.data.resolve_model_data_config(model)',
        'transforms = timm.data.create_transform(**data_config, is_training=False)',
        '```',
    ]
    if family is not None and family.citation:
        lines += ['', '## Citation', '```bibtex', family.citation.strip(), '```']
    return '\n'.join(lines) + '\n'


# --------------------------------------------------------------------------------------------- saving
def _pretrained_overrides(model: torch.nn.Module, license_id: str, tag: str | None) -> dict:
    """pretrained_cfg entries the export adds or replaces: paper ids / origin from the family, the license, tag."""
    name = _architecture(model)
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    family = _family(name)
    out = {'license': license_id}
    if family is not None:
        out['paper_ids'] = cfg.get('paper_ids') or (f'arXiv:{family.arxiv}' if family.arxiv else None)
        out['paper_name'] = cfg.get('paper_name') or family.paper
        out['origin_url'] = cfg.get('origin_url') or family.code
    current = cfg.get('tag')
    out['tag'] = tag or (current if current and current != 'untrained' else None)
    return {k: v for k, v in out.items() if v is not None}


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + '.tmp')
    write(tmp)
    os.replace(tmp, path)


def save_for_hub(
    model: torch.nn.Module,
    out_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    tag: str | None = None,
    source: str | None = None,
    converter: str | None = None,
    measure_flops: bool = True,
    overwrite: bool = False,
    verify: bool = True,
) -> dict:
    """Write ``model``'s weights as a hub folder (``model.safetensors``, ``config.json``, ``README.md``).

    ``model`` is a timm model (``timm.create_model(NAME)``) holding the weights to publish. ``repo_id`` (ORG/NAME) is
    the repository the card's usage example names (default: the pretrained cfg's ``hf_hub_id`` unless it is timm's).
    ``license`` overrides the weights' license (see :func:`hub_license`), ``tag`` the pretrained tag (default: the
    model's, unless it is ``untrained``). ``source`` / ``converter`` record where the weights came from. An existing
    folder that holds any of the three files is refused unless ``overwrite``. With ``verify`` the folder is read back
    through ``timm.create_model('local-dir:OUT', pretrained=True)`` and must give the model's tensors exactly.
    Returns a summary dict (files, params, GMACs, license).
    """
    from safetensors.torch import save_file
    from timm.models._hub import save_config_for_hf

    from . import __version__

    name = _architecture(model)
    out_dir = Path(out_dir)
    clashes = [f for f in HUB_FILES if (out_dir / f).exists()]
    if clashes and not overwrite:
        raise HubError(f'{str(out_dir)!r} already holds {clashes}; pass overwrite=True (--force) to replace them')
    license_id, license_name = hub_license(model, license)
    out_dir.mkdir(parents=True, exist_ok=True)

    # safetensors refuses shared storage and non-contiguous views: write independent copies.
    tensors = {k: v.detach().to('cpu').contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {'format': 'pt', 'model': name, 'backbonezoo': __version__}
    if source:
        metadata['source'] = source
    if converter:
        metadata['converter'] = converter
    _write_atomic(out_dir / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata=metadata))

    provenance = {'version': __version__}
    provenance.update({k: v for k, v in (('source', source), ('converter', converter)) if v})
    model_config = {
        'pretrained_cfg': _pretrained_overrides(model, license_id, tag),
        **_label_info(getattr(model, 'num_classes', 0)),
        'backbonezoo': provenance,
    }
    _write_atomic(out_dir / CONFIG_NAME, lambda p: save_config_for_hf(model, str(p), model_config=model_config))
    # timm's saver keeps the source cfg's tag; drop a placeholder one ('untrained') the export did not replace.
    config = json.loads((out_dir / CONFIG_NAME).read_text())
    if 'tag' not in model_config['pretrained_cfg'] and config['pretrained_cfg'].pop('tag', None) is not None:
        _write_atomic(out_dir / CONFIG_NAME, lambda p: p.write_text(json.dumps(config, indent=2)))

    stats = measured_stats(model, measure=measure_flops)
    card = model_card(model, repo_id, license=license, stats=stats, source=source, converter=converter)
    _write_atomic(out_dir / CARD_NAME, lambda p: p.write_text(card, encoding='utf-8'))

    if verify:
        _verify_folder(out_dir, name, tensors)
    return {
        'model': name,
        'dir': str(out_dir),
        'files': list(HUB_FILES),
        'tensors': len(tensors),
        'params': stats['params'],
        'gmacs': stats['gmacs'],
        'license': license_id if license_name is None else f'{license_id} ({license_name})',
        'repo_id': repo_id or default_repo_id(model),
    }


def _verify_folder(out_dir: Path, name: str, tensors: Mapping[str, torch.Tensor]) -> None:
    """The folder loads through timm's own ``local-dir:`` route (config + weights) and gives ``tensors`` exactly."""
    import timm

    reloaded = timm.create_model(f'local-dir:{out_dir.resolve()}', pretrained=True)
    if reloaded.pretrained_cfg.get('architecture') != name:
        raise HubError(f'{out_dir}: config.json builds {reloaded.pretrained_cfg.get("architecture")!r}, not {name!r}')
    state = reloaded.state_dict()
    if state.keys() != tensors.keys():
        raise HubError(f'{out_dir}: reloaded keys differ: {sorted(set(state) ^ set(tensors))[:10]}')
    for key, value in state.items():
        if not torch.equal(value, tensors[key]):
            raise HubError(f'{out_dir}: verification failed: {key!r} changed when loaded back through timm')


# --------------------------------------------------------------------------------------------- uploading
def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split('/')
    if len(parts) != 2 or not all(parts):
        raise HubError(f'repository {repo_id!r} must be ORG/NAME (e.g. my-org/efficientvit_m0.in1k)')


def check_can_push(repo_id: str, token: str | None = None) -> str:
    """Fail early, with what to do, when an upload cannot work: bad ORG/NAME, offline mode, no token."""
    import huggingface_hub
    from huggingface_hub import constants

    _check_repo_id(repo_id)
    if constants.HF_HUB_OFFLINE:
        raise HubError('HF_HUB_OFFLINE is set: uploading needs network access (unset HF_HUB_OFFLINE)')
    token = token or huggingface_hub.get_token()
    if not token:
        raise HubError('no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)')
    return token


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
):
    """Upload a :func:`save_for_hub` folder to ``repo_id`` (created if missing) and return the commit info."""
    from huggingface_hub import HfApi

    from . import __version__

    folder = Path(folder)
    missing = [f for f in HUB_FILES if not (folder / f).is_file()]
    if missing:
        raise HubError(f'{str(folder)!r} is not a hub folder: {missing} missing (write it with save_for_hub)')
    token = check_can_push(repo_id, token)
    config = json.loads((folder / CONFIG_NAME).read_text())
    api = HfApi(token=token, library_name='backbonezoo', library_version=__version__)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type='model')
    return api.upload_folder(
        repo_id=getattr(repo, 'repo_id', repo_id),
        folder_path=str(folder),
        repo_type='model',
        revision=revision,
        create_pr=create_pr,
        allow_patterns=list(HUB_FILES),
        commit_message=commit_message
        or f'Add {config.get("architecture", "model")} weights (backbonezoo {__version__})',
    )
