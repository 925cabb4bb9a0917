"""A2Mamba: attention-augmented state space models (MASS token mixer)."""

from . import Family, Variant

_WEIGHTS = 'https://huggingface.co/LMMM2025/A2Mamba/resolve/main/a2mamba_pretrained_weights/a2mamba_{}.pth'

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
        Variant('a2mamba_nano', 'A2Mamba-Nano', 4_195_052, gmacs=0.8, top1=78.7, weights=_WEIGHTS.format('nano')),
        Variant('a2mamba_tiny', 'A2Mamba-Tiny', 15_365_506, gmacs=2.7, top1=83.0, weights=_WEIGHTS.format('tiny')),
        Variant('a2mamba_small', 'A2Mamba-Small', 30_672_834, gmacs=5.4, top1=84.7, weights=_WEIGHTS.format('small')),
        Variant('a2mamba_base', 'A2Mamba-Base', 51_134_464, gmacs=10.7, top1=85.7, weights=_WEIGHTS.format('base')),
        Variant(
            'a2mamba_large',
            'A2Mamba-Large',
            93_737_376,
            gmacs=17.4,
            top1=86.1,
            weights=_WEIGHTS.format('large'),
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
    extra=dict(
        official_commit='LMMMEng/A2Mamba@a9ea14c6ab11d3cfd5cbc600651d710397a707ad',
        checkpoint_nesting=('state_dict', None),
        crop_pct={'nano': 0.9, 'tiny': 0.9, 'small': 0.9, 'base': 0.95, 'large': 0.975},
    ),
)
