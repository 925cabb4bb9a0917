"""Training recipes, value by value: what produced each family's released ImageNet-1K checkpoints.

A :class:`Recipe` records one run of the official training code (or the paper's stated recipe where no code exists),
with the source of every value in ``sources``. Families attach one recipe per classification config in
``Family.recipes`` (keyed by the config's stem without ``_in1k``: ``'biformer_small'``, ``'litv2_base_384_ft'``);
``tests/test_recipes.py`` resolves every ``configs/classification/**`` file with mmengine and checks it against its
recipe, and ``tools/model_cards.py`` renders the tables.

Conventions:

- ``lr``, ``warmup_lr`` and ``min_lr`` are the values the official run used at its total batch ``batch_size``
  (after the code's own scaling rule, written in ``lr_rule``); configs carry them with
  ``auto_scale_lr = dict(enable=False, base_batch_size=batch_size)``.
- ``wd_exclude``: ``'timm'`` is timm's rule (parameters with ``ndim <= 1``, i.e. norms and biases, plus the names
  the model's ``no_weight_decay()`` returns get no weight decay); ``'none'`` decays every parameter.
  ``param_overrides`` lists official exceptions by parameter-name key (``decay_mult`` / ``lr_mult``).
- ``repeated_aug``: repeats per sample of timm / DeiT's repeated-augmentation sampler (1 = off).
- ``ema_decay``: timm's decay (mmengine ``EMAHook(momentum=1 - decay)``); ``None`` = no EMA.
- ``lr_step``: ``'epoch'`` when the official scheduler changes the lr once per epoch (timm's ``t_in_epochs``),
  ``'iter'`` when per iteration. ``cooldown_epochs``: epochs trained at ``min_lr`` after the cosine ends.
- ``None`` means the value is not published (see ``notes``); ``not_reproduced`` lists official parts the configs
  leave out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ['Recipe', 'RECIPE_FIELDS', 'TIMM_COSINE', 'recipe_rows']

# timm's CosineLRScheduler (DeiT, Swin and timm train.py codebases) counts the cosine from step 0 and lets the
# warm-up override its first steps; mmengine's LinearLR + CosineAnnealingLR runs the cosine after the warm-up. The two
# differ by up to 1.5 % (5 warm-up epochs of 300) / 6.3 % (20 of 300) of the peak lr, mid-schedule.
TIMM_COSINE = 'cosine (timm: counted from step 0, warm-up overriding its start)'


@dataclass(frozen=True)
class Recipe:
    """One ImageNet-1K training recipe; see the module docstring for the conventions."""

    source: str
    epochs: int
    batch_size: int
    batch_per_gpu: int
    lr: float
    lr_rule: str
    warmup_epochs: int
    warmup_lr: float
    min_lr: float
    weight_decay: float
    drop_path: float | None
    # optimizer
    optimizer: str = 'adamw'
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    wd_exclude: str = 'timm'
    param_overrides: dict = field(default_factory=dict)
    layer_decay: float | None = None
    clip_grad: float | None = None
    # schedule
    schedule: str = 'cosine'
    lr_step: str = 'epoch'
    cooldown_epochs: int = 0
    # loss and batch mixing
    label_smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    switch_prob: float = 0.5
    mixup_mode: str = 'batch'
    # per-image augmentation (timm.data.create_transform, is_training=True)
    input_size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float | None = 0.4
    rand_augment: str | None = 'rand-m9-mstd0.5-inc1'
    train_interpolation: str = 'bicubic'
    reprob: float = 0.25
    remode: str = 'pixel'
    recount: int = 1
    repeated_aug: int = 1
    # averaging, distillation, fine-tuning, precision
    ema_decay: float | None = None
    distill: dict | None = None
    finetune_from: str | None = None
    amp: bool = True
    sync_bn: bool = False
    model_extra: dict = field(default_factory=dict)
    # evaluation
    crop_pct: float = 0.875
    eval_interpolation: str = 'bicubic'
    eval_crop_mode: str = 'center'
    # provenance
    sources: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    not_reproduced: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.sources) - set(RECIPE_FIELDS)
        if unknown:
            raise ValueError(f'Recipe.sources names unknown fields {sorted(unknown)}')
        if self.wd_exclude not in ('timm', 'none'):
            raise ValueError(f"Recipe.wd_exclude: expected 'timm' or 'none', got {self.wd_exclude!r}")
        if self.lr_step not in ('epoch', 'iter'):
            raise ValueError(f"Recipe.lr_step: expected 'epoch' or 'iter', got {self.lr_step!r}")
        if self.batch_size % self.batch_per_gpu:
            raise ValueError(f'Recipe: total batch {self.batch_size} is not a multiple of {self.batch_per_gpu}')

    @property
    def gpus(self) -> int:
        return self.batch_size // self.batch_per_gpu

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.cooldown_epochs

    @property
    def mixup_active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def source_of(self, name: str) -> str:
        """Where a value comes from: its own entry in ``sources``, else the recipe's ``source``."""
        return self.sources.get(name, self.source)

    def replace(self, **changes) -> Recipe:
        """A copy with ``changes``; new ``sources`` / ``notes`` entries are added to (not replacing) the old."""
        if 'sources' in changes:
            changes['sources'] = {**self.sources, **changes['sources']}
        for key in ('notes', 'not_reproduced'):
            if key in changes:
                changes[key] = self.__dict__[key] + tuple(changes[key])
        return dataclasses.replace(self, **changes)


RECIPE_FIELDS = tuple(
    f.name for f in dataclasses.fields(Recipe) if f.name not in ('sources', 'notes', 'not_reproduced')
)

# The rows a model card shows, with labels; each value is rendered with its source.
_ROWS = (
    ('epochs', 'epochs'),
    ('cooldown_epochs', 'cool-down epochs at min lr'),
    ('batch_size', 'total batch'),
    ('batch_per_gpu', 'batch per GPU'),
    ('lr', 'lr (at the total batch)'),
    ('lr_rule', 'lr rule'),
    ('optimizer', 'optimizer'),
    ('betas', 'betas'),
    ('eps', 'eps'),
    ('weight_decay', 'weight decay'),
    ('wd_exclude', 'no weight decay on'),
    ('param_overrides', 'parameter overrides'),
    ('layer_decay', 'layer-wise lr decay'),
    ('warmup_epochs', 'warm-up epochs'),
    ('warmup_lr', 'warm-up start lr'),
    ('schedule', 'schedule'),
    ('lr_step', 'lr updated per'),
    ('min_lr', 'min lr'),
    ('clip_grad', 'gradient clipping (norm)'),
    ('drop_path', 'drop path'),
    ('label_smoothing', 'label smoothing'),
    ('mixup', 'mixup alpha'),
    ('cutmix', 'cutmix alpha'),
    ('mixup_prob', 'mixup / cutmix prob'),
    ('switch_prob', 'switch prob'),
    ('mixup_mode', 'mixup mode'),
    ('rand_augment', 'RandAugment'),
    ('color_jitter', 'color jitter'),
    ('train_interpolation', 'train interpolation'),
    ('scale', 'random-resized-crop scale'),
    ('hflip', 'horizontal flip'),
    ('reprob', 'random erasing prob'),
    ('remode', 'random erasing mode'),
    ('recount', 'random erasing count'),
    ('repeated_aug', 'repeated augmentation'),
    ('ema_decay', 'EMA decay'),
    ('distill', 'distillation'),
    ('finetune_from', 'fine-tuned from'),
    ('amp', 'mixed precision'),
    ('sync_bn', 'SyncBatchNorm'),
    ('model_extra', 'model options'),
    ('input_size', 'input size'),
    ('crop_pct', 'eval crop_pct'),
    ('eval_interpolation', 'eval interpolation'),
    ('eval_crop_mode', 'eval crop mode'),
)


def _render(name: str, value) -> str:
    if value is None:
        return (
            'not published'
            if name not in ('ema_decay', 'distill', 'finetune_from', 'layer_decay', 'clip_grad')
            else ('none')
        )
    if name == 'wd_exclude':
        return {
            'timm': '1-D parameters (norms, biases) + `no_weight_decay()`',
            'none': 'nothing (every parameter decays)',
        }[value]
    if name == 'repeated_aug':
        return 'off' if value == 1 else f'{value} repeats'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, dict):
        return ', '.join(f'`{k}`: {v}' for k, v in value.items()) if value else '-'
    if isinstance(value, tuple):
        return '(' + ', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in value) + ')'
    if isinstance(value, float):
        return f'{value:g}'
    return str(value)


def recipe_rows(recipe: Recipe) -> list[tuple[str, str, str]]:
    """``(label, rendered value, source)`` for every row a model card shows."""
    return [(label, _render(name, getattr(recipe, name)), recipe.source_of(name)) for name, label in _ROWS]
