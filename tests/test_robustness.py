"""Robustness sweep: every registered model (and every mm backbone type) over awkward inputs.

Each case either works (finite output of the right shape; NaN / Inf input may give NaN) or raises a named error: a
``ValueError`` / ``TypeError`` with a message (timm's own families may keep timm's plain ``RuntimeError`` for
inputs timm itself rejects, e.g. a wrong channel count), never an IndexError, a reshape / view RuntimeError or a
crash. Cases: input channels 1 and 4 (models built for them, and a mismatching input), the family's minimum size and
one less, odd sizes, batch 0 and 1, integer / half inputs, ``channels_last`` and non-contiguous inputs. Non-finite
inputs (NaN / Inf pixels, huge values), eval and train, run in a subprocess per model, so that a segfault fails the
test instead of ending pytest.

The smallest variant of each family runs by default; every variant under ``-m slow``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import timm
import torch

import backbonezoo

FIRST_VARIANTS = {fam.model_names[0] for fam in backbonezoo.families().values()}
MODELS = [
    pytest.param(name, marks=() if name in FIRST_VARIANTS else pytest.mark.slow, id=name)
    for name in backbonezoo.list_models()
]
HAS_MM = importlib.util.find_spec('mmengine') is not None

# errors that betray a shape bug rather than a checked input: never acceptable
SHAPE_BUG = re.compile(r'reshape|view size|unspecified dimension|is invalid for input of size|out of (bounds|range)')

# (family, case) -> reason: gaps of the timm models (the mm backbones may have none). A listed case must still fail
# (strict), so a fix shows up as a test failure asking to shorten this table.
KNOWN_GAPS: dict[tuple[str, str], str] = {
    ('efficientvit', 'batch 0'): "timm's own CascadedGroupAttention reshapes with view(B, -1, H, W), which an empty "
    'batch cannot take; backbonezoo no longer patches timm at import (issue 22). The kernel-backed model '
    '(kernel_backed=True) takes an empty batch (tests/test_efficientvit.py).',
}


def build(name: str, monkeypatch, **kwargs) -> torch.nn.Module:
    """The model in eval mode, in its documented deterministic mode (``Family.extra['deterministic_env']``)."""
    for key, value in (backbonezoo.family_of(name).extra.get('deterministic_env') or {}).items():
        monkeypatch.setenv(key, value)
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def base_size(name: str) -> int:
    """The smallest side the family accepts (``Family.min_size``; the pretrained size for fixed-size families)."""
    family = backbonezoo.family_of(name)
    if family.fixed_size:
        return timm.get_pretrained_cfg(name).input_size[-1]
    return family.min_size


class Sweep:
    """Runs cases against one model, collecting every failure (the report then lists them all)."""

    def __init__(self, name: str, kind: str = 'timm'):
        self.name, self.kind = name, kind
        self.family = backbonezoo.family_of(name)
        self.failures: list[str] = []

    def case(self, label: str, fn, check=None, must_work: bool = False) -> torch.Tensor | tuple | None:
        gap = KNOWN_GAPS.get((self.family.name, label)) if self.kind == 'timm' else None  # timm's models' gaps
        try:
            out = fn()
        except (ValueError, TypeError) as err:
            problem = None if str(err) and not must_work else f'{type(err).__name__}: {err}'
        except RuntimeError as err:
            timm_plain = self.family.timm_owned and not SHAPE_BUG.search(str(err)) and not must_work
            problem = None if timm_plain else f'{type(err).__name__}: {str(err)[:300]}'
        except Exception as err:  # IndexError, AttributeError, ...: never a checked input
            problem = f'{type(err).__name__}: {str(err)[:300]}'
        else:
            try:
                if check is not None:
                    check(out)
                problem = None
            except AssertionError as err:
                problem = f'wrong output: {err}'
            if problem is None and gap is None:
                return out
        if gap is not None:
            if problem is None:
                self.failures.append(f'{label}: listed in KNOWN_GAPS ({gap}) but passes now: remove the entry')
            return None
        if problem is not None:
            self.failures.append(f'{label}: {problem}')
        return None

    def report(self) -> None:
        assert not self.failures, f'{self.kind} {self.name}:\n  ' + '\n  '.join(self.failures)


def _logits_check(batch: int, num_classes: int):
    def check(out: torch.Tensor) -> None:
        assert isinstance(out, torch.Tensor) and out.shape == (batch, num_classes), f'shape {tuple(out.shape)}'
        assert out.dtype.is_floating_point, f'dtype {out.dtype}'
        assert torch.isfinite(out).all(), 'non-finite output for a finite input'

    return check


def _close_to(reference: torch.Tensor | None):
    def check(out):
        outs, refs = (out, reference) if isinstance(out, tuple) else ((out,), (reference,))
        for o, r in zip(outs, refs):
            assert o.shape == r.shape, f'shape {tuple(o.shape)} != {tuple(r.shape)}'
            err = (o.double() - r.double()).abs().max().item() / (r.double().abs().max().item() or 1.0)
            assert err <= 1e-4, f'relative difference {err:.2e} from the contiguous NCHW input'

    return check


@pytest.mark.parametrize('name', MODELS)
def test_awkward_inputs_work_or_raise_named_errors(name, monkeypatch):
    model = build(name, monkeypatch)
    sweep = Sweep(name)
    s = base_size(name)
    nc = model.num_classes
    x = torch.randn(2, 3, s, s)
    with torch.no_grad():
        ref = sweep.case('batch 2 at the minimum size', lambda: model(x), _logits_check(2, nc), must_work=True)
        sweep.case('batch 1', lambda: model(x[:1]), _logits_check(1, nc), must_work=True)
        sweep.case('batch 0', lambda: model(x[:0]), _logits_check(0, nc))
        if ref is not None:
            sweep.case('channels_last', lambda: model(x.contiguous(memory_format=torch.channels_last)), _close_to(ref))
            wide = torch.randn(2, s, s, 6)[..., 1:4].permute(0, 3, 1, 2)  # a strided, non-contiguous view
            with_ref = sweep.case('contiguous copy', lambda: model(wide.contiguous()), must_work=True)
            if with_ref is not None:
                sweep.case('non-contiguous', lambda: model(wide), _close_to(with_ref))
        if not backbonezoo.family_of(name).fixed_size:
            sweep.case('height minimum - 1', lambda: model(torch.randn(1, 3, s - 1, s)), _logits_check(1, nc))
            sweep.case('width minimum - 1', lambda: model(torch.randn(1, 3, s, s - 1)), _logits_check(1, nc))
            sweep.case('odd size', lambda: model(torch.randn(1, 3, s + 3, s + 1)), _logits_check(1, nc))
        sweep.case('uint8 input', lambda: model((x[:1] * 50).clamp(0, 255).to(torch.uint8)), _logits_check(1, nc))
        sweep.case('int64 input', lambda: model(x[:1].long()), _logits_check(1, nc))
        sweep.case('float16 input, float32 model', lambda: model(x[:1].half()), None)
        for wrong in (1, 4):
            sweep.case(f'{wrong}-channel input', lambda c=wrong: model(torch.randn(1, c, s, s)), _logits_check(1, nc))
    sweep.report()


@pytest.mark.parametrize('name', MODELS)
def test_models_built_for_one_or_four_channels(name, monkeypatch):
    sweep = Sweep(name)
    s = base_size(name)
    for chans in (1, 4):
        model = sweep.case(
            f'in_chans={chans} builds', lambda c=chans: build(name, monkeypatch, in_chans=c), must_work=True
        )
        if model is None:
            continue
        with torch.no_grad():
            sweep.case(f'in_chans={chans} forward', lambda m=model, c=chans: m(torch.randn(2, c, s, s)),
                       _logits_check(2, model.num_classes), must_work=True)  # fmt: skip
            sweep.case(f'in_chans={chans}, 3-channel input', lambda m=model: m(torch.randn(1, 3, s, s)))
    sweep.report()


# ----------------------------------------------------------------------------------------------- non-finite inputs
_NON_FINITE = r"""
import json, os, sys, torch, timm, backbonezoo
name, size, with_mm = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1'
for key, value in (backbonezoo.family_of(name).extra.get('deterministic_env') or {}).items():
    os.environ.setdefault(key, value)
torch.manual_seed(0)
base = torch.randn(2, 3, size, size)
nan, inf = base.clone(), base.clone()
nan[0, 0, size // 3, size // 5] = float('nan')
inf[1, 2, size // 2, 1] = float('inf')
inputs = {'nan pixel': nan, 'inf pixel': inf, 'x * 1e20': base * 1e20, 'x * -3e38': base * -3e38}
report = []

def run(form, model, outputs, plan):
    for mode, labels in plan:
        model.train(mode == 'train')
        for label in labels:
            x = inputs[label]
            print(form, mode, label, flush=True)  # the last line names the case that crashed
            try:
                if mode == 'eval':
                    with torch.no_grad():
                        out = model(x)
                else:
                    out = model(x.clone().requires_grad_())
                    sum(o.float().sum() for o in outputs(out)).backward()
            except (ValueError, TypeError, FloatingPointError) as err:  # named errors are acceptable
                report.append([form, mode, label, 'named error', f'{type(err).__name__}: {err}'])
                continue
            except Exception as err:
                report.append([form, mode, label, 'bad error', f'{type(err).__name__}: {str(err)[:300]}'])
                continue
            shapes = [list(o.shape) for o in outputs(out)]
            report.append([form, mode, label, 'ok', shapes])

model = timm.create_model(name)
run('timm', model, lambda out: (out,), [('eval', list(inputs)), ('train', ['nan pixel', 'x * 1e20'])])
if with_mm:
    import importlib
    module = importlib.import_module('backbonezoo.mm.families.' + backbonezoo.family_of(name).name)
    cls = next(c for c in vars(module).values()
               if isinstance(c, type) and getattr(c, 'arch_zoo', None) and name in c.arch_zoo.values())
    run('mm ' + cls.__name__, cls(arch=name), tuple, [('eval', list(inputs)), ('train', ['nan pixel'])])
print('REPORT ' + json.dumps(report))
"""


def _mm_type(name: str):
    module = importlib.import_module(f'backbonezoo.mm.families.{backbonezoo.family_of(name).name}')
    for cls in vars(module).values():
        if isinstance(cls, type) and getattr(cls, 'arch_zoo', None) and name in cls.arch_zoo.values():
            return cls
    return None


@pytest.mark.parametrize('name', MODELS)
def test_non_finite_inputs_never_crash(name):
    """NaN / Inf pixels and huge images, eval (no grad) and train (forward + backward), timm and mm forms: each
    returns (NaN output allowed) or raises a named error. A subprocess per model turns a segfault into a failure."""
    with_mm = HAS_MM and _mm_type(name) is not None
    size = base_size(name)
    result = subprocess.run(
        [sys.executable, '-c', _NON_FINITE, name, str(size), '1' if with_mm else '0'],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')},
    )
    last = result.stdout.strip().splitlines()[-1:] or ['(nothing)']
    assert result.returncode == 0, (
        f'{name}: the process died (exit {result.returncode}) at {last[0]!r}\n{textwrap.shorten(result.stderr, 2000)}'
    )
    report = json.loads(last[0].removeprefix('REPORT '))
    bad = [f'{form} {mode} {label}: {detail}' for form, mode, label, status, detail in report if status == 'bad error']
    assert not bad, f'{name}: unnamed errors on non-finite input:\n  ' + '\n  '.join(bad)
    for form, _, label, status, detail in report:
        if status == 'ok' and form == 'timm':
            assert detail == [[2, timm.get_pretrained_cfg(name).num_classes]], f'{name} {label}: shape {detail}'


# ----------------------------------------------------------------------------------------------- mm backbones
@pytest.mark.mm
@pytest.mark.parametrize('name', MODELS)
def test_mm_backbone_awkward_inputs(name, monkeypatch):
    if not HAS_MM:
        pytest.skip('the OpenMMLab stack is not installed')
    import backbonezoo.mm  # noqa: F401  (registers the types)

    cls = _mm_type(name)
    if cls is None:
        pytest.skip(f'no mm backbone type lists {name}')
    for key, value in (backbonezoo.family_of(name).extra.get('deterministic_env') or {}).items():
        monkeypatch.setenv(key, value)
    torch.manual_seed(0)
    backbone = cls(arch=name).eval()
    sweep = Sweep(name, kind=f'mm {cls.__name__}')
    s = base_size(name)
    x = torch.randn(2, 3, s, s)

    def maps_check(batch: int):
        def check(out):
            assert isinstance(out, tuple) and out, f'expected a tuple of maps, got {type(out).__name__}'
            for o in out:
                assert o.ndim == 4 and o.shape[0] == batch, f'map shape {tuple(o.shape)}'
                assert torch.isfinite(o).all(), 'non-finite output for a finite input'

        return check

    with torch.no_grad():
        ref = sweep.case('batch 2 at the minimum size', lambda: backbone(x), maps_check(2), must_work=True)
        sweep.case('batch 1', lambda: backbone(x[:1]), maps_check(1), must_work=True)
        sweep.case('batch 0', lambda: backbone(x[:0]), maps_check(0))
        if ref is not None:
            sweep.case('channels_last', lambda: backbone(x.contiguous(memory_format=torch.channels_last)),
                       _close_to(ref))  # fmt: skip
            wide = torch.randn(2, s, s, 6)[..., 1:4].permute(0, 3, 1, 2)
            with_ref = sweep.case('contiguous copy', lambda: backbone(wide.contiguous()), must_work=True)
            if with_ref is not None:
                sweep.case('non-contiguous', lambda: backbone(wide), _close_to(with_ref))
        sweep.case('minimum - 1', lambda: backbone(torch.randn(1, 3, s - 1, s - 1)), maps_check(1))
        sweep.case('odd size', lambda: backbone(torch.randn(1, 3, s + 3, s + 1)), maps_check(1))
        sweep.case('uint8 input', lambda: backbone(torch.zeros(1, 3, s, s, dtype=torch.uint8)), maps_check(1))
        sweep.case('1-channel input', lambda: backbone(torch.randn(1, 1, s, s)), maps_check(1))
    sweep.report()
