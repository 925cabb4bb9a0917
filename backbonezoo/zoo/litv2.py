"""LITv2 (HiLo attention): metadata. Numbers are the paper's (GMACs, top-1) and the official code's (params)."""

from . import Family, Variant

_RELEASES = 'https://github.com/ziplab/LITv2/releases/download/v1.0'

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
        Variant('litv2_small', 'LITv2-S', 27_844_000, gmacs=3.7, top1=82.0, weights=f'{_RELEASES}/litv2_s.pth'),
        Variant('litv2_medium', 'LITv2-M', 48_830_368, gmacs=7.5, top1=83.3, weights=f'{_RELEASES}/litv2_m.pth'),
        Variant('litv2_base', 'LITv2-B', 86_520_704, gmacs=13.2, top1=83.6, weights=f'{_RELEASES}/litv2_b.pth'),
        Variant(
            'litv2_base_384',
            'LITv2-B 384',
            86_520_704,
            gmacs=39.7,
            top1=84.7,
            img_size=384,
            weights=f'{_RELEASES}/litv2_b_384.pth',
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
    extra={
        'flops_convention': 'multiply-accumulates, batch 1, deformable convolutions counted as dense 2x2 convs '
        '(the paper counts them the same way)',
        'offset_lr_multiplier': 0.01,
    },
)
