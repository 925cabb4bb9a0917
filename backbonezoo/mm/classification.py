"""ImageNet-style classification through mmengine: model, data preprocessor, dataset, transforms, metric.

Registered in mmengine's root registries (classification configs use the default ``'mmengine'`` scope):

- ``ZooClassifier`` (MODELS): any zoo / timm model; loss from timm (soft-target cross-entropy after mixup /
  cutmix, label-smoothing cross-entropy otherwise), optionally knowledge distillation from frozen timm teachers
  (``distill=dict(...)``). EMA comes from mmengine's ``EMAHook`` in ``custom_hooks``.
- ``ClsDataPreprocessor`` (MODELS): batches, moves to the device, applies timm's ``Mixup`` (mixup / cutmix /
  label smoothing) while training.
- ``ImageFolderDataset`` (DATASETS): ``<root>/<split>/<wnid>/*.JPEG``, or a flat folder with a label file.
- ``LoadImageRGB``, ``AlbuClsTrain``, ``AlbuClsEval`` (TRANSFORMS): albumentations 2.x pipelines; the eval
  pipeline's resolution, crop_pct, interpolation and mean / std come from the model's ``pretrained_cfg`` unless
  given.
- ``ClsAccuracy`` (METRICS): top-1 / top-5 in percent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from PIL import Image

__all__ = [
    'ZooClassifier',
    'ClsDataPreprocessor',
    'ImageFolderDataset',
    'LoadImageRGB',
    'AlbuClsTrain',
    'AlbuClsEval',
    'ClsAccuracy',
    'resolve_eval_config',
    'accuracy',
]

IMG_EXTENSIONS = ('.jpeg', '.jpg', '.png', '.bmp', '.webp')


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
        label_smoothing: for hard labels (with mixup, set ``label_smoothing`` in the preprocessor's ``mixup``).
        checkpoint: official / timm / mmengine checkpoint to start from (converted with
            ``backbonezoo.convert_checkpoint``); the classifier is re-initialised when ``num_classes`` differs.
        model_kwargs: further ``timm.create_model`` arguments (``drop_path_rate``, ``drop_rate``, ...).
        distill: knowledge distillation from frozen teachers, ``dict(teachers=[timm names], pretrained=True,
            checkpoints=None, temperature=1.0, weight=1.0)``. The teachers' softmax outputs (at ``temperature``)
            are averaged into soft labels; the loss is ``weight * T^2 * CE(soft labels, student / T) +
            (1 - weight) * label loss``. ``weight=1`` is MEAL V2's soft-label-only distillation (SReT's recipe).
            ``checkpoints`` (one file per teacher, any layout ``convert_checkpoint`` or timm reads) replaces the
            hub download. Teachers are not part of the state dict, not trained and always in eval mode.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int = 1000,
        label_smoothing: float = 0.0,
        checkpoint: str | None = None,
        model_kwargs: dict | None = None,
        distill: dict | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type='ClsDataPreprocessor'), init_cfg=init_cfg)
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
    def _build_distillation(distill: dict | None, num_classes: int) -> dict | None:
        if not distill:
            return None
        import timm

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
        teachers = []
        for name, path in zip(names, checkpoints):
            kwargs = dict(pretrained=bool(distill.get('pretrained', True)) and path is None, num_classes=num_classes)
            if path is not None:
                kwargs['checkpoint_path'] = str(path)
            teacher = timm.create_model(name, **kwargs).eval()
            teacher.requires_grad_(False)
            teachers.append(teacher)
        # a plain list: the teachers stay out of the state dict, the optimizer and DDP
        return dict(teachers=teachers, weight=weight, temperature=temperature)

    @torch.no_grad()
    def soft_labels(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teachers' averaged class probabilities at the distillation temperature."""
        probs = []
        for teacher in self.distill['teachers']:
            teacher.to(device=inputs.device).eval()
            probs.append((teacher(inputs).float() / self.distill['temperature']).softmax(dim=-1))
        return torch.stack(probs).mean(0)

    def label_loss(self, logits: torch.Tensor, gt_label: torch.Tensor) -> torch.Tensor:
        return self.soft_loss(logits, gt_label) if gt_label.ndim == 2 else self.hard_loss(logits, gt_label)

    def load_pretrained(self, checkpoint: str, model_kwargs: dict) -> None:
        import timm

        from ..checkpoint import convert_checkpoint, load_state_dict_file, strict_match, unwrap_state_dict
        from .backbone import _is_zoo_model

        with torch.device('meta'):
            reference = timm.create_model(self.model_name, pretrained=False, **model_kwargs)
        if _is_zoo_model(self.model_name):
            state_dict = convert_checkpoint(checkpoint, self.model_name, model=reference)
        else:
            state_dict = unwrap_state_dict(load_state_dict_file(checkpoint))
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
                return dict(loss=self.label_loss(logits, gt_label))
            weight, temperature = self.distill['weight'], self.distill['temperature']
            losses = dict(
                loss_kd=weight * temperature**2 * self.soft_loss(logits / temperature, self.soft_labels(inputs))
            )
            if weight < 1.0:
                losses['loss_cls'] = (1.0 - weight) * self.label_loss(logits, gt_label)
            return losses
        if mode == 'predict':
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
    """An albumentations Compose, reseeded from torch in every data-loader worker.

    albumentations 2.x keeps its own generator, seeded from OS entropy and blind to mmengine's seed; copied into
    each worker it would also repeat the same augmentations in every worker. ``torch.initial_seed()`` differs per
    worker and follows mmengine's ``randomness`` seed, so reseeding from it fixes both.
    """

    def __init__(self, transforms: list) -> None:
        import albumentations as A

        self.compose = A.Compose(transforms)
        self._seeded_for = None

    def __call__(self, results: dict) -> dict:
        key = (os.getpid(), torch.initial_seed())
        if key != self._seeded_for:
            self.compose.set_random_seed(torch.initial_seed() % 2**32)
            self._seeded_for = key
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
