"""backbonezoo: efficient vision backbones for timm, mmdet and mmseg.

``import backbonezoo`` registers every zoo model with timm; ``backbonezoo.list_models()`` lists them
(together with the timm-owned families the zoo extends, which keep timm's names).
"""

from __future__ import annotations

import fnmatch

from . import backbones  # noqa: F401  (registers the families with timm)
from .checkpoint import (
    CheckpointMismatchError,
    CheckpointReadError,
    PretrainedUnavailableError,
    UnsafeCheckpointError,
    convert_checkpoint,
    load_state_dict_file,
    trust_checkpoint,
    unwrap_state_dict,
)
from .zoo import DenseCheckpoint, Family, Variant, Weights, families, family_of, get_family, variant_info

__version__ = '0.1.0'

__all__ = [
    'CheckpointMismatchError',
    'CheckpointReadError',
    'PretrainedUnavailableError',
    'UnsafeCheckpointError',
    'DenseCheckpoint',
    'Family',
    'Variant',
    'Weights',
    'convert_checkpoint',
    'trust_checkpoint',
    'families',
    'family_of',
    'get_family',
    'list_models',
    'load_state_dict_file',
    'unwrap_state_dict',
    'variant_info',
    '__version__',
]


_PRETRAINED_KINDS = (False, True, 'fetchable', 'manual')


def list_models(
    pattern: str | list[str] = '*',
    family: str | None = None,
    exclude_timm_owned: bool = False,
    pretrained: bool | str = False,
) -> list[str]:
    """The zoo's models (timm names), optionally filtered by fnmatch ``pattern`` and ``family``.

    Only names that timm can build are listed, in family order then the family's variant order.

    ``pretrained``: ``False`` lists model names. Otherwise it lists ``<model>.<tag>`` weight names, as
    ``timm.list_models(pretrained=True)`` does, from the zoo records (:class:`backbonezoo.Weights`): ``True`` every
    tag with weights, fetchable (``pretrained=True`` downloads them: a direct ``url`` or an ``hf_hub_id``) or a
    documented manual download (``backbonezoo.zoo.pretrained_cfg(name)['notes']`` says how); ``'fetchable'`` /
    ``'manual'`` only those. ``pattern`` matches the model name or the full ``<model>.<tag>``.
    """
    import timm

    if pretrained not in _PRETRAINED_KINDS:
        raise ValueError(f'pretrained={pretrained!r}; expected one of {_PRETRAINED_KINDS}')
    registered = set(timm.list_models())
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = []
    for fam in families().values():
        if family is not None and fam.name != family:
            continue
        if exclude_timm_owned and fam.timm_owned:
            continue
        for variant in fam.variants:
            if variant.name not in registered:
                continue
            if pretrained is False:
                candidates = [variant.name]
            else:
                candidates = [
                    f'{variant.name}.{w.tag}'
                    for w in variant.pretrained
                    if pretrained is True or (pretrained == 'fetchable') == w.fetchable
                ]
            for name in candidates:
                if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(variant.name, p) for p in patterns):
                    names.append(name)
    return names
