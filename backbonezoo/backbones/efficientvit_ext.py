"""EfficientViT-M (MSRA): official-checkpoint conversion for timm's ``efficientvit_m0..m5``.

timm ships the models (``timm.models.efficientvit_msra``, identical math to the authors' code) and owns their
names; this module adds what timm lacks:

* ``KernelLocalWindowAttention``: timm's ``LocalWindowAttention`` (same parameters and state dict) with the
  cascaded heads' window attention on ``backbonezoo.kernels.local_attention`` (blocked windows, ``kernel = stride =
  window``, relative-position bias table built from timm's per-head ``attention_biases``), and
  ``to_kernel_backed(model)``, which swaps it into a timm model in place (outputs equal timm's). With
  ``fit_small_maps=True`` (what the dense backbone uses) a stage map no larger than the window on both sides is
  attended as one window of its own size, the bias sliced to it: every input size works, where the authors' detection
  wrapper crashes on any such map that is not exactly 7x7.
* ``checkpoint_filter_fn``: converts the authors' release layout (``microsoft/Cream`` ``EfficientViT``: unfused, and
  the BN-fused layout of their ``replace_batchnorm``) and timm's hub layout into timm's layout, then applies timm's
  own filter. It serves the explicit routes: ``backbonezoo.convert_checkpoint('efficientvit_m4.pth',
  'efficientvit_m4')`` (a strict state dict for ``timm.create_model('efficientvit_m4')``),
  ``tools/convert_checkpoint.py`` (a timm-layout file that ``pretrained_cfg_overlay=dict(file=...)`` then loads) and
  the mm backbones' ``init_cfg``.
  Importing backbonezoo changes nothing in timm: ``timm.create_model('efficientvit_m4', pretrained=True, ...)`` is
  timm's own route, which reads timm's layout only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import timm.models.efficientvit_msra as _timm_efficientvit
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.efficientvit_msra import CascadedGroupAttention, ConvNorm, LocalWindowAttention, NormLinear

from backbonezoo.kernels import local_attention
from backbonezoo.layers.bn_fold import cached_fold, merge_distillation_head, unfuse_conv_bn
from backbonezoo.layers.tracing import block_counts, crop, is_tracing

__all__ = [
    'EvalFoldedConvNorm',
    'EvalFoldedNormLinear',
    'KernelLocalWindowAttention',
    'checkpoint_filter_fn',
    'convert_official_state_dict',
    'to_kernel_backed',
]


class KernelLocalWindowAttention(nn.Module):
    """Cascaded group attention in local windows, on ``backbonezoo.kernels.local_attention``.

    Holds timm's ``CascadedGroupAttention`` as ``attn`` (its ``qkvs``, ``dws``, ``proj`` and ``attention_biases``), so
    the state dict equals ``LocalWindowAttention``'s. Each head h: ``feat = qkv_h(feat + x_h)``; the query goes
    through its depthwise conv inside each window (windows are zero-padded there, as in the official code); then
    blocked-window attention with the head's relative-position bias; the heads' outputs are concatenated and
    projected. Like timm, the map is zero-padded on the bottom / right to a window multiple before the projections.

    Under torch.export / torch.compile the module takes a size-independent form, so a dynamic-shape export (e.g.
    ``torch.onnx.export(to_kernel_backed(model), ..., dynamo=True, dynamic_shapes=...)``) runs at any size: with
    symbolic sizes the map is padded by one extra window per axis (windows never interact; no window count is then
    1), the query conv runs on the windows spread apart by zero gaps (``_window_depthwise``) and the crop is a
    negative pad.

    Args:
        attn: the ``CascadedGroupAttention`` to run (its ``resolution`` is the window).
        fit_small_maps: attend a map that fits in one window on both sides as one window of its own size (bias table
            sliced) instead of padding it to the window; timm pads (``False`` matches timm exactly).
        backend: kernel backend (None = automatic).
    """

    def __init__(self, attn: CascadedGroupAttention, fit_small_maps: bool = False, backend: str | None = None):
        super().__init__()
        self.attn = attn
        self.fit_small_maps = fit_small_maps
        self.backend = backend

    @classmethod
    def from_local_window_attention(
        cls, module: LocalWindowAttention, fit_small_maps: bool = False, backend: str | None = None
    ) -> KernelLocalWindowAttention:
        """A kernel-backed module sharing ``module``'s parameters (no copy)."""
        new = cls(module.attn, fit_small_maps=fit_small_maps, backend=backend)
        new.dim, new.num_heads = module.dim, module.num_heads
        new.train(module.training)
        return new

    def _bias_table(self, window: tuple[int, int]) -> torch.Tensor:
        """(heads, 2*wh - 1, 2*ww - 1) table: entry (dy, dx) = attention_biases[:, |dy| * res + |dx|]."""
        res = self.attn.resolution
        dy = torch.arange(1 - window[0], window[0], device=self.attn.attention_biases.device).abs()
        dx = torch.arange(1 - window[1], window[1], device=self.attn.attention_biases.device).abs()
        return self.attn.attention_biases[:, dy[:, None] * res + dx[None, :]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        attn = self.attn
        ws = attn.resolution
        if self.fit_small_maps and H <= ws and W <= ws:
            window, nh, nw = (H, W), 1, 1
        else:
            window = (ws, ws)
            nh, nw = block_counts(H, W, ws)  # windows never interact: an extra one when traced is exact
            pad_b, pad_r = nh * ws - H, nw * ws - W
            # traced (torch.export / compile): no branch on symbolic sizes, which would specialise the graph to one
            # size; a zero pad is a no-op
            if is_tracing() or pad_b or pad_r:
                x = F.pad(x, (0, pad_r, 0, pad_b))
        ph, pw = nh * window[0], nw * window[1]
        table = self._bias_table(window)
        feats_in = x.chunk(len(attn.qkvs), dim=1)
        feats_out = []
        feat = feats_in[0]
        for head, (qkv, dws) in enumerate(zip(attn.qkvs, attn.dws)):
            if head > 0:
                feat = feat + feats_in[head]
            q, k, v = qkv(feat).split([attn.key_dim, attn.key_dim, attn.val_dim], dim=1)
            if is_tracing():
                q = _window_depthwise(dws, q, window)
            elif nh * nw > 1:  # one window: the same as the plain conv, without the reshapes
                # the query conv sees each window as its own zero-padded image: fold the windows into the batch
                # (channel counts spelled out: -1 cannot be inferred from an empty batch)
                cq = q.shape[1]
                q = q.view(B, cq, nh, window[0], nw, window[1]).permute(0, 2, 4, 1, 3, 5)
                q = dws(q.reshape(B * nh * nw, cq, *window))
                q = q.view(B, nh, nw, cq, *window).permute(0, 3, 1, 4, 2, 5).reshape(B, cq, ph, pw)
            else:
                q = dws(q)
            out = local_attention(
                q.permute(0, 2, 3, 1).unsqueeze(1),
                k.permute(0, 2, 3, 1).unsqueeze(1),
                v.permute(0, 2, 3, 1).unsqueeze(1),
                window,
                stride=window,
                border='zero',
                bias=table[head : head + 1],
                scale=attn.scale,
                backend=self.backend,
            )
            feat = out.squeeze(1).permute(0, 3, 1, 2)
            feats_out.append(feat)
        out = torch.cat(feats_out, 1)
        return attn.proj(crop(out, H, W))


def _window_depthwise(dws: ConvNorm, q: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """``dws`` (depthwise ``ConvNorm``, 'same' padding) applied to each window of ``q`` as its own zero-padded image.

    The traced (torch.export / compile) form of the window fold in ``KernelLocalWindowAttention.forward``: the windows
    are spread apart by zero gaps of the conv's padding (one gather per axis), one unpadded conv runs over the whole
    map and a gather per axis takes the windows' outputs back. The graph has no tensor dimension counting windows:
    such a dimension is 1 at small maps, and shape checks on it would specialise a dynamic-shape export.
    ``q``: (B, C, H, W) with H, W multiples of the window.
    """
    conv = dws.conv
    x = F.pad(q, (0, 1, 0, 1))  # the last row / column is the zero the gaps read
    for dim, (size, pad) in enumerate(zip((q.shape[2], q.shape[3]), conv.padding), start=2):
        win = window[dim - 2]
        span = win + 2 * pad  # a window and its zero border in the spread layout
        slot = torch.arange((size // win) * span, device=q.device)
        offset = slot % span - pad
        source = torch.where((offset >= 0) & (offset < win), slot // span * win + offset, size)
        x = x.index_select(dim, source)
    out = F.conv2d(x, conv.weight, conv.bias, 1, 0, conv.dilation, conv.groups)
    for dim, size in enumerate((q.shape[2], q.shape[3]), start=2):
        win, span = window[dim - 2], window[dim - 2] + 2 * conv.padding[dim - 2]
        position = torch.arange(size, device=q.device)
        out = out.index_select(dim, position // win * span + position % win)
    return dws.bn(out)


class EvalFoldedConvNorm(ConvNorm):
    """timm's ``ConvNorm`` whose eval forward runs one conv with the BN folded in (training is unchanged).

    Same parameters and state dict; the folded weights are cached until a parameter or statistic changes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        conv = self.conv
        weight, bias = cached_fold(self, conv, self.bn)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class EvalFoldedNormLinear(NormLinear):
    """timm's ``NormLinear`` head (BN1d, dropout, Linear) with the BN folded into the Linear in eval."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        weight, bias = cached_fold(self, self.linear, self.bn, bn_after=False)
        return F.linear(x, weight, bias)


def to_kernel_backed(
    model: nn.Module, fit_small_maps: bool = False, backend: str | None = None, fold_bn: bool = True
) -> nn.Module:
    """Switch a timm EfficientViT-M ``model`` to the kernel-backed attention, in place.

    Every ``LocalWindowAttention`` becomes a ``KernelLocalWindowAttention`` sharing its parameters; with ``fold_bn``
    every ``ConvNorm`` / ``NormLinear`` also runs with its BN folded in eval (their class is switched to the
    ``EvalFolded*`` subclass; training is unchanged). The state dict is unchanged and, with ``fit_small_maps=False``,
    the outputs equal timm's at every input size (to float rounding). Returns ``model``.
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LocalWindowAttention):
                setattr(
                    module, name, KernelLocalWindowAttention.from_local_window_attention(child, fit_small_maps, backend)
                )
            elif isinstance(child, KernelLocalWindowAttention):
                child.fit_small_maps, child.backend = fit_small_maps, backend
        if fold_bn and type(module) is ConvNorm:
            module.__class__ = EvalFoldedConvNorm  # adds only an eval forward: parameters and hooks stay as they are
        elif fold_bn and type(module) is NormLinear:
            module.__class__ = EvalFoldedNormLinear
        elif not fold_bn and type(module) in (EvalFoldedConvNorm, EvalFoldedNormLinear):
            module.__class__ = type(module).__mro__[1]
    return model


# Official module paths -> timm module paths (applied to the key with its leaf names already renamed).
_OFFICIAL_RENAMES = (
    (re.compile(r'^blocks1\.(\d+)\.'), lambda m: f'stages.0.blocks.{m[1]}.'),
    (re.compile(r'^blocks([23])\.0\.(\d+)\.'), lambda m: f'stages.{int(m[1]) - 1}.downsample.res1.{m[2]}.'),
    (re.compile(r'^blocks([23])\.1\.'), lambda m: f'stages.{int(m[1]) - 1}.downsample.patchmerge.'),
    (re.compile(r'^blocks([23])\.2\.(\d+)\.'), lambda m: f'stages.{int(m[1]) - 1}.downsample.res2.{m[2]}.'),
    (re.compile(r'^blocks([23])\.(\d+)\.'), lambda m: f'stages.{int(m[1]) - 1}.blocks.{int(m[2]) - 3}.'),
    (re.compile(r'^patch_embed\.(\d)\.'), lambda m: f'patch_embed.conv{int(m[1]) // 2 + 1}.'),
)


def _rename_official_key(key: str) -> str:
    for pattern, repl in _OFFICIAL_RENAMES:
        key, count = pattern.subn(repl, key, count=1)
        if count:
            break
    # leaf modules: Conv2d_BN's 'c' is timm's 'conv', BN_Linear's 'l' is timm's 'linear'
    key = re.sub(r'\.c\.(weight|bias)$', r'.conv.\1', key)
    return re.sub(r'^head\.l\.', 'head.linear.', key)


def is_official_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """The authors' layout has ``blocks1`` / ``blocks2`` / ``blocks3`` and a Sequential stem; timm's has ``stages``."""
    return any(k.startswith(('blocks1.', 'blocks2.', 'blocks3.', 'patch_embed.0.')) for k in state_dict)


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict:
    """The authors' EfficientViT layout (unfused or BN-fused, optional distillation head) in timm's names.

    ``attention_bias_idxs`` (an index buffer timm rebuilds) is dropped; unknown keys are kept so that a strict load
    names them.
    """
    sd = merge_distillation_head(dict(state_dict), head='head', linear='l')
    out = {}
    for key, value in sd.items():
        if key.endswith('attention_bias_idxs'):
            continue
        out[_rename_official_key(key)] = value
    # fused convs sit one level up ('X.weight' for 'X.conv.weight'); the renames above already moved them
    return unfuse_conv_bn(out, model.state_dict(), conv='conv', linear='linear')


def _timm_filter(state_dict: dict, model: torch.nn.Module) -> dict:
    """timm's own EfficientViT-M filter (drops index buffers, resizes ``attention_biases``), read at call time and
    never replaced; a timm without one gets the same index-buffer drop."""
    timm_filter: Callable | None = getattr(_timm_efficientvit, 'checkpoint_filter_fn', None)
    if timm_filter is None:
        return {k: v for k, v in state_dict.items() if not k.endswith('attention_bias_idxs')}
    return timm_filter(state_dict, model)


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict:
    """Any EfficientViT-M checkpoint layout -> timm's layout for ``model``.

    Accepts the authors' release files (unfused, nested under ``'model'``, with ``attention_bias_idxs``), their
    BN-fused layout, and timm's hub layout (passed through). timm's own filter then drops index buffers and resizes
    ``attention_biases`` when the model's windows differ from the checkpoint's. Unknown keys stay in place.
    """
    if 'model' in state_dict and isinstance(state_dict['model'], Mapping):
        state_dict = state_dict['model']
    if is_official_layout(state_dict):
        state_dict = convert_official_state_dict(state_dict, model)
    return _timm_filter(dict(state_dict), model)
