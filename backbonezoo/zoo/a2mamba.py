"""A2Mamba: attention-augmented state space models (MASS token mixer)."""

from . import Family, FamilyExtra, Variant, Weights
from .recipe import TIMM_COSINE, Recipe

_WEIGHTS = 'https://huggingface.co/LMMM2025/A2Mamba/resolve/main/a2mamba_pretrained_weights/a2mamba_{}.pth'


def _in1k(size: str) -> tuple[Weights, ...]:
    # the authors' own Hugging Face repository (a direct resolve link), nested under 'state_dict'
    return (Weights('in1k', url=_WEIGHTS.format(size)),)


_CODE = 'LMMMEng/A2Mamba@a9ea14c'
# timm's train.py (its defaults) with scripts/train_a2m_<v>.sh on top.
_A2MAMBA = Recipe(
    source=f'official scripts/train_a2m_tiny.sh + train.py defaults (timm train.py) @ {_CODE}',
    epochs=300,
    cooldown_epochs=10,
    batch_size=2048,
    batch_per_gpu=256,
    lr=2e-3,
    lr_rule='--auto-lr: 1e-3 x total batch / 1024 (train.py); warmup_lr and min_lr are not scaled',
    warmup_epochs=5,
    warmup_lr=1e-6,
    min_lr=1e-5,
    weight_decay=0.05,
    drop_path=0.1,
    wd_exclude='timm',
    # timm's filter decays every parameter with ndim > 1: the official A_logs (d_inner, 1) are decayed (timm ignores
    # their _no_weight_decay flag); the zoo model lists them in no_weight_decay(), so they are named here
    param_overrides={'A_logs': {'decay_mult': 1.0}},
    clip_grad=5.0,
    lr_step='epoch',
    schedule=TIMM_COSINE,
    train_interpolation='random',
    repeated_aug=1,
    ema_decay=0.99984,
    amp=True,
    sync_bn=True,
    crop_pct=0.9,
    sources={
        'batch_size': f'scripts/train_a2m_*.sh: 8 GPUs x --batch-size 256 @ {_CODE}',
        'cooldown_epochs': f'train.py --cooldown-epochs 10 (default): create_scheduler gives 300 + 10 epochs @ {_CODE}',
        'wd_exclude': f'train.py: create_optimizer_v2(model, ...) (timm param_groups_weight_decay) @ {_CODE}',
        'param_overrides': f'models/a2mamba.py: A_logs are 2-D, so timm decays them @ {_CODE}',
        'lr_step': f'train.py: timm create_scheduler (t_in_epochs), stepped once per epoch @ {_CODE}',
        'train_interpolation': f"train.py default --train-interpolation 'random' @ {_CODE}",
        'sync_bn': f'train.py: SyncBatchNorm whenever distributed (unless --no-sync-bn) @ {_CODE}',
        'crop_pct': f'models/a2mamba.py default_cfg crop_pct (used by validate.py) @ {_CODE}',
        'amp': f'scripts --native-amp @ {_CODE}',
    },
)


def _script(v: str) -> str:
    return f'official scripts/train_a2m_{v}.sh + train.py defaults (timm train.py) @ {_CODE}'


def _mesa(weight: float, extra: str = '') -> tuple[str, ...]:
    return (
        f'MESA (--mesa {weight:g} from epoch 75): train.py adds {weight:g} x a distillation loss towards the EMA '
        f"model's outputs; the zoo classifier has no MESA loss.{extra}",
    )


_RECIPES = {
    'a2mamba_nano': _A2MAMBA.replace(
        source=_script('nano'),
        lr=4e-3,
        lr_rule='--lr 4e-3 given for the total batch 2048 (no --auto-lr)',
        drop_path=0.0,
        mixup=0.1,
        color_jitter=0.0,
        ema_decay=None,
        sources={'mixup': f'scripts/train_a2m_nano.sh --mixup 0.1 (cutmix stays 1.0) @ {_CODE}'},
    ),
    'a2mamba_tiny': _A2MAMBA.replace(not_reproduced=_mesa(1)),
    'a2mamba_small': _A2MAMBA.replace(
        source=_script('small'), drop_path=0.2, ema_decay=0.9999, not_reproduced=_mesa(1)
    ),
    'a2mamba_base': _A2MAMBA.replace(
        source=_script('base'),
        drop_path=0.4,
        warmup_epochs=20,
        ema_decay=0.9999,
        crop_pct=0.95,
        not_reproduced=_mesa(1.5, ' Gradient checkpointing (--ckpt-stg 4 0 0 0) only saves memory.'),
    ),
    'a2mamba_large': _A2MAMBA.replace(
        source=_script('large'),
        drop_path=0.5,
        warmup_epochs=20,
        ema_decay=0.9999,
        crop_pct=0.975,
        not_reproduced=_mesa(2, ' Gradient checkpointing (--ckpt-stg 4 4 0 0) only saves memory.'),
    ),
}

FAMILY = Family(
    name='a2mamba',
    title='A2Mamba',
    paper='A2Mamba: Attention-augmented State Space Models for Visual Recognition',
    arxiv='2507.16624',
    code='https://github.com/LMMMEng/A2Mamba',
    # The official repository has no LICENSE file (checked at a9ea14c): all rights reserved until the authors say
    # otherwise. backbonezoo re-implements the model from the specification; check before redistributing weights.
    code_license='unspecified (no LICENSE file in the official repository)',
    weights_license='unspecified (no LICENSE file in the official repository)',
    module='backbonezoo.backbones.a2mamba',
    variants=(
        Variant('a2mamba_nano', 'A2Mamba-Nano', 4_195_052, gmacs=0.8, top1=78.7, pretrained=_in1k('nano')),
        Variant('a2mamba_tiny', 'A2Mamba-Tiny', 15_365_506, gmacs=2.7, top1=83.0, pretrained=_in1k('tiny')),
        Variant('a2mamba_small', 'A2Mamba-Small', 30_672_834, gmacs=5.4, top1=84.7, pretrained=_in1k('small')),
        Variant('a2mamba_base', 'A2Mamba-Base', 51_134_464, gmacs=10.7, top1=85.7, pretrained=_in1k('base')),
        Variant(
            'a2mamba_large',
            'A2Mamba-Large',
            93_737_376,
            gmacs=17.4,
            top1=86.1,
            pretrained=_in1k('large'),
            notes='The README says 95M parameters; the official code builds 93,737,376 (unexplained difference).',
        ),
    ),
    citation="""@article{lou2025a2mamba,
  title={A2Mamba: Attention-augmented State Space Models for Visual Recognition},
  author={Lou, Meng and Fu, Yunxiang and Yu, Yizhou},
  journal={arXiv preprint arXiv:2507.16624},
  year={2025}
}""",
    size_divisor=32,
    # Stage 4 needs a 7x7 map (window 7): ceil(H / 32) >= 7, i.e. H >= 193 on both sides (the stride-2 convs use
    # padding 1, so odd sizes round up). Smaller inputs raise a ValueError naming the minimum.
    min_size=193,
    summary=(
        'Transformer-Mamba hybrid: the MASS token mixer runs local and dilated neighbourhood attention on two head '
        'halves (cascaded), then a d_state-1 selective scan whose hidden states are re-aggregated by the same '
        'attention maps; stage 4 uses global attention with a learned bias. Parameter counts are those of the '
        'official code (parameters(), the tied rpb counted once).'
    ),
    extra=FamilyExtra(
        official_commit='LMMMEng/A2Mamba@a9ea14c6ab11d3cfd5cbc600651d710397a707ad',
        checkpoint_nesting=('state_dict', None),
        crop_pct={'nano': 0.9, 'tiny': 0.9, 'small': 0.9, 'base': 0.95, 'large': 0.975},
    ),
    recipes=_RECIPES,
)
