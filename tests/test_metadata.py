"""One source for every family fact: the zoo records (backbonezoo/zoo) against timm's pretrained cfgs.

Issue 22 / 23: paper, license, origin and weight links live only in ``backbonezoo/zoo``; every registered pretrained
cfg carries them unchanged (``hf_hub_id`` slot included); ``url`` holds only direct-download links (checked by form,
no network); share pages are documented manual steps; ``list_models(pretrained=...)`` lists what can be had.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import pytest
import timm
from helpers import REPO

import backbonezoo
from backbonezoo import zoo
from backbonezoo.zoo import Family, FamilyExtra, Weights, is_direct_download

FAMILIES = backbonezoo.families()
REGISTERED = set(timm.list_models())
BACKBONE_FILES = sorted((REPO / 'backbonezoo' / 'backbones').glob('*.py'))
META_KEYS = ('url', 'hf_hub_id', 'license', 'paper_ids', 'paper_name', 'origin_url')


def _ours(model_name: str) -> bool:
    """Registered by a backbonezoo module (not by timm itself)."""
    return timm.models.model_entrypoint(model_name).__module__.startswith('backbonezoo.')


def _variants(timm_registered: bool | None = None):
    for family in FAMILIES.values():
        for variant in family.variants:
            if variant.name not in REGISTERED:
                continue
            if timm_registered is None or timm_registered != _ours(variant.name):
                yield family, variant


OURS = [v.name for _, v in _variants(timm_registered=False)]
TIMMS = [v.name for _, v in _variants(timm_registered=True)]


def _tags(model_name: str) -> list[str | None]:
    """The pretrained tags timm registered for ``model_name``, default first (None for a bare, untagged cfg)."""
    return [name.partition('.')[2] or None for name in timm.models.get_arch_pretrained_cfgs(model_name)]


def _all_weights():
    for family, variant in _variants():
        for weights in variant.pretrained:
            yield family, variant, weights


# --------------------------------------------------------------------------------------------- the zoo is the source


def test_every_family_registers_models_of_its_own():
    assert OURS and TIMMS, 'both our registrations and timm-owned ones are checked'
    assert {backbonezoo.family_of(n).name for n in OURS} >= {f.name for f in FAMILIES.values() if not f.timm_owned}


@pytest.mark.parametrize('name', OURS)
def test_our_pretrained_cfgs_equal_the_zoo_record(name):
    """Every cfg a family registers states exactly the zoo's url / hf_hub_id / license / paper / origin."""
    family, variant = backbonezoo.family_of(name), backbonezoo.variant_info(name)
    tags = _tags(name)
    expected_tags = [w.tag for w in variant.pretrained]
    if expected_tags:
        assert tags == expected_tags, f'{name}: timm registers tags {tags}, the zoo lists {expected_tags}'
    else:  # no weights: one untrained (or bare) cfg
        assert len(tags) == 1 and tags[0] in (None, 'untrained'), f'{name}: no weights in the zoo, timm has {tags}'
    for tag in tags:
        full = f'{name}.{tag}' if tag else name
        cfg = timm.get_pretrained_cfg(full)
        weights = variant.get_weights(tag)
        assert cfg.url == (weights.url if weights else ''), full
        assert cfg.hf_hub_id == (weights.hf_hub_id if weights else None), full  # the slot: None until published
        assert cfg.license == family.license, full
        assert cfg.paper_ids == f'arXiv:{family.arxiv}', full
        assert cfg.paper_name == family.paper_title and cfg.paper_name in family.paper, full
        assert cfg.origin_url == family.code, full
        if weights is not None and weights.manual_download:
            assert cfg.notes and weights.manual_download in cfg.notes[0], f'{full}: the manual step is in its notes'
            assert 'pretrained_cfg_overlay=dict(file=' in cfg.notes[0]
        assert {k: getattr(cfg, k) for k in META_KEYS} == {k: zoo.pretrained_cfg(full)[k] for k in META_KEYS}


@pytest.mark.parametrize('name', TIMMS)
def test_timm_owned_weights_equal_timms_cfgs(name):
    """For timm's own models the zoo's links are timm's: same tags, same hub ids, same urls; none left out."""
    variant = backbonezoo.variant_info(name)
    for weights in variant.pretrained:
        full = f'{name}.{weights.tag}'
        assert weights.tag in _tags(name), f'{full}: timm has no such tag ({_tags(name)})'
        cfg = timm.get_pretrained_cfg(full)
        assert (cfg.hf_hub_id, cfg.url) == (weights.hf_hub_id, weights.url), full
    listed = {w.tag for w in variant.pretrained}
    for tag in _tags(name):
        cfg = timm.get_pretrained_cfg(f'{name}.{tag}' if tag else name)
        if cfg.url or cfg.hf_hub_id:
            assert tag in listed, f'{name}.{tag}: timm has weights the zoo does not list'


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_license_id_reads_the_license_prose(family):
    """The cfg license is derived from the zoo's prose, so the two cannot disagree (TiC said apache-2.0 with no
    LICENSE file); a license the prose names is recognised, anything else is 'unknown'."""
    fam = FAMILIES[family]
    prose = fam.weights_license if zoo._license_id(fam.weights_license) else fam.code_license
    if fam.license == 'unknown':
        assert zoo._license_id(fam.weights_license) is None and zoo._license_id(fam.code_license) is None
        assert not re.match(r'(MIT|Apache|BSD|CC-BY|GPL)', fam.weights_license + fam.code_license, re.I)
    else:
        assert prose.lower().startswith(fam.license), (fam.license, prose)


def test_license_ids():
    assert zoo._license_id('Apache-2.0 (timm; the authors released no code)') == 'apache-2.0'
    assert zoo._license_id('MIT') == 'mit' and zoo._license_id('CC-BY-4.0') == 'cc-by-4.0'
    for prose in ('none (no LICENSE file)', 'unspecified (no LICENSE file)', 'no public weights', ''):
        assert zoo._license_id(prose) is None
    assert FAMILIES['tic'].license == 'unknown' and FAMILIES['a2mamba'].license == 'unknown'
    assert timm.get_pretrained_cfg('tic_tiny').license == 'unknown'


def _docstring_ids(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _zoo_facts() -> set[str]:
    facts = set()
    for family in FAMILIES.values():
        facts |= {f'arXiv:{family.arxiv}', family.code, family.paper_title}
        for variant in family.variants:
            for w in variant.pretrained:
                facts |= {x for x in (w.url, w.hf_hub_id, w.manual_download, w.official) if x}
                facts |= {re.sub(r'^.*/(?:d|shares)/([^/]+)/.*$', r'\1', w.manual_download)} - {''}
    return facts


@pytest.mark.parametrize('path', BACKBONE_FILES, ids=lambda p: p.name)
def test_backbone_files_state_no_metadata(path):
    """Family files take paper / license / origin / links from the zoo: no cfg key or keyword sets them to a literal,
    and no string in the code (docstrings aside) repeats a zoo link, id or title."""
    tree = ast.parse(path.read_text())
    docstrings = _docstring_ids(tree)
    facts = _zoo_facts()
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value in META_KEYS and not _empty(value):
                    problems.append(f'line {key.lineno}: cfg key {key.value!r} set here')
        elif isinstance(node, ast.keyword) and node.arg in META_KEYS and not _empty(node.value):
            problems.append(f'line {node.value.lineno}: {node.arg}= set here')
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            hits = [fact for fact in facts if fact and fact in text]
            if hits or re.search(r'drive\.google|onedrive|1drv\.ms|pan\.baidu|arxiv\.org|releases/download', text):
                problems.append(f'line {node.lineno}: {text[:80]!r} restates zoo metadata')
    assert not problems, f'{path.name}: ' + '; '.join(problems)


def _empty(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in ('', None)


def test_the_source_check_catches_restated_metadata(tmp_path):
    """The check above fails on the old form of a family file (a literal license, a Drive link)."""
    bad = tmp_path / 'bad.py'
    bad.write_text(
        "def _cfg(url='', **kwargs):\n    return {'url': url, 'license': 'apache-2.0', **kwargs}\n\n"
        "default_cfgs = {'x.in1k': _cfg(url='https://drive.google.com/file/d/abc/view')}\n"
    )
    with pytest.raises(AssertionError, match="cfg key 'license'"):
        test_backbone_files_state_no_metadata(bad)


# ----------------------------------------------------------------------------------------- links that can download


@pytest.mark.parametrize(
    'url',
    [
        'https://github.com/ziplab/LITv2/releases/download/v1.0/litv2_s.pth',
        'https://huggingface.co/LMMM2025/A2Mamba/resolve/main/a2mamba_pretrained_weights/a2mamba_nano.pth',
        'https://huggingface.co/org/repo/resolve/main/model.safetensors?download=true',
        'https://github.com/o/r/raw/main/weights.pt',
        'https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth',
        'https://example.org/w/model.pth.tar',
        'https://example.org/w/model.bin',
        'https://example.org/w/weights.zip',
    ],
)
def test_direct_download_forms(url):
    assert is_direct_download(url)


@pytest.mark.parametrize(
    'url',
    [
        'https://drive.google.com/file/d/1FDTpva6y-I_bKmyVmLFDn_3BlDq3dwni/view',
        'https://drive.google.com/uc?id=1FDTpva6y-I_bKmyVmLFDn_3BlDq3dwni',
        'https://1drv.ms/u/s!AkBbczdRlZvChHEOoGkgwgQzEDlM',
        'https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHEOoGkgwgQzEDlM/root/content',
        'https://pan.baidu.com/s/1abcdef',
        'https://www.dropbox.com/s/abc/model.pth',
        'http://example.org/model.pth',
        'https://github.com/ziplab/LITv2/blob/main/litv2_s.pth',
        'https://github.com/ziplab/LITv2/releases',
        'https://huggingface.co/org/repo/blob/main/model.pth',
        'https://example.org/download?file=model.pth',
        'https://example.org/models/',
        '',
    ],
)
def test_not_direct_download_forms(url):
    assert not is_direct_download(url)


def test_weights_reject_share_pages_as_urls():
    with pytest.raises(ValueError, match='not a direct download'):
        Weights('in1k', url='https://drive.google.com/file/d/abc/view')
    with pytest.raises(ValueError, match='not a direct download'):
        Weights('in1k', hf_hub_id='timm/x', official='https://1drv.ms/u/s!abc')
    with pytest.raises(ValueError, match='give url, hf_hub_id or manual_download'):
        Weights('in1k')
    with pytest.raises(ValueError, match='needs no manual_download'):
        Weights('in1k', url='https://example.org/a.pth', manual_download='https://drive.google.com/file/d/a/view')
    manual = Weights('in1k', manual_download='https://drive.google.com/file/d/abc/view')
    assert not manual.fetchable and manual.url == '' and manual.hf_hub_id is None


def test_every_registered_url_is_a_direct_link():
    """Every url timm would fetch for a zoo model (ours and the timm-owned tags the zoo lists) is a direct file link,
    and no two share a file name: timm caches downloads by the url's last path part, so they would overwrite and
    reload each other (the OneDrive '.../root/content' links all ended in 'content')."""
    urls = {}
    for _, variant in _variants():
        for full in timm.models.get_arch_pretrained_cfgs(variant.name):
            url = timm.get_pretrained_cfg(full).url
            if url:
                assert is_direct_download(url), f'{full}: {url} is not a direct download link'
                urls[full] = url
    for _, variant, weights in _all_weights():
        for link in (weights.url, weights.official):
            if link:
                assert is_direct_download(link), f'{variant.name}.{weights.tag}: {link}'
                urls.setdefault(f'{variant.name}.{weights.tag}:{link}', link)
    assert urls
    by_file = {}
    for url in urls.values():
        by_file.setdefault(os.path.basename(url.split('?')[0]), set()).add(url)
    assert not {name: found for name, found in by_file.items() if len(found) > 1}


def test_share_pages_are_manual_steps_with_instructions():
    manual = [(v, w) for _, v, w in _all_weights() if not w.fetchable]
    assert {backbonezoo.family_of(v.name).name for v, _ in manual} >= {'sret', 'biformer'}
    for variant, weights in manual:
        assert weights.manual_download.startswith('https://') and not is_direct_download(weights.manual_download)
        text = weights.instructions(variant.name)
        assert weights.manual_download in text and f"'{variant.name}.{weights.tag}'" in text
        assert 'pretrained_cfg_overlay=dict(file=PATH)' in text


# --------------------------------------------------------------------------------- list_models(pretrained=...)


def test_list_models_pretrained_lists_only_weights_that_can_be_had():
    every = backbonezoo.list_models(pretrained=True)
    fetchable = backbonezoo.list_models(pretrained='fetchable')
    manual = backbonezoo.list_models(pretrained='manual')
    assert fetchable and manual and sorted(every) == sorted(fetchable + manual) and not set(fetchable) & set(manual)
    expected = {f'{v.name}.{w.tag}' for _, v, w in _all_weights()}
    assert set(every) == expected
    for full in fetchable:
        cfg = timm.get_pretrained_cfg(full)
        assert cfg.hf_hub_id or is_direct_download(cfg.url), f'{full}: listed as fetchable, nothing to fetch'
    for full in manual:
        cfg = timm.get_pretrained_cfg(full)
        assert not cfg.url and not cfg.hf_hub_id, f'{full}: listed as manual but has a download source'
        assert cfg.notes and 'Manual download' in cfg.notes[0], f'{full}: no manual instructions'
    without_weights = {v.name for _, v in _variants() if not v.pretrained}
    assert without_weights and not {n.partition('.')[0] for n in every} & without_weights
    assert {'sret_tiny.in1k', 'sret_tiny.in1k_dist'} <= set(manual)
    assert 'litv2_small.in1k' in fetchable and 'efficientvit_m0.r224_in1k' in fetchable


def test_list_models_pretrained_filters():
    assert backbonezoo.list_models('litv2_*', pretrained=True) == [
        'litv2_small.in1k',
        'litv2_medium.in1k',
        'litv2_base.in1k',
        'litv2_base_384.in1k',
    ]
    assert backbonezoo.list_models('*.in1k_dist', family='sret', pretrained='manual')[0] == 'sret_tiny.in1k_dist'
    assert backbonezoo.list_models(family='tic', pretrained=True) == []
    assert backbonezoo.list_models(family='tic') == ['tic_tiny', 'tic_small', 'tic_base']
    assert all(n.startswith('overlock_') for n in backbonezoo.list_models(family='overlock', pretrained=True))
    with pytest.raises(ValueError, match='pretrained='):
        backbonezoo.list_models(pretrained='all')


def test_model_cards_list_every_pretrained_tag():
    sys.path.insert(0, str(REPO / 'tools'))
    import model_cards

    for name in ('sret', 'litv2', 'efficientvit'):
        family = FAMILIES[name]
        card = model_cards.render_card(family, REGISTERED, {}, [])
        for variant in family.variants:
            for weights in variant.pretrained:
                line = next(ln for ln in card.splitlines() if ln.startswith(f'- `{variant.name}.{weights.tag}`:'))
                assert ('manual download' in line) != weights.fetchable, line
                assert (weights.manual_download or weights.url or weights.hf_hub_id) in line


def test_tool_readers_of_the_old_weights_string_still_get_a_link():
    """``Variant.weights`` (read by configs' fine-tuning checks and tools) is the default tag's source."""
    assert backbonezoo.variant_info('litv2_base').weights.endswith('/litv2_b.pth')
    assert backbonezoo.variant_info('sret_tiny').weights.startswith('https://drive.google.com/')
    assert backbonezoo.variant_info('shvit_s1').weights == 'hf-hub:timm/shvit_s1.in1k'
    assert backbonezoo.variant_info('tic_tiny').weights == ''
    with pytest.raises(KeyError, match='known'):
        zoo.pretrained_cfg('litv2_small.in22k')


def test_repository_does_not_keep_drive_links_outside_the_zoo():
    """Share-page links live in backbonezoo/zoo only (the cards render them from there)."""
    offenders = []
    for path in (REPO / 'backbonezoo').rglob('*.py'):
        if 'zoo' in path.relative_to(REPO / 'backbonezoo').parts[:1]:
            continue
        if re.search(r'drive\.google\.com/file|api\.onedrive\.com|1drv\.ms', path.read_text()):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders


# ------------------------------------------------------------------------------------------ typed Family.extra


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_family_extra_is_typed_and_reads_as_a_mapping(family):
    extra = FAMILIES[family].extra
    assert isinstance(extra, FamilyExtra)
    stated = {k: v for k, v in vars(extra).items() if v is not None}
    assert dict(extra) == stated and len(extra) == len(stated)
    for key, value in stated.items():
        assert extra[key] is value and extra.get(key) is value and getattr(extra, key) is value
    missing = next(f for f in vars(extra) if getattr(extra, f) is None)
    assert missing not in extra and extra.get(missing, 'default') == 'default'
    with pytest.raises(KeyError):
        extra[missing]


def test_family_extra_rejects_unknown_keys():
    base = FAMILIES['tic']
    fields = {f: getattr(base, f) for f in ('name', 'title', 'paper', 'arxiv', 'code', 'code_license')}
    fields |= dict(weights_license='MIT', module=base.module, variants=base.variants)
    assert Family(**fields, extra={'mm_type': 'X', 'notes': 'one'}).extra.notes == ('one',)
    with pytest.raises(TypeError, match="unknown Family.extra keys \\['mm_typo'\\]"):
        Family(**fields, extra={'mm_typo': 'X'})
    with pytest.raises(TypeError):
        FamilyExtra(mm_typo='X')


if __name__ == '__main__':  # pragma: no cover
    sys.exit(pytest.main([str(Path(__file__))]))


# ------------------------------------------------------------------------------------------ naming and registration


def test_one_naming_scheme_and_the_zoo_as_the_registry():
    """backbones/<family>.py (or <family>_ext.py exactly when timm ships the family), mm/families/<family>.py, and no
    other family module: the packages import what the zoo lists, so a module the zoo does not name is never loaded."""
    families = zoo.families()
    for name, family in families.items():
        suffix = '_ext' if family.timm_owned else ''
        assert family.module == f'backbonezoo.backbones.{name}{suffix}', name
        assert family.module in sys.modules, f'{family.module}: not imported by import backbonezoo'
        assert (REPO / 'backbonezoo' / 'mm' / 'families' / f'{name}.py').is_file(), name
    package = REPO / 'backbonezoo'
    backbone_files = {p.stem for p in (package / 'backbones').glob('*.py')} - {'__init__'}
    assert backbone_files == {f.module.rsplit('.', 1)[1] for f in families.values()}
    assert {p.stem for p in (package / 'mm' / 'families').glob('*.py')} - {'__init__'} == set(families)
    assert {p.stem for p in (package / 'zoo').glob('*.py')} - {'__init__', 'recipe'} == set(families)
    timm_modules = {m.rsplit('.', 1)[-1] for m in sys.modules if m.startswith('timm.models.')}
    assert not backbone_files & timm_modules, 'a family module named like a timm module'
