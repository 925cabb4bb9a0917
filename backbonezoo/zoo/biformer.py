"""BiFormer: vision transformer with bi-level routing attention (CVPR 2023)."""

from . import DenseCheckpoint, Family, FamilyExtra, Variant, Weights
from .recipe import TIMM_COSINE, Recipe

_ONEDRIVE = 'https://api.onedrive.com/v1.0/shares/{}/root/content'


def _onedrive(share: str) -> tuple[Weights, ...]:
    # The official README's OneDrive links. A browser downloads the file, but the link's path ends in "content": timm's
    # downloader caches by that last part, so every BiFormer file would land in (and reload) the same cache entry.
    return (
        Weights(
            'in1k',
            manual_download=_ONEDRIVE.format(share),
            note='Official OneDrive share: save the file under its own name (the weights sit under "model").',
        ),
    )


_CODE = 'rayleizhu/BiFormer@1697bbb'
# DeiT's main.py, as exported with its defaults to configs/train_args.yaml; the per-model run commands are in
# scripts/train.sh and the README (8 GPUs x 128 per node).
_BIFORMER = Recipe(
    source=f'official configs/train_args.yaml (DeiT main.py defaults) @ {_CODE}',
    epochs=300,
    batch_size=1024,
    batch_per_gpu=128,
    lr=1e-3,
    lr_rule='linear: 5e-4 x total batch / 512 (main.py); warmup_lr and min_lr are not scaled',
    warmup_epochs=5,
    warmup_lr=1e-6,
    min_lr=1e-5,
    weight_decay=0.05,
    drop_path=0.1,
    wd_exclude='timm',
    schedule=TIMM_COSINE,
    lr_step='epoch',
    repeated_aug=3,
    ema_decay=0.99996,
    amp=True,
    crop_pct=0.875,
    sources={
        'batch_size': f'README training command: 1 node x 8 GPUs x batch 128 @ {_CODE}',
        'batch_per_gpu': f'README / scripts/train.sh batch_size=128 @ {_CODE}',
        'lr': f'README / scripts/train.sh lr=5e-4, scaled by main.py (x batch / 512) @ {_CODE}',
        'wd_exclude': f'main.py: timm create_optimizer(args, model) filters 1-D params and no_weight_decay() @ {_CODE}',
        'lr_step': f'main.py: lr_scheduler.step(epoch) once per epoch, 300 epochs (no cool-down) @ {_CODE}',
        'repeated_aug': f'train_args.yaml repeated_aug: true (RASampler, 3 repeats) @ {_CODE}',
        'amp': f'main.py NativeScaler + engine.py autocast @ {_CODE}',
        'crop_pct': f'datasets.py: Resize(256 / 224 x size) + CenterCrop @ {_CODE}',
        'train_interpolation': f'train_args.yaml train_interpolation: bicubic @ {_CODE}',
    },
    notes=(
        'The paper trains with the DeiT recipe; the values are the official code defaults (configs/train_args.yaml) '
        'with the per-model overrides of the README and scripts/train.sh.',
        'DeiT-style EMA: the official run keeps an EMA (0.99996) but evaluates and releases the raw weights '
        "('model'); mmengine's EMAHook validates with the EMA weights.",
    ),
)

_RECIPES = {
    'biformer_tiny': _BIFORMER.replace(
        sources={
            'drop_path': 'rayleizhu/BiFormer#32 (2023-09-13): the author calls a BiFormer-T run with drop_path 0.1, '
            f'8 GPUs x 128, lr 5e-4 "fine" (no BiFormer-T command in the repository; train_args.yaml default 0.1) @ '
            f'{_CODE}',
            'batch_size': 'rayleizhu/BiFormer#32: the same run (8 GPUs x 128 = 1024) judged fine by the author, who '
            "suggests 256 x 8 = 2048 as well; the released run's batch is not stated (its log is on OneDrive only)",
        },
    ),
    'biformer_small': _BIFORMER.replace(
        batch_size=2048,
        lr=2e-3,
        drop_path=0.15,
        sources={
            'batch_size': f'scripts/train.sh (slurm.nodes=2 x 8 GPUs x 128) and the README output folder of the '
            f'released run (...-slurm.ngpus.8-slurm.nodes.2) @ {_CODE}',
            'lr': f'scripts/train.sh lr=5e-4 x 2048 / 512 (main.py) @ {_CODE}',
            'drop_path': f'README / scripts/train.sh drop_path=0.15 @ {_CODE}',
        },
        notes=(
            'The README command shows 1 node for BiFormer-S, its output folder and scripts/train.sh 2 nodes: '
            'the released run is the 2-node one (total batch 2048).',
        ),
    ),
    'biformer_base': _BIFORMER.replace(
        drop_path=0.3,
        sources={
            'drop_path': 'inferred: no BiFormer-B command is published; the official Semantic FPN configs '
            '(semantic_segmentation/configs/ade20k/sfpn.*.py) repeat the ImageNet rate of every model whose rate is '
            f'published (BiFormer-S 0.15, STL 0.1) and give BiFormer-B 0.3 @ {_CODE}',
            'batch_size': f'not published for BiFormer-B: the README command (8 GPUs x 128) @ {_CODE}',
        },
        notes=(
            'BiFormer-B drop path 0.3 is inferred from the official Semantic FPN config (see its source); the '
            "training log that would confirm it is on OneDrive only. train_args.yaml's default would be 0.1.",
        ),
    ),
    'biformer_stl': _BIFORMER.replace(
        sources={'drop_path': f'scripts/train.sh biformer_stl drop_path=0.1 (1 node x 8 GPUs) @ {_CODE}'},
    ),
    'biformer_stl_nchw': _BIFORMER.replace(
        sources={'drop_path': f'scripts/train.sh biformer_stl_nchw drop_path=0.1 (1 node x 8 GPUs) @ {_CODE}'},
    ),
}

# The authors' detection / segmentation checkpoints (issue 23): each loads whole into the config named beside it
# (backbonezoo.convert_checkpoint(FILE, CONFIG); tools/test.py CONFIG FILE). The BiFormer README links each run's
# folder ("log" column: the checkpoint and its log) on OneDrive / matix.li; those share links may have expired.
_DET_README = 'https://github.com/rayleizhu/BiFormer/blob/main/object_detection/README.md'
_SEG_README = 'https://github.com/rayleizhu/BiFormer/blob/main/semantic_segmentation/README.md'
_DENSE = (
    DenseCheckpoint(
        'detection',
        'RetinaNet 1x',
        'configs/detection/biformer/retinanet_biformer_s_fpn_1x_coco.py',
        'retinanet.1x.biformer_small (run folder)',
        'https://1drv.ms/u/s!AkBbczdRlZvChhKipB3XMN4_nIvO?e=TYZzFc',
        {'box AP': 45.9, 'box AP (reproduced)': 47.3},
        _DET_README,
    ),
    DenseCheckpoint(
        'detection',
        'RetinaNet 1x',
        'configs/detection/biformer/retinanet_biformer_b_fpn_1x_coco.py',
        'retinanet.1x.biformer_base (run folder)',
        'https://1drv.ms/u/s!AkBbczdRlZvChg-8GDypSY9leBsm?e=FyJQm1',
        {'box AP': 47.1},
        _DET_README,
    ),
    DenseCheckpoint(
        'detection',
        'Mask R-CNN 1x',
        'configs/detection/biformer/mask_rcnn_biformer_s_fpn_1x_coco.py',
        'maskrcnn.1x.biformer_small (run folder)',
        'https://1drv.ms/u/s!AkBbczdRlZvChgmyNozEQrrsfOdG?e=aOCj2A',
        {'box AP': 47.8, 'mask AP': 43.2, 'box AP (reproduced)': 48.1, 'mask AP (reproduced)': 43.6},
        _DET_README,
    ),
    DenseCheckpoint(
        'detection',
        'Mask R-CNN 1x',
        'configs/detection/biformer/mask_rcnn_biformer_b_fpn_1x_coco.py',
        'maskrcnn.1x.biformer_base (run folder)',
        'https://1drv.ms/u/s!AkBbczdRlZvChhF-itieos4fg28D?e=Gor6oV',
        {'box AP': 48.6, 'mask AP': 43.7},
        _DET_README,
    ),
    DenseCheckpoint(
        'segmentation',
        'Semantic FPN 80k',
        'configs/segmentation/biformer/biformer_s_fpn_512x512_80k_ade20k.py',
        'sfpn.biformer_small (run folder)',
        'https://matix.li/b5be1f63c18d',
        {'mIoU': 48.9},
        _SEG_README,
    ),
    DenseCheckpoint(
        'segmentation',
        'Semantic FPN 80k',
        'configs/segmentation/biformer/biformer_b_fpn_512x512_80k_ade20k.py',
        'sfpn.biformer_base (run folder)',
        'https://matix.li/c4f255bbc268',
        {'mIoU': 49.9},
        _SEG_README,
    ),
    DenseCheckpoint(
        'segmentation',
        'UperNet 160k',
        'configs/segmentation/biformer/biformer_s_upernet_512x512_160k_ade20k.py',
        'upernet.biformer_small (run folder)',
        'https://matix.li/1c4201448950',
        {'mIoU': 49.8, 'mIoU (ms + flip)': 50.8},
        _SEG_README,
    ),
    DenseCheckpoint(
        'segmentation',
        'UperNet 160k',
        'configs/segmentation/biformer/biformer_b_upernet_512x512_160k_ade20k.py',
        'upernet.biformer_base (run folder)',
        'https://matix.li/786bd25951de',
        {'mIoU': 51.0, 'mIoU (ms + flip)': 51.7},
        _SEG_README,
    ),
)

FAMILY = Family(
    name='biformer',
    title='BiFormer',
    paper='BiFormer: Vision Transformer with Bi-Level Routing Attention',
    arxiv='2303.08810',
    code='https://github.com/rayleizhu/BiFormer',
    code_license='MIT',
    weights_license='MIT',
    module='backbonezoo.backbones.biformer',
    variants=(
        Variant(
            'biformer_tiny',
            'BiFormer-T',
            13_142_760,
            gmacs=2.2,
            top1=81.4,
            pretrained=_onedrive('s!AkBbczdRlZvChHEOoGkgwgQzEDlM'),
        ),
        Variant(
            'biformer_small',
            'BiFormer-S',
            25_536_232,
            gmacs=4.5,
            top1=83.8,
            pretrained=_onedrive('s!AkBbczdRlZvChHDyM-x9KWRBZ832'),
        ),
        Variant(
            'biformer_base',
            'BiFormer-B',
            56_804_968,
            gmacs=9.8,
            top1=84.3,
            pretrained=_onedrive('s!AkBbczdRlZvChHI_XPhoadjaNxtO'),
        ),
        Variant(
            'biformer_stl',
            'BiFormer-STL',
            28_372_552,
            gmacs=4.6,
            top1=82.7,
            pretrained=_onedrive('s!AkBbczdRlZvChSf-m7ujkvx9lIQ1'),
            notes='Swin-T layout ablation model (patch stem, norm-then-conv merges), legacy routing attention.',
        ),
        Variant(
            'biformer_stl_nchw',
            'BiFormer-STL (NCHW BRA)',
            28_372_552,
            gmacs=4.6,
            top1=82.7,
            pretrained=_onedrive('s!AkBbczdRlZvChWYrKbWbMgqd2Ai0'),
            notes='BiFormer-STL with the refactored NCHW routing attention: zero padding after the projection, '
            'region size floor(side / n_win), stage-4 LePE on the values.',
        ),
    ),
    citation="""@inproceedings{zhu2023biformer,
  title={BiFormer: Vision Transformer with Bi-Level Routing Attention},
  author={Zhu, Lei and Wang, Xinjiang and Ke, Zhanghan and Zhang, Wayne and Lau, Rynson},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2023}
}""",
    # n_win=7 regions per side at strides 4..16: classification inputs must be multiples of 16 * 7 = 112
    # (auto_pad=True, the dense setting, accepts any size).
    size_divisor=112,
    min_size=112,
    summary=(
        'Four-stage hierarchical ViT. Stages 1-3 use bi-level routing attention: every region of an n_win x n_win '
        'grid routes to its top-k most related regions (region-mean queries and keys), then its tokens attend to the '
        'tokens of those regions only. Stage 4 uses global attention with a depthwise LePE branch.'
    ),
    extra=FamilyExtra(
        flops_counter='fvcore (one fused multiply-add = one flop; gather, topk and softmax not counted)',
        eval_transform='Resize(256/224 * size, bicubic) + CenterCrop(size), ImageNet mean/std',
        notes=[
            'The routing kernel pays most at the dense-task sizes (16 regions, 512x512 and 800x1216), where the '
            'official top-k key / value copies dominate; at 224 the linear layers take most of the time. Measured '
            'numbers: the "Measured throughput" section of this card (from benchmarks/results.csv) and the profiles '
            'in benchmarks/profiles/.',
        ],
    ),
    recipes=_RECIPES,
    dense=_DENSE,
)
