"""Counting a model's multiply-accumulates (the "FLOPs" of vision papers), at the dispatcher.

Convention (the one papers and fvcore use): **one fused multiply-add = one MAC**, reported per image as
GMACs. Counted: convolutions, linear layers, matmuls / einsums, attention products (``q @ k^T`` and ``attn @ v``,
including ``scaled_dot_product_attention`` and the ``backbonezoo.kernels`` operators, counted from their arguments as
the papers count them, not from how the fast paths compute them), deformable convolutions, selective scans
(9 * B * L * D * N, 7 * B * L * D * N without the C readout: the VMamba / A2Mamba count), bilinear / nearest
upsampling (4 / 1 per output element) and norms as fvcore counts them (BatchNorm in eval: 1 per element, 2 with
affine; LayerNorm / GroupNorm: 4 per element, 5 with affine; adaptive average pooling: 1 per input element).
**Not** counted: elementwise ops, activations, softmax, other pooling, top-k, gathers and index shuffles.
``FlopCount.gmacs_bn_folded`` drops the BatchNorm term: that is what a model with BatchNorm folded into the preceding
conv / linear (the deploy form most papers count) gives.

Counting runs the model once under ``torch.utils.flop_counter.FlopCounterMode``: torch's own formulas (matmuls,
convolutions, attention) plus the formulas below for what torch leaves out, and the formulas every
``backbonezoo.kernels`` operator registers itself (``register_flop_formula``, see ``backbonezoo/kernels/ops.py``).
Torch formulas count FLOPs = 2 x MACs; this module reports MACs. Ops that ran without a formula and are not free
under the convention are listed in ``FlopCount.unexpected_skips``, so a missing formula shows instead of silently
lowering the total: register one with ``torch.utils.flop_counter.register_flop_formula`` (in FLOPs = 2 x MACs), or
count a module's hidden work with :func:`register_module_flop_handle`.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import backbonezoo.kernels  # noqa: F401  (registers the kernels' operators and their FLOP formulas)

__all__ = ['CONVENTION', 'FlopCount', 'count_flops', 'register_module_flop_handle']

# The convention itself (unchanged since the fvcore-traced counter: the model cards quote this sentence).
CONVENTION = (
    '1 multiply-accumulate = 1 MAC (the "FLOPs" of papers, fvcore convention); convs, linears, matmuls, '
    'attention products (incl. backbonezoo kernels, SDPA, deformable conv), selective scans (9 BLDN, 7 BLDN '
    'without readout) and norms counted; elementwise ops, activations and softmax not counted; batch 1, eval mode'
)

# Ops that cost nothing under the convention: seeing them uncounted is expected, not a missing formula.
_FREE_BY_CONVENTION = tuple(
    """
    aten::add* aten::sub* aten::mul* aten::div* aten::rsub aten::neg* aten::pow* aten::sqrt* aten::rsqrt* aten::exp*
    aten::log* aten::sin* aten::cos* aten::abs* aten::sign* aten::reciprocal* aten::*softmax* aten::sigmoid*
    aten::tanh* aten::relu* aten::gelu* aten::silu* aten::hardswish* aten::hardsigmoid* aten::hardtanh*
    aten::leaky_relu* aten::elu* aten::mish* aten::softplus* aten::erf* aten::clamp* aten::where aten::mean
    aten::sum aten::amax aten::amin aten::topk aten::sort aten::argsort aten::argmax aten::argmin aten::gather
    aten::scatter* aten::index* aten::take_along_dim aten::roll aten::flip aten::repeat* aten::unfold* aten::im2col
    aten::col2im aten::*pad* aten::*pool* aten::pixel_shuffle aten::pixel_unshuffle aten::channel_shuffle
    aten::tile aten::norm aten::linalg_vector_norm aten::var* aten::std* aten::cumsum aten::cumprod aten::ones*
    aten::rand* aten::bernoulli* aten::*dropout* aten::lt aten::le aten::ne aten::min aten::maximum aten::minimum
    aten::max aten::eq aten::ge aten::gt aten::numel aten::masked_* aten::new_* aten::fill* aten::zero* aten::t
    aten::movedim aten::unflatten aten::view* aten::reshape* aten::expand* aten::split* aten::tensor_split
    aten::unsafe_* aten::_unsafe_* aten::diag* aten::tril* aten::triu* aten::linspace aten::meshgrid aten::scalar*
    aten::floor* aten::ceil* aten::round* aten::trunc* aten::frac aten::remainder* aten::fmod* aten::logical_*
    aten::bitwise_* aten::resolve_* aten::alias* aten::lift* aten::clone aten::detach* aten::as_strided*
    aten::select* aten::slice* aten::stack aten::chunk aten::narrow* aten::squeeze* aten::unsqueeze* aten::permute
    aten::transpose* aten::flatten aten::contiguous aten::to aten::_to_copy aten::copy* aten::empty* aten::zeros*
    aten::full* aten::arange aten::cat aten::_local_scalar_dense aten::item aten::sym_* aten::is_* aten::_assert*
    aten::any aten::all aten::isnan aten::isinf aten::nonzero aten::_pin_memory aten::set_ aten::bucketize
    aten::searchsorted aten::one_hot aten::embedding aten::type_as aten::lerp* aten::addcmul* aten::addcdiv*
    aten::upsample_bicubic2d aten::linalg_vecdot aten::square aten::exponential_ aten::normal* aten::uniform_
    aten::_fused_dropout aten::grid_sampler*
    aten::native_dropout* aten::unbind aten::split_with_sizes aten::_reshape_alias aten::clamp_min* aten::clamp_max*
    prim::*
    """.split()
)


# ----------------------------------------------------------------------------------------------- formulas
def _dispatch_mapping(fold_bn: bool) -> dict:
    """FLOP formulas (FLOPs = 2 MACs) for what torch.utils.flop_counter leaves out, in fvcore's convention."""
    aten = torch.ops.aten
    numel = math.prod

    def batch_norm(x, weight=None, *args, out_shape=None, **kwargs):
        return 0 if fold_bn else 2 * numel(x) * (2 if weight is not None else 1)

    def layer_norm(x, normalized_shape, weight=None, *args, out_shape=None, **kwargs):
        return 2 * numel(x) * (5 if weight is not None else 4)

    def group_norm(x, weight=None, *args, out_shape=None, **kwargs):
        return 2 * numel(x) * (5 if weight is not None else 4)

    def sdpa(q, k, v, *args, out_shape=None, **kwargs):
        return 2 * numel(q[:-1]) * k[-2] * (q[-1] + v[-1])

    def adaptive_avg_pool(x, *args, out_shape=None, **kwargs):
        return 2 * numel(x)

    def upsample(per_output: int):
        def formula(*args, out_shape=None, **kwargs):
            return 2 * per_output * numel(out_shape)

        return formula

    mapping = {
        aten.native_batch_norm: batch_norm,
        aten._native_batch_norm_legit_no_training: batch_norm,
        aten._native_batch_norm_legit: batch_norm,
        aten.native_layer_norm: layer_norm,
        aten.native_group_norm: group_norm,
        aten._adaptive_avg_pool2d: adaptive_avg_pool,
        aten.upsample_bilinear2d: upsample(4),
        aten.upsample_nearest2d: upsample(1),
    }
    if hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu'):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = sdpa
    try:
        import torchvision  # noqa: F401  (registers torchvision::deform_conv2d)

        def deform_conv(x, weight, *args, out_shape=None, **kwargs):
            return 2 * numel(out_shape) * numel(weight[1:])

        mapping[torch.ops.torchvision.deform_conv2d] = deform_conv
    except (ImportError, AttributeError, RuntimeError):
        pass
    return mapping


# Labels of ``FlopCount.by_operator``: the first key contained in the op name gives the label.
_LABELS = (
    ('batch_norm', 'batch_norm'),
    ('layer_norm', 'layer_norm'),
    ('group_norm', 'group_norm'),
    ('convolution', 'conv'),
    ('scaled_dot_product', 'scaled_dot_product_attention'),
    ('attention', 'scaled_dot_product_attention'),
    ('deform_conv2d', 'deform_conv2d'),
    ('adaptive_avg_pool', 'adaptive_avg_pool2d'),
    ('upsample', 'upsample'),
    ('mm', 'matmul'),
)


def _label(packet: Any) -> str:
    name = str(packet)
    if name.startswith('backbonezoo.'):  # the kernels: by operator name
        return name.split('.', 1)[1]
    name = name.split('.')[-1]
    return next((label for key, label in _LABELS if key in name), name)


_MODULE_HANDLES: dict[type, Callable[[torch.nn.Module, tuple, Any], float]] = {}


def register_module_flop_handle(
    module_type: type, handle: Callable[[torch.nn.Module, tuple, Any], float] | None
) -> None:
    """Add ``handle(module, inputs, output) -> MACs`` (whole batch) for every ``module_type`` instance.

    For work that is not one dispatched op with a formula: e.g. a selective scan written as elementwise torch ops.
    The MACs are added on top of whatever is counted inside the module (so count only what is missed) and appear in
    ``by_operator`` as ``'module:<ClassName>'``. ``None`` removes the handle.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, torch.nn.Module)):
        raise TypeError(f'register_module_flop_handle: module_type must be an nn.Module subclass, got {module_type!r}')
    if handle is None:
        _MODULE_HANDLES.pop(module_type, None)
    elif not callable(handle):
        raise TypeError(f'register_module_flop_handle: handle for {module_type.__name__} must be callable or None')
    else:
        _MODULE_HANDLES[module_type] = handle


def _global_average_pool_macs(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> int:
    """fvcore counts adaptive average pooling as one op per input element; at a 1x1 output ATen runs it as a ``mean``
    (free at the dispatcher), so the module adds it; larger outputs reach ``_adaptive_avg_pool2d``, counted there."""
    return args[0].numel() if output.shape[-2:].numel() == 1 else 0


_BUILTIN_MODULE_HANDLES = {torch.nn.AdaptiveAvgPool2d: _global_average_pool_macs}
_BUILTIN_LABELS = {torch.nn.AdaptiveAvgPool2d: 'adaptive_avg_pool2d'}


class _OpRecorder(TorchDispatchMode):
    """Counts every op that reaches the dispatcher (inside the FLOP counter: what it sees, before it counts)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func._overloadpacket] += 1
        return func(*args, **(kwargs or {}))


# ----------------------------------------------------------------------------------------------- counting
@dataclass
class FlopCount:
    """MACs per image of one model at one input size (see the module docstring for the convention)."""

    macs: float
    input_size: tuple[int, int, int]
    by_operator: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, float] = field(default_factory=dict)
    convention: str = CONVENTION
    method: str = 'dispatch'  # torch.utils.flop_counter
    note: str = ''

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gmacs_bn_folded(self) -> float:
        """GMACs with BatchNorm folded into the preceding conv / linear (no BN term)."""
        return (self.macs - self.by_operator.get('batch_norm', 0.0)) / 1e9

    @property
    def unexpected_skips(self) -> dict[str, int]:
        """Uncounted ops that are not free under the convention: a formula is probably missing for these."""
        return {
            k: n for k, n in self.skipped.items() if not any(fnmatch.fnmatchcase(k, p) for p in _FREE_BY_CONVENTION)
        }

    def __str__(self) -> str:
        lines = [f'{self.gmacs:.4f} GMACs at {self.input_size} ({self.gmacs_bn_folded:.4f} with BN folded)']
        for op, macs in sorted(self.by_operator.items(), key=lambda kv: -kv[1]):
            lines.append(f'  {op:<40} {macs / 1e9:.4f}')
        if self.unexpected_skips:
            lines.append(f'  not counted (no formula): {self.unexpected_skips}')
        return '\n'.join(lines)


def _normalise_input_size(input_size: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(input_size, int):
        return (3, input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (3, *size)
    if len(size) != 3:
        raise ValueError(f'count_flops: input_size must be (C, H, W), (H, W) or an int, got {input_size!r}')
    return size


def count_flops(
    model: torch.nn.Module,
    input_size: int | Sequence[int] = (3, 224, 224),
    *,
    batch_size: int = 1,
    fold_bn: bool = False,
    by_module: bool = False,
    inputs: torch.Tensor | None = None,
) -> FlopCount:
    """Count the multiply-accumulates of one forward of ``model`` per image (eval mode, no grad).

    Args:
        model: any ``nn.Module`` taking one image batch; it is put in eval mode for the count and put back.
        input_size: (C, H, W), (H, W) (3 channels) or an int side.
        batch_size: images in the batch; the result is per image. Batch 1 is the papers' setting.
        fold_bn: leave BatchNorm out of ``macs`` (as a model with BN folded into convs / linears).
        by_module: also return MACs per submodule name (``FlopCount.by_module``; ``''`` is the whole model).
        inputs: the exact tensor to run (then ``input_size`` / ``batch_size`` are taken from it).

    Returns:
        FlopCount with ``gmacs``, ``by_operator``, ``skipped`` (uncounted op kinds and how often they ran) and
        ``unexpected_skips`` (those that are not free under the convention).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if inputs is None:
        size = _normalise_input_size(input_size)
        if batch_size < 1:
            raise ValueError(f'count_flops: batch_size must be >= 1, got {batch_size}')
        param = next(model.parameters(), None)
        device = param.device if param is not None and param.device.type != 'meta' else torch.device('cpu')
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        inputs = torch.randn((batch_size, *size), generator=torch.Generator().manual_seed(0)).to(device, dtype)
    else:
        size, batch_size = tuple(inputs.shape[1:]), inputs.shape[0]

    module_macs: Counter = Counter()
    module_ops: Counter = Counter()
    hooks = []
    handles = {**_BUILTIN_MODULE_HANDLES, **_MODULE_HANDLES}
    for name, module in model.named_modules():
        found = next(((t, h) for t, h in handles.items() if isinstance(module, t)), None)
        if found is not None:
            label = _BUILTIN_LABELS.get(found[0], f'module:{type(module).__name__}')

            def hook(mod, args, output, name=name, handle=found[1], label=label):
                macs = handle(mod, args, output)
                module_macs[name] += macs
                module_ops[label] += macs

            hooks.append(module.register_forward_hook(hook))

    counter = FlopCounterMode(display=False, custom_mapping=_dispatch_mapping(fold_bn))
    recorder = _OpRecorder()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with counter, recorder:
                model(inputs)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()

    counts = counter.get_flop_counts()
    per_op: Counter = Counter()
    for packet, flops in counts.get('Global', {}).items():
        per_op[_label(packet)] += flops / 2
    total = counter.get_total_flops() / 2
    counted = {str(packet) for packet in counts.get('Global', {})}
    registry = {str(packet) for packet in counter.flop_registry}
    skipped = {
        str(packet).replace('.', '::', 1): n
        for packet, n in recorder.calls.items()
        if str(packet) not in registry and str(packet) not in counted
    }
    modules: Counter = Counter()
    if by_module:
        root = type(model).__name__
        for name, ops in counts.items():
            if name == 'Global':
                continue
            key = '' if name == root else name[len(root) + 1 :] if name.startswith(root + '.') else name
            modules[key] += sum(ops.values()) / 2
    if module_macs:  # the hooks ran once, during the count
        total += sum(module_macs.values())
        per_op += module_ops
        if by_module:
            for name, macs in module_macs.items():
                parts = name.split('.') if name else []
                for depth in range(len(parts) + 1):
                    modules['.'.join(parts[:depth])] += macs

    return FlopCount(
        macs=total / batch_size,
        input_size=tuple(size),
        by_operator={k: v / batch_size for k, v in per_op.items() if v},
        skipped=skipped,
        by_module={k: v / batch_size for k, v in modules.items()},
    )
