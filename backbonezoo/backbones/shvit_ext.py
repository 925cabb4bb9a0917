"""SHViT: official-checkpoint conversion for timm's ``shvit_s1..s4``.

timm ships the models (``timm.models.shvit``, identical math to the authors' code) and owns their names; this module
adds what timm lacks:

* ``checkpoint_filter_fn``: converts the authors' release layout (``ysj9909/SHViT``: unfused, nested under
  ``'model'`` or ``'state_dict'``, and the BN-fused layout of their ``replace_batchnorm``, which also folds each
  residual depthwise conv) and timm's hub layout into timm's layout, then applies timm's own filter. It serves the
  explicit routes: ``backbonezoo.convert_checkpoint('shvit_s4.pth', 'shvit_s4')`` (a strict state dict for
  ``timm.create_model('shvit_s4')``), ``tools/convert_checkpoint.py`` (a timm-layout file for
  ``pretrained_cfg_overlay=dict(file=...)``) and the mm backbones' ``init_cfg``. Importing backbonezoo changes
  nothing in timm: ``timm.create_model('shvit_s4', pretrained=True, ...)`` is timm's own route (timm's layout only).

* ``FastSHSA`` / ``to_kernel_backed(model)``: timm's single-head attention (same parameters and state dict) through
  ``F.scaled_dot_product_attention``. Its query/key width (16) differs from the value width (``partial_dim``), which
  sends CPU SDPA to its unfused math path; zero-padding q and k to the value width leaves every logit unchanged (the
  scale is passed explicitly) and lets SDPA take its fused flash kernel, which never materialises the N x N logits.

SHViT shares EfficientViT-M's code base (stem, PatchMerging, BN-fusion scheme), so the fusion helpers are shared
with :mod:`backbonezoo.backbones.efficientvit_ext`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import timm.models.shvit as _timm_shvit
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.shvit import SHSA, Conv2dNorm, NormLinear

from backbonezoo.layers.bn_fold import cached_fold, merge_distillation_head, unfuse_conv_bn

__all__ = [
    'EvalFoldedConv2dNorm',
    'EvalFoldedNormLinear',
    'FastSHSA',
    'checkpoint_filter_fn',
    'convert_official_state_dict',
    'to_kernel_backed',
]


class FastSHSA(SHSA):
    """timm's ``SHSA`` (single-head attention over the first ``pdim`` channels) on SDPA's fused kernels.

    Same parameters, state dict and math as timm's module; q and k are zero-padded to the value width so that query,
    key and value share one head dim (a zero column adds nothing to q . k).
    """

    @classmethod
    def from_shsa(cls, module: SHSA) -> FastSHSA:
        """A ``FastSHSA`` sharing ``module``'s parameters (no copy)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for name, value in vars(module).items():
            if not name.startswith('_'):
                setattr(new, name, value)
        for name, child in module.named_children():
            new.add_module(name, child)
        new.train(module.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        x1, x2 = torch.split(x, [self.pdim, self.dim - self.pdim], dim=1)
        qkv = self.qkv(self.pre_norm(x1)).flatten(2).transpose(1, 2)  # (B, N, 2 * qk + pdim)
        q, k, v = qkv.unsqueeze(1).split([self.qk_dim, self.qk_dim, self.pdim], dim=-1)
        if self.pdim > self.qk_dim:
            pad = (0, self.pdim - self.qk_dim)
            q, k = F.pad(q, pad), F.pad(k, pad)
        elif self.pdim < self.qk_dim:
            v = F.pad(v, (0, self.qk_dim - self.pdim))
        x1 = F.scaled_dot_product_attention(q, k, v, scale=self.scale)[..., : self.pdim]
        x1 = x1.squeeze(1).transpose(1, 2).reshape(B, self.pdim, H, W)
        return self.proj(torch.cat([x1, x2], dim=1))


class EvalFoldedConv2dNorm(Conv2dNorm):
    """timm's SHViT ``Conv2dNorm`` running one conv with its BN folded in eval (cached; training unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        conv = self.c
        weight, bias = cached_fold(self, conv, self.bn)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class EvalFoldedNormLinear(NormLinear):
    """timm's SHViT ``NormLinear`` head with its BN1d folded into the Linear in eval."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        weight, bias = cached_fold(self, self.l, self.bn, bn_after=False)
        return F.linear(x, weight, bias)


def to_kernel_backed(model: nn.Module, fold_bn: bool = True) -> nn.Module:
    """Switch a timm SHViT ``model`` to the fast attention path, in place.

    Every ``SHSA`` becomes a ``FastSHSA`` sharing its parameters; with ``fold_bn`` every ``Conv2dNorm`` /
    ``NormLinear`` runs with its BN folded in eval (class switched to the ``EvalFolded*`` subclass, which adds only an
    eval forward). The state dict is unchanged and outputs equal timm's to float rounding. Returns ``model``.
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, SHSA) and not isinstance(child, FastSHSA):
                setattr(module, name, FastSHSA.from_shsa(child))
        if fold_bn and type(module) is Conv2dNorm:
            module.__class__ = EvalFoldedConv2dNorm
        elif fold_bn and type(module) is NormLinear:
            module.__class__ = EvalFoldedNormLinear
        elif not fold_bn and type(module) in (EvalFoldedConv2dNorm, EvalFoldedNormLinear):
            module.__class__ = type(module).__mro__[1]
    return model


# Official ``blocksN.i`` -> timm ``stages.{N-1}.*``: the five downsample modules, then the stage's blocks.
_DOWNSAMPLE_SLOTS = {'0.0': 0, '0.1': 1, '1': 2, '2.0': 3, '2.1': 4}
_BLOCK_RE = re.compile(r'^blocks([123])\.(\d+)\.(?:(\d+)\.)?')


def _rename_official_key(key: str) -> str:
    match = _BLOCK_RE.match(key)
    if match is None:
        return key
    stage, index, sub = int(match[1]), int(match[2]), match[3]
    rest = key[match.end() :]
    if stage == 1:  # stage 1 has no downsample: blocks1.j -> stages.0.blocks.j
        return f'stages.0.blocks.{index}.' + (f'{sub}.' if sub is not None else '') + rest
    if index >= 3:
        return f'stages.{stage - 1}.blocks.{index - 3}.' + (f'{sub}.' if sub is not None else '') + rest
    slot = f'{index}.{sub}' if index in (0, 2) and sub is not None else str(index)
    if slot not in _DOWNSAMPLE_SLOTS:
        return key  # not a known layout: leave it for the strict check to name
    return f'stages.{stage - 1}.downsample.{_DOWNSAMPLE_SLOTS[slot]}.' + rest


def is_official_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(('blocks1.', 'blocks2.', 'blocks3.')) for k in state_dict)


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict:
    """The authors' SHViT layout (unfused or BN-fused, optional distillation head) in timm's names.

    Unknown keys are kept so that a strict load names them.
    """
    sd = merge_distillation_head(dict(state_dict), head='head', linear='l')
    out = {_rename_official_key(k): v for k, v in sd.items()}
    return unfuse_conv_bn(out, model.state_dict(), conv='c', linear='l', residual_identity=True)


def _timm_filter(state_dict: dict, model: torch.nn.Module) -> dict:
    """timm's own SHViT filter, read at call time and never replaced (a timm without one: pass through)."""
    timm_filter: Callable | None = getattr(_timm_shvit, 'checkpoint_filter_fn', None)
    return state_dict if timm_filter is None else timm_filter(state_dict, model)


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict:
    """Any SHViT checkpoint layout -> timm's layout for ``model``.

    Accepts the authors' release files (unfused, nested under ``'model'`` or ``'state_dict'``), their BN-fused layout
    and timm's hub layout (passed through). Unknown keys stay in place.
    """
    for nest in ('model', 'state_dict'):
        if isinstance(state_dict.get(nest), Mapping):
            state_dict = state_dict[nest]
            break
    if is_official_layout(state_dict):
        state_dict = convert_official_state_dict(state_dict, model)
    return _timm_filter(dict(state_dict), model)
