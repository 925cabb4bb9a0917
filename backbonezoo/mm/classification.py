"""ImageNet-style classification through mmengine: model, data preprocessor, dataset, transforms, metric.

Registered in mmengine's root registries (classification configs use the default ``'mmengine'`` scope):

- ``ZooClassifier`` (MODELS): any zoo / timm model; loss from timm (soft-target cross-entropy after mixup /
  cutmix, label-smoothing cross-entropy otherwise), ``mixup=dict(...)`` (``timm.data.Mixup`` arguments),
  optionally knowledge distillation from frozen timm teachers (``distill=dict(...)``: DeiT-style hard / soft
  distillation from one teacher, or MEAL V2-style soft labels from an ensemble). EMA comes from mmengine's
  ``EMAHook`` in ``custom_hooks``.
- ``ClsDataPreprocessor`` (MODELS): batches, moves to the device, applies timm's ``Mixup`` (mixup / cutmix /
  label smoothing) while training.
- ``ImageFolderDataset`` (DATASETS): ``<root>/<split>/<wnid>/*.JPEG``, or a flat folder with a label file. A
  sample's augmentation is drawn from generators seeded by ``(seed, epoch, position)`` when the sampler hands
  out seeded indices (``SeededSampler``, ``RepeatAugSampler``): the same in any worker layout and after a resume.
- ``SeededSampler``, ``RepeatAugSampler`` (DATA_SAMPLERS): mmengine's ``DefaultSampler`` order / timm's repeated
  augmentation, both handing out seeded indices.
- ``LoadImagePIL``, ``TimmClsTrain``, ``TimmClsEval`` (TRANSFORMS): timm's own transforms (what the papers ran):
  ``TimmClsTrain`` is ``timm.data.create_transform(is_training=True, ...)`` (RandAugment, random erasing, ...),
  ``TimmClsEval`` is :func:`backbonezoo.data.eval_transform`, the one evaluation protocol shared with
  ``tools/eval_imagenet.py``.
- ``AlbuAugment`` (TRANSFORMS): opt-in extra albumentations stage before ``TimmClsTrain``. ``LoadImageRGB``,
  ``AlbuClsTrain``, ``AlbuClsEval``: the earlier albumentations 2.x pipelines, kept as opt-in; ``AlbuClsEval``
  resizes with cv2 and so does NOT match the evaluation protocol.
- ``ZooOptimConstructor`` (OPTIM_WRAPPER_CONSTRUCTORS): timm's weight-decay exclusions (the model's
  ``no_weight_decay()``, norms, biases), layer-wise lr decay and mmengine's ``custom_keys`` (lr_mult / decay_mult).
- ``ClsAccuracy`` (METRICS): top-1 / top-5 in percent.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dataset import BaseDataset, DefaultSampler
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import (
    DATA_SAMPLERS,
    DATASETS,
    METRICS,
    MODELS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    TRANSFORMS,
)
from PIL import Image

from ..data import IMG_EXTENSIONS, current_sample_seed, eval_transform, load_image, sample_rng, sample_seed
from ..data import train_transform as timm_train_transform

__all__ = [
    'ZooClassifier',
    'ClsDataPreprocessor',
    'ImageFolderDataset',
    'SeededIndex',
    'SeededSampler',
    'RepeatAugSampler',
    'LoadImagePIL',
    'TimmClsTrain',
    'TimmClsEval',
    'AlbuAugment',
    'LoadImageRGB',
    'AlbuClsTrain',
    'AlbuClsEval',
    'ZooOptimConstructor',
    'ClsAccuracy',
    'resolve_eval_config',
    'accuracy',
]


# ---------------------------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------------------------
@MODELS.register_module()
class ClsDataPreprocessor(BaseDataPreprocessor):
    """Stack a batch (``inputs`` CHW float tensors, ``gt_label`` ints), move it, mix it while training.

    Args:
        mixup: keyword arguments of ``timm.data.Mixup`` (``mixup_alpha``, ``cutmix_alpha``, ``label_smoothing``,
            ``num_classes``, ...); ``None`` disables it. Needs an even batch size.
        channels_last: hand the model channels-last inputs.
    """

    def __init__(self, mixup: dict | None = None, channels_last: bool = False, non_blocking: bool = False) -> None:
        super().__init__(non_blocking=non_blocking)
        self.mixup = None
        if mixup:
            from timm.data import Mixup

            self.mixup = Mixup(**mixup)
        self.channels_last = channels_last

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs, labels = data['inputs'], data['gt_label']
        if isinstance(inputs, (list, tuple)):  # mmengine's default pseudo_collate keeps samples apart
            inputs = torch.stack(list(inputs))
        labels = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
        inputs, labels = self.cast_data(inputs), self.cast_data(labels)
        if training and self.mixup is not None:
            if inputs.shape[0] % 2:
                raise ValueError(f'mixup / cutmix need an even batch size, got {inputs.shape[0]}')
            inputs, labels = self.mixup(inputs, labels)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return dict(inputs=inputs, gt_label=labels)


@MODELS.register_module()
class ZooClassifier(BaseModel):
    """A zoo / timm classifier as an mmengine model.

    Args:
        model_name: timm name (zoo models are registered by ``import backbonezoo``).
        num_classes: classifier size.
        label_smoothing: label smoothing (LabelSmoothingCrossEntropy without mixup; with mixup it goes into
            timm's ``Mixup`` unless ``mixup`` sets its own ``label_smoothing``).
        mixup: keyword arguments of ``timm.data.Mixup`` (``mixup_alpha``, ``cutmix_alpha``, ``cutmix_minmax``,
            ``prob``, ``switch_prob``, ``mode``, ``label_smoothing``); ``num_classes`` defaults to the model's. The
            data preprocessor applies it while training and the loss becomes timm's ``SoftTargetCrossEntropy``.
            ``None`` (or both alphas 0 and no ``cutmix_minmax``) disables it. Same as the preprocessor's ``mixup``
            (set one of the two).
        checkpoint: official / timm / mmengine checkpoint to start from (converted with
            ``backbonezoo.convert_checkpoint``); the classifier is re-initialised when ``num_classes`` differs.
        model_kwargs: further ``timm.create_model`` arguments (``drop_path_rate``, ``drop_rate``, ...).
        distill: knowledge distillation from frozen teachers (not in the state dict, not trained, always in eval
            mode, fed the same mixed inputs as the student). Two forms:

            - DeiT-style: ``dict(teacher='regnety_160', teacher_checkpoint=None, type='hard', alpha=0.5, tau=1.0,
              pretrained=True)``. ``type='hard'``: cross-entropy against the teacher's argmax; ``'soft'``: KL
              divergence at temperature ``tau`` (times ``tau^2``); loss ``(1 - alpha) * label loss + alpha *
              distillation loss``. A model returning ``(cls, dist)`` logits while training (distillation token) has
              its second output distilled, the first trained on labels; others use the same logits for both.
            - MEAL V2-style: ``dict(teachers=[timm names], pretrained=True, checkpoints=None, temperature=1.0,
              weight=1.0)``. The teachers' softmax outputs (at ``temperature``) are averaged into soft labels; the
              loss is ``weight * T^2 * CE(soft labels, student / T) + (1 - weight) * label loss``.

            Teacher checkpoints (``teacher_checkpoint`` / ``checkpoints``, any layout ``convert_checkpoint`` or timm
            reads) replace the hub download.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int = 1000,
        label_smoothing: float = 0.0,
        mixup: dict | None = None,
        checkpoint: str | None = None,
        model_kwargs: dict | None = None,
        distill: dict | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        data_preprocessor = dict(data_preprocessor or dict(type='ClsDataPreprocessor'))
        mixup = self._mixup_cfg(mixup, num_classes, label_smoothing)
        if mixup is not None:
            if data_preprocessor.get('mixup'):
                raise ValueError('mixup is set both on the model and on its data_preprocessor: keep one')
            data_preprocessor['mixup'] = mixup
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        import timm
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        import backbonezoo  # noqa: F401  (registers the zoo's models with timm)

        self.model_name = model_name
        self.model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, **(model_kwargs or {}))
        self.soft_loss = SoftTargetCrossEntropy()
        self.hard_loss = (
            LabelSmoothingCrossEntropy(label_smoothing) if label_smoothing > 0 else torch.nn.CrossEntropyLoss()
        )
        if checkpoint:
            self.load_pretrained(checkpoint, model_kwargs or {})
        self.distill = self._build_distillation(distill, num_classes)

    @staticmethod
    def _mixup_cfg(mixup: dict | None, num_classes: int, label_smoothing: float) -> dict | None:
        if not mixup:
            return None
        mixup = dict(mixup)
        if not (mixup.get('mixup_alpha', 1.0) or mixup.get('cutmix_alpha', 0.0) or mixup.get('cutmix_minmax')):
            return None  # nothing to mix: hard labels with label smoothing
        mixup.setdefault('num_classes', num_classes)
        mixup.setdefault('label_smoothing', label_smoothing)
        return mixup

    @staticmethod
    def _load_teacher(name: str, path, pretrained: bool, num_classes: int) -> torch.nn.Module:
        import timm

        from .backbone import _is_zoo_model

        if path is None:
            teacher = timm.create_model(name, pretrained=pretrained, num_classes=num_classes)
        elif _is_zoo_model(name):
            from ..checkpoint import convert_checkpoint

            teacher = timm.create_model(name, pretrained=False, num_classes=num_classes)
            teacher.load_state_dict(convert_checkpoint(str(path), name, model=teacher), strict=True)
        else:
            teacher = timm.create_model(name, pretrained=False, num_classes=num_classes, checkpoint_path=str(path))
        teacher.eval().requires_grad_(False)
        return teacher

    @classmethod
    def _build_distillation(cls, distill: dict | None, num_classes: int) -> dict | None:
        if not distill:
            return None
        if 'teachers' not in distill:
            return cls._build_deit_distillation(distill, num_classes)
        allowed = {'teachers', 'pretrained', 'checkpoints', 'temperature', 'weight'}
        unknown = set(distill) - allowed
        if unknown:
            raise ValueError(f'distill: unknown keys {sorted(unknown)}; expected some of {sorted(allowed)}')
        names = distill.get('teachers')
        if isinstance(names, str):
            names = [names]
        if not names:
            raise ValueError(f'distill.teachers: expected one or more timm model names, got {names!r}')
        checkpoints = distill.get('checkpoints') or [None] * len(names)
        if len(checkpoints) != len(names):
            raise ValueError(f'distill.checkpoints: expected one per teacher ({len(names)}), got {len(checkpoints)}')
        weight, temperature = float(distill.get('weight', 1.0)), float(distill.get('temperature', 1.0))
        if not 0.0 <= weight <= 1.0 or temperature <= 0.0:
            raise ValueError(f'distill: expected 0 <= weight <= 1 and temperature > 0, got {weight} and {temperature}')
        pretrained = bool(distill.get('pretrained', True))
        teachers = [cls._load_teacher(n, p, pretrained, num_classes) for n, p in zip(names, checkpoints)]
        # a plain list: the teachers stay out of the state dict, the optimizer and DDP
        return dict(kind='meal', teachers=teachers, weight=weight, temperature=temperature)

    @classmethod
    def _build_deit_distillation(cls, distill: dict, num_classes: int) -> dict:
        allowed = {'teacher', 'teacher_checkpoint', 'type', 'alpha', 'tau', 'pretrained'}
        unknown = set(distill) - allowed
        if unknown:
            raise ValueError(
                f'distill: unknown keys {sorted(unknown)}; expected some of {sorted(allowed)} (DeiT-style) or '
                "'teachers', 'checkpoints', 'temperature', 'weight' (MEAL V2-style)"
            )
        kind = distill.get('type', 'hard')
        if kind not in ('hard', 'soft', 'none'):
            raise ValueError(f"distill.type={kind!r}: expected 'hard', 'soft' or 'none'")
        if kind == 'none':
            return None
        name = distill.get('teacher')
        if not isinstance(name, str) or not name:
            raise ValueError(f'distill.teacher: expected a timm model name, got {name!r}')
        alpha, tau = float(distill.get('alpha', 0.5)), float(distill.get('tau', 1.0))
        if not 0.0 <= alpha <= 1.0 or tau <= 0.0:
            raise ValueError(f'distill: expected 0 <= alpha <= 1 and tau > 0, got {alpha} and {tau}')
        teacher = cls._load_teacher(
            name, distill.get('teacher_checkpoint'), bool(distill.get('pretrained', True)), num_classes
        )
        return dict(kind=kind, teachers=[teacher], alpha=alpha, tau=tau)

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for teacher in self.distill['teachers']:
            teacher.to(device=inputs.device).eval()
            outputs.append(teacher(inputs).float())
        return outputs

    @torch.no_grad()
    def soft_labels(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teachers' averaged class probabilities at the distillation temperature (MEAL V2-style)."""
        temperature = self.distill['temperature']
        return torch.stack([(t / temperature).softmax(dim=-1) for t in self.teacher_logits(inputs)]).mean(0)

    def label_loss(self, logits: torch.Tensor, gt_label: torch.Tensor) -> torch.Tensor:
        return self.soft_loss(logits, gt_label) if gt_label.ndim == 2 else self.hard_loss(logits, gt_label)

    def distill_losses(self, logits, inputs: torch.Tensor, gt_label: torch.Tensor) -> dict:
        distill = self.distill
        if distill['kind'] == 'meal':
            logits = logits[0] if isinstance(logits, (tuple, list)) else logits
            weight, temperature = distill['weight'], distill['temperature']
            losses = dict(
                loss_kd=weight * temperature**2 * self.soft_loss(logits / temperature, self.soft_labels(inputs))
            )
            if weight < 1.0:
                losses['loss_cls'] = (1.0 - weight) * self.label_loss(logits, gt_label)
            return losses
        # DeiT: (1 - alpha) * label loss + alpha * distillation loss
        cls_logits, dist_logits = logits if isinstance(logits, (tuple, list)) else (logits, logits)
        teacher = self.teacher_logits(inputs)[0]
        alpha, tau = distill['alpha'], distill['tau']
        if distill['kind'] == 'soft':
            kd = F.kl_div(
                F.log_softmax(dist_logits.float() / tau, dim=1),
                F.log_softmax(teacher / tau, dim=1),
                reduction='sum',
                log_target=True,
            ) * (tau * tau / dist_logits.numel())
        else:
            kd = F.cross_entropy(dist_logits.float(), teacher.argmax(dim=1))
        losses = dict(loss_kd=alpha * kd)
        if alpha < 1.0:
            losses['loss_cls'] = (1.0 - alpha) * self.label_loss(cls_logits, gt_label)
        return losses

    def load_pretrained(self, checkpoint: str, model_kwargs: dict) -> None:
        import timm

        from ..checkpoint import (
            convert_checkpoint,
            load_state_dict_file,
            strict_match,
            strip_classifier_prefix,
            unwrap_state_dict,
        )
        from .backbone import _is_zoo_model

        with torch.device('meta'):
            reference = timm.create_model(self.model_name, pretrained=False, **model_kwargs)
        if _is_zoo_model(self.model_name):
            state_dict = convert_checkpoint(checkpoint, self.model_name, model=reference)
        else:
            state_dict = strip_classifier_prefix(unwrap_state_dict(load_state_dict_file(checkpoint)), reference)
            strict_match(self.model_name, reference, state_dict)
        if self.model.num_classes != reference.num_classes:  # fine-tuning to another label set: fresh classifier
            head = self.model.pretrained_cfg.get('classifier', 'head')
            heads = [head] if isinstance(head, str) else list(head)
            state_dict = {k: v for k, v in state_dict.items() if not any(k.startswith(h + '.') for h in heads)}
            self.model.load_state_dict(state_dict, strict=False)
        else:
            self.model.load_state_dict(state_dict, strict=True)

    def forward(self, inputs: torch.Tensor, gt_label: torch.Tensor | None = None, mode: str = 'tensor'):
        logits = self.model(inputs)
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            if gt_label is None:
                raise ValueError("mode='loss' needs gt_label")
            if self.distill is None:
                logits = logits[0] if isinstance(logits, (tuple, list)) else logits
                return dict(loss=self.label_loss(logits, gt_label))
            return self.distill_losses(logits, inputs, gt_label)
        if mode == 'predict':
            if isinstance(logits, (tuple, list)):  # distillation-token models outside eval mode: average the heads
                logits = sum(logits) / len(logits)
            scores = logits.float().softmax(dim=-1).detach().cpu()
            labels = [None] * len(scores) if gt_label is None else gt_label.detach().cpu()
            return [dict(pred_score=s, gt_label=y) for s, y in zip(scores, labels)]
        raise ValueError(f"mode={mode!r}: expected 'tensor', 'loss' or 'predict'")


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------
def _read_classes(classes: str | Sequence[str] | None, data_root: str) -> list[str] | None:
    if classes is None or not isinstance(classes, (str, os.PathLike)):
        return None if classes is None else list(classes)
    path = Path(data_root, classes) if data_root and not os.path.isabs(classes) else Path(classes)
    if not path.is_file():
        raise FileNotFoundError(f'classes={str(classes)!r}: file {path} not found')
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


@DATASETS.register_module()
class ImageFolderDataset(BaseDataset):
    """ImageNet-layout classification data.

    Folder layout: ``data_root/data_prefix/<class>/*.JPEG`` (classes = sorted sub-folder names unless
    ``classes`` is given). Flat layout: images in ``data_root/data_prefix`` and ``ann_file`` lines
    ``<file> <label>``, label a class index or a class name (wnid).

    Args:
        data_root: dataset root.
        data_prefix: image folder under the root (``'train'``, ``'val'``, ``'val_flat'``).
        ann_file: label file for the flat layout, relative to the root; ``''`` for the folder layout.
        classes: class names (wnids) or a file listing them one per line (e.g. ``'meta/classes.txt'``).
    """

    def __init__(
        self,
        data_root: str = '',
        data_prefix: str = 'train',
        ann_file: str = '',
        classes: str | Sequence[str] | None = None,
        pipeline: Sequence = (),
        test_mode: bool = False,
        **kwargs,
    ) -> None:
        self._classes = _read_classes(classes, data_root)
        folder = Path(data_root, data_prefix)
        if not folder.is_dir():
            raise FileNotFoundError(f'data_root={data_root!r}, data_prefix={data_prefix!r}: folder {folder} not found')
        if self._classes is None and not ann_file:
            self._classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
            if not self._classes:
                raise FileNotFoundError(f'{folder}: expected one sub-folder per class (or pass ann_file=)')
        metainfo = dict(classes=tuple(self._classes)) if self._classes is not None else None
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(img_path=data_prefix),
            pipeline=list(pipeline),
            test_mode=test_mode,
            **kwargs,
        )

    def prepare_data(self, idx):
        """The pipeline's output for ``idx``; a :class:`SeededIndex` runs it on generators seeded by its ``seed``."""
        seed = getattr(idx, 'seed', None)
        if seed is None:
            return super().prepare_data(idx)
        with sample_rng(seed):
            return super().prepare_data(int(idx))

    def load_data_list(self) -> list[dict]:
        folder = Path(self.data_prefix['img_path'])
        if self.ann_file:
            index = {c: i for i, c in enumerate(self._classes or [])}
            data_list = []
            for line_no, line in enumerate(Path(self.ann_file).read_text().splitlines(), 1):
                if not line.strip():
                    continue
                name, label = line.split()[:2]
                if label.lstrip('-').isdigit():
                    label = int(label)
                elif label in index:
                    label = index[label]
                else:
                    raise ValueError(f'{self.ann_file}:{line_no}: label {label!r} is neither an index nor a class')
                data_list.append(dict(img_path=str(folder / name), gt_label=label))
            return data_list
        data_list = []
        for label, name in enumerate(self._classes):
            class_dir = folder / name
            if not class_dir.is_dir():
                raise FileNotFoundError(f'class folder {class_dir} not found')
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
            data_list += [dict(img_path=str(p), gt_label=label) for p in files]
        if not data_list:
            raise FileNotFoundError(f'no images found under {folder}')
        return data_list


class SeededIndex(int):
    """A dataset index carrying the seed of its sample's augmentation (pickles into data-loader workers)."""

    def __new__(cls, index: int, seed: int):
        obj = super().__new__(cls, index)
        obj.seed = int(seed)
        return obj

    def __reduce__(self):
        return (SeededIndex, (int(self), self.seed))

    def __repr__(self) -> str:
        return f'SeededIndex({int(self)}, seed={self.seed})'


def _seeded(indices: list[int], seed: int, epoch: int, rank: int, world_size: int):
    """Rank ``rank``'s share of an epoch's global order, each index seeded by ``(seed, epoch, global position)``:
    a sample's augmentation depends on neither the worker layout nor the number of processes."""
    for k, index in enumerate(indices):
        yield SeededIndex(index, sample_seed(seed, epoch, rank + k * world_size))


@DATA_SAMPLERS.register_module()
class SeededSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` (same order: shuffled by ``seed + epoch``, padded, split over ranks) handing
    out :class:`SeededIndex` es, so that ``ImageFolderDataset`` draws each sample's augmentation from
    ``(seed, epoch, position)``: exact resume, and the same augmentation whatever ``num_workers`` is."""

    def __iter__(self):
        return _seeded(list(super().__iter__()), self.seed, self.epoch, self.rank, self.world_size)


@DATA_SAMPLERS.register_module()
class RepeatAugSampler(torch.utils.data.Sampler):
    """Repeated augmentation (timm's ``RepeatAugSampler`` semantics, DeiT's ``--repeated-aug``).

    Every epoch the (shuffled) dataset is repeated ``num_repeats`` times element-wise (``a a a b b b ...``), padded
    to a multiple of the world size and dealt out over the ranks, so the copies of a sample land on different
    ranks with different augmentations; each rank then keeps only its first ``num_selected_samples`` (about
    ``len(dataset) / world_size``, rounded down to a multiple of ``selected_round``), so an epoch costs what a
    plain one does. Shuffling uses ``seed + epoch`` (mmengine's convention); indices are :class:`SeededIndex` es.

    Args:
        num_repeats: copies of each sample per epoch (a float resamples, as timm does).
        selected_round: round the selected count down to a multiple of this (timm: 256); 0 disables it. A data
            set smaller than ``selected_round`` falls back to no rounding.
        selected_ratio: divide the selected count by this instead of the world size (0: the world size).
    """

    def __init__(
        self,
        dataset,
        shuffle: bool = True,
        num_repeats: float = 3,
        selected_round: int = 256,
        selected_ratio: float = 0,
        seed: int | None = None,
    ) -> None:
        from mmengine.dist import get_dist_info, sync_random_seed

        if num_repeats <= 0:
            raise ValueError(f'num_repeats={num_repeats}: expected > 0')
        self.rank, self.world_size = get_dist_info()
        self.dataset, self.shuffle, self.num_repeats = dataset, shuffle, num_repeats
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0
        n = len(dataset)
        self.num_samples = math.ceil(n * num_repeats / self.world_size)
        self.total_size = self.num_samples * self.world_size
        ratio = selected_ratio or self.world_size
        if selected_round and n >= selected_round:
            self.num_selected_samples = int(math.floor(n // selected_round * selected_round / ratio))
        else:
            self.num_selected_samples = int(math.ceil(n / ratio))
        self.num_selected_samples = min(self.num_selected_samples, self.num_samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_selected_samples

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if float(self.num_repeats).is_integer():
            repeated = order.repeat_interleave(int(self.num_repeats)).tolist()
        else:
            count = math.ceil(self.num_repeats * n)
            repeated = [int(order[int(i // self.num_repeats)]) for i in range(count)]
        while len(repeated) < self.total_size:
            repeated += repeated[: self.total_size - len(repeated)]
        mine = repeated[self.rank : self.total_size : self.world_size][: self.num_selected_samples]
        return _seeded(mine, self.seed, self.epoch, self.rank, self.world_size)


@TRANSFORMS.register_module()
class LoadImagePIL:
    """Read ``results['img_path']`` into ``results['img']`` as a PIL RGB image, decoded as timm's dataset does."""

    def __call__(self, results: dict) -> dict:
        results['img'] = load_image(results['img_path'])
        return results


def _as_pil(img) -> Image.Image:
    if isinstance(img, Image.Image):
        return img if img.mode == 'RGB' else img.convert('RGB')
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
        raise TypeError(f'expected a PIL image or an RGB uint8 HWC array, got {img.dtype} {img.shape}')
    return Image.fromarray(img)


@TRANSFORMS.register_module()
class TimmClsTrain:
    """timm's training transform (``timm.data.create_transform(is_training=True, ...)``): RandomResizedCrop,
    flips, colour jitter, RandAugment / AutoAugment / AugMix (``auto_augment``), random erasing (``re_*``), then
    ``ToTensor`` + normalisation. Keyword names are ``create_transform``'s; ``None`` / 0 disables a step; further
    ``create_transform`` keywords pass through. ``results['img']`` (PIL, or an RGB uint8 array) in,
    ``results['inputs']`` (CHW float) out."""

    def __init__(
        self,
        input_size: int | Sequence[int] = 224,
        scale: Sequence[float] | None = (0.08, 1.0),
        ratio: Sequence[float] | None = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        vflip: float = 0.0,
        color_jitter: float | Sequence[float] | None = 0.4,
        auto_augment: str | None = 'rand-m9-mstd0.5-inc1',
        interpolation: str = 'bicubic',
        re_prob: float = 0.25,
        re_mode: str = 'pixel',
        re_count: int = 1,
        re_num_splits: int = 0,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        **kwargs,
    ) -> None:
        self.transform = timm_train_transform(
            input_size,
            scale=scale,
            ratio=ratio,
            hflip=hflip,
            vflip=vflip,
            color_jitter=color_jitter,
            auto_augment=auto_augment,
            interpolation=interpolation,
            re_prob=re_prob,
            re_mode=re_mode,
            re_count=re_count,
            re_num_splits=re_num_splits,
            mean=mean,
            std=std,
            **kwargs,
        )

    def __call__(self, results: dict) -> dict:
        results['inputs'] = self.transform(_as_pil(results.pop('img')))
        return results

    def __repr__(self) -> str:
        return f'TimmClsTrain({self.transform})'


@TRANSFORMS.register_module()
class TimmClsEval:
    """The evaluation protocol (:func:`backbonezoo.data.eval_transform`: timm's ``resolve_data_config`` +
    ``create_transform`` on ``model_name``'s ``pretrained_cfg``, overridable), as ``tools/eval_imagenet.py`` runs
    it. ``results['img']`` (PIL, or an RGB uint8 array) in, ``results['inputs']`` (CHW float) out."""

    def __init__(
        self,
        model_name: str | None = None,
        input_size: int | Sequence[int] | None = None,
        crop_pct: float | None = None,
        interpolation: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        crop_mode: str | None = None,
    ) -> None:
        self.transform = eval_transform(
            model_name,
            input_size=input_size,
            crop_pct=crop_pct,
            interpolation=interpolation,
            mean=mean,
            std=std,
            crop_mode=crop_mode,
        )
        self.data_config = self.transform.data_config

    def __call__(self, results: dict) -> dict:
        results['inputs'] = self.transform(_as_pil(results.pop('img')))
        return results

    def __repr__(self) -> str:
        return f'TimmClsEval({self.data_config})'


@TRANSFORMS.register_module()
class AlbuAugment:
    """An opt-in albumentations stage for extra augmentations, placed before ``TimmClsTrain``::

        dict(type='AlbuAugment', transforms=[dict(type='GaussNoise', p=0.2), dict(type='CLAHE', p=0.1)])

    ``transforms``: albumentations transforms, as objects or ``dict(type=<albumentations class name>, **kwargs)``.
    ``results['img']`` (PIL or RGB uint8 array) in, the same kind out. Its randomness follows the sample's seed
    (``SeededSampler``) or, outside one, torch's seed (per data-loader worker).
    """

    def __init__(self, transforms: Sequence) -> None:
        import albumentations as A

        ops = []
        for t in transforms:
            if isinstance(t, dict):
                t = dict(t)
                name = t.pop('type')
                if not hasattr(A, name):
                    raise ValueError(f'AlbuAugment: albumentations has no transform {name!r}')
                t = getattr(A, name)(**t)
            ops.append(t)
        self.compose = A.Compose(ops)
        self._seeded_for = None

    def __call__(self, results: dict) -> dict:
        _seed_albumentations(self)
        img = results['img']
        was_pil = isinstance(img, Image.Image)
        out = self.compose(image=np.asarray(_as_pil(img)) if was_pil else img)['image']
        results['img'] = Image.fromarray(out) if was_pil else out
        return results


def _seed_albumentations(owner) -> None:
    """Seed an albumentations Compose from the sample's seed (``SeededSampler``), else once per worker from torch."""
    seed = current_sample_seed()
    if seed is not None:
        owner.compose.set_random_seed(seed)
        owner._seeded_for = None
        return
    key = (os.getpid(), torch.initial_seed())
    if key != owner._seeded_for:
        owner.compose.set_random_seed(torch.initial_seed() % 2**32)
        owner._seeded_for = key


@TRANSFORMS.register_module()
class LoadImageRGB:
    """Read ``results['img_path']`` into ``results['img']`` as an RGB uint8 HWC array."""

    def __call__(self, results: dict) -> dict:
        with Image.open(results['img_path']) as img:
            results['img'] = np.asarray(img.convert('RGB'))
        return results


_INTERPOLATIONS = {'nearest': 0, 'bilinear': 1, 'bicubic': 2, 'area': 3, 'lanczos': 4}  # cv2.INTER_* values


def _cv2_interpolation(name: str) -> int:
    if name not in _INTERPOLATIONS:
        raise ValueError(f'interpolation={name!r}: expected one of {sorted(_INTERPOLATIONS)}')
    return _INTERPOLATIONS[name]


def resolve_eval_config(
    model_name: str | None = None,
    img_size: int | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict:
    """The evaluation data config: given values first, then the model's ``pretrained_cfg``, then ImageNet's."""
    cfg = {}
    if model_name is not None:
        import timm

        import backbonezoo  # noqa: F401

        pretrained_cfg = timm.models.get_pretrained_cfg(model_name)
        if pretrained_cfg is None:
            raise ValueError(f'model_name={model_name!r}: not a registered timm / zoo model')
        cfg = pretrained_cfg.to_dict()
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    return dict(
        img_size=int(img_size or cfg.get('input_size', (3, 224, 224))[-1]),
        crop_pct=float(crop_pct or cfg.get('crop_pct') or 0.875),
        interpolation=interpolation or cfg.get('interpolation') or 'bicubic',
        mean=tuple(mean or cfg.get('mean') or IMAGENET_DEFAULT_MEAN),
        std=tuple(std or cfg.get('std') or IMAGENET_DEFAULT_STD),
    )


class _AlbuTransform:
    """An albumentations Compose seeded from the sample's seed (``SeededSampler``, exact resume), else reseeded
    from torch in every data-loader worker.

    albumentations 2.x keeps its own generator, seeded from OS entropy and blind to mmengine's seed; copied into
    each worker it would also repeat the same augmentations in every worker. ``torch.initial_seed()`` differs per
    worker and follows mmengine's ``randomness`` seed, so reseeding from it fixes both (but a resumed run replays
    the stream from its start: use a ``SeededSampler`` for exact resume).
    """

    def __init__(self, transforms: list) -> None:
        import albumentations as A

        self.compose = A.Compose(transforms)
        self._seeded_for = None

    def __call__(self, results: dict) -> dict:
        _seed_albumentations(self)
        results['inputs'] = self.compose(image=results.pop('img'))['image']
        return results


def _normalize_and_tensor(mean: Sequence[float], std: Sequence[float]) -> list:
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    return [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]


@TRANSFORMS.register_module()
class AlbuClsTrain(_AlbuTransform):
    """Training augmentation: RandomResizedCrop, horizontal flip, colour jitter, optional RandAugment-like ops.

    Args:
        img_size: output side.
        scale / ratio: RandomResizedCrop's area and aspect-ratio ranges.
        hflip: flip probability.
        color_jitter: brightness / contrast / saturation strength (0 disables).
        rand_ops: probability of one extra photometric / geometric op (posterize, solarize, equalize, sharpen,
            affine shear or rotation), a light stand-in for RandAugment.
        interpolation, mean, std: as in the evaluation pipeline.
    """

    def __init__(
        self,
        img_size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        color_jitter: float = 0.4,
        rand_ops: float = 0.0,
        interpolation: str = 'bicubic',
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ) -> None:
        import albumentations as A

        ops = [
            A.RandomResizedCrop(
                size=(img_size, img_size),
                scale=tuple(scale),
                ratio=tuple(ratio),
                interpolation=_cv2_interpolation(interpolation),
            )
        ]
        if hflip > 0:
            ops.append(A.HorizontalFlip(p=hflip))
        if color_jitter > 0:
            ops.append(A.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter, hue=0.0))
        if rand_ops > 0:
            ops.append(
                A.OneOf(
                    [
                        A.Posterize(num_bits=(4, 8)),
                        A.Solarize(threshold_range=(0.5, 1.0)),
                        A.Equalize(),
                        A.Sharpen(),
                        A.Affine(shear=(-15, 15)),
                        A.Affine(rotate=(-30, 30)),
                    ],
                    p=rand_ops,
                )
            )
        super().__init__(ops + _normalize_and_tensor(mean, std))


@TRANSFORMS.register_module()
class AlbuClsEval(_AlbuTransform):
    """Evaluation transform: resize the shorter side to ``img_size / crop_pct``, centre crop, normalise.

    Values not given come from ``model_name``'s ``pretrained_cfg`` (see :func:`resolve_eval_config`).
    """

    def __init__(
        self,
        model_name: str | None = None,
        img_size: int | None = None,
        crop_pct: float | None = None,
        interpolation: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        import albumentations as A

        cfg = resolve_eval_config(model_name, img_size, crop_pct, interpolation, mean, std)
        self.cfg = cfg
        size = cfg['img_size']
        ops = [
            A.SmallestMaxSize(
                max_size=math.floor(size / cfg['crop_pct']), interpolation=_cv2_interpolation(cfg['interpolation'])
            ),
            A.CenterCrop(height=size, width=size),
        ]
        super().__init__(ops + _normalize_and_tensor(cfg['mean'], cfg['std']))


# ---------------------------------------------------------------------------------------------------------------
# optimizer
# ---------------------------------------------------------------------------------------------------------------
@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ZooOptimConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups the timm way: no weight decay on the model's ``no_weight_decay()`` names, on 1-D
    parameters (norms, scales) and on biases (``timm.optim.param_groups_weight_decay``), and with
    ``paramwise_cfg=dict(layer_decay=0.75)`` layer-wise lr decay over the model's ``group_matcher``
    (``timm.optim.param_groups_layer_decay``: a group's lr is the optimizer's lr times its ``lr_scale``; mmengine's
    schedulers then scale every group alike).

    ``paramwise_cfg`` keys: ``layer_decay``, ``layer_decay_min_scale``, ``no_weight_decay`` (extra names or
    wildcards), ``custom_keys``; mmengine's ``norm_decay_mult`` / ``bias_decay_mult`` / ``flat_decay_mult`` are
    accepted at 0 (what these groups do anyway). Select it with ``optim_wrapper=dict(constructor='ZooOptimConstructor',
    ...)``.

    ``custom_keys`` has mmengine's semantics (``DefaultOptimWrapperConstructor``): a parameter whose full name (as
    ``named_parameters()`` of the model handed to the constructor spells it, e.g. ``model.stages.0.conv.weight``)
    contains a key takes that key's settings and no other rule: weight decay = the optimizer's ``weight_decay`` x
    ``decay_mult`` (default 1, so a matched norm or bias decays unless ``decay_mult=0``), lr = the optimizer's lr x
    ``lr_mult`` (default 1; times the layer's ``lr_scale`` with ``layer_decay``); other entries of the key's dict
    are copied into the parameter's group. When several keys match, the longest wins (ties: alphabetical order).
    """

    _KEY_MULTS = ('lr_mult', 'decay_mult')

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        paramwise = dict(paramwise_cfg or {})
        self.layer_decay = paramwise.pop('layer_decay', None)
        self.layer_decay_min_scale = float(paramwise.pop('layer_decay_min_scale', 0.0))
        extra = paramwise.pop('no_weight_decay', None) or ()
        self.extra_no_weight_decay = [extra] if isinstance(extra, str) else list(extra)
        custom_keys = paramwise.pop('custom_keys', None) or {}
        if not isinstance(custom_keys, dict) or not all(isinstance(v, dict) for v in custom_keys.values()):
            raise TypeError(
                f'ZooOptimConstructor: paramwise_cfg.custom_keys must map name keys to dicts '
                f'(lr_mult / decay_mult / ...), got {custom_keys!r}'
            )
        self.custom_keys = {str(k): dict(v) for k, v in custom_keys.items()}
        # mmengine's order: alphabetical, then the longest key first (stable sort)
        self.sorted_keys = sorted(sorted(self.custom_keys), key=len, reverse=True)
        for key in ('norm_decay_mult', 'bias_decay_mult', 'flat_decay_mult'):
            value = paramwise.pop(key, 0.0)
            if value != 0.0:
                raise ValueError(f'ZooOptimConstructor: paramwise_cfg.{key}={value}: norms and biases never decay here')
        if paramwise:
            raise ValueError(
                f'ZooOptimConstructor: unknown paramwise_cfg keys {sorted(paramwise)}; expected layer_decay, '
                'layer_decay_min_scale, no_weight_decay, custom_keys (or DefaultOptimWrapperConstructor for the rest)'
            )
        super().__init__(optim_wrapper_cfg, None)

    def custom_key(self, name: str) -> str | None:
        """The ``custom_keys`` entry that governs the parameter called ``name`` (mmengine's matching), or None."""
        return next((key for key in self.sorted_keys if key in name), None)

    def param_groups(self, module: torch.nn.Module) -> list[dict]:
        from timm.optim import param_groups_layer_decay, param_groups_weight_decay

        net = module.model if isinstance(getattr(module, 'model', None), torch.nn.Module) else module
        weight_decay = float(self.optimizer_cfg.get('weight_decay', 0.0) or 0.0)
        skip = set(net.no_weight_decay()) if hasattr(net, 'no_weight_decay') else set()
        skip |= set(self.extra_no_weight_decay)
        if self.layer_decay:
            groups = param_groups_layer_decay(
                net,
                weight_decay=weight_decay,
                no_weight_decay_list=skip,
                layer_decay=float(self.layer_decay),
                min_scale=self.layer_decay_min_scale,
            )
        else:
            groups = param_groups_weight_decay(net, weight_decay=weight_decay, no_weight_decay_list=skip)
        base_lr = self.optimizer_cfg['lr']
        for group in groups:
            group['lr'] = base_lr * group.get('lr_scale', 1.0)
        seen = {id(p) for g in groups for p in g['params']}
        rest = [p for p in module.parameters() if p.requires_grad and id(p) not in seen]
        if rest:  # parameters of the wrapper outside the timm model
            groups.append(dict(params=rest))
        if self.custom_keys:
            groups = self._apply_custom_keys(module, groups, base_lr, weight_decay)
        return [g for g in groups if g['params']]

    def _apply_custom_keys(self, module: torch.nn.Module, groups: list[dict], base_lr: float, wd: float) -> list[dict]:
        """Move every parameter a custom key matches out of its group into one group per (group, key)."""
        names = {id(p): name for name, p in module.named_parameters()}
        out, custom = [], {}
        for index, group in enumerate(groups):
            kept = []
            for param in group['params']:
                key = self.custom_key(names.get(id(param), ''))
                if key is None:
                    kept.append(param)
                    continue
                if (index, key) not in custom:
                    settings = self.custom_keys[key]
                    lr_mult, decay_mult = settings.get('lr_mult', 1.0), settings.get('decay_mult', 1.0)
                    new = {k: v for k, v in group.items() if k != 'params'}
                    new['lr'] = base_lr * group.get('lr_scale', 1.0) * lr_mult
                    new['weight_decay'] = wd * decay_mult
                    if 'lr_scale' in group:  # timm's schedulers read lr_scale
                        new['lr_scale'] = group['lr_scale'] * lr_mult
                    # as mmengine: the key's other entries last (an explicit weight_decay / lr wins)
                    new.update({k: v for k, v in settings.items() if k not in self._KEY_MULTS})
                    new['params'] = []
                    custom[index, key] = new
                custom[index, key]['params'].append(param)
            out.append(dict(group, params=kept))
        unused = set(self.custom_keys) - {key for _, key in custom}
        if unused:  # mmengine ignores such keys silently; a typo would go unnoticed
            from mmengine.logging import print_log

            print_log(
                f'ZooOptimConstructor: paramwise_cfg.custom_keys {sorted(unused)} match no trainable parameter '
                f'(names look like {next(iter(names.values()), "?")!r})',
                logger='current',
                level=logging.WARNING,
            )
        return out + list(custom.values())

    def __call__(self, model: torch.nn.Module):
        from mmengine.model import is_model_wrapper

        module = model.module if is_model_wrapper(model) else model
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = self.param_groups(module)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(optim_wrapper_cfg, default_args=dict(optimizer=optimizer))


# ---------------------------------------------------------------------------------------------------------------
# metric
# ---------------------------------------------------------------------------------------------------------------
@METRICS.register_module()
class ClsAccuracy(BaseMetric):
    """Top-k accuracy in percent (``accuracy/top1``, ``accuracy/top5``); k larger than the class count is capped."""

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            scores, label = sample['pred_score'], int(sample['gt_label'])
            order = scores.argsort(descending=True)
            rank = int((order == label).nonzero()[0, 0])
            self.results.append(rank)

    def compute_metrics(self, results: list) -> dict:
        ranks = torch.tensor(results)
        return {f'top{k}': float((ranks < k).float().mean() * 100) for k in self.topk}


def accuracy(logits: torch.Tensor, labels: torch.Tensor, topk: Sequence[int] = (1, 5)) -> list[torch.Tensor]:
    """Number of samples whose label is among the ``k`` best logits, for each ``k`` (capped to the class count)."""
    maxk = min(max(topk), logits.shape[-1])
    pred = logits.topk(maxk, dim=-1).indices
    hits = pred.eq(labels[:, None])
    return [hits[:, : min(k, maxk)].any(dim=-1).sum() for k in topk]
