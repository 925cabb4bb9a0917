"""LITv2 (HiLo attention): metadata. Numbers are the paper's (GMACs, top-1) and the official code's (params)."""

from . import DenseCheckpoint, Family, FamilyExtra, Variant, Weights
from .recipe import TIMM_COSINE, Recipe

_RELEASES = 'https://github.com/ziplab/LITv2/releases/download/v1.0'


def _in1k(file: str) -> tuple[Weights, ...]:
    return (Weights('in1k', url=f'{_RELEASES}/{file}.pth'),)


_CODE = 'ziplab/LITv2@7501c86'
_LITV2 = Recipe(
    source=f'official classification/config.py defaults + configs/litv2-*.yaml (Swin codebase) @ {_CODE}',
    epochs=300,
    batch_size=1024,
    batch_per_gpu=128,
    lr=1e-3,
    lr_rule='linear: BASE_LR 5e-4, WARMUP_LR 5e-7 and MIN_LR 5e-6, each x total batch / 512 (main.py)',
    warmup_epochs=20,
    warmup_lr=1e-6,
    min_lr=1e-5,
    weight_decay=0.05,
    drop_path=0.2,
    wd_exclude='timm',
    param_overrides={'conv_offset.weight': {'lr_mult': 0.01}},
    clip_grad=5.0,
    schedule=TIMM_COSINE,
    lr_step='iter',
    repeated_aug=1,
    ema_decay=None,
    amp=True,
    crop_pct=0.875,
    sources={
        'batch_size': f'classification/README.md: 8 GPUs, total batch 1024 @ {_CODE}',
        'wd_exclude': f'optimizer.py set_weight_decay: 1-D params, .bias, no_weight_decay() (+ keywords) @ {_CODE}',
        'param_overrides': f'optimizer.py: conv_offset weights at lr x OFFSET_LR_MULTI 0.01 (their biases are '
        f'1-D: no-decay group at the full lr) @ {_CODE}',
        'lr_step': f'lr_scheduler.py: timm CosineLRScheduler over iterations (t_in_epochs=False) @ {_CODE}',
        'amp': f'main.py --amp-opt-level O1 (apex) by default @ {_CODE}',
        'crop_pct': f'data/build.py TEST.CROP: Resize(256 / 224 x size) + CenterCrop @ {_CODE}',
        'drop_path': f'configs/litv2-small.yaml DROP_PATH_RATE @ {_CODE}',
    },
)

_RECIPES = {
    'litv2_small': _LITV2,
    'litv2_medium': _LITV2.replace(
        drop_path=0.3, sources={'drop_path': f'configs/litv2-medium.yaml DROP_PATH_RATE @ {_CODE}'}
    ),
    'litv2_base': _LITV2.replace(
        drop_path=0.5, sources={'drop_path': f'configs/litv2-base.yaml DROP_PATH_RATE @ {_CODE}'}
    ),
    'litv2_base_384_ft': _LITV2.replace(
        source=f'official configs/litv2-base-finetune-384.yaml over config.py defaults @ {_CODE}',
        epochs=30,
        lr=4e-5,
        lr_rule='linear: BASE_LR 2e-5, WARMUP_LR 2e-8 and MIN_LR 2e-7, each x total batch / 512 (main.py)',
        warmup_epochs=5,
        warmup_lr=4e-8,
        min_lr=4e-7,
        weight_decay=1e-8,
        drop_path=0.5,
        input_size=384,
        crop_pct=1.0,
        eval_crop_mode='squash',
        finetune_from='litv2_base',
        sources={
            'drop_path': f'configs/litv2-base-finetune-384.yaml DROP_PATH_RATE @ {_CODE}',
            'crop_pct': f'configs/litv2-base-finetune-384.yaml TEST.CROP False: data/build.py resizes to 384 x 384 '
            f'without a crop @ {_CODE}',
            'finetune_from': f'configs/litv2-base-finetune-384.yaml MODEL.PRETRAINED (the LITv2-B 224 run) @ {_CODE}',
        },
        notes=(
            'Evaluation without a crop: the official code squashes the image to 384 x 384 (timm crop_mode '
            "'squash', set in the config); the zoo's pretrained_cfg says crop_pct 1.0 with a centre crop, which keeps "
            'the aspect ratio (differs on non-square images).',
        ),
    ),
}

# The authors' detection / segmentation checkpoints (issue 23): each loads whole into the config named beside it
# (backbonezoo.convert_checkpoint(FILE, CONFIG); tools/test.py CONFIG FILE). Numbers: the official READMEs.
_RELEASE = 'https://github.com/ziplab/LITv2/releases/download/v1.0/'
_DET_README = 'https://github.com/ziplab/LITv2/blob/main/detection/README.md'
_SEG_README = 'https://github.com/ziplab/LITv2/blob/main/segmentation/README.md'


def _det(method: str, size: str, ws: str, published: dict) -> DenseCheckpoint:
    name = f'{method}_litv2_{size}_fpn_1x_coco{ws}'
    title = ('RetinaNet 1x' if method == 'retinanet' else 'Mask R-CNN 1x') + (' (window 4)' if ws else '')
    return DenseCheckpoint(
        'detection',
        title,
        f'configs/detection/litv2/{name}.py',
        f'{name}.pth',
        f'{_RELEASE}{name}.pth',
        published,
        _DET_README,
    )


def _seg(size: str, miou: float) -> DenseCheckpoint:
    name = f'litv2_{size}_fpn_r50_512x512_80k_ade20k'
    return DenseCheckpoint(
        'segmentation',
        'Semantic FPN 80k',
        f'configs/segmentation/litv2/litv2_{size}_fpn_512x512_80k_ade20k.py',
        f'{name}.pth',
        f'{_RELEASE}{name}.pth',
        {'mIoU': miou},
        _SEG_README,
    )


_DENSE = (
    _det('retinanet', 's', '', {'box AP': 44.0}),
    _det('retinanet', 's', '_ws_4', {'box AP': 43.7}),
    _det('retinanet', 'm', '', {'box AP': 46.0}),
    _det('retinanet', 'm', '_ws_4', {'box AP': 45.8}),
    _det('retinanet', 'b', '', {'box AP': 46.7}),
    _det('retinanet', 'b', '_ws_4', {'box AP': 46.3}),
    _det('mask_rcnn', 's', '', {'box AP': 44.9, 'mask AP': 40.8}),
    _det('mask_rcnn', 's', '_ws_4', {'box AP': 44.7, 'mask AP': 40.7}),
    _det('mask_rcnn', 'm', '', {'box AP': 46.8, 'mask AP': 42.3}),
    _det('mask_rcnn', 'm', '_ws_4', {'box AP': 46.5, 'mask AP': 42.0}),
    _det('mask_rcnn', 'b', '', {'box AP': 47.3, 'mask AP': 42.6}),
    _det('mask_rcnn', 'b', '_ws_4', {'box AP': 46.8, 'mask AP': 42.3}),
    _seg('s', 44.3),
    _seg('m', 45.7),
    _seg('b', 47.2),
)

FAMILY = Family(
    name='litv2',
    title='LITv2 (HiLo attention)',
    paper='Fast Vision Transformers with HiLo Attention (NeurIPS 2022)',
    arxiv='2205.13213',
    code='https://github.com/ziplab/LITv2',
    code_license='Apache-2.0',
    weights_license='Apache-2.0',
    module='backbonezoo.backbones.litv2',
    variants=(
        Variant('litv2_small', 'LITv2-S', 27_844_000, gmacs=3.7, top1=82.0, pretrained=_in1k('litv2_s')),
        Variant('litv2_medium', 'LITv2-M', 48_830_368, gmacs=7.5, top1=83.3, pretrained=_in1k('litv2_m')),
        Variant('litv2_base', 'LITv2-B', 86_520_704, gmacs=13.2, top1=83.6, pretrained=_in1k('litv2_b')),
        Variant(
            'litv2_base_384',
            'LITv2-B 384',
            86_520_704,
            gmacs=39.7,
            top1=84.7,
            img_size=384,
            pretrained=_in1k('litv2_b_384'),
            notes='fine-tuned 30 epochs at 384 from LITv2-B',
        ),
    ),
    citation="""@inproceedings{pan2022hilo,
  title={Fast Vision Transformers with HiLo Attention},
  author={Pan, Zizheng and Cai, Jianfei and Zhuang, Bohan},
  booktitle={NeurIPS},
  year={2022}
}""",
    # Any size >= 32 runs (stem and HiLo pad like the official dense backbone, token merging floors odd sizes);
    # multiples of 32 need neither padding nor flooring.
    size_divisor=32,
    min_size=32,
    summary=(
        'A four-stage ViT whose first two stages are convolutional FFN blocks and whose last two use HiLo '
        'attention: a few heads (Hi-Fi) attend inside 2x2 windows, the others (Lo-Fi) attend to 2x2 average-pooled '
        'keys and values. Stages are joined by deformable token merging, a 2x2 stride-2 deformable convolution. '
        'There is no position embedding; a 3x3 depthwise convolution in every FFN carries position.'
    ),
    extra=FamilyExtra(
        flops_convention='multiply-accumulates, batch 1, deformable convolutions counted as dense 2x2 convs '
        '(the paper counts them the same way)',
        offset_lr_multiplier=0.01,
    ),
    recipes=_RECIPES,
    dense=_DENSE,
)
