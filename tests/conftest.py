"""Test session set-up. Shared helpers live in tests/helpers.py (``from helpers import load_parity``)."""

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``heavy`` run first, in collection order otherwise (a stable sort).

    ``make test`` runs ``pytest -n 2 --dist loadgroup``: after the ``xdist_group`` groups, each worker takes the next
    test in collection order whenever it runs short of work. The longest tests therefore start first and the many
    short ones fill in around them, so that both workers finish at about the same time instead of one of them
    starting a multi-minute export near the end.
    """
    items.sort(key=lambda item: item.get_closest_marker('heavy') is None)
