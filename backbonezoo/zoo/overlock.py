"""OverLoCK (Base-Net, Overview-Net, Focus-Net with ContMix dynamic kernels): backbonezoo's own models."""

from . import DenseCheckpoint, Family, FamilyExtra, Variant, Weights
from .recipe import TIMM_COSINE, Recipe

_RELEASE = 'https://github.com/LMMMEng/OverLoCK/releases/download/v1'


def _weights(name: str) -> tuple[Weights, ...]:
    # both official files load into the default (deploy-form) model; the training-form one also into deploy=False
    return (
        Weights('in1k', url=f'{_RELEASE}/overlock_{name}_in1k_224.pth', note='Training form (deploy=False layout).'),
        Weights(
            'in1k_reparam',
            url=f'{_RELEASE}/overlock_{name}_in1k_224_reparam.pth',
            note='Reparameterised (deploy) form of the same weights.',
        ),
    )


_CODE = 'LMMMEng/OverLoCK@2c8ab3b'
# timm's train.py (its defaults) with scripts/train_<v>_model.sh on top.
_OVERLOCK = Recipe(
    source=f'official scripts/train_xt_model.sh + train.py defaults (timm train.py) @ {_CODE}',
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
    # timm decays every parameter with ndim > 1: the official layer scales and GRN parameters are 4-D tensors
    # (decayed); the zoo's are 1-D, so they are named here to keep the official behaviour
    param_overrides={
        k: {'decay_mult': 1.0}
        for k in ('ls.weight', 'ls1.weight', 'ls2.weight', 'ctx_scale.weight', 'overview_scale.weight', 'grn.')
    },
    clip_grad=5.0,
    lr_step='epoch',
    schedule=TIMM_COSINE,
    train_interpolation='random',
    repeated_aug=1,
    ema_decay=0.9999,
    amp=True,
    sync_bn=True,
    model_extra={'type': 'OverLoCKClassifier', 'aux_loss_ratio': 0.4},
    crop_pct=0.925,
    sources={
        'batch_size': f'scripts/train_*_model.sh: 8 GPUs x --batch-size 256 @ {_CODE}',
        'cooldown_epochs': f'train.py --cooldown-epochs 10 (default): create_scheduler gives 300 + 10 epochs @ {_CODE}',
        'wd_exclude': f'train.py: create_optimizer_v2(model, ...) (timm param_groups_weight_decay) @ {_CODE}',
        'param_overrides': f'models/overlock.py: layer scales / GRN are 4-D there, so timm decays them @ {_CODE}',
        'lr_step': f'train.py: timm create_scheduler (t_in_epochs), stepped once per epoch @ {_CODE}',
        'train_interpolation': f"train.py default --train-interpolation 'random' @ {_CODE}",
        'sync_bn': f'train.py: SyncBatchNorm whenever distributed (unless --no-sync-bn) @ {_CODE}',
        'model_extra': f'train.py --aux-loss-ratio 0.4 (Overview-Net deep supervision) @ {_CODE}',
        'crop_pct': f'models/overlock.py default_cfg crop_pct (used by validate.py) @ {_CODE}',
        'amp': f'scripts --native-amp @ {_CODE}',
        'ema_decay': f'scripts --model-ema --model-ema-decay 0.9999 (timm ModelEmaV2, every step) @ {_CODE}',
    },
)

_RECIPES = {
    'overlock_xt': _OVERLOCK,
    'overlock_t': _OVERLOCK.replace(
        drop_path=0.15,
        crop_pct=0.95,
        source=f'official scripts/train_t_model.sh + train.py defaults @ {_CODE}',
    ),
    'overlock_s': _OVERLOCK.replace(
        drop_path=0.4,
        crop_pct=0.95,
        source=f'official scripts/train_s_model.sh + train.py defaults @ {_CODE}',
    ),
    'overlock_b': _OVERLOCK.replace(
        drop_path=0.5,
        crop_pct=0.975,
        source=f'official scripts/train_b_model.sh + train.py defaults @ {_CODE}',
    ),
}

# The authors' detection / segmentation checkpoints (issue 23): each loads whole into the config named beside it
# (backbonezoo.convert_checkpoint(FILE, CONFIG); tools/test.py CONFIG FILE). Numbers: the official READMEs.
_RELEASE = 'https://github.com/LMMMEng/OverLoCK/releases/download/v1/'
_DET_README = 'https://github.com/LMMMEng/OverLoCK/blob/main/detection/readme.md'
_SEG_README = 'https://github.com/LMMMEng/OverLoCK/blob/main/segmentation/readme.md'
_SIZES = {'t': 'tiny', 's': 'small', 'b': 'base'}
_MASK_RCNN = {
    ('t', '1x'): (48.3, 43.3),
    ('t', '3x'): (49.6, 43.9),
    ('s', '1x'): (49.4, 44.0),
    ('s', '3x'): (51.0, 45.0),
    ('b', '1x'): (49.9, 44.4),
    ('b', '3x'): (51.4, 45.3),
}
_UPERNET = {'t': 50.3, 's': 51.3, 'b': 51.7}
_DENSE = tuple(
    DenseCheckpoint(
        'detection',
        f'Mask R-CNN {schedule}',
        f'configs/detection/overlock/mask_rcnn_overlock_{v}_fpn_{schedule}_coco.py',
        f'maskrcnn{schedule}_overlock_{_SIZES[v]}_coco.pth',
        f'{_RELEASE}maskrcnn{schedule}_overlock_{_SIZES[v]}_coco.pth',
        {'box AP': box, 'mask AP': mask},
        _DET_README,
    )
    for (v, schedule), (box, mask) in _MASK_RCNN.items()
) + tuple(
    DenseCheckpoint(
        'segmentation',
        'UperNet 160k',
        f'configs/segmentation/overlock/overlock_{v}_upernet_512x512_160k_ade20k.py',
        f'upernet_overlock_{_SIZES[v]}_ade20k.pth',
        f'{_RELEASE}upernet_overlock_{_SIZES[v]}_ade20k.pth',
        {'mIoU': miou},
        _SEG_README,
    )
    for v, miou in _UPERNET.items()
)

FAMILY = Family(
    name='overlock',
    title='OverLoCK',
    paper='OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels (CVPR 2025)',
    arxiv='2502.20087',
    code='https://github.com/LMMMEng/OverLoCK/tree/2c8ab3b29e3a11fb4a2510d98e4d9ed8b33cf091',
    code_license='Apache-2.0',
    weights_license='Apache-2.0',
    module='backbonezoo.backbones.overlock',
    # stride-2 convs round up and ContMix resizes maps smaller than its kernel: any side >= 32 works
    size_divisor=32,
    min_size=32,
    fixed_size=False,
    variants=(
        # params: the reparameterised (deploy) model without the training-only auxiliary head, which is what the
        # registered models build and what the paper's 16M / 33M / 56M / 95M round (checked against the official
        # code built with deploy=True, use_ds=False). The training form (deploy=False) has 16_969_600 /
        # 34_476_448 / 57_795_748 / 97_434_816; the aux head adds C3 * 1001 + 2 * C3.
        Variant('overlock_xt', 'OverLoCK-XT', 16_453_712, 2.6, 82.7, 224, pretrained=_weights('xt')),
        Variant('overlock_t', 'OverLoCK-T', 33_467_040, 5.5, 84.2, 224, pretrained=_weights('t')),
        Variant('overlock_s', 'OverLoCK-S', 56_156_452, 9.7, 84.8, 224, pretrained=_weights('s')),
        Variant('overlock_b', 'OverLoCK-B', 94_942_528, 16.7, 85.1, 224, pretrained=_weights('b')),
    ),
    citation="""@inproceedings{lou2025overlock,
  title     = {OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels},
  author    = {Lou, Meng and Yu, Yizhou},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {128--138},
  year      = {2025}
}""",
    summary=(
        'A pure ConvNet in three sub-networks: a Base-Net of large-kernel (UniRepLKNet dilated-reparam) blocks at '
        'strides 4-16, an Overview-Net stage at stride 32 that produces a coarse context, and a Focus-Net whose '
        'ContMix blocks apply per-pixel dynamic depthwise kernels (a 5x5 and a stage-sized large kernel) generated '
        'from the affinity of each pixel with 7x7 pooled context regions, with NATTEN-style border-shifted windows '
        '(backbonezoo.kernels.local_aggregate). Runs without natten 0.17, which no longer builds for current torch.'
    ),
    extra=FamilyExtra(
        onnx_export_slow=(
            'dynamo export of OverLoCK-XT (dynamic H / W) takes about 10 CPU-minutes (one thread) without the '
            'onnxscript graph optimisation the contract test skips (torch.export 172 s, decomposition + translation '
            '423 s; the optimisation adds 524 s), so it runs under make test-slow; make test exports the whole '
            'architecture at a small width with dynamic H / W (tests/test_overlock.py, about 2.5 CPU-minutes)'
        ),
        params_note=(
            'sum(p.numel()) of the reparameterised model without the auxiliary head (equal to the official '
            'overlock_*(deploy=True, use_ds=False)); the sheet / issue figures 16.79M / 33.98M / 56.67M / 95.52M '
            'include the auxiliary head'
        ),
        gmacs_note='paper FLOPs; fvcore on the official reparameterised model counts 4-6 % more (sheet)',
        top1_note='ImageNet-1k top-1 at 224 from the paper / official README',
        forms='deploy=True (default, reparameterised) or deploy=False (training form); model.reparameterize()',
    ),
    recipes=_RECIPES,
    dense=_DENSE,
)
