"""Batch-norm folding: at run time (eval-mode Conv+BN / BN+Linear as one affine layer, cached) and in state dicts.

EfficientViT-M and SHViT (timm's models with our kernel-backed eval path) fold their BNs in eval; their official
checkpoints come BN-fused (``replace_batchnorm``) or with a distillation head, which ``unfuse_conv_bn`` and
``merge_distillation_head`` map back onto the unfused timm layout.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

__all__ = ['cached_fold', 'fold_batchnorm', 'identity_bn', 'merge_distillation_head', 'unfuse_conv_bn']


def fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d | nn.BatchNorm2d, bn_after: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv / linear and an eval-mode BN folded into one affine layer.

    ``bn_after``: the BN normalises the layer's output (Conv+BN); otherwise its input (BN1d+Linear heads).
    """
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    if bn_after:
        folded_bias = shift if bias is None else bias * scale + shift
        return weight * scale.view(-1, *([1] * (weight.ndim - 1))), folded_bias
    folded_bias = weight @ shift if bias is None else weight @ shift + bias
    return weight * scale[None, :], folded_bias


def cached_fold(module: nn.Module, layer: nn.Module, bn: nn.Module, bn_after: bool = True):
    """``fold_batchnorm`` of ``layer`` and ``bn``, cached on ``module`` until any of their tensors changes.

    The key holds every tensor's identity and in-place version counter, so loading weights, ``.to()`` or an optimizer
    step recomputes it (never stale). Fresh weight tensors every call would cost more than the fold saves: the
    convolution backends repack new weights on each call. Tracing / compiling folds inline.
    """
    tensors = (layer.weight, layer.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return fold_batchnorm(layer.weight, layer.bias, bn, bn_after)
    key = tuple((id(t), t._version, t.device, t.dtype) if t is not None else None for t in tensors)
    cache = module.__dict__.get('_folded')
    if cache is None or cache[0] != key:
        with torch.no_grad():
            cache = (key, *fold_batchnorm(layer.weight, layer.bias, bn, bn_after))
        module.__dict__['_folded'] = cache
    return cache[1], cache[2]


def merge_distillation_head(state_dict: dict, head: str = 'head', linear: str = 'l') -> dict:
    """Fold an official distillation head into the main head.

    The authors' eval forward returns ``(head(x) + head_dist(x)) / 2``; both are BN1d + Linear, so their mean is
    one affine map, stored as a BN1d that passes its input through and a Linear. Exact up to float rounding.
    """
    dist = {k[len('head_dist.') :]: v for k, v in state_dict.items() if k.startswith('head_dist.')}
    if not dist:
        return state_dict
    out = {k: v for k, v in state_dict.items() if not k.startswith('head_dist.')}
    main = {k[len(head) + 1 :]: v for k, v in out.items() if k.startswith(f'{head}.')}
    weights, biases = [], []
    for name, sd in ((head, main), ('head_dist', dist)):
        if f'{linear}.weight' in sd:  # BN1d + Linear
            scale = sd['bn.weight'] / torch.sqrt(sd['bn.running_var'] + 1e-5)
            shift = sd['bn.bias'] - sd['bn.running_mean'] * scale
            weights.append(sd[f'{linear}.weight'] * scale[None, :])
            biases.append(sd[f'{linear}.weight'] @ shift + sd.get(f'{linear}.bias', 0.0))
        elif 'weight' in sd and 'bias' in sd:  # BN-fused into one Linear
            weights.append(sd['weight'])
            biases.append(sd['bias'])
        else:
            raise ValueError(
                f'merge_distillation_head: {name} is neither BN1d + Linear ({name}.bn.*, {name}.{linear}.weight) nor a '
                f'fused Linear ({name}.weight, {name}.bias); got keys ' + ', '.join(f'{name}.{k}' for k in sorted(sd))
            )
    for k in [k for k in out if k.startswith(f'{head}.')]:
        del out[k]
    out.update(identity_bn(f'{head}.bn', weights[0].shape[1], weights[0]))
    out[f'{head}.{linear}.weight'] = (weights[0] + weights[1]) / 2
    out[f'{head}.{linear}.bias'] = (biases[0] + biases[1]) / 2
    return out


def identity_bn(prefix: str, channels: int, like: torch.Tensor, eps: float = 1e-5) -> dict:
    """BatchNorm entries whose eval transform is the identity (what a fused conv / linear unfolds into)."""
    return {
        f'{prefix}.weight': torch.ones(channels, dtype=like.dtype),
        f'{prefix}.bias': torch.zeros(channels, dtype=like.dtype),
        f'{prefix}.running_mean': torch.zeros(channels, dtype=like.dtype),
        # (1 - eps) + eps == 1: the normalisation divides by exactly sqrt(1)
        f'{prefix}.running_var': torch.full((channels,), 1.0 - eps, dtype=like.dtype),
        f'{prefix}.num_batches_tracked': torch.tensor(0, dtype=torch.long),
    }


def unfuse_conv_bn(
    state_dict: dict,
    target_keys: Mapping[str, torch.Tensor],
    conv: str = 'conv',
    linear: str = 'linear',
    residual_identity: bool = False,
) -> dict:
    """Map a BN-fused layout back onto an unfused model.

    ``replace_batchnorm`` turns each Conv+BN (``P.{conv}.weight`` + ``P.bn.*``) into a Conv with bias stored as
    ``P.weight`` / ``P.bias``, and each BN1d+Linear head into ``P.weight`` / ``P.bias``. The unfused form of a fused
    conv is the same conv followed by a BN that is the identity apart from adding the bias. With
    ``residual_identity`` (SHViT), a residual depthwise 3x3 Conv+BN (``R.m.{conv}.weight``) was fused into ``R.weight``
    with the identity added at the kernel centre; it is subtracted again. Keys that are not fused are left as they are.
    """
    out = dict(state_dict)
    for key in target_keys:
        if not key.endswith('.bn.running_var'):
            continue
        prefix = key[: -len('.bn.running_var')]
        for leaf in (conv, linear):
            if f'{prefix}.{leaf}.weight' in target_keys:
                break
        else:
            continue
        target_weight = f'{prefix}.{leaf}.weight'
        if target_weight in out:
            continue  # not fused
        fused, subtract_identity = prefix, False
        if f'{fused}.weight' not in out and residual_identity and prefix.endswith('.m'):
            fused, subtract_identity = prefix[: -len('.m')], True
        if f'{fused}.weight' not in out or f'{fused}.bias' not in out:
            continue  # leave it to the strict check to name the missing keys
        weight, bias = out.pop(f'{fused}.weight'), out.pop(f'{fused}.bias')
        if subtract_identity:
            weight = weight.clone()
            centre = (weight.shape[-2] // 2, weight.shape[-1] // 2)
            weight[:, 0, centre[0], centre[1]] -= 1.0
        out[target_weight] = weight
        if weight.ndim == 2:  # Linear head: the BN1d sits before it (in_features wide), the bias is the Linear's
            out.update(identity_bn(f'{prefix}.bn', weight.shape[1], weight))
            out[f'{prefix}.{leaf}.bias'] = bias
        else:
            out.update(identity_bn(f'{prefix}.bn', weight.shape[0], weight))
            out[f'{prefix}.bn.bias'] = bias
    return out
