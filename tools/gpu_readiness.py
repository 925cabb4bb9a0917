"""GPU readiness of the Triton kernels, checked on any machine (no GPU needed).

Compiles every Triton kernel variant the models use for sm_90 (H100 / H200) and sm_80 (A100) with Triton's own
compiler and the ptxas it ships, then reads the facts off the PTX and the cubin:

* ``mma``: tensor-core instructions in the PTX (``wgmma`` on sm_90 where Triton picks it, ``mma.sync`` else);
* ``atomics``: ``atom.`` / ``red.`` instructions (the default backward must have none: deterministic gradients);
* ``regs`` / ``local``: registers per thread and local memory (bytes; non-zero means register spills), from
  ``cuobjdump --dump-resource-usage`` of the cubin (``cuobjdump`` from the triton package's backends/nvidia/bin).

``python tools/gpu_readiness.py`` prints the table for every variant and both architectures and exits non-zero when
a check fails (tensor cores missing from a float16 / bfloat16 attention kernel, atomics in an attention
backward, spills at head dims up to 64); ``--quick`` takes the representative subset the fast tests use.
tests/test_gpu_readiness.py runs the same checks (the subset in ``make test``, everything under ``slow``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ARCHS = (90, 80)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One kernel compiled for one geometry / dtype: ``module`` is ``local`` or ``routing`` (or ``scan``)."""

    label: str
    module: str
    kernel: str
    dtype: torch.dtype
    options: tuple = ()  # kernel_source keyword arguments, as sorted (key, value) pairs
    num_warps: int = 4
    num_stages: int = 2
    backward: bool = False
    tensor_cores: bool = True  # an attention kernel whose PTX must hold mma / wgmma (float16 / bfloat16 only)

    @property
    def name(self) -> str:
        dtype = str(self.dtype).removeprefix('torch.')
        return f'{self.module}.{self.kernel}[{self.label},{dtype},w{self.num_warps}]'

    def head_dim(self) -> int:
        opts = dict(self.options)
        return max(opts.get('dqk', 32), opts.get('dv') or 0)


def _local(label, dtype, kernels, backward_kernels=(), **options):
    out = []
    for name in kernels:
        out.append(
            Variant(label, 'local', name, dtype, tuple(sorted(options.items())), backward=name in backward_kernels)
        )
    return out


_ATTENTION = ('attention_fwd', 'attention_bwd_dq', 'attention_bwd_dkv')
_ATTENTION_BWD = ('attention_bwd_dq', 'attention_bwd_dkv')
_SPLIT = ('dots', 'gather', 'spread')  # scores / aggregate forward and backward (dots + gather + spread each)


def variants() -> list[Variant]:
    """The kernel variants the models use."""
    h = torch.float16
    b = torch.bfloat16
    out: list[Variant] = []
    # OverLoCK / A2Mamba: 7x7 NATTEN neighbourhoods (scores with a table, aggregate), A2Mamba dilated
    out += _local('nbhd-k7-table', h, _SPLIT, _SPLIT, kernel_size=(7, 7), dqk=32, bias_kind='table')
    out += _local('nbhd-k7-dil2', h, _SPLIT, _SPLIT, kernel_size=(7, 7), dilation=(2, 2), dqk=32, bias_kind='table')
    out += _local('nbhd-k7-table-d64', b, _SPLIT, _SPLIT, kernel_size=(7, 7), dqk=64, bias_kind='table')
    out += _local('nbhd-k7', h, _ATTENTION, _ATTENTION_BWD, kernel_size=(7, 7), dqk=32, bias_kind='table')
    out += _local('nbhd-k7-d64', h, _ATTENTION, _ATTENTION_BWD, kernel_size=(7, 7), dqk=64, bias_kind='table')
    # HaloNet: 8x8 blocks with halo 3 (k 14, s 8), query-dependent relative logits, dim_head 16
    out += _local('halo-k14-s8', h, _ATTENTION, _ATTENTION_BWD, kernel_size=(14, 14), stride=(8, 8),
                  border='zero', dqk=16, dv=16, bias_kind='query')  # fmt: skip
    # EfficientViT-M: 7x7 blocked windows, key dim 16, value dim 64, per-query bias
    out += _local('window-k7', b, _ATTENTION, _ATTENTION_BWD, kernel_size=(7, 7), stride=(7, 7), border='zero',
                  dqk=16, dv=64, bias_kind='query')  # fmt: skip
    # TiC's MSA-Conv: zero-border 3x3 / 5x5 windows at dilation 1 / 2
    out += _local('msa-k3-dil2', h, _ATTENTION, _ATTENTION_BWD, kernel_size=(3, 3), dilation=(2, 2), border='zero',
                  dqk=32)  # fmt: skip
    out += _local('msa-k5', b, _ATTENTION, _ATTENTION_BWD, kernel_size=(5, 5), border='zero', dqk=32)
    # LITv2's Hi-Fi: 2x2 blocked windows, head dim 32
    out += _local('window-k2', h, _ATTENTION, _ATTENTION_BWD, kernel_size=(2, 2), stride=(2, 2), border='zero', dqk=32)
    # float32 (IEEE) and float64 paths compile too (no tensor-core requirement)
    for dtype in (torch.float32, torch.float64):
        for v in _local('nbhd-k7', dtype, _ATTENTION, _ATTENTION_BWD, kernel_size=(7, 7), dqk=32, bias_kind='table'):
            out.append(dataclasses.replace(v, tensor_cores=False))
    out += [
        dataclasses.replace(v, num_warps=8)
        for v in _local('nbhd-k7-w8', h, _ATTENTION, _ATTENTION_BWD, kernel_size=(7, 7), dqk=64, bias_kind='table')
    ]
    # every autotuned chunk compiles: 32 lanes, fewer than the 64-lane tile (a loop's values change block shape)
    out += _local('nbhd-k7-c32', h, _ATTENTION + _SPLIT, _ATTENTION_BWD + _SPLIT, kernel_size=(7, 7), dqk=32,
                  bias_kind='table', chunk=32)  # fmt: skip
    out += _routing_variants()
    return out


def quick_checks() -> list[tuple[Variant, int]]:
    """A representative (variant, arch) subset for ``make test``: every attention kernel once, both architectures,
    both half dtypes, a neighbourhood, a halo and a blocked geometry, and the routing backward."""
    picks = {
        ('local.attention_fwd[nbhd-k7,float16,w4]', 90),
        ('local.attention_bwd_dkv[halo-k14-s8,float16,w4]', 90),
        ('local.attention_bwd_dq[window-k7,bfloat16,w4]', 80),
        ('local.spread[nbhd-k7-table,float16,w4]', 80),
        ('routing.bwd_dkv[r7,float16,w4]', 90),
        ('local.spread[nbhd-k7-c32,float16,w4]', 90),
        ('routing.bwd_dkv[r7-c32,float16,w4]', 80),
    }
    return [(v, arch) for v in variants() for arch in ARCHS if (v.name, arch) in picks]


def _routing_variants() -> list[Variant]:
    """BiFormer's token attention (region 7x7 at 224 in stage 1-3 grids, head dim 32) and the scan."""
    triton_routing = kernel_module('routing')
    if not hasattr(triton_routing, 'kernel_source'):
        return []
    out = []
    for dtype in (torch.float16, torch.bfloat16):
        for name in triton_routing.KERNELS:
            opts = (('dqk', 32), ('region', (7, 7)))
            out.append(Variant('r7', 'routing', name, dtype, opts, backward=name != 'fwd'))
    for name in triton_routing.KERNELS:  # the autotuned 32-token chunk (fewer than the region's 64 lanes)
        opts = (('chunk', 32), ('dqk', 32), ('region', (7, 7)))
        out.append(Variant('r7-c32', 'routing', name, torch.float16, opts, backward=name != 'fwd'))
    for name in triton_routing.KERNELS:  # the float32 backward at head dim 64 used to spill
        opts = (('dqk', 64), ('region', (7, 7)))
        out.append(Variant('r7-d64', 'routing', name, torch.float32, opts, backward=name != 'fwd', tensor_cores=False))
    return out


_PACKAGE = '_gpu_readiness_kernels'


def kernel_module(name: str):
    """``backbonezoo/kernels/triton_<name>.py``, loaded without the package (the kernel files import only torch,
    triton and ``kernels/_backend.py``, loaded beside them): the check needs neither the model stack nor a working
    package import."""
    import importlib
    import types

    if _PACKAGE not in sys.modules:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(Path(__file__).resolve().parents[1] / 'backbonezoo' / 'kernels')]
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f'{_PACKAGE}.triton_{name}')


def _source(variant: Variant):
    module = kernel_module(variant.module)
    return module.kernel_source(variant.kernel, variant.dtype, **dict(variant.options))


def _cuobjdump() -> str:
    import triton.backends.nvidia as nvidia

    return os.path.join(os.path.dirname(nvidia.__file__), 'bin', 'cuobjdump')


def compile_variant(variant: Variant, arch: int) -> dict:
    """Compile ``variant`` for ``sm_{arch}`` and return its facts: mma, wgmma, atomics, regs, local (bytes)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn, signature, constexprs = _source(variant)
    src = ASTSource(fn, signature, constexprs)
    options = dict(num_warps=variant.num_warps, num_stages=variant.num_stages)
    compiled = triton.compile(src, target=GPUTarget('cuda', arch, 32), options=options)
    ptx = compiled.asm['ptx']
    body = '\n'.join(line for line in ptx.splitlines() if not line.lstrip().startswith('//'))
    facts = dict(
        wgmma=bool(re.search(r'\bwgmma\.', body)),
        mma=bool(re.search(r'\b(wgmma|mma)\.', body)),
        atomics=len(re.findall(r'\b(atom|red)\.', body)),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'kernel.cubin')
        with open(path, 'wb') as f:
            f.write(compiled.asm['cubin'])
        usage = subprocess.run([_cuobjdump(), '--dump-resource-usage', path], capture_output=True, text=True,
                               check=True).stdout  # fmt: skip
    regs, local = re.search(r'REG:(\d+)', usage), re.search(r'LOCAL:(\d+)', usage)
    if regs is None or local is None:
        raise RuntimeError(f'{variant.name}: no resource usage in cuobjdump output:\n{usage}')
    facts.update(regs=int(regs.group(1)), local=int(local.group(1)))
    return facts


def problems(variant: Variant, arch: int, facts: dict) -> list[str]:
    """What is wrong with a compiled variant (empty when ready)."""
    found = []
    if variant.tensor_cores and variant.dtype in (torch.float16, torch.bfloat16) and not facts['mma']:
        found.append('no mma / wgmma in the PTX')
    if variant.backward and facts['atomics']:
        found.append(f'{facts["atomics"]} atomic instructions in a backward kernel')
    if variant.head_dim() <= 64 and facts['local']:
        found.append(f'{facts["local"]} bytes of local memory (register spills)')
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='the representative subset of make test')
    parser.add_argument('--arch', type=int, action='append', help='compute capability x10 (default: 90 and 80)')
    args = parser.parse_args(argv)
    failed = 0
    if args.quick:
        checks = quick_checks()
    else:
        checks = [(v, arch) for v in variants() for arch in args.arch or ARCHS]
    print(f'| kernel | sm | mma | wgmma | atomics | regs | local | problems |\n|{"---|" * 8}')
    for variant, arch in checks:
        facts = compile_variant(variant, arch)
        found = problems(variant, arch, facts)
        failed += bool(found)
        print(f'| {variant.name} | {arch} | {facts["mma"]} | {facts["wgmma"]} | {facts["atomics"]} | '
              f'{facts["regs"]} | {facts["local"]} | {"; ".join(found)} |', flush=True)  # fmt: skip
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
