"""PATNet: Partial Convolution Meets Visual Attention (2025)."""

from . import Family, Variant

_REPO_NOTE = 'Shapes from the official repository (cfg/PartialNet_*.yaml); the paper table was not retrieved.'
# The sheet gives the official builder's counts to 4 significant digits (e.g. 3.486 M): allow that rounding.
_RTOL = 2e-4

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
    extra={
        'flops_counter': 'fvcore (one fused multiply-add = one flop), measured from the official builder (the sheet)',
        'mm_type': 'PATNet',
        # PATNet's claim is speed over FasterNet: tools/benchmark.py measures each variant beside timm's FasterNet
        # of the same tier, in the same run
        'benchmark_peers': {
            **{f'patnet_{tier}': f'fasternet_{tier}' for tier in ('t0', 't1', 't2', 's', 'm', 'l')},
            **{f'patnet_det_{tier}': f'fasternet_{tier}' for tier in ('s', 'm', 'l')},
        },
        'notes': [
            'The official repository holds two shape sets: the classification configurations (patnet_t0 ... l, '
            'PAT_sp only in t1) and FasterNet-shaped detection backbones with PAT_sp (patnet_det_s / m / l). We '
            'follow the repository where it and the paper disagree.',
            'No official weights are public; `convert_checkpoint` accepts the official layout (bare or '
            "Lightning's `model.`-prefixed) for when they are.",
            'Inputs whose sides are not multiples of 32 are floored by the strided convolutions, as in the official '
            'model; the mm backbone pads to 32 instead.',
        ],
    },
)
