"""TiC (MSA-Conv): metadata. Only the operator is official; the network and its three variants are our configurations
(the paper's tables were not available), so params are our exact counts and there are no paper GMACs / top-1."""

from . import Family, FamilyExtra, Variant
from .recipe import TIMM_COSINE, Recipe

_OURS = 'Our configuration (no paper table): counts are ours, no paper FLOPs or accuracy, no weights.'

_SWIN = 'microsoft/Swin-Transformer config.py defaults'
# TiC's authors released only the MSA-Conv operator: no network, recipe or weights. The recipe is our choice: the
# Swin / DeiT recipe the paper's ImageNet comparisons use.
_TIC = Recipe(
    source=f'our choice (no official recipe): the Swin-T recipe ({_SWIN})',
    epochs=300,
    batch_size=1024,
    batch_per_gpu=128,
    lr=1e-3,
    lr_rule='linear: 5e-4 x total batch / 512 (Swin main.py; warm-up and min lr scaled likewise)',
    warmup_epochs=20,
    warmup_lr=1e-6,
    min_lr=1e-5,
    weight_decay=0.05,
    drop_path=0.2,
    wd_exclude='timm',
    clip_grad=5.0,
    schedule=TIMM_COSINE,
    lr_step='iter',
    repeated_aug=1,
    ema_decay=None,
    amp=True,
    crop_pct=0.9,
    sources={
        'crop_pct': "backbonezoo's tic pretrained_cfg (no official evaluation exists)",
        'drop_path': 'our choice: Swin-T / S / B rates 0.2 / 0.3 / 0.5 by model size',
    },
    notes=(
        'TiC has no released training code or weights (StriveZs/MSA-Conv@2d96f54 holds the operator only): '
        "every value is our choice, none is the paper's.",
    ),
)

_RECIPES = {
    'tic_tiny': _TIC,
    'tic_small': _TIC.replace(drop_path=0.3),
    'tic_base': _TIC.replace(drop_path=0.5),
}

FAMILY = Family(
    name='tic',
    title='TiC (MSA-Conv)',
    paper='TiC: Exploring Vision Transformer in Convolution',
    arxiv='2310.04134',
    code='https://github.com/StriveZs/MSA-Conv',
    code_license='none (no LICENSE file: all rights reserved; operator only, not used by backbonezoo)',
    weights_license='none (no weights exist)',
    module='backbonezoo.backbones.tic',
    variants=(
        Variant('tic_tiny', 'TiC-T (ours)', 28_315_000, notes=_OURS + ' Swin-T tier: 96 wide, depths 2-2-6-2.'),
        Variant('tic_small', 'TiC-S (ours)', 49_631_608, notes=_OURS + ' Swin-S tier: 96 wide, depths 2-2-18-2.'),
        Variant('tic_base', 'TiC-B (ours)', 87_820_456, notes=_OURS + ' Swin-B tier: 128 wide, depths 2-2-18-2.'),
    ),
    citation="""@article{zhang2023tic,
  title={TiC: Exploring Vision Transformer in Convolution},
  author={Zhang, Song and Wang, Qingzhong and Bian, Jiang and Xiong, Haoyi},
  journal={arXiv preprint arXiv:2310.04134},
  year={2023}
}""",
    # Any size >= 32 runs unchanged: no position embedding, no window partition; stride-2 steps round odd sides up and
    # inter-pooling pads to its factor internally.
    size_divisor=1,
    min_size=32,
    summary=(
        'A four-stage hierarchical network (strides 4 / 8 / 16 / 32) whose token mixer is MSA-Conv: multi-head '
        'self-attention over a dilated k x k sliding window computed like a convolution, where neighbours outside the '
        'map are zero keys and values that take part in the softmax (the official operator). Blocks alternate plain '
        'MSA-Conv with a long-range form that adds a dilation, inter-pooling (queries space-to-batch, keys / values '
        'downsampled by a strided depthwise conv) and a multi-directional cyclic shift of head groups. There is no '
        'position embedding, so one model runs at any input size without retraining. Only the MSA-Conv operator was '
        "released: the network, its block layout and the three variants are backbonezoo's configurations, not the "
        "paper's, and no weights exist."
    ),
    extra=FamilyExtra(
        mm_type='TiC',
        variants_ours=True,
        flops_convention='multiply-accumulates, batch 1, MSA-Conv counted by the local_attention handle '
        '(k*k keys per query, d_qk + d_v MACs each); no paper figures to compare with',
        notes=(
            "Everything above the operator is our design, written from the paper's abstract and the author's "
            'answers in the official repository: stem, block (pre-norm MSA-Conv + MLP), the alternation of plain and '
            'long-range blocks, kernel 7, dilations 2-2-1-1, inter-pooling factors 2-2-2-1, shift = k // 2 * '
            'dilation. The variants sit at the usual Swin tiers (~28M / ~50M / ~88M parameters). '
            'MSA-Conv semantics follow the official CUDA op: zero-padded window, softmax including the outside '
            'zeros, stride 1. Heads are folded into the batch, scale = head_dim ** -0.5 (the op itself scales by '
            'the channel count of its call, which equals head_dim once heads are folded). '
            'Inter-pooling fold-back (batch-to-space after the attention) and the cyclic shift (keys / values of '
            "head groups rolled along the four diagonals) are our readings of the paper's names: the authors have "
            'not published either. '
            'The official op cannot back-propagate half precision; ours runs under bf16 / fp16 autocast. '
            'Dense prediction is our design too (the authors ship none): mm type `TiC` returns the four stage maps '
            '(strides 4 / 8 / 16 / 32) through new LayerNorms without padding the input; the configs are the standard '
            'RetinaNet / Mask R-CNN 1x and UPerNet 160k setups, and classification uses the DeiT / Swin 300-epoch '
            'AdamW recipe (our choice: no recipe was published).'
        ),
    ),
    recipes=_RECIPES,
)
