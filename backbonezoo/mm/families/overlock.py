"""OverLoCK for mmdet / mmseg: ``dict(type='OverLoCK', arch='t', overview_proj=True)``, and the ImageNet classifier
with the Overview-Net's deep-supervision loss: ``dict(type='OverLoCKClassifier', model_name='overlock_t')``.

Outputs, as in the official dense wrappers (strides 4 / 8 / 16 / 32; channels T 64/128/384/640, S 64/128/448/640,
B 80/160/528/720): LayerNorm of Base-Net stages 1 and 2, LayerNorm of Focus-Net stage 3 (features and context stream
concatenated) and LayerNorm of Focus-Net stage 4. The official *detection* copy adds to the last map a projection of the
Overview-Net output (LayerNorm, 1x1 conv to the last map's channels, layer scale initialised to 1e-5); the
*segmentation* copy has none. ``overview_proj=True`` gives the detection form, ``False`` (default) the segmentation
form; the configs say which.

Like the official dense code the backbone is built in the training form (``deploy=False``: dilated-reparam branches,
what the dense papers fine-tuned) and takes the ImageNet training-form file; ``model_kwargs=dict(deploy=True)``
builds the reparameterised form (training-form files are fused on load). Inputs of any size work without padding
(stride-2 convs round up, ContMix resizes maps smaller than its kernel), as in the official wrapper.

Differences from the official wrappers, on purpose: ``out_indices``, ``frozen_stages``, ``norm_eval`` and ``with_cp``
exist (``frozen_stages=3`` freezes everything that feeds Focus-Net stage 3: Base-Net stage 3, the Overview-Net and the
context projection too; ``frozen_stages=4`` also the detection projection, which belongs to the last output); no SyncBN
conversion inside ``__init__`` (configs choose their norms); pretrained files load strictly (official: mmcv
``load_checkpoint``, non-strict).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

import torch
from mmengine.logging import print_log
from mmengine.registry import MODELS
from timm.layers import LayerNorm2d
from torch import nn

from ...checkpoint import CheckpointMismatchError, unwrap_state_dict
from ...layers import ChannelAffine
from ..backbone import ZooBackbone, read_checkpoint, register_backbone
from ..classification import ZooClassifier

__all__ = ['OverLoCK', 'OverLoCKClassifier']


@register_backbone
class OverLoCK(ZooBackbone):
    """OverLoCK backbone (``arch`` = 'xt' / 't' / 's' / 'b' or a timm name); see the module docstring.

    Args:
        overview_proj: add the official detection wrapper's projection of the Overview-Net output onto the last map.
        deploy: build the reparameterised form (default: the training form, as the official dense code).
        **kwargs: :class:`backbonezoo.mm.ZooBackbone` arguments (``out_indices``, ``frozen_stages``, ``norm_eval``,
            ``with_cp``, ``drop_path_rate``, ``model_kwargs``, ``init_cfg``, ...).
    """

    arch_zoo = {'xt': 'overlock_xt', 't': 'overlock_t', 's': 'overlock_s', 'b': 'overlock_b'}
    out_norm = 'ln2d'
    size_divisor = 1  # the model handles any size itself, like the official dense backbone

    def __init__(self, arch: str = 't', overview_proj: bool = False, deploy: bool = False, **kwargs) -> None:
        kwargs['model_kwargs'] = dict(kwargs.get('model_kwargs') or {})
        kwargs['model_kwargs'].setdefault('deploy', deploy)
        super().__init__(arch=arch, **kwargs)
        self.overview_proj = None
        self._overview = None
        if overview_proj:
            if 3 not in self.out_indices:
                raise ValueError(f'overview_proj=True projects onto output 3; out_indices={self.out_indices} lacks it')
            overview_chs = self.model.embed_dims[3]
            out_chs = self.out_channels[self.out_indices.index(3)]
            self.overview_proj = nn.Sequential(
                OrderedDict(
                    norm=LayerNorm2d(overview_chs, eps=1e-6),
                    conv=nn.Conv2d(overview_chs, out_chs, 1),
                    scale=ChannelAffine(out_chs, 1e-5),
                )
            )
            nn.init.trunc_normal_(self.overview_proj.conv.weight, std=0.02)
            nn.init.zeros_(self.overview_proj.conv.bias)
            # the Overview-Net output is not one of the maps forward_intermediates returns: keep it when it passes
            self.model.stages[3].register_forward_hook(self._keep_overview)
            self._freeze_stages()  # the projection belongs to the last output: frozen with stage 4

    def _keep_overview(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._overview = output

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """Stage 3 (Focus-Net stage 3) depends on Base-Net stage 3, the Overview-Net and the context projection;
        stage 4 (Focus-Net stage 4) comes with the detection projection of the Overview-Net output onto its map."""
        model = self.model
        if stage == 3 and len(model.focus_stages) > 0:
            return [model.stages[2], model.stages[3], model.context_proj, model.focus_stages[0]]
        modules = super().stage_modules(stage)
        if stage == 4 and getattr(self, 'overview_proj', None) is not None:
            modules.append(self.overview_proj)
        return modules

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = super().forward(x)
        if self.overview_proj is None:
            return outs
        overview, self._overview = self._overview, None
        last = self.out_indices.index(3)
        outs = list(outs)
        outs[last] = outs[last] + self.overview_proj(overview)
        return tuple(outs)

    def convert_dense_checkpoint(self, state_dict: dict) -> dict:
        """Official dense checkpoints: ``extra_norm.{0..3}`` -> ``out_norms.<position>`` (norms of outputs not in
        ``out_indices`` are dropped), ``extra_norm.4`` / ``h_proj.{0,1}`` -> ``overview_proj.{norm,conv,scale}``."""
        out = {}
        for key, value in state_dict.items():
            match = re.match(r'^extra_norm\.(\d)\.(weight|bias)$', key)
            if match is not None and int(match[1]) == 4:
                out[f'overview_proj.norm.{match[2]}'] = value
            elif match is not None:
                if int(match[1]) in self.out_indices:
                    out[f'out_norms.{self.out_indices.index(int(match[1]))}.{match[2]}'] = value
            elif key.startswith('h_proj.0.'):
                out['overview_proj.conv.' + key[len('h_proj.0.') :]] = value
            elif key.startswith('h_proj.1.'):
                out['overview_proj.scale.' + key[len('h_proj.1.') :]] = value.flatten()
            else:
                out[key] = value
        return out

    def load_pretrained(self, checkpoint: str | Mapping) -> None:
        """The base class's strict load, plus the detection projection: loaded when the file has it (all of it),
        kept initialised when the file has none (an ImageNet file); an error when the file has it and this backbone
        does not."""
        state_dict = self.convert_dense_checkpoint(dict(unwrap_state_dict(read_checkpoint(checkpoint))))
        extra = {
            k[len('overview_proj.') :]: state_dict.pop(k) for k in list(state_dict) if k.startswith('overview_proj.')
        }
        if extra and self.overview_proj is None:
            raise CheckpointMismatchError(
                f'{type(self).__name__}({self.model_name})', unexpected=[f'overview_proj.{k}' for k in extra]
            )
        super().load_pretrained(state_dict)
        if self.overview_proj is None:
            return
        if not extra:
            print_log(f'{type(self).__name__}: overview_proj is not in the checkpoint, kept initialised', 'current')
            return
        expected = self.overview_proj.state_dict()
        missing = [f'overview_proj.{k}' for k in expected if k not in extra]
        unexpected = [f'overview_proj.{k}' for k in extra if k not in expected]
        if missing or unexpected:
            raise CheckpointMismatchError(f'{type(self).__name__}({self.model_name})', missing, unexpected)
        self.overview_proj.load_state_dict(extra, strict=True)


@MODELS.register_module(force=True)
class OverLoCKClassifier(ZooClassifier):
    """:class:`backbonezoo.mm.ZooClassifier` for OverLoCK's official ImageNet recipe: the training form
    (``deploy=False``) with the auxiliary Overview-Net head (``use_ds=True``), whose loss is added with weight
    ``aux_loss_ratio`` (official ``--aux-loss-ratio`` 0.4). Evaluation uses the main head only.
    """

    def __init__(self, model_name: str = 'overlock_xt', aux_loss_ratio: float = 0.4, **kwargs) -> None:
        model_kwargs = dict(kwargs.pop('model_kwargs', None) or {})
        model_kwargs.setdefault('use_ds', True)
        model_kwargs.setdefault('deploy', False)
        super().__init__(model_name, model_kwargs=model_kwargs, **kwargs)
        self.aux_loss_ratio = aux_loss_ratio

    def forward(self, inputs: torch.Tensor, gt_label: torch.Tensor | None = None, mode: str = 'tensor'):
        if mode != 'loss':
            return super().forward(inputs, gt_label, mode)
        if gt_label is None:
            raise ValueError("mode='loss' needs gt_label")
        outputs = self.model(inputs)
        logits, aux = outputs if isinstance(outputs, tuple) else (outputs, None)
        loss_fn = self.soft_loss if gt_label.ndim == 2 else self.hard_loss
        losses = dict(loss=loss_fn(logits, gt_label))
        if aux is not None:
            losses['loss_aux'] = self.aux_loss_ratio * loss_fn(aux, gt_label)
        return losses
