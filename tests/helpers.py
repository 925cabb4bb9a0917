"""Helpers shared by the tests: parity fixtures from ../shared, stand-in weights, tolerances."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('BACKBONEZOO_SHARED', REPO.parent / 'shared'))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test saying it is missing (CI always has it)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'{path} not found: the parity fixtures live in ../shared beside the repository')
    return path


def load_parity(family: str, name: str = 'tiny.pt') -> dict:
    """A parity fixture dict from ../shared/parity/<family>/<name>."""
    return torch.load(shared_path('parity', family, name), map_location='cpu', weights_only=False)


def regen():
    """../shared/parity/regen.py as a module (deterministic stand-in weights for a checkpoint layout)."""
    import importlib.util

    path = shared_path('parity', 'regen.py')
    spec = importlib.util.spec_from_file_location('backbonezoo_parity_regen', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4, what: str = '') -> None:
    """Relative error ||a - e||_max / ||e||_max <= rtol (FAMILY_DONE's parity criterion)."""
    assert actual.shape == expected.shape, f'{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}'
    err = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item() or 1.0
    assert err / scale <= rtol, f'{what}: relative error {err / scale:.3e} > {rtol:.0e}'
