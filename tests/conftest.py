"""Test session set-up. Shared helpers live in tests/helpers.py (``from helpers import load_parity``)."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(min(2, os.cpu_count() or 1))
