"""backbonezoo: efficient vision backbones for timm, mmdet and mmseg.

``import backbonezoo`` registers every zoo model with timm; ``backbonezoo.list_models()`` lists them
(together with the timm-owned families the zoo extends, which keep timm's names).
"""

from __future__ import annotations

import fnmatch

from . import backbones  # noqa: F401  (registers the families with timm)
from .checkpoint import CheckpointMismatchError, convert_checkpoint, load_state_dict_file, unwrap_state_dict
from .zoo import Family, Variant, families, family_of, get_family, variant_info

__version__ = '0.1.0'

__all__ = [
    'CheckpointMismatchError',
    'Family',
    'Variant',
    'convert_checkpoint',
    'families',
    'family_of',
    'get_family',
    'list_models',
    'load_state_dict_file',
    'unwrap_state_dict',
    'variant_info',
    '__version__',
]


def list_models(
    pattern: str | list[str] = '*', family: str | None = None, exclude_timm_owned: bool = False
) -> list[str]:
    """The zoo's models (timm names), optionally filtered by fnmatch ``pattern`` and ``family``.

    Only names that timm can build are listed, in family order then the family's variant order.
    """
    import timm

    registered = set(timm.list_models())
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = []
    for fam in families().values():
        if family is not None and fam.name != family:
            continue
        if exclude_timm_owned and fam.timm_owned:
            continue
        for name in fam.model_names:
            if name in registered and any(fnmatch.fnmatch(name, p) for p in patterns):
                names.append(name)
    return names
