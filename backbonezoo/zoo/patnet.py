"""PATNet: Partial Convolution Meets Visual Attention (2025)."""

from . import Family, FamilyExtra, Variant
from .recipe import Recipe

_REPO_NOTE = 'Shapes from the official repository (cfg/PartialNet_*.yaml); the paper table was not retrieved.'
# The sheet gives the official builder's counts to 4 significant digits (e.g. 3.486 M): allow that rounding.
_RTOL = 2e-4

_CODE = 'haiduo/PartialNet@679cfc0'
# PyTorch Lightning: models/model_api.py builds the optimizer and scheduler, cfg/PartialNet_<v>.yaml holds the values.
_PATNET = Recipe(
    source=f'official cfg/PartialNet_t0.yaml (PyTorch Lightning train_test.py) @ {_CODE}',
    epochs=300,
    batch_size=4096,
    batch_per_gpu=512,
    lr=4e-3,
    lr_rule='lr given for the total batch ("for bs=4096"); not rescaled by the code',
    warmup_epochs=20,
    warmup_lr=1e-6,
    min_lr=1e-5,
    weight_decay=0.005,
    drop_path=0.0,
    wd_exclude='none',
    clip_grad=None,
    schedule='cosine after warm-up (pl_bolts LinearWarmupCosineAnnealingLR)',
    lr_step='epoch',
    mixup=0.05,
    color_jitter=0.0,
    rand_augment=None,
    reprob=0.0,
    repeated_aug=1,
    ema_decay=None,
    amp=True,
    crop_pct=0.9,
    sources={
        'batch_size': f'the cfg lr comment "for bs=4096" @ {_CODE}; data/data_api.py splits the cfg batch_size over '
        'GPUs x nodes, so the cfg value 256 is a total batch that contradicts that comment (a local setting); the '
        "framework is FasterNet's, whose README trains with -b 4096 on one 8-GPU node (JierunChen/FasterNet)",
        'batch_per_gpu': 'FasterNet README command (-g 0,...,7 -b 4096: 8 GPUs x 512), the framework PartialNet reuses',
        'wd_exclude': f'models/model_api.py: timm create_optimizer(hparams, self.parameters()) gets a parameter '
        f'list, so timm applies no norm / bias filter @ {_CODE}',
        'lr_step': f'models/model_api.py: Lightning steps the scheduler once per epoch (default interval) @ {_CODE}',
        'amp': f'cfg precision: 16 @ {_CODE}',
        'crop_pct': f'cfg test_crop_ratio 0.9 (Resize(size / 0.9) + CenterCrop) @ {_CODE}',
        'clip_grad': f'cfg clip_grad (Lightning gradient_clip_val, norm) @ {_CODE}',
    },
    notes=(
        'No released weights and two inconsistent variant sets in the repository: the recipe is the one in its '
        'cfg files, paper numbers unverified.',
        'cfg/PartialNet_t0.yaml names model_name: convnext_tiny (a leftover in the file); its other values are the '
        'PATNet-T0 ones and are used as they are.',
    ),
    not_reproduced=('Multi-scale training: 192 px inputs until epoch 280, then 224 (cfg multi_scale 192_280).',),
)


def _cfg(v: str) -> str:
    return f'official cfg/PartialNet_{v}.yaml (PyTorch Lightning train_test.py) @ {_CODE}'


_RECIPES = {
    'patnet_t0': _PATNET,
    'patnet_t1': _PATNET.replace(
        source=_cfg('t1'), weight_decay=0.01, drop_path=0.02, mixup=0.1, rand_augment='rand-m3-mstd0.5-inc1'
    ),
    'patnet_t2': _PATNET.replace(
        source=_cfg('t2'), weight_decay=0.02, drop_path=0.05, mixup=0.1, rand_augment='rand-m5-mstd0.5-inc1'
    ),
    'patnet_s': _PATNET.replace(
        source=_cfg('s'), weight_decay=0.03, drop_path=0.1, mixup=0.3, rand_augment='rand-m7-mstd0.5-inc1'
    ),
    'patnet_m': _PATNET.replace(
        source=_cfg('m'),
        batch_size=2048,
        lr=2e-3,
        lr_rule='lr given for the total batch ("for bs=2048"); not rescaled by the code',
        weight_decay=0.05,
        clip_grad=1.0,
        drop_path=0.2,
        mixup=0.5,
        rand_augment='rand-m7-mstd0.5-inc1',
        batch_per_gpu=256,
        sources={
            'batch_size': f'the cfg lr comment "for bs=2048" @ {_CODE} (the cfg batch_size 256 is a total batch in '
            'this code, see patnet_t0)',
            'batch_per_gpu': '2048 over one 8-GPU node, as the FasterNet README runs (JierunChen/FasterNet)',
        },
    ),
    'patnet_l': _PATNET.replace(
        source=_cfg('l'),
        batch_size=2048,
        lr=2e-3,
        lr_rule='lr given for the total batch ("for bs=2048"); not rescaled by the code',
        weight_decay=0.05,
        clip_grad=0.01,
        drop_path=0.3,
        mixup=0.7,
        rand_augment='rand-m7-mstd0.5-inc1',
        batch_per_gpu=256,
        sources={
            'batch_size': f'the cfg lr comment "for bs=2048" @ {_CODE} (the cfg batch_size 256 is a total batch in '
            'this code, see patnet_t0)',
            'batch_per_gpu': '2048 over one 8-GPU node, as the FasterNet README runs (JierunChen/FasterNet)',
        },
    ),
}

FAMILY = Family(
    name='patnet',
    title='PATNet',
    paper='Partial Convolution Meets Visual Attention',
    arxiv='2503.03148',
    code='https://github.com/haiduo/PartialNet',
    code_license='MIT',
    weights_license='no public weights (haiduo/PartialNet#3)',
    module='backbonezoo.backbones.patnet',
    variants=(
        Variant('patnet_t0', 'PATNet-T0', 3_486_160, gmacs=0.235, params_rtol=_RTOL, notes=_REPO_NOTE),
        Variant(
            'patnet_t1',
            'PATNet-T1',
            6_144_552,
            gmacs=0.546,
            params_rtol=_RTOL,
            notes=_REPO_NOTE + ' PAT_sp on (the only configuration that enables it).',
        ),
        Variant(
            'patnet_t2',
            'PATNet-T2',
            12_269_816,
            gmacs=1.039,
            top1=80.2,
            params_rtol=_RTOL,
            notes=_REPO_NOTE + ' Top-1: the abstract\'s "+1.3 % over FasterNet-T2 (78.9)", not a table value.',
        ),
        Variant('patnet_s', 'PATNet-S', 28_013_304, gmacs=2.716, params_rtol=_RTOL, notes=_REPO_NOTE),
        Variant('patnet_m', 'PATNet-M', 59_179_000, gmacs=6.693, params_rtol=_RTOL, notes=_REPO_NOTE),
        Variant('patnet_l', 'PATNet-L', 100_641_336, gmacs=11.909, params_rtol=_RTOL, notes=_REPO_NOTE),
        Variant(
            'patnet_det_s',
            'PartialNet-S (detection backbone)',
            41_362_992,
            gmacs=5.04,
            params_rtol=_RTOL,
            notes='FasterNet-S shapes with PAT_sp, as the official detection backbone; not a paper variant.',
        ),
        Variant(
            'patnet_det_m',
            'PartialNet-M (detection backbone)',
            72_311_052,
            gmacs=9.67,
            params_rtol=_RTOL,
            notes='FasterNet-M shapes with PAT_sp, as the official detection backbone; not a paper variant.',
        ),
        Variant(
            'patnet_det_l',
            'PartialNet-L (detection backbone)',
            126_831_636,
            gmacs=17.16,
            params_rtol=_RTOL,
            notes='FasterNet-L shapes with PAT_sp, as the official detection backbone; not a paper variant.',
        ),
    ),
    citation="""@article{huang2025patnet,
  title={Partial Convolution Meets Visual Attention},
  author={Huang, Haiduo and Yang, Fuwei and Li, Dong and Liu, Ji and Tian, Lu and Peng, Jinzhang and Ren, Pengju
          and Barsoum, Emad},
  journal={arXiv preprint arXiv:2503.03148},
  year={2025}
}""",
    size_divisor=32,
    min_size=32,
    summary=(
        'FasterNet-style four-stage ConvNet: each block convolves a quarter of its channels (partial 3x3 conv) and '
        'gives the other three quarters a cheap attention branch: a Gaussian channel gate (PAT_ch) in stages 1-3, '
        'self-attention with an iRPE bias (PAT_sf) in stage 4, and optionally a one-channel spatial gate (PAT_sp) '
        'after every MLP.'
    ),
    extra=FamilyExtra(
        flops_counter='fvcore (one fused multiply-add = one flop), measured from the official builder (the sheet)',
        mm_type='PATNet',
        # PATNet's claim is speed over FasterNet: tools/benchmark.py measures each variant beside timm's FasterNet
        # of the same tier, in the same run
        benchmark_peers={
            **{f'patnet_{tier}': f'fasternet_{tier}' for tier in ('t0', 't1', 't2', 's', 'm', 'l')},
            **{f'patnet_det_{tier}': f'fasternet_{tier}' for tier in ('s', 'm', 'l')},
        },
        notes=[
            'The official repository holds two shape sets: the classification configurations (patnet_t0 ... l, '
            'PAT_sp only in t1) and FasterNet-shaped detection backbones with PAT_sp (patnet_det_s / m / l). We '
            'follow the repository where it and the paper disagree.',
            'No official weights are public; `convert_checkpoint` accepts the official layout (bare or '
            "Lightning's `model.`-prefixed) for when they are.",
            'Inputs whose sides are not multiples of 32 are floored by the strided convolutions, as in the official '
            'model; the mm backbone pads to 32 instead.',
        ],
    ),
    recipes=_RECIPES,
)
