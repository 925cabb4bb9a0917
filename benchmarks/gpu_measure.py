#!/usr/bin/env python
"""The prepared GPU measurement of issue 19 (about 8 minutes on one H200; rerunnable, results merge into the CSV).

    python benchmarks/gpu_measure.py                                  # on a machine with a GPU
    python benchmarks/gpu_measure.py --official-root /tmp/official    # also the official implementations
    python benchmarks/gpu_measure.py --smoke                          # CPU, tiny: checks the script itself
    bash benchmarks/gpu_measure.sh                                    # the same, with the official code fetched

What it measures, bf16 autocast, each model with the default kernel backend ('auto': Triton on CUDA) and again with
``backend='torch'``, inference and training (forward + backward + AdamW step) throughput and peak memory
(``tools/benchmark.py``, rows merged into ``benchmarks/results.csv``, ``benchmarks/gpu.md`` rewritten):

1. each family's smallest variant and one mid-size variant (``FAMILIES``), batch 64 at 224;
2. BiFormer and A2Mamba as the dense configs build them (``DENSE``: the mm backbone of the segmentation config at
   512x512, of the detection config at 800x1216), batch 2; rows named ``<model>@<H>x<W>``;
3. the official implementations that run on a GPU without building a CUDA extension (``OFFICIAL``: BiFormer's
   legacy routing, LITv2 with ``torchvision.ops.deform_conv2d`` standing in for its DCN build, SReT, PATNet),
   each from ``--official-root/<family>`` (a checkout of the pinned commit, never inside the repository; absent
   folders are skipped with a message): the official model is built with seed 0 in its own process (the official
   modules register timm names of their own), timed the same way, and its state dict goes through the family's
   converter (``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...))``) into our model;
   the row's note gives the largest output difference (fp32, eval) against ours on the same input.

``--budget-s`` (default 450) stops starting new steps when the time is spent and says what was skipped.
``--smoke`` (or ``SMOKE=1``): CPU, batch 2, one repeat, dense sizes 224x224; its numbers mean nothing. The GPU rows'
report is ``gpu.md``; a smoke run writes its rows to ``--out`` (default: a temporary folder in smoke mode).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))

import benchmark  # noqa: E402  (tools/benchmark.py)

# family: (smallest variant, a mid-size variant)
FAMILIES = {
    'efficientvit': ('efficientvit_m0', 'efficientvit_m4'),
    'shvit': ('shvit_s1', 'shvit_s3'),
    'halonet': ('halonet_h0', 'halonet_h2'),
    'biformer': ('biformer_tiny', 'biformer_small'),
    'litv2': ('litv2_small', 'litv2_medium'),
    'overlock': ('overlock_xt', 'overlock_t'),
    'a2mamba': ('a2mamba_nano', 'a2mamba_tiny'),
    'tic': ('tic_tiny', 'tic_small'),
    'sret': ('sret_tiny', 'sret_small'),
    'patnet': ('patnet_t0', 'patnet_t2'),
}
# family: {(H, W): the config whose backbone runs at that size}
DENSE = {
    'biformer': {
        (512, 512): 'configs/segmentation/biformer/biformer_s_upernet_512x512_160k_ade20k.py',
        (800, 1216): 'configs/detection/biformer/mask_rcnn_biformer_s_fpn_1x_coco.py',
    },
    'a2mamba': {
        (512, 512): 'configs/segmentation/a2mamba/a2mamba_t_upernet_512x512_160k_ade20k.py',
        (800, 1216): 'configs/detection/a2mamba/mask_rcnn_a2mamba_t_fpn_1x_coco.py',
    },
}
BACKENDS = ('auto', 'torch')


@dataclass(frozen=True)
class Official:
    """An official implementation: where its code lives and how one variant is built from it."""

    repo: str
    commit: str
    variants: dict  # our timm name -> the official builder's name for it
    paths: tuple[str, ...] = ('',)  # folders (relative to the checkout) put on sys.path


OFFICIAL = {
    'biformer': Official(
        'rayleizhu/BiFormer',
        '1697bbbeafb8680524898f1dcaac10defd0604be',
        {'biformer_tiny': 'biformer_tiny', 'biformer_small': 'biformer_small'},
    ),
    'litv2': Official(
        'ziplab/LITv2',
        '7501c8662991cad6db780b61fac0886b56a76588',
        {'litv2_small': 'litv2-small', 'litv2_medium': 'litv2-medium'},
        ('classification',),
    ),
    'sret': Official(
        'szq0214/SReT',
        'af6db0ae413838d3144a6cd74f774bf670d5ddc6',
        {'sret_tiny': 'SReT_T', 'sret_small': 'SReT_S'},
    ),
    'patnet': Official(
        'haiduo/PartialNet',
        '679cfc0d6f54872686db308de0c4068ee7caf084',
        {'patnet_t0': 'PartialNet_t0', 'patnet_t2': 'PartialNet_t2'},
    ),
}


# --------------------------------------------------------------------------------------------- official builders
def _stub_module(name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module


def _install_stubs(family: str) -> None:
    """Stand-ins for what the official code imports but a GPU run without its CUDA builds cannot have."""
    import torch
    from torch import nn

    if family == 'biformer':  # fairscale: only the gradient-checkpointing wrapper, unused at inference and here
        with contextlib.suppress(ImportError):
            import fairscale  # noqa: F401

            return
        _stub_module('fairscale')
        _stub_module('fairscale.nn')
        _stub_module('fairscale.nn.checkpoint', checkpoint_wrapper=lambda module, *args, **kwargs: module)
    if family == 'litv2':  # the DCN extension (CUDA build + apex) -> torchvision's exact deformable conv v1

        class DeformConv2dPack(nn.Module):
            """Same parameters (weight, bias, conv_offset) and semantics as the official DCN module."""

            def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation=1, groups=1,
                         deformable_groups=1, im2col_step=32, bias=True, lr_mult=0.1):  # fmt: skip
                super().__init__()
                k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
                self.stride, self.padding, self.dilation = stride, padding, dilation
                self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *k))
                self.bias = nn.Parameter(torch.zeros(out_channels))
                nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
                self.conv_offset = nn.Conv2d(in_channels, deformable_groups * 2 * k[0] * k[1], k, stride, padding)
                nn.init.zeros_(self.conv_offset.weight)
                nn.init.zeros_(self.conv_offset.bias)

            def forward(self, x):
                from torchvision.ops import deform_conv2d

                # fp32 as the official extension runs under mixed precision (apex float_function); torchvision has
                # no bf16 kernel
                offset = self.conv_offset(x)
                with torch.autocast(x.device.type, enabled=False):
                    out = deform_conv2d(x.float(), offset.float(), self.weight.float(), self.bias.float(),
                                        self.stride, self.padding, self.dilation)  # fmt: skip
                return out.to(x.dtype)

        for name in ('mm_modules', 'mm_modules.DCN', 'mm_modules.DCN.modules'):
            _stub_module(name)
        _stub_module('mm_modules.DCN.modules.deform_conv2d', DeformConv2dPack=DeformConv2dPack)
    if family == 'patnet':  # easydict (iRPE's config object), when it is not installed
        try:
            import easydict  # noqa: F401
        except ImportError:

            class EasyDict(dict):
                def __getattr__(self, name):
                    try:
                        return self[name]
                    except KeyError:
                        raise AttributeError(name) from None

                def __setattr__(self, name, value):
                    self[name] = value

            _stub_module('easydict', EasyDict=EasyDict)


def build_official(family: str, root: Path, name: str):
    """The official model ``name`` (the builder's name, see ``OFFICIAL``) from the checkout at ``root``."""
    import importlib

    spec = OFFICIAL[family]
    for sub in spec.paths:
        sys.path.insert(0, str(root / sub))
    _install_stubs(family)
    if family == 'biformer':
        return getattr(importlib.import_module('models.biformer'), name)(pretrained=False)
    if family == 'sret':
        return getattr(importlib.import_module('SReT'), name)(pretrained=False)
    if family == 'litv2':
        import yaml

        cfg = yaml.safe_load((root / 'classification' / 'configs' / f'{name}.yaml').read_text())['MODEL']
        lit = cfg['LIT']
        module = importlib.import_module('models.litv2')
        return module.LITv2(
            img_size=224, embed_dim=lit['EMBED_DIM'], depths=lit['DEPTHS'], num_heads=lit['NUM_HEADS'],
            alpha=lit['ALPHA'], local_ws=lit['LOCAL_WS'], drop_path_rate=0.0,
        )  # fmt: skip
    if family == 'patnet':
        import yaml

        cfg = yaml.safe_load((root / 'cfg' / f'{name}.yaml').read_text())
        cfg.update(num_classes=1000, drop_path_rate=0.0, pretrained=None)
        cfg.pop('model_name', None)
        return importlib.import_module('models.partialnet').PartialNet(**cfg)
    raise KeyError(family)


def official_worker(job: dict) -> dict:
    """In a fresh process: build the official model (seed 0), save its state dict and its fp32 output on a fixed
    input, time inference and training as ``tools/benchmark.py`` does."""
    import torch

    torch.manual_seed(0)
    device = torch.device(job['device'])
    model = build_official(job['family'], Path(job['root']), job['name']).eval()
    torch.save(model.state_dict(), job['weights'])
    x = torch.randn(2, 3, job['img_size'], job['img_size'], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.save(dict(input=x, output=model(x).float()), job['outputs'])
    model = model.to(device)
    batch = torch.randn(job['batch_size'], 3, job['img_size'], job['img_size'], device=device)

    def infer():
        with torch.no_grad(), benchmark._autocast(device, job['amp']):
            return model(batch)

    infer_s = benchmark.median_time(infer, job['repeats'], job['warmup'], device)
    with benchmark.PeakMemory(device) as forward_peak:
        infer()
    train_model = copy.deepcopy(model).train()
    step = benchmark.train_step_fn(train_model, batch, device, job['amp'])
    train_s = benchmark.median_time(step, max(1, job['repeats'] // 2), job['warmup'], device)
    with benchmark.PeakMemory(device, absolute=True) as train_peak:
        step()
    params = sum(p.numel() for p in model.parameters())
    return dict(
        infer_img_s=job['batch_size'] / infer_s,
        train_img_s=job['batch_size'] / train_s,
        peak_mem_mb=forward_peak.mb,
        train_peak_mb=train_peak.mb,
        params=params,
    )


# --------------------------------------------------------------------------------------------- steps
def smoke_size(model: str) -> int:
    """The smallest side a family's classifier accepts, at least 64 (BiFormer: multiples of 112, A2Mamba 224)."""
    import backbonezoo

    family = backbonezoo.family_of(model)
    return max(64, -(-family.min_size // family.size_divisor) * family.size_divisor)


class Clock:
    def __init__(self, budget_s: float):
        self.start, self.budget_s, self.skipped = time.monotonic(), budget_s, []

    def allows(self, what: str) -> bool:
        spent = time.monotonic() - self.start
        if spent > self.budget_s:
            self.skipped.append(what)
            print(f'[gpu_measure] budget {self.budget_s:.0f} s spent ({spent:.0f} s): skipping {what}', flush=True)
            return False
        return True


def measure_zoo(models: list[str], opts: argparse.Namespace, clock: Clock) -> None:
    for backend in BACKENDS:
        for model in models:
            if not clock.allows(f'{model} (backend {backend})'):
                continue
            argv = ['--models', model, '--device', opts.device, '--amp', 'bf16', '--vs', 'none', '--no-gmacs']
            argv += ['--batch-size', str(opts.batch_size), '--repeats', str(opts.repeats), '--warmup', str(opts.warmup)]
            argv += ['--out', str(opts.out), '--threads', str(opts.threads), '--no-plot']
            argv += ['--img-size', str(opts.img_size or smoke_size(model))]
            if backend != 'auto':
                argv += ['--backend', backend]
            if opts.device == 'cpu':
                argv.append('--no-memory')  # the fresh-process RSS probe adds nothing to a smoke run
            try:
                benchmark.main(argv)
            except Exception as err:  # one model's failure must not cost the others their measurement
                print(f'[gpu_measure] {model} (backend {backend}) failed: {type(err).__name__}: {err}', flush=True)


def _dense_backbone(config: str, arch: str | None):
    from mmengine.config import Config
    from mmengine.registry import MODELS

    import backbonezoo.mm  # noqa: F401  (registers the mm backbones)

    cfg = Config.fromfile(str(REPO / config)).model.backbone.to_dict()
    cfg.pop('init_cfg', None)
    cfg.pop('_delete_', None)
    cfg.update(drop_path_rate=0.0, norm_eval=False)
    if arch is not None:
        cfg['arch'] = arch
    return MODELS.build(cfg)


def measure_dense(families: list[str], opts: argparse.Namespace, clock: Clock) -> list[benchmark.Row]:
    """The dense configs' backbones at their sizes, batch 2: default backend, then ``backend='torch'``."""
    import timm
    import torch

    device = torch.device(opts.device)
    rows = []
    for family in families:
        sizes = list(DENSE.get(family, {}).items())
        for hw, config in sizes[:1] if opts.smoke else sizes:  # smoke: one config, at a small size
            hw = opts.dense_size or hw
            for backend in BACKENDS:
                what = f'{family} dense {hw[0]}x{hw[1]} (backend {backend})'
                if not clock.allows(what):
                    continue
                try:
                    with benchmark.kernel_backend(None if backend == 'auto' else backend):
                        arch = FAMILIES[family][0] if opts.smallest else None
                        model = _dense_backbone(config, arch).to(device).eval()
                        x = torch.randn(opts.dense_batch, 3, *hw, device=device)

                        def infer(model=model, x=x):
                            with torch.no_grad(), benchmark._autocast(device, 'bf16'):
                                return model(x)

                        infer_s = benchmark.median_time(infer, opts.repeats, opts.warmup, device)
                        with benchmark.PeakMemory(device) as forward_peak:
                            infer()
                        train_model = copy.deepcopy(model).train()
                        optimizer = torch.optim.AdamW(train_model.parameters(), lr=1e-4)

                        def step(train_model=train_model, optimizer=optimizer, x=x):
                            with benchmark._autocast(device, 'bf16'):
                                loss = sum(out.float().mean() for out in train_model(x))
                            loss.backward()
                            optimizer.step()
                            optimizer.zero_grad(set_to_none=True)

                        train_s = benchmark.median_time(step, max(1, opts.repeats // 2), opts.warmup, device)
                        with benchmark.PeakMemory(device, absolute=True) as train_peak:
                            step()
                except Exception as err:
                    print(f'[gpu_measure] {what} failed: {type(err).__name__}: {err}', flush=True)
                    continue
                rows.append(
                    _row(
                        f'{model.model_name}@{hw[0]}x{hw[1]}', family, 'zoo', hw[0], opts, device,
                        params=sum(p.numel() for p in model.parameters()), batch=opts.dense_batch,
                        infer_img_s=opts.dense_batch / infer_s, train_img_s=opts.dense_batch / train_s,
                        peak_mem_mb=forward_peak.mb, train_peak_mb=train_peak.mb,
                        backend='' if backend == 'auto' else backend, note=f'mm backbone of {config}', timm=timm,
                    )
                )  # fmt: skip
                print(f'[gpu_measure] {rows[-1].model} ({backend}): {rows[-1].infer_img_s:.1f} img/s', flush=True)
    return rows


def _row(model, family, impl, img_size, opts, device, *, params, batch, timm, backend='', note='', **numbers):
    import torch

    return benchmark.Row(
        model=model, family=family, impl=impl, device=device.type, img_size=img_size, batch_size=batch,
        threads=opts.threads, compile=False, amp=True, params=params, gmacs=math.nan,
        infer_img_s=numbers['infer_img_s'], latency_ms=math.nan, train_img_s=numbers['train_img_s'],
        peak_mem_mb=numbers['peak_mem_mb'], pct_peak=math.nan, speedup=1.0, top1_paper=None, matmul_gflops=math.nan,
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), torch=torch.__version__,
        timm=timm.__version__, machine=benchmark.machine_name(device), command=opts.command, amp_dtype='bf16',
        backend=backend, train_peak_mb=numbers['train_peak_mb'], device_name=benchmark.device_name(device), note=note,
    )  # fmt: skip


def measure_official(families: list[str], opts: argparse.Namespace, clock: Clock) -> list[benchmark.Row]:
    import timm
    import torch

    import backbonezoo

    device = torch.device(opts.device)
    rows = []
    for family in families:
        spec = OFFICIAL.get(family)
        if spec is None:
            continue
        root = opts.official_root / family if opts.official_root else None
        if root is None or not root.is_dir():
            print(
                f'[gpu_measure] official {family}: {root or "--official-root"} not found, skipped (a checkout of '
                f'https://github.com/{spec.repo} at {spec.commit} there measures it)',
                flush=True,
            )
            continue
        variants = list(spec.variants.items())[: 1 if opts.smallest else None]
        for ours, name in variants:
            if not clock.allows(f'official {ours}'):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                job = dict(
                    family=family, root=str(root), name=name, device=opts.device, amp='bf16', img_size=224,
                    batch_size=opts.batch_size, repeats=opts.repeats, warmup=opts.warmup,
                    weights=f'{tmp}/weights.pth', outputs=f'{tmp}/outputs.pth',
                )  # fmt: skip
                cmd = [sys.executable, str(Path(__file__).resolve()), '--official-worker', json.dumps(job)]
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(root), timeout=900)
                if done.returncode != 0:
                    tail = (done.stderr.strip().splitlines() or ['(no output)'])[-1]
                    print(f'[gpu_measure] official {ours} failed: {tail}', flush=True)
                    continue
                measured = json.loads(done.stdout.strip().splitlines()[-1])
                note = _compare_with_ours(ours, job)
            rows.append(
                _row(ours, backbonezoo.family_of(ours).name, 'official', 224, opts, device, batch=opts.batch_size,
                     timm=timm, note=note, **measured)
            )  # fmt: skip
            print(f'[gpu_measure] official {ours}: {measured["infer_img_s"]:.1f} img/s; {note}', flush=True)
    return rows


def _compare_with_ours(ours: str, job: dict) -> str:
    """Our model with the official weights converted through the family's converter, on the official output's input:
    the largest absolute difference, and relative to the output's largest magnitude."""
    import timm
    import torch

    import backbonezoo  # noqa: F401

    try:
        model = timm.create_model(ours, pretrained=True, pretrained_cfg_overlay=dict(file=job['weights'])).eval()
        saved = torch.load(job['outputs'], weights_only=True)
        with torch.no_grad():
            mine = model(saved['input']).float()
    except Exception as err:
        return f'conversion failed: {type(err).__name__}: {str(err)[:200]}'
    diff = (mine - saved['output']).abs().max().item()
    scale = saved['output'].abs().max().item() or 1.0
    return f'official weights through our converter: max |diff| {diff:.2e} (relative {diff / scale:.1e}), fp32'


# --------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--smoke', action='store_true', default=os.environ.get('SMOKE') == '1')
    parser.add_argument('--families', nargs='+', default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument('--smallest', action='store_true', help="only each family's smallest variant")
    parser.add_argument('--official-root', type=Path, default=None, help='folder holding <family>/ official checkouts')
    parser.add_argument(
        '--out', type=Path, default=None, help='results folder (default benchmarks/; smoke: a temp dir)'
    )
    parser.add_argument('--budget-s', type=float, default=450.0, help='stop starting new steps after this long')
    parser.add_argument('--skip', nargs='*', default=[], choices=('zoo', 'dense', 'official'))
    parser.add_argument('--list-official', action='store_true', help='print "family repo commit" lines and exit')
    parser.add_argument('--official-worker', help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.official_root is not None:
        opts.official_root = opts.official_root.resolve()  # the worker runs inside the checkout
    opts.command = 'python benchmarks/gpu_measure.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    if opts.smoke:
        opts.device, opts.batch_size, opts.repeats, opts.warmup, opts.threads = 'cpu', 2, 1, 0, 1
        opts.dense_batch, opts.dense_size, opts.img_size = 1, (224, 224), None
        opts.out = opts.out or Path(tempfile.mkdtemp(prefix='gpu_measure_smoke_'))
    else:
        opts.device, opts.batch_size, opts.repeats, opts.warmup, opts.threads = 'cuda', 64, 10, 3, 4
        opts.dense_batch, opts.dense_size, opts.img_size = 2, None, 224
        opts.out = opts.out or REPO / 'benchmarks'
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.list_official:
        for family, spec in OFFICIAL.items():
            print(family, spec.repo, spec.commit)
        return 0
    if opts.official_worker:
        print(json.dumps(official_worker(json.loads(opts.official_worker))))
        return 0
    import torch

    if opts.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('gpu_measure: no CUDA device here; --smoke (or SMOKE=1) checks the script on CPU')
    if opts.smoke:
        print('[gpu_measure] SMOKE run on CPU: tiny batches, one repeat; the numbers mean nothing', flush=True)
    torch.set_num_threads(opts.threads)
    opts.out.mkdir(parents=True, exist_ok=True)
    clock = Clock(opts.budget_s)
    models = [name for family in opts.families for name in FAMILIES[family][: 1 if opts.smallest else 2]]
    if 'zoo' not in opts.skip:
        measure_zoo(models, opts, clock)
    extra = []
    if 'dense' not in opts.skip:
        extra += measure_dense(opts.families, opts, clock)
    if 'official' not in opts.skip:
        extra += measure_official(opts.families, opts, clock)
    csv_path = opts.out / benchmark.CSV_NAME
    replaced = {row.key() for row in extra}
    rows = [r for r in benchmark.read_rows(csv_path) if r.key() not in replaced] + extra
    benchmark.write_rows(csv_path, rows)
    benchmark.write_gpu_report(opts.out / benchmark.GPU_REPORT_NAME, rows, smoke=opts.smoke)
    spent = time.monotonic() - clock.start
    print(f'[gpu_measure] wrote {csv_path} and {opts.out / benchmark.GPU_REPORT_NAME} in {spent:.0f} s', flush=True)
    if clock.skipped:
        print(f'[gpu_measure] skipped for time: {", ".join(clock.skipped)}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
