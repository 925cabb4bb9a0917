"""Inference form of any zoo model: structural reparameterisation, BatchNorm folding, optional compile.

``deploy(model)`` returns a model for inference whose outputs equal the eval-mode model's (fp32, relative error
<= 1e-4, checked on a probe input unless ``check=False``):

1. **Reparameterisation.** Every module that offers the timm-style ``reparameterize()`` (OverLoCK's dilated
   re-parameterised large kernels, ...) is switched to its deploy form.
2. **BatchNorm folding.** An eval-mode BatchNorm that directly follows a convolution / linear layer (or directly
   precedes a linear one) becomes part of that layer's weight and bias, and the BatchNorm is removed. Found in
   ``nn.Sequential`` chains, timm's ``ConvNormAct`` (its ``BatchNormAct2d`` keeps only its activation) and the
   family blocks listed in :data:`FOLDS`, whose ``forward`` applies ``bn(layer(x))`` with nothing in between.
3. **Memory format and compile** (opt-in): ``channels_last=True`` converts parameters and expects NHWC inputs to pay
   off; ``compile=True`` wraps the result in ``torch.compile`` (Inductor; on CPU its C++ code generation) with
   ``compile_mode`` (``'max-autotune-no-cudagraphs'`` searches kernels, at a longer first call).

The input model is not modified (``inplace=False`` copies it). Training the deployed model is not supported: its
BatchNorms are gone, so call ``deploy`` on a trained model, once, for inference or export (``torch.onnx.export``
works on the result as on the original).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable

import torch
import torch.nn as nn

from .layers.bn_fold import fold_batchnorm

__all__ = ['DeployMismatchError', 'DeployReport', 'FOLDS', 'deploy']

_LOG = logging.getLogger(__name__)
_BN = nn.modules.batchnorm._BatchNorm
# plain BatchNorms, and timm's BatchNormAct2d (norm, then dropout + activation, which stay after folding)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_FOLDABLE_BN = ('BatchNorm1d', 'BatchNorm2d', 'SyncBatchNorm', 'BatchNormAct2d')


class DeployMismatchError(RuntimeError):
    """The deployed model's output differs from the original's beyond the tolerance (a folding rule is wrong)."""


@dataclasses.dataclass
class DeployReport:
    """What ``deploy`` changed: module names of folded BatchNorms and reparameterised blocks, the BatchNorms left."""

    folded: list[str] = dataclasses.field(default_factory=list)
    reparameterized: list[str] = dataclasses.field(default_factory=list)
    remaining_batchnorms: list[str] = dataclasses.field(default_factory=list)
    max_rel_error: float | None = None


def _family_folds() -> dict[type, tuple[tuple[str, ...], ...]]:
    """Family blocks whose forward applies a BatchNorm right after (or, marked ``'before'``, right before) a layer."""
    from .backbones import overlock, patnet, sret, tic

    return {
        patnet.PatchEmbed: (('proj', 'norm'),),
        patnet.PatchMerging: (('reduction', 'norm'),),
        patnet.GaussianChannelGate: (('stats_conv', 'bn'),),
        # after reparameterize() the large kernel is one conv with bias, followed directly by lk_norm
        overlock.RepConvBlock: (('large_kernel.conv', 'lk_norm'),),
        sret.ConvStem: (('conv1', 'bn1'), ('conv2', 'bn2'), ('conv3', 'bn3')),
        tic.ConvStem: (('conv1', 'bn1'),),
    }


#: Family blocks with BatchNorms ``deploy`` folds, filled on first use (the backbones import this package's layers).
FOLDS: dict[type, tuple[tuple[str, ...], ...]] = {}


def _as_layer(module: nn.Module) -> nn.Module | None:
    """The convolution / linear layer ``module`` computes, if it is one (a reparameterised block is its conv)."""
    if isinstance(module, _LAYERS):
        return module
    conv = getattr(module, 'conv', None)  # OverLoCK's DilatedReparamBlock in deploy form: forward is conv(x)
    if type(module).__name__ == 'DilatedReparamBlock' and getattr(module, 'bn', True) is None:
        return conv
    return None


def _pointwise(layer: nn.Module) -> bool:
    """A layer whose output channel is a plain linear map of the input channels at one position (BN may precede it)."""
    if isinstance(layer, nn.Linear):
        return True
    return (
        isinstance(layer, nn.Conv2d)
        and layer.kernel_size == (1, 1)
        and layer.padding == (0, 0)
        and layer.groups == 1
        and layer.padding_mode == 'zeros'
    )


def _fold_into(layer: nn.Module | None, bn: nn.Module, bn_after: bool) -> bool:
    """Fold the eval-mode BatchNorm ``bn`` into ``layer`` in place; False when the pair cannot be folded exactly."""
    if layer is None or not isinstance(bn, _BN) or type(bn).__name__ not in _FOLDABLE_BN or bn.running_mean is None:
        return False
    if bn_after:
        if not isinstance(layer, _LAYERS) or layer.weight.shape[0] != bn.num_features:
            return False
    elif not _pointwise(layer) or layer.weight.shape[1] != bn.num_features:
        return False
    if not bn.affine:
        bn = copy.copy(bn)
        bn.weight, bn.bias = torch.ones_like(bn.running_mean), torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        weight = layer.weight if bn_after else layer.weight.flatten(1)
        weight, bias = fold_batchnorm(weight, layer.bias, bn, bn_after=bn_after)
        layer.weight.copy_(weight.view_as(layer.weight))
        if layer.bias is None:
            layer.bias = nn.Parameter(bias.to(layer.weight.dtype))
        else:
            layer.bias.copy_(bias)
    return True


def _activation_of(bn: nn.Module) -> nn.Module:
    """What is left of timm's BatchNormAct2d once its normalisation is folded: dropout then activation."""
    drop, act = getattr(bn, 'drop', nn.Identity()), getattr(bn, 'act', nn.Identity())
    if isinstance(drop, nn.Identity):
        return act
    return nn.Sequential(drop, act)


def _replacement(bn: nn.Module) -> nn.Module:
    return _activation_of(bn) if hasattr(bn, 'act') else nn.Identity()


def _fold_sequential(seq: nn.Sequential, prefix: str, report: DeployReport) -> None:
    # dropout and identities pass values through unchanged in eval: a BN across them is still adjacent to its layer
    names = [n for n, m in seq._modules.items() if not isinstance(m, (nn.Identity, nn.Dropout))]
    for first, second in zip(names, names[1:]):
        a, b = seq._modules[first], seq._modules[second]
        if _fold_into(_as_layer(a), b, bn_after=True):
            seq._modules[second] = _replacement(b)
            report.folded.append(f'{prefix}{second}')
        elif _fold_into(_as_layer(b), a, bn_after=False):
            seq._modules[first] = _replacement(a)
            report.folded.append(f'{prefix}{first}')


def _fold_pair(owner: nn.Module, layer_path: str, bn_name: str, *where: str, prefix: str, report: DeployReport) -> None:
    try:
        layer = owner.get_submodule(layer_path)
    except AttributeError:
        return
    bn = getattr(owner, bn_name, None)
    if _fold_into(_as_layer(layer), bn, bn_after=where != ('before',)):
        setattr(owner, bn_name, _replacement(bn))
        report.folded.append(f'{prefix}{bn_name}')


def _is_conv_norm_act(module: nn.Module) -> bool:
    """timm's ConvNormAct: forward is ``bn(conv(x))`` (its BatchNormAct2d applies the activation after the norm)."""
    return type(module).__name__ in ('ConvNormAct', 'ConvNormActAa') and hasattr(module, 'conv')


def fold_batchnorms(model: nn.Module) -> DeployReport:
    """Fold every eval-mode BatchNorm that directly follows (or precedes, for linear layers) its layer, in place."""
    if not FOLDS:
        FOLDS.update(_family_folds())
    report = DeployReport()
    for name, module in list(model.named_modules()):
        prefix = f'{name}.' if name else ''
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            # (a Sequential with its own forward, e.g. the eval-time folding Conv2dNorm of EfficientViT-M / SHViT,
            # may not chain its children)
            _fold_sequential(module, prefix, report)
        elif _is_conv_norm_act(module):
            _fold_pair(module, 'conv', 'bn', prefix=prefix, report=report)
        for pair in FOLDS.get(type(module), ()):
            _fold_pair(module, *pair, prefix=prefix, report=report)
    return report


def _reparameterize(model: nn.Module, report: DeployReport) -> None:
    if callable(getattr(model, 'reparameterize', None)):
        model.reparameterize()
        report.reparameterized.append('')
        return
    for name, module in model.named_modules():
        if name and callable(getattr(module, 'reparameterize', None)):
            module.reparameterize()
            report.reparameterized.append(name)


def _probe_input(model: nn.Module) -> torch.Tensor:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    chans, height, width = cfg.get('input_size', (3, 224, 224))
    chans = getattr(model, 'in_chans', chans)
    param = next(model.parameters(), torch.empty(0))
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, chans, height, width, generator=generator).to(param.device, param.dtype)


def _seeded_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward with the global generator seeded (SReT draws token permutations at inference), then restored."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model(x)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    err = (actual.double() - expected.double()).abs().max().item()
    return err / (expected.double().abs().max().item() or 1.0)


def deploy(
    model: nn.Module,
    *,
    fold: bool = True,
    reparameterize: bool = True,
    channels_last: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
    check: bool = True,
    example_input: torch.Tensor | None = None,
    rtol: float = 1e-4,
    inplace: bool = False,
    report: Callable[[DeployReport], None] | None = None,
) -> nn.Module:
    """The inference form of ``model`` (eval mode, folded, optionally channels-last and compiled).

    Args:
        model: any model registered by the zoo (or any timm model: the generic rules apply to it too).
        fold: fold BatchNorms into adjacent convolutions / linear layers.
        reparameterize: switch blocks with a ``reparameterize()`` method to their deploy form.
        channels_last: convert the parameters to ``torch.channels_last`` (feed NHWC inputs for the speed-up).
        compile: return ``torch.compile(model, mode=compile_mode)``; the first call compiles.
        compile_mode: ``torch.compile``'s mode, e.g. ``'max-autotune-no-cudagraphs'``.
        check: compare outputs on ``example_input`` (default: a batch of 2 at the model's pretrained input size)
            before and after, and raise :class:`DeployMismatchError` when the relative error exceeds ``rtol``.
        example_input: the probe input for ``check``.
        rtol: tolerance of the check (max abs error over max abs value).
        inplace: modify ``model`` itself instead of a copy.
        report: called with the :class:`DeployReport` (what was folded, what is left, the measured error).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f'deploy: expected an nn.Module, got {type(model).__name__}')
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    probe, expected = None, None
    if check:
        probe = example_input if example_input is not None else _probe_input(model)
        expected = _seeded_forward(model, probe)
    result = DeployReport()
    if reparameterize:
        _reparameterize(model, result)
    if fold:
        folded = fold_batchnorms(model)
        result.folded = folded.folded
    result.remaining_batchnorms = [n for n, m in model.named_modules() if isinstance(m, _BN)]
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if check:
        actual = _seeded_forward(model, probe.contiguous(memory_format=torch.channels_last) if channels_last else probe)
        result.max_rel_error = _relative_error(actual, expected)
        if not result.max_rel_error <= rtol:
            raise DeployMismatchError(
                f'deploy: the deployed {type(model).__name__} differs from the original by a relative error of '
                f'{result.max_rel_error:.2e} > rtol={rtol:.0e}; folded: {", ".join(result.folded) or "nothing"}'
            )
    _LOG.debug(
        'deploy: folded %d BatchNorms, reparameterised %d blocks, %d BatchNorms left',
        len(result.folded),
        len(result.reparameterized),
        len(result.remaining_batchnorms),
    )
    if report is not None:
        report(result)
    if compile:
        model = torch.compile(model, mode=compile_mode)
    return model
