"""BiFormer: vision transformer with bi-level routing attention (CVPR 2023)."""

from . import Family, FamilyExtra, Variant, Weights
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
            'drop_path': f'train_args.yaml default drop_path 0.1 (no BiFormer-T command published) @ {_CODE}',
            'batch_size': f'not published for BiFormer-T: the README command (8 GPUs x 128) @ {_CODE}',
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
        sources={
            'drop_path': f'train_args.yaml default 0.1: no BiFormer-B command published (unverified; the paper '
            f'gives no per-model rate we could check) @ {_CODE}',
            'batch_size': f'not published for BiFormer-B: the README command (8 GPUs x 128) @ {_CODE}',
        },
    ),
    'biformer_stl': _BIFORMER.replace(
        sources={'drop_path': f'scripts/train.sh biformer_stl drop_path=0.1 (1 node x 8 GPUs) @ {_CODE}'},
    ),
    'biformer_stl_nchw': _BIFORMER.replace(
        sources={'drop_path': f'scripts/train.sh biformer_stl_nchw drop_path=0.1 (1 node x 8 GPUs) @ {_CODE}'},
    ),
}

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
            'Dense-task sizes (benchmarks/kernels.md, whole backbone, batch 1, 16 regions): at 800x1216 BiFormer-T / '
            '-S run 2.3x faster than the official top-k key / value copies at 0.36x / 0.46x their peak memory; at '
            '512x512, 1.1x faster at 0.39x / 0.45x the memory. At 224 (batch 16) 1.8x the throughput at 0.46x / '
            '0.39x the memory: the linear layers take 45 % of the time there (see the profile in '
            'benchmarks/profiles/).',
        ],
    ),
    recipes=_RECIPES,
)
