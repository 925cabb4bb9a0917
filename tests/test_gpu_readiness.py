"""GPU readiness without a GPU: the Triton kernels compiled for sm_90 and sm_80 by Triton's own compiler (and the
ptxas / cuobjdump it ships), checked on the PTX and the cubin (tools/gpu_readiness.py): every variant compiles,
float16 / bfloat16 attention kernels use tensor cores (``mma`` / ``wgmma``), backward kernels hold no atomics
(deterministic gradients), and nothing spills to local memory for head dims up to 64. ``make test`` takes a
representative subset; every variant the models use runs under ``slow``."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from helpers import REPO

sys.path.insert(0, str(REPO / 'tools'))
import gpu_readiness as tool  # noqa: E402

pytestmark = pytest.mark.xdist_group('gpu_readiness')


def _compiler_or_skip():
    pytest.importorskip('triton')
    if not os.path.exists(tool._cuobjdump()):
        pytest.skip('the triton package ships no cuobjdump (backends/nvidia/bin)')


def _check(variant, arch):
    facts = tool.compile_variant(variant, arch)
    assert not tool.problems(variant, arch, facts), f'{variant.name} sm_{arch}: {tool.problems(variant, arch, facts)}'
    return facts


@pytest.mark.parametrize('variant,arch', tool.quick_checks(), ids=lambda x: getattr(x, 'name', f'sm{x}'))
def test_representative_kernels_are_gpu_ready(variant, arch):
    _compiler_or_skip()
    facts = _check(variant, arch)
    if arch == 90 and variant.dtype in (torch.float16, torch.bfloat16):
        assert facts['wgmma'], f'{variant.name}: sm_90 PTX uses mma.sync but no wgmma'


def test_quick_set_covers_every_attention_kernel():
    """The fast subset keeps one check of each local-attention kernel family, both architectures and both halves."""
    checks = tool.quick_checks()
    assert {arch for _, arch in checks} == set(tool.ARCHS)
    assert {v.module for v, _ in checks} >= {'local', 'routing'}
    assert any(v.backward for v, _ in checks) and any(not v.backward for v, _ in checks)


@pytest.mark.slow
@pytest.mark.parametrize('arch', tool.ARCHS)
def test_every_kernel_variant_is_gpu_ready(arch):
    _compiler_or_skip()
    failures = []
    for variant in tool.variants():
        facts = tool.compile_variant(variant, arch)
        found = tool.problems(variant, arch, facts)
        if found:
            failures.append(f'{variant.name}: {"; ".join(found)}')
    assert not failures, '\n'.join(failures)
