"""Helpers shared by the tests: parity fixtures (tests/fixtures), stand-in weights, tolerances."""

from __future__ import annotations

import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / 'tests' / 'fixtures'


def fixture_path(*parts: str) -> Path:
    """A path under tests/fixtures; a missing fixture is an error (they are part of the repository)."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f'{path} not found: the test fixtures live in tests/fixtures (see its README)')
    return path


def load_parity(family: str, name: str = 'tiny.pt') -> dict:
    """A parity fixture dict from tests/fixtures/parity/<family>/<name> (tensors only: weights_only=True)."""
    return torch.load(fixture_path('parity', family, name), map_location='cpu', weights_only=True)


def regen() -> types.ModuleType:
    """The stand-in weight generator (tests/standin.py): ``regen_state_dict``, ``manifest_of``."""
    import standin

    return standin


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4, what: str = '') -> None:
    """Relative error ||a - e||_max / ||e||_max <= rtol (the project's parity criterion)."""
    assert actual.shape == expected.shape, f'{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}'
    err = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item() or 1.0
    assert err / scale <= rtol, f'{what}: relative error {err / scale:.3e} > {rtol:.0e}'
