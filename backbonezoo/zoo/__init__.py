"""Family metadata in one place: papers, code, licenses, variants, their weights and paper-reported numbers.

Each family describes itself in ``backbonezoo/zoo/<family>.py`` as a module-level ``FAMILY = Family(...)``.
Tests, tools (benchmark, model cards, conversion) and ``backbonezoo.list_models`` read only this package, and the
family modules' timm ``default_cfgs`` take url / hf_hub_id / license / paper / origin from it
(:func:`pretrained_cfg`): nothing is stated twice (tests/test_metadata.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from .recipe import Recipe

__all__ = [
    'DenseCheckpoint',
    'Family',
    'FamilyExtra',
    'Recipe',
    'Variant',
    'Weights',
    'families',
    'get_family',
    'family_of',
    'is_direct_download',
    'known_conformance_failures',
    'pretrained_cfg',
    'variant_info',
]

# What timm's downloader can fetch: https, and a path naming the file (timm caches by the path's last part).
_DIRECT_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors', '.pth.tar', '.tar', '.zip', '.npz', '.ckpt', '.pkl')
# Share pages and APIs that answer with HTML, a login or a redirect whose path does not name the file.
_SHARE_HOSTS = (
    'drive.google.com',
    'docs.google.com',
    '1drv.ms',
    'onedrive.live.com',
    'api.onedrive.com',
    'sharepoint.com',
    'pan.baidu.com',
    'dropbox.com',
    'mega.nz',
)


def is_direct_download(url: str) -> bool:
    """Whether ``url`` has the form of a direct file link that ``timm``'s downloader can fetch (no network).

    https only; not a share page (Google Drive, OneDrive, Baidu, Dropbox, ...); and either the path ends in a weight
    file suffix (``.pth``, ``.pt``, ``.bin``, ``.safetensors``, ``.pth.tar``, ``.zip``, ...); on github.com only
    release assets (``/<o>/<r>/releases/download/<tag>/<file>``) and ``/raw/`` files, on huggingface.co only
    ``/resolve/`` links (``/blob/`` pages are HTML whatever the suffix).
    """
    parts = urlparse(url)
    host = (parts.hostname or '').lower()
    if parts.scheme != 'https' or not host or parts.fragment:
        return False
    if any(host == h or host.endswith('.' + h) for h in _SHARE_HOSTS):
        return False
    path = parts.path
    name = path.rsplit('/', 1)[-1]
    if not name:
        return False
    if host == 'github.com':  # a release asset or a raw file; /blob/ and the rest are HTML pages
        return bool(re.fullmatch(r'/[^/]+/[^/]+/(releases/download|raw)/[^/]+/.+', path))
    if host == 'huggingface.co':  # the resolve route serves the file; /blob/ is its HTML page
        return bool(re.fullmatch(r'/[^/]+/[^/]+/resolve/[^/]+/.+', path))
    return not parts.query and name.lower().endswith(_DIRECT_SUFFIXES)


@dataclass(frozen=True)
class Weights:
    """One pretrained tag of a variant (timm's ``<model>.<tag>``) and where its file comes from.

    ``url``: a direct download link (checked by :func:`is_direct_download`), what ``pretrained=True`` fetches.
    ``hf_hub_id``: ``org/repo`` on the Hugging Face Hub in timm's hub layout; ``None`` until published there.
    A tag with either is *fetchable*. ``manual_download``: a page that needs a person (Google Drive, OneDrive,
    Baidu ...) when there is no direct link; the file then loads with ``pretrained_cfg_overlay=dict(file=PATH)``.
    ``official``: a direct link to the authors' own file when ``url`` / ``hf_hub_id`` serve another layout
    (timm's hub for the timm-owned families); it loads through the family's ``checkpoint_filter_fn`` with
    ``pretrained_cfg_overlay=dict(url=...)``. ``note``: layout, training or provenance remarks.
    """

    tag: str
    url: str = ''
    hf_hub_id: str | None = None
    manual_download: str = ''
    official: str = ''
    note: str = ''

    def __post_init__(self) -> None:
        if not re.fullmatch(r'[a-z0-9_]+', self.tag):
            raise ValueError(f'pretrained tag {self.tag!r}: lower-case letters, digits and _ only')
        for kind in ('url', 'official'):
            link = getattr(self, kind)
            if link and not is_direct_download(link):
                raise ValueError(
                    f'{self.tag}: {kind}={link!r} is not a direct download link (timm would fetch a web page); '
                    'put a share page in manual_download'
                )
        if self.hf_hub_id is not None and not re.fullmatch(r'[\w.-]+/[\w.-]+', self.hf_hub_id):
            raise ValueError(f'{self.tag}: hf_hub_id={self.hf_hub_id!r} is not an org/repo id')
        if self.manual_download and (self.url or self.hf_hub_id):
            raise ValueError(f'{self.tag}: a fetchable tag needs no manual_download')
        if not (self.url or self.hf_hub_id or self.manual_download):
            raise ValueError(f'{self.tag}: give url, hf_hub_id or manual_download (variants without weights list none)')

    @property
    def fetchable(self) -> bool:
        """``pretrained=True`` downloads it (a direct ``url`` or an ``hf_hub_id``)."""
        return bool(self.url or self.hf_hub_id)

    @property
    def source(self) -> str:
        """One line: the hub id, the direct link or the manual page."""
        if self.hf_hub_id:
            return f'hf-hub:{self.hf_hub_id}'
        return self.url or self.manual_download

    def instructions(self, model_name: str) -> str:
        """How to load this tag's weights, in one paragraph (the model card and ``pretrained_cfg['notes']``)."""
        name = f'{model_name.split(".")[0]}.{self.tag}'
        note = f' {self.note}' if self.note else ''
        if self.fetchable:
            where = f'the Hugging Face Hub ({self.hf_hub_id})' if self.hf_hub_id else self.url
            text = f"timm.create_model('{name}', pretrained=True) downloads it from {where}."
            if self.official:
                text += f' The official file {self.official} loads too: pretrained_cfg_overlay=dict(url=...).'
            return text + note
        host = urlparse(self.manual_download).hostname
        return (
            f'Manual download: {self.manual_download} ({host}) is not a direct file link. Download the file by hand, '
            f"then timm.create_model('{name}', pretrained=True, pretrained_cfg_overlay=dict(file=PATH)).{note}"
        )


@dataclass(frozen=True)
class Variant:
    """One registered model.

    ``params`` is the official model's parameter count (exact where official code exists); ``params_rtol``
    the relative tolerance a test allows (0 = exact). ``gmacs`` / ``top1`` are the paper's figures at
    ``img_size`` (papers say "FLOPs" for multiply-accumulates; we keep their number and call it GMACs).
    ``pretrained``: its weights, one :class:`Weights` per timm pretrained tag, the default tag first; empty when
    none exist (the family then registers ``<name>.untrained``). The family's ``default_cfgs`` take every link
    from here through :func:`pretrained_cfg`.
    """

    name: str
    paper_name: str
    params: int | None
    gmacs: float | None = None
    top1: float | None = None
    img_size: int | tuple[int, int] = 224
    params_rtol: float = 0.0
    pretrained: tuple[Weights, ...] = ()
    notes: str = ''

    def __post_init__(self) -> None:
        tags = [w.tag for w in self.pretrained]
        if len(set(tags)) != len(tags):
            raise ValueError(f'{self.name}: pretrained tags repeat: {tags}')

    @property
    def input_hw(self) -> tuple[int, int]:
        return (self.img_size, self.img_size) if isinstance(self.img_size, int) else tuple(self.img_size)

    @property
    def weights(self) -> str:
        """Where the default (first) pretrained tag comes from, one line: direct link, hub id or manual page."""
        return self.pretrained[0].source if self.pretrained else ''

    def get_weights(self, tag: str | None) -> Weights | None:
        """The record of ``tag`` (``None`` / ``'untrained'``: no weights); ``KeyError`` for an unknown tag."""
        for weights in self.pretrained:
            if weights.tag == tag:
                return weights
        if tag in (None, 'untrained'):
            return None
        known = [w.tag for w in self.pretrained] or ['untrained']
        raise KeyError(f'{self.name} has no pretrained tag {tag!r} in backbonezoo.zoo; known: {known}')


@dataclass(frozen=True)
class FamilyExtra(Mapping):
    """A family's further facts, typed: each one a named field (``None``: not stated).

    It also reads as a mapping of the stated fields (``extra.get('mm_type')``, ``extra.items()``), so readers that
    treat ``Family.extra`` as a dict keep working; a key that is not a field is a ``TypeError`` when the family is
    built, not a silent typo. The model card lists every stated field it does not use itself under "Notes".
    """

    # OpenMMLab
    mm_type: str | None = None  # the backbone type registered in mmdet / mmseg MODELS
    mm_arch: dict[str, str] | None = None  # variant name -> ``arch`` when not the name's suffix
    # behaviour the shared tests and tools read
    random_eval: bool | None = None  # eval outputs are random unless seeded (SReT's shuffles)
    deterministic_env: dict[str, str] | None = None  # environment that makes eval deterministic
    onnx_dynamic_hw: bool | None = None  # False: ONNX export with a fixed input size only
    onnx_export_slow: str | None = None  # why the whole-model ONNX test runs under make test-slow
    benchmark_peers: dict[str, str] | None = None  # variant -> timm model benchmarked beside it
    timm_conformance_known_failures: dict[str, str] | None = None  # timm test function -> reason
    variants_ours: bool | None = None  # the variants are backbonezoo's configurations, not the paper's
    timm_module: str | None = None  # timm module of a timm-owned family
    # provenance and conventions (card notes)
    official_commit: str | None = None
    checkpoint_nesting: tuple | None = None  # keys the official checkpoints nest the weights under
    crop_pct: dict[str, float] | None = None
    forms: str | None = None
    eval_transform: str | None = None
    offset_lr_multiplier: float | None = None
    params_note: str | None = None
    gmacs_note: str | None = None
    top1_note: str | None = None
    flops_note: str | None = None
    flops_convention: str | None = None
    flops_counter: str | None = None
    unsupported: str | None = None
    notes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.notes, str):
            object.__setattr__(self, 'notes', (self.notes,))
        elif self.notes is not None:
            object.__setattr__(self, 'notes', tuple(self.notes))

    @classmethod
    def from_dict(cls, values: Mapping) -> FamilyExtra:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f'unknown Family.extra keys {unknown}; FamilyExtra fields are {sorted(known)}')
        return cls(**values)

    def _stated(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def __getitem__(self, key: str):
        stated = self._stated()
        if key not in stated:
            raise KeyError(key)
        return stated[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stated())

    def __len__(self) -> int:
        return len(self._stated())


@dataclass(frozen=True)
class DenseCheckpoint:
    """One of the authors' released detection / segmentation checkpoints and the zoo config it loads into.

    ``task``: 'detection' or 'segmentation'; ``method``: the detector / segmentor and schedule (e.g. 'Mask R-CNN 1x');
    ``config``: our config, relative to the repository root (``tools/test.py CONFIG OFFICIAL.pth`` evaluates the file
    through :func:`backbonezoo.convert_checkpoint`); ``official_file``: the file's name as released; ``url``: where it
    was released ('' when the authors give none); ``published``: the official README's numbers for that file (e.g.
    ``{'box AP': 43.0, 'mask AP': 39.4}``); ``source``: the page / file the numbers and the file name come from.
    """

    task: str
    method: str
    config: str
    official_file: str
    url: str
    published: dict
    source: str

    def __post_init__(self) -> None:
        if self.task not in ('detection', 'segmentation'):
            raise ValueError(f'DenseCheckpoint.task={self.task!r}: expected detection or segmentation')
        expected = f'configs/{self.task}/'
        if not self.config.startswith(expected) or not self.config.endswith('.py'):
            raise ValueError(f'DenseCheckpoint.config={self.config!r}: expected {expected}<family>/<name>.py')


@dataclass(frozen=True)
class Family:
    """A backbone family: where it comes from and what it registers.

    ``module`` is the importable module holding the family's ``checkpoint_filter_fn(state_dict, model)``.
    ``timm_owned`` families are timm's own models: we extend them and never re-register their names.
    ``size_divisor``: inputs whose sides are multiples of this always work for classification models;
    ``min_size``: the smallest side the models accept (used by the contract tests' second size and
    bad-input checks). ``fixed_size``: the model only runs at its ``img_size``.
    ``extra``: further facts as named fields (:class:`FamilyExtra`; a dict of its field names is converted).
    ``recipes``: the ImageNet-1K training recipe of each classification config (``configs/classification/<family>/
    <key>_in1k.py``), value by value with sources (:mod:`backbonezoo.zoo.recipe`).
    ``dense``: the authors' detection / segmentation checkpoints with the config each loads into
    (:class:`DenseCheckpoint`).
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
    extra: FamilyExtra = field(default_factory=FamilyExtra)
    recipes: dict[str, Recipe] = field(default_factory=dict)
    dense: tuple[DenseCheckpoint, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.extra, FamilyExtra):  # a dict of FamilyExtra fields
            object.__setattr__(self, 'extra', FamilyExtra.from_dict(self.extra))

    @property
    def model_names(self) -> list[str]:
        return [v.name for v in self.variants]

    @property
    def license(self) -> str:
        """The license id timm / the Hugging Face Hub use (``'mit'``, ``'apache-2.0'`` ...), read from
        ``weights_license`` (``code_license`` where no weights exist); ``'unknown'`` when neither names a license."""
        return _license_id(self.weights_license) or _license_id(self.code_license) or 'unknown'

    @property
    def paper_title(self) -> str:
        """``paper`` without a trailing venue such as ``(CVPR 2023)``."""
        return re.sub(r'\s*\([^()]*\b\d{4}\)$', '', self.paper)


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


def pretrained_cfg(model_name: str) -> dict[str, Any]:
    """The metadata part of timm's pretrained cfg for ``<model>[.<tag>]``, read from the zoo record.

    Family files build ``default_cfgs`` as ``{**model defaults, **zoo.pretrained_cfg(name), **model overrides}``:
    ``url`` / ``hf_hub_id`` (the slot, ``None`` until weights are on the hub) from the tag's :class:`Weights`,
    ``license``, ``paper_ids``, ``paper_name``, ``origin_url`` from the :class:`Family`, and for weights that need a
    manual download the instructions in ``notes``. A tag the zoo does not list raises ``KeyError``.
    """
    base, _, tag = model_name.partition('.')
    family = family_of(base)
    weights = variant_info(base).get_weights(tag or None)
    cfg: dict[str, Any] = {
        'url': weights.url if weights else '',
        'hf_hub_id': weights.hf_hub_id if weights else None,
        'license': family.license,
        'paper_ids': f'arXiv:{family.arxiv}',
        'paper_name': family.paper_title,
        'origin_url': family.code,
    }
    if weights is not None and (weights.manual_download or weights.note or weights.official):
        cfg['notes'] = (weights.instructions(base),)
    return cfg


_LICENSES = {
    'mit': 'mit',
    'apache-2.0': 'apache-2.0',
    'bsd-3-clause': 'bsd-3-clause',
    'cc-by-4.0': 'cc-by-4.0',
    'cc-by-nc-4.0': 'cc-by-nc-4.0',
    'cc-by-nc-sa-4.0': 'cc-by-nc-sa-4.0',
    'gpl-3.0': 'gpl-3.0',
}


def _license_id(text: str) -> str | None:
    """The license a prose license field starts with (``'Apache-2.0 (timm ...)'`` -> ``'apache-2.0'``), or None."""
    match = re.match(r'[A-Za-z0-9.-]+', text.strip())
    return _LICENSES.get(match.group(0).lower()) if match else None
