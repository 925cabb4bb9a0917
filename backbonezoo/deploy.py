"""Inference form of any zoo model: structural reparameterisation, BatchNorm folding, optional compile.

``deploy(model)`` returns a model for inference whose outputs equal the eval-mode model's (fp32, relative error
<= 1e-4, checked on a probe input unless ``check=False``):

1. **Reparameterisation.** Every module that offers the timm-style ``reparameterize()`` (OverLoCK's dilated
   re-parameterised large kernels, ...) is switched to its deploy form.
2. **BatchNorm folding.** An eval-mode BatchNorm that directly follows a convolution / linear layer (or directly
   precedes a linear one) becomes part of that layer's weight and bias, and the BatchNorm is removed. Found in
   ``nn.Sequential`` chains, timm's ``ConvNormAct`` (its ``BatchNormAct2d`` keeps only its activation) and the
   family blocks listed in :data:`FOLDS`, whose ``forward`` applies ``bn(layer(x))`` with nothing in between
   (OverLoCK's reparameterised kernels, LITv2's deformable token merging: a deformable convolution is linear in its
   weight and bias too). Family-specific exact folds (:data:`SPECIAL_FOLDS`): PATNet's partial-mixer BatchNorm, which
   normalises some of the input channels of the MLP's first 1x1 convolution, goes into those input columns.
3. **LayerScale folding.** A per-channel scale (and shift) applied to a residual *branch* right after its last
   projection (A2Mamba's ``layer_scale`` blocks: ``ls1`` after the mixer's output 1x1 convolution, ``ls2`` after
   ``fc2``) is multiplied into that projection, and the scale module removed (:data:`SCALE_FOLDS`).
4. **Memory format** (default on): the parameters become ``torch.channels_last``; a convolution with a channels-last
   weight computes and returns NHWC whatever its input's layout, so from the first convolution on every feature map is
   NHWC (oneDNN's NCHW path reorders each call: one 1x1 convolution of PATNet's first stage takes 14 ms NCHW and
   0.8 ms NHWC at batch 16 on a 2-core AMD EPYC). NCHW inputs are not copied into NHWC first: measured no slower, and
   a batch-16 input copy is 9.6 MB (PATNet-T0's deploy peak 47 -> 36 MB without it). Measured on that machine,
   batch 16, deploy with / without: PATNet-T0 +12 %, A2Mamba-N +23 %, EfficientViT-M0 +20 %, SHViT-S1 +15 %,
   HaloNet-H0 +20 %, TiC-T +12 %, SReT-T +6 %, BiFormer-T +4 %, OverLoCK-XT and LITv2-S unchanged (no family was
   slower). Outputs keep their values (``channels_last=False`` gives the contiguous layout back).
5. **Batch slices** (default 2 MB): the family blocks of :data:`BATCH_CHUNKS` (no cross-sample computation in eval
   mode) run their batch in slices of at most ``batch_chunk_mb`` MB of block input, so a block's large intermediates
   (the 4x-wide MLP hidden map, attention gathers, scan states) exist for one slice at a time and stay in cache. At
   batch 16, 224, 2 threads: peak RSS of one forward 234 -> 78 MB (BiFormer-T), 231 -> 105 (LITv2-S), 247 -> 121
   (OverLoCK-XT), 357 -> 176 (A2Mamba-N), 50 -> 35 (PATNet-T0), SReT-T unchanged (73 / 76: its maps are small), and
   no slower (1.0-1.5x the unsliced throughput). Compiled / exported / traced forwards run unsliced (the compiler
   plans memory itself; slices inside a compiled PATNet-T0 measured no faster: 1.29x the eager deploy form either
   way).
6. **Compile** (opt-in): ``compile=True`` wraps the result in ``torch.compile`` (Inductor; on CPU its C++ code
   generation) with ``compile_mode`` (``'max-autotune-no-cudagraphs'`` searches kernels, at a longer first call).

What stays, and why (each is exact in no layer it could reach):

* scales on the *shortcut* (A2Mamba's ``res_scale`` blocks, OverLoCK's ``ls1`` / ``ls2``: ``ls(x) + branch(norm(x))``):
  ``x`` also feeds the branch's LayerNorm, which is not invariant to a per-channel scale, so no layer computes
  ``ls(x)`` alone;
* BiFormer's final ``norm`` (BatchNorm after the last residual add): it could only go into the head through the global
  average pool, which would change ``forward_features`` / ``forward_intermediates`` (dense heads read them);
* HaloNet's ``post_attn`` (BatchNorm + activation after the halo attention): the activation keeps it from the following
  1x1 convolution, and behind it is the attention's weighted sum of values whose zero-padded border keys carry no bias,
  so the shift would not pass exactly near the borders (the scale alone would, leaving the add);
* PATNet's ``PartialSpatialGate.norm`` (after the hard-sigmoid gate, at the end of the MLP branch, before the residual
  add), and the partial-mixer BatchNorm of blocks whose mixer output also feeds the residual.

The input model is not modified (``inplace=False`` copies it). Training the deployed model is not supported: its
BatchNorms are gone, so call ``deploy`` on a trained model, once, for inference or export (``torch.onnx.export``
works on the result as on the original).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import types
from collections.abc import Callable

import torch
import torch.nn as nn

from .layers.bn_fold import fold_batchnorm
from .layers.tracing import is_tracing

__all__ = [
    'BATCH_CHUNKS',
    'DeployMismatchError',
    'DeployReport',
    'FOLDS',
    'SCALE_FOLDS',
    'SPECIAL_FOLDS',
    'chunk_batches',
    'deploy',
]

_LOG = logging.getLogger(__name__)
_BN = nn.modules.batchnorm._BatchNorm
# plain BatchNorms, and timm's BatchNormAct2d (norm, then dropout + activation, which stay after folding)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_FOLDABLE_BN = ('BatchNorm1d', 'BatchNorm2d', 'SyncBatchNorm', 'BatchNormAct2d')


class DeployMismatchError(RuntimeError):
    """The deployed model's output differs from the original's beyond the tolerance (a folding rule is wrong)."""


@dataclasses.dataclass
class DeployReport:
    """What ``deploy`` changed: module names of folded BatchNorms, folded scales and reparameterised blocks, the
    BatchNorms left."""

    folded: list[str] = dataclasses.field(default_factory=list)
    folded_scales: list[str] = dataclasses.field(default_factory=list)
    reparameterized: list[str] = dataclasses.field(default_factory=list)
    remaining_batchnorms: list[str] = dataclasses.field(default_factory=list)
    max_rel_error: float | None = None
    channels_last: bool = False
    batch_chunked: list[str] = dataclasses.field(default_factory=list)


def _family_folds() -> dict[type, tuple[tuple[str, ...], ...]]:
    """Family blocks whose forward applies a BatchNorm right after (or, marked ``'before'``, right before) a layer."""
    from .backbones import litv2, overlock, patnet, sret, tic

    return {
        litv2.DeformableTokenMerging: (('conv', 'norm'),),
        patnet.PartialSpatialGate: (('conv', 'norm2', 'before'),),
        patnet.PatchEmbed: (('proj', 'norm'),),
        patnet.PatchMerging: (('reduction', 'norm'),),
        patnet.GaussianChannelGate: (('stats_conv', 'bn'),),
        # after reparameterize() the large kernel is one conv with bias, followed directly by lk_norm
        overlock.RepConvBlock: (('large_kernel.conv', 'lk_norm'),),
        sret.ConvStem: (('conv1', 'bn1'), ('conv2', 'bn2'), ('conv3', 'bn3')),
        tic.ConvStem: (('conv1', 'bn1'),),
    }


def _fold_partial_mixer(block: nn.Module, prefix: str, report: DeployReport) -> None:
    """PATNet: ``mlp(cat(conv(x1), bn(gate(x2))))``: the BatchNorm scales / shifts the last input columns of ``mlp[0]``.

    Only where the mixer output feeds nothing but the MLP (blocks without the mixer residual) and ``mlp[0]`` is a
    1x1 convolution (the MLP is a plain ``nn.Sequential``: its first layer sees the concatenation as it is).
    """
    mixer, mlp = block.spatial_mixing, block.mlp
    bn, first = getattr(mixer, 'norm', None), mlp[0] if isinstance(mlp, nn.Sequential) and len(mlp) else None
    if block.mixer_residual or mixer.attention != 'channel' or type(bn).__name__ not in _FOLDABLE_BN:
        return
    if first is None or not _pointwise(first) or first.weight.shape[1] != mixer.conv_dim + mixer.attn_dim:
        return
    if type(mlp).forward is not nn.Sequential.forward or bn.running_mean is None:
        return
    with torch.no_grad():
        weight = first.weight.flatten(1)
        cols = weight[:, mixer.conv_dim :]
        folded, bias = fold_batchnorm(cols, first.bias, _affine(bn), bn_after=False)
        weight[:, mixer.conv_dim :] = folded
        first.weight.copy_(weight.view_as(first.weight))
        if first.bias is None:
            first.bias = nn.Parameter(bias.to(first.weight.dtype))
        else:
            first.bias.copy_(bias)
    mixer.norm = nn.Identity()
    report.folded.append(f'{prefix}spatial_mixing.norm')


def _family_special_folds() -> dict[type, Callable[[nn.Module, str, DeployReport], None]]:
    from .backbones import patnet

    return {patnet.PATBlock: _fold_partial_mixer}


def _family_scale_folds() -> dict[type, Callable[[nn.Module], tuple[tuple[str, str], ...]]]:
    """Blocks whose branch ends ``scale(layer(...))``: (scale module, layer) pairs, given the block instance."""
    from .backbones import a2mamba

    def a2mamba_block(block: nn.Module) -> tuple[tuple[str, str], ...]:
        if block.res_scale:  # ls(x) + branch: the scale is on the shortcut
            return ()
        return (('ls1', 'token_mixer.proj.1'), ('ls2', 'mlp.fc2'))

    return {a2mamba.A2MambaBlock: a2mamba_block}


#: Family blocks with BatchNorms ``deploy`` folds, filled on first use (the backbones import this package's layers).
FOLDS: dict[type, tuple[tuple[str, ...], ...]] = {}
#: Family blocks with a fold of their own (a BatchNorm on part of a layer's input channels): ``fn(block, prefix,
#: report)``.
SPECIAL_FOLDS: dict[type, Callable[[nn.Module, str, DeployReport], None]] = {}
#: Family blocks with LayerScale on a residual branch: ``fn(block) -> ((scale_name, layer_path), ...)``.
SCALE_FOLDS: dict[type, Callable[[nn.Module], tuple[tuple[str, str], ...]]] = {}
#: Family blocks that compute each sample alone in eval mode: the positions of their per-sample (batched) arguments.
BATCH_CHUNKS: dict[type, tuple[int, ...]] = {}


def _family_batch_chunks() -> dict[type, tuple[int, ...]]:
    """Residual blocks with no cross-sample computation in eval mode, and which arguments carry the batch."""
    from .backbones import a2mamba, biformer, litv2, overlock, patnet, sret, tic

    return {
        a2mamba.A2MambaBlock: (0,),  # (x, sin, cos): the rotary tables are shared by every sample
        biformer.BiFormerBlock: (0,),
        litv2.LITv2Block: (0,),
        overlock.RepConvBlock: (0,),
        overlock.ContMixBlock: (0, 1),  # (x, overview): the Overview-Net context is per sample too
        patnet.PATBlock: (0,),
        sret.AttentionBlock: (0,),  # (x, num_groups, perm): one token permutation for the whole batch
        tic.TiCBlock: (0,),
    }


class _BatchChunkedForward:
    """Instance ``forward`` of a deployed block: the batch in slices of at most ``max_bytes`` of block input, so the
    block's large intermediates (an MLP's 4x-wide hidden map, attention gathers) exist for one slice at a time.

    Exact: the block computes every sample alone in eval mode (:data:`BATCH_CHUNKS`), and the slices' outputs are
    concatenated in order. A batch that fits, and every capture (compile, export, tracing: the compiler plans memory
    itself), runs the block's own forward unchanged. Module-level and holding the block: deepcopy / pickle keep it.
    """

    def __init__(self, module: nn.Module, batched: tuple[int, ...], max_bytes: int):
        self.module, self.batched, self.max_bytes = module, batched, max_bytes

    def __call__(self, *args, **kwargs):
        forward = type(self.module).forward
        x = args[0] if args else None
        if (
            not isinstance(x, torch.Tensor)
            or isinstance(x, torch.fx.Proxy)
            or is_tracing()
            or torch.jit.is_tracing()
            or torch.jit.is_scripting()
            or x.dim() == 0
        ):
            return forward(self.module, *args, **kwargs)
        batch = x.shape[0]
        per_sample = x.numel() // max(1, batch) * x.element_size()
        chunk = max(1, self.max_bytes // max(1, per_sample))
        if batch <= chunk:
            return forward(self.module, *args, **kwargs)
        outs = []
        for start in range(0, batch, chunk):
            part = list(args)
            for i in self.batched:
                part[i] = args[i][start : start + chunk]
            outs.append(forward(self.module, *part, **kwargs))
        return torch.cat(outs)


def chunk_batches(model: nn.Module, max_mb: float) -> list[str]:
    """Make every block of :data:`BATCH_CHUNKS` run its batch in slices of at most ``max_mb`` MB of input, in place."""
    _fill_tables()
    chunked = []
    for name, module in model.named_modules():
        batched = BATCH_CHUNKS.get(type(module))
        if batched is not None and 'forward' not in vars(module):
            module.forward = _BatchChunkedForward(module, batched, int(max_mb * 2**20))
            chunked.append(name)
    return chunked


def _fill_tables() -> None:
    if not FOLDS:
        FOLDS.update(_family_folds())
    if not SPECIAL_FOLDS:
        SPECIAL_FOLDS.update(_family_special_folds())
    if not SCALE_FOLDS:
        SCALE_FOLDS.update(_family_scale_folds())
    if not BATCH_CHUNKS:
        BATCH_CHUNKS.update(_family_batch_chunks())


def _affine(bn: nn.Module):
    """``bn``'s statistics with explicit unit weight / zero bias when it has no affine parameters."""
    if bn.affine:
        return bn
    mean, var = bn.running_mean, bn.running_var
    return types.SimpleNamespace(
        weight=torch.ones_like(mean), bias=torch.zeros_like(mean), running_mean=mean, running_var=var, eps=bn.eps
    )


def _as_layer(module: nn.Module) -> nn.Module | None:
    """The convolution / linear layer ``module`` computes, if it is one (a reparameterised block is its conv)."""
    if _linear_in_weight(module):
        return module
    conv = getattr(module, 'conv', None)  # OverLoCK's DilatedReparamBlock in deploy form: forward is conv(x)
    if type(module).__name__ == 'DilatedReparamBlock' and getattr(module, 'bn', True) is None:
        return conv
    return None


def _linear_in_weight(layer: nn.Module) -> bool:
    """Output channel ``o`` is ``weight[o]``-linear plus ``bias[o]``: convolutions, linear layers, deformable convs."""
    return isinstance(layer, _LAYERS) or type(layer).__name__ == 'DeformConv2d'


def _scale_vectors(scale: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight, bias) of a per-channel scale module: the zoo's ChannelAffine, timm's LayerScale / LayerScale2d."""
    name = type(scale).__name__
    if name == 'ChannelAffine':
        return scale.weight, scale.bias
    if name in ('LayerScale', 'LayerScale2d'):
        return scale.gamma, None
    return None


def _fold_scale_into(layer: nn.Module, scale: nn.Module) -> bool:
    """``scale(layer(x))`` as one layer: the per-channel weight multiplies the layer's rows, bias becomes w*b + s."""
    vectors = _scale_vectors(scale)
    if vectors is None or not isinstance(layer, _LAYERS) or layer.weight.shape[0] != vectors[0].numel():
        return False
    weight, shift = vectors
    with torch.no_grad():
        bias = layer.bias * weight if layer.bias is not None else torch.zeros_like(weight)
        if shift is not None:
            bias = bias + shift
        layer.weight.mul_(weight.view(-1, *([1] * (layer.weight.ndim - 1))))
        if layer.bias is None:
            layer.bias = nn.Parameter(bias.to(layer.weight.dtype))
        else:
            layer.bias.copy_(bias)
    return True


def fold_scales(model: nn.Module) -> list[str]:
    """Fold every LayerScale that directly follows its branch's last projection (:data:`SCALE_FOLDS`), in place."""
    _fill_tables()
    folded = []
    for name, module in list(model.named_modules()):
        rule = SCALE_FOLDS.get(type(module))
        for scale_name, layer_path in rule(module) if rule is not None else ():
            scale = getattr(module, scale_name, None)
            try:
                layer = module.get_submodule(layer_path)
            except AttributeError:
                continue
            if scale is not None and _fold_scale_into(layer, scale):
                setattr(module, scale_name, nn.Identity())
                folded.append(f'{name}.{scale_name}' if name else scale_name)
    return folded


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
        if not _linear_in_weight(layer) or layer.weight.shape[0] != bn.num_features:
            return False
    elif not _pointwise(layer) or layer.weight.shape[1] != bn.num_features:
        return False
    bn = _affine(bn)
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
    _fill_tables()
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
        special = SPECIAL_FOLDS.get(type(module))
        if special is not None:
            special(module, prefix, report)
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
    fold_scale: bool = True,
    channels_last: bool = True,
    batch_chunk_mb: float | None = 2.0,
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
        fold_scale: fold LayerScale on residual branches into the branch's last projection.
        channels_last: convert the parameters to ``torch.channels_last`` (feature maps follow from the first conv).
        batch_chunk_mb: run the family blocks of :data:`BATCH_CHUNKS` on batch slices of at most this many MB of
            block input (None: whole batches); lowers peak memory, not the result.
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
    if fold_scale:
        result.folded_scales = fold_scales(model)
    result.remaining_batchnorms = [n for n, m in model.named_modules() if isinstance(m, _BN)]
    if batch_chunk_mb:
        result.batch_chunked = chunk_batches(model, batch_chunk_mb)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        result.channels_last = True
    if check:
        actual = _seeded_forward(model, probe)
        result.max_rel_error = _relative_error(actual, expected)
        if not result.max_rel_error <= rtol:
            raise DeployMismatchError(
                f'deploy: the deployed {type(model).__name__} differs from the original by a relative error of '
                f'{result.max_rel_error:.2e} > rtol={rtol:.0e}; folded: {", ".join(result.folded) or "nothing"}'
            )
    _LOG.debug(
        'deploy: folded %d BatchNorms and %d scales, reparameterised %d blocks, %d BatchNorms left',
        len(result.folded),
        len(result.folded_scales),
        len(result.reparameterized),
        len(result.remaining_batchnorms),
    )
    if report is not None:
        report(result)
    if compile:
        model = torch.compile(model, mode=compile_mode)
    return model
