"""Family metadata in one place: papers, code, licenses, variants and their paper-reported numbers.

Each family describes itself in ``backbonezoo/zoo/<family>.py`` as a module-level ``FAMILY = Family(...)``.
Tests, tools (benchmark, model cards, conversion) and ``backbonezoo.list_models`` read only this package.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

from .recipe import Recipe

__all__ = [
    'Family',
    'Recipe',
    'Variant',
    'families',
    'get_family',
    'family_of',
    'known_conformance_failures',
    'variant_info',
]


@dataclass(frozen=True)
class Variant:
    """One registered model.

    ``params`` is the official model's parameter count (exact where official code exists); ``params_rtol``
    the relative tolerance a test allows (0 = exact). ``gmacs`` / ``top1`` are the paper's figures at
    ``img_size`` (papers say "FLOPs" for multiply-accumulates; we keep their number and call it GMACs).
    """

    name: str
    paper_name: str
    params: int | None
    gmacs: float | None = None
    top1: float | None = None
    img_size: int | tuple[int, int] = 224
    params_rtol: float = 0.0
    weights: str = ''
    notes: str = ''

    @property
    def input_hw(self) -> tuple[int, int]:
        return (self.img_size, self.img_size) if isinstance(self.img_size, int) else tuple(self.img_size)


@dataclass(frozen=True)
class Family:
    """A backbone family: where it comes from and what it registers.

    ``module`` is the importable module holding the family's ``checkpoint_filter_fn(state_dict, model)``.
    ``timm_owned`` families are timm's own models: we extend them and never re-register their names.
    ``size_divisor``: inputs whose sides are multiples of this always work for classification models;
    ``min_size``: the smallest side the models accept (used by the contract tests' second size and
    bad-input checks). ``fixed_size``: the model only runs at its ``img_size``.
    ``recipes``: the ImageNet-1K training recipe of each classification config (``configs/classification/<family>/
    <key>_in1k.py``), value by value with sources (:mod:`backbonezoo.zoo.recipe`).
    """

    name: str
    title: str
    paper: str
    arxiv: str
    code: str
    code_license: str
    weights_license: str
    module: str
    variants: tuple[Variant, ...]
    citation: str = ''
    timm_owned: bool = False
    size_divisor: int = 32
    min_size: int = 32
    fixed_size: bool = False
    summary: str = ''
    extra: dict = field(default_factory=dict)
    recipes: dict[str, Recipe] = field(default_factory=dict)

    @property
    def model_names(self) -> list[str]:
        return [v.name for v in self.variants]


# timm test_models.py functions a family does not pass yet, by kind, with the reason printed when they are deselected.
_CONFORMANCE_GAPS = {
    'torchscript': (
        ('test_model_forward_torchscript', 'test_model_forward_fx_torchscript'),
        'TorchScript cannot compile a Python-dispatched backbonezoo.kernels call or a size-dependent branch in the '
        'model (route them through backbonezoo.layers.opaque_to_tracing; not done yet)',
    ),
    'fx': (
        ('test_model_forward_fx', 'test_model_backward_fx'),
        'torch.fx symbolic tracing meets a size-dependent branch in the model (needs opaque_to_tracing functions or '
        'register_notrace_module leaves; not done yet)',
    ),
    'default_cfgs': (
        ('test_model_default_cfgs',),
        "the reset_classifier / meta-device checks of timm's default-cfg test fail (not fixed yet)",
    ),
    'prune': (
        ('test_prune_intermediate_layers_contract',),
        'pruned models do not keep the unpruned outputs yet (not fixed yet)',
    ),
}


def known_conformance_failures(*kinds: str) -> dict[str, str]:
    """``{timm test function: reason}`` for ``Family.extra['timm_conformance_known_failures']``."""
    unknown = [k for k in kinds if k not in _CONFORMANCE_GAPS]
    if unknown:
        raise ValueError(f'unknown conformance gap kinds {unknown}; expected some of {sorted(_CONFORMANCE_GAPS)}')
    return {test: _CONFORMANCE_GAPS[kind][1] for kind in kinds for test in _CONFORMANCE_GAPS[kind][0]}


_FAMILIES: dict[str, Family] | None = None


def families() -> dict[str, Family]:
    """All families, by name, in a stable order."""
    global _FAMILIES
    if _FAMILIES is None:
        found = {}
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            module = importlib.import_module(f'{__name__}.{info.name}')
            family = getattr(module, 'FAMILY', None)
            if isinstance(family, Family):
                found[family.name] = family
        _FAMILIES = found
    return _FAMILIES


def get_family(name: str) -> Family:
    all_families = families()
    if name not in all_families:
        raise KeyError(f'Unknown family {name!r}; expected one of {sorted(all_families)}')
    return all_families[name]


def family_of(model_name: str) -> Family:
    """The family a registered model name belongs to."""
    base = model_name.split('.')[0]
    for family in families().values():
        if base in family.model_names:
            return family
    raise KeyError(f'{model_name!r} is not a backbonezoo model; see backbonezoo.list_models()')


def variant_info(model_name: str) -> Variant:
    base = model_name.split('.')[0]
    for variant in family_of(base).variants:
        if variant.name == base:
            return variant
    raise AssertionError('unreachable')
