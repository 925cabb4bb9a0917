"""BiFormer: vision transformer with bi-level routing attention (CVPR 2023)."""

from . import Family, Variant

_ONEDRIVE = 'https://api.onedrive.com/v1.0/shares/{}/root/content'

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
            weights=_ONEDRIVE.format('s!AkBbczdRlZvChHEOoGkgwgQzEDlM'),
        ),
        Variant(
            'biformer_small',
            'BiFormer-S',
            25_536_232,
            gmacs=4.5,
            top1=83.8,
            weights=_ONEDRIVE.format('s!AkBbczdRlZvChHDyM-x9KWRBZ832'),
        ),
        Variant(
            'biformer_base',
            'BiFormer-B',
            56_804_968,
            gmacs=9.8,
            top1=84.3,
            weights=_ONEDRIVE.format('s!AkBbczdRlZvChHI_XPhoadjaNxtO'),
        ),
        Variant(
            'biformer_stl',
            'BiFormer-STL',
            28_372_552,
            gmacs=4.6,
            top1=82.7,
            weights=_ONEDRIVE.format('s!AkBbczdRlZvChSf-m7ujkvx9lIQ1'),
            notes='Swin-T layout ablation model (patch stem, norm-then-conv merges), legacy routing attention.',
        ),
        Variant(
            'biformer_stl_nchw',
            'BiFormer-STL (NCHW BRA)',
            28_372_552,
            gmacs=4.6,
            top1=82.7,
            weights=_ONEDRIVE.format('s!AkBbczdRlZvChWYrKbWbMgqd2Ai0'),
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
    extra={
        'flops_counter': 'fvcore (one fused multiply-add = one flop; gather, topk and softmax not counted)',
        'eval_transform': 'Resize(256/224 * size, bicubic) + CenterCrop(size), ImageNet mean/std',
        'notes': [
            'Dense-task sizes (benchmarks/kernels.md, whole backbone, batch 1, 16 regions): at 800x1216 BiFormer-T / '
            '-S run 2.3x faster than the official top-k key / value copies at 0.36x / 0.46x their peak memory; at '
            '512x512, 1.1x faster at 0.39x / 0.45x the memory. At 224 (batch 16) 1.8x the throughput at 0.46x / '
            '0.39x the memory: the linear layers take 45 % of the time there (see the profile in '
            'benchmarks/profiles/).',
        ],
    },
)
