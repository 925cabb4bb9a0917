#!/usr/bin/env python
"""Run timm's own model tests (``tests/test_models.py`` of the installed timm's sdist) on backbonezoo's models.

The sdist matching the installed timm is fetched from PyPI once (``pip download --no-binary``) and cached outside
the repository (``~/.cache/backbonezoo/timm-sdist``); its ``tests/test_models.py`` is extracted into a temporary
directory, never into this repo, beside a conftest that imports backbonezoo first and keeps only the models
backbonezoo registers itself (timm-owned families are covered by timm's own CI). Tests that download pretrained
weights are deselected and ``HF_HUB_OFFLINE=1`` is set. Tests a family does not pass yet are declared in its
metadata with the reason (``extra['timm_conformance_known_failures']``); exactly those are deselected and each is
printed as a KNOWN FAILURE, so the gap stays visible.

    python tools/timm_conformance.py [--models PATTERN] [--smallest] [-- PYTEST_ARGS...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get('BACKBONEZOO_CACHE', Path.home() / '.cache' / 'backbonezoo')) / 'timm-sdist'

# Written next to the extracted test file. It narrows every model list the test module builds at import time to
# the selected zoo models. Test functions with hard-coded timm model names are deselected (they test timm itself).
CONFTEST = """
import fnmatch
import os

import backbonezoo  # registers the zoo's models before timm's test module is imported
import pytest
import timm

_SELECTED = [m for m in os.environ['BACKBONEZOO_CONFORMANCE_MODELS'].split(',') if m]
# 'model:test_function' pairs a family declares as known failures (see the runner's docstring)
_KNOWN = {tuple(p.split(':')) for p in os.environ.get('BACKBONEZOO_CONFORMANCE_KNOWN_FAILURES', '').split(',') if p}
_list_models, _list_pretrained = timm.list_models, timm.list_pretrained


def _narrow(names):
    return [n for n in names if n.split('.')[0] in _SELECTED]


def list_models(filter='', module='', *args, **kwargs):
    found = _narrow(_list_models(filter, '', *args, **kwargs))
    # Our models implement forward_intermediates / the feature getter: they belong in the lists timm builds by
    # module for those tests, whatever our module names are.
    return found


def list_pretrained(filter='', exclude_filters=''):
    return _narrow(_list_pretrained(filter, exclude_filters))


timm.list_models, timm.list_pretrained = list_models, list_pretrained

def pytest_configure(config):
    for marker in ('base', 'forward', 'backward', 'cfg', 'cfg_nonstd', 'torchscript', 'features', 'fxforward',
                   'fxbackward'):
        config.addinivalue_line('markers', f'{marker}: timm test marker')


_DOWNLOADS = ('test_model_load_pretrained', 'test_model_features_pretrained', 'test_model_inference')


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, 'callspec', None), 'params', {})
        name = params.get('model_name')
        base = name.split('.')[0] if isinstance(name, str) else None
        known = (base, item.originalname) in _KNOWN
        wanted = base in _SELECTED and item.originalname not in _DOWNLOADS and not known
        (keep if wanted else drop).append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)
"""


def installed_timm_version() -> str:
    import timm

    return timm.__version__


def fetch_sdist(version: str) -> Path:
    """The timm sdist for ``version``, from the cache or PyPI."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f'timm-{version}.tar.gz'
    if not path.exists():
        print(f'fetching the timm {version} sdist from PyPI into {CACHE}', flush=True)
        subprocess.run(
            [
                sys.executable,
                '-m',
                'pip',
                'download',
                '--no-deps',
                '--no-binary',
                ':all:',
                '-q',
                '-d',
                str(CACHE),
                f'timm=={version}',
            ],
            check=True,
        )
    if not path.exists():
        raise FileNotFoundError(f'pip download did not produce {path}')
    return path


def extract_test_models(sdist: Path, out_dir: Path) -> Path:
    member = f'timm-{sdist.name[len("timm-") : -len(".tar.gz")]}/tests/test_models.py'
    with tarfile.open(sdist) as tar:
        data = tar.extractfile(member)
        if data is None:
            raise FileNotFoundError(f'{member} not found in {sdist}')
        target = out_dir / 'test_models.py'
        target.write_bytes(data.read())
    return target


def known_failures(models: list[str]) -> list[tuple[str, str, str]]:
    """(model, timm test function, reason) for the failures families declare in their metadata,
    ``extra['timm_conformance_known_failures'] = {test_function: reason}``. Only those tests are deselected."""
    import backbonezoo

    out = []
    for model in models:
        declared = backbonezoo.family_of(model).extra.get('timm_conformance_known_failures', {})
        out += [(model, test, reason) for test, reason in declared.items()]
    return out


def select_models(pattern: str, smallest: bool) -> list[str]:
    import backbonezoo

    names = backbonezoo.list_models(pattern, exclude_timm_owned=True)
    if smallest:
        firsts = {fam.model_names[0] for fam in backbonezoo.families().values()}
        names = [n for n in names if n in firsts]
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', default='*', help='fnmatch pattern over backbonezoo.list_models()')
    parser.add_argument('--smallest', action='store_true', help="only each family's first (smallest) variant")
    parser.add_argument('-n', '--workers', default='2', help='pytest-xdist workers (0 = in process)')
    parser.add_argument('pytest_args', nargs='*', help='extra pytest arguments (after --)')
    args = parser.parse_args(argv)

    models = select_models(args.models, args.smallest)
    if not models:
        print(
            'timm conformance: no zoo models are registered yet (timm-owned families are tested by timm); '
            'nothing to run'
        )
        return 0
    print(f'timm conformance on {len(models)} models: {", ".join(models)}', flush=True)
    sdist = fetch_sdist(installed_timm_version())
    with tempfile.TemporaryDirectory(prefix='backbonezoo-timm-tests-') as tmp:
        tmp_dir = Path(tmp)
        extract_test_models(sdist, tmp_dir)
        (tmp_dir / 'conftest.py').write_text(CONFTEST)
        env = dict(os.environ, HF_HUB_OFFLINE='1', BACKBONEZOO_CONFORMANCE_MODELS=','.join(models))
        # timm's tests compare repeated forwards: models whose official inference draws random numbers (SReT's
        # token shuffles) run in their documented deterministic mode here; the parity tests cover the official one.
        env.setdefault('BACKBONEZOO_SRET_SHUFFLE_SEED', '0')
        known = known_failures(models)
        env['BACKBONEZOO_CONFORMANCE_KNOWN_FAILURES'] = ','.join(f'{m}:{t}' for m, t, _ in known)
        for model, test, reason in known:
            print(f'KNOWN FAILURE (deselected): {test}[{model}]: {reason}')
        cmd = [
            sys.executable,
            '-m',
            'pytest',
            '-p',
            'no:cacheprovider',
            '-q',
            '-rfE',
            '--durations=10',  # the ten slowest (model, test) pairs, as `make test` prints for its own suite
            '--rootdir',
            tmp,
            '-c',
            os.devnull,
            '-p',
            'no:warnings',
            str(tmp_dir / 'test_models.py'),
            '-n',
            args.workers,
            *args.pytest_args,
        ]
        return subprocess.run(cmd, cwd=tmp, env=env).returncode


if __name__ == '__main__':
    sys.exit(main())
