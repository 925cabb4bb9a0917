"""SReT: Sliced Recursive Transformer (ECCV 2022)."""

from . import Family, Variant

_DRIVE = 'https://drive.google.com/file/d/{}/view'

FAMILY = Family(
    name='sret',
    title='SReT',
    paper='Sliced Recursive Transformer',
    arxiv='2111.05297',
    code='https://github.com/szq0214/SReT',
    code_license='MIT',
    weights_license='MIT',
    module='backbonezoo.backbones.sret',
    variants=(
        Variant(
            'sret_tiny',
            'SReT-T',
            4_755_979,
            gmacs=1.1,
            top1=76.0,
            weights=_DRIVE.format('1FDTpva6y-I_bKmyVmLFDn_3BlDq3dwni'),
            notes='Distilled weights (77.6) load into the same model (tag in1k_dist).',
        ),
        Variant(
            'sret_little_tiny',
            'SReT-LT',
            4_988_024,
            gmacs=1.2,
            top1=76.7,
            weights=_DRIVE.format('1uSWvoVLHmOH6rNYiXSxD_rlN5dSBvEm3'),
            notes='Distilled: 77.7.',
        ),
        Variant(
            'sret_little_tiny_g16',
            'SReT-LT [16-14-1, 1-1-1]',
            4_988_024,
            gmacs=1.2,
            top1=76.6,
            weights=_DRIVE.format('1sKW9KJ5PLkDVXcW6m7dp8ieLwyCJNRqV'),
            notes="The README's alternative slicing: 16/14/1 groups, no recursive slicing.",
        ),
        Variant(
            'sret_small',
            'SReT-S',
            20_899_692,
            gmacs=4.2,
            top1=81.9,
            weights=_DRIVE.format('1y6F_bCgS1sagm7pxjAtuSPUB5HoNb8Ed'),
        ),
        Variant(
            'sret_tiny_noslice',
            'SReT-⋇T',
            4_755_979,
            gmacs=1.4,
            top1=76.1,
            weights=_DRIVE.format('1wHM7NRSkz-WykCSES17xFV56h_m5RMXj'),
            notes='Distilled: 77.7.',
        ),
        Variant(
            'sret_little_tiny_noslice',
            'SReT-⋇LT',
            4_988_024,
            gmacs=1.4,
            top1=76.8,
            weights=_DRIVE.format('1EXwfiMMa1UVQ_tmY6YQJ-Se0b3bW5NpC'),
            notes='Distilled: 77.9.',
        ),
        Variant(
            'sret_small_noslice',
            'SReT-⋇S',
            20_899_692,
            gmacs=4.7,
            top1=82.0,
            weights=_DRIVE.format('1vlsxJieKhfnw-F6xFiwczvXBuk7ugXxm'),
        ),
        Variant(
            'sret_tiny_noslice_384',
            'SReT-⋇T distill ft384',
            4_853_259,
            gmacs=6.4,
            top1=79.7,
            img_size=384,
            weights=_DRIVE.format('11mWAktu6LrNa0Qt61WJGA0eTWoKYD1Be'),
            notes='README: 4.9M params; count = SReT-⋇T with a 48x48 position embedding.',
        ),
        Variant(
            'sret_small_noslice_384',
            'SReT-⋇S distill ft384',
            21_091_212,
            gmacs=18.5,
            top1=83.8,
            img_size=384,
            weights=_DRIVE.format('1z5whJpXbbtFdjLpS1pCPvKcJhVnYCeo-'),
        ),
        Variant(
            'sret_small_noslice_512',
            'SReT-⋇S distill ft512',
            21_317_004,
            gmacs=42.8,
            top1=84.3,
            img_size=512,
            weights=_DRIVE.format('1AZXIGMiGboI-nkoKuPnHnhDlBwZumuiB'),
            notes='README: 21.3M params; count = SReT-⋇S with a 64x64 position embedding.',
        ),
    ),
    citation="""@inproceedings{shen2022sliced,
  title={Sliced Recursive Transformer},
  author={Shen, Zhiqiang and Liu, Zechun and Xing, Eric},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2022}
}""",
    size_divisor=32,
    min_size=32,
    summary=(
        'Three-stage ViT (strides 8/16/32) with a convolutional stem. Every attention block is applied twice '
        '(recursion, shared weights) with a small MLP projection layer after each application; attention is sliced '
        'into contiguous token groups, and the recursive pass shuffles the tokens by a random permutation first '
        '(also at inference, as in the official code; `model.set_shuffle_seed(seed)` makes inference deterministic).'
    ),
    extra={
        'mm_type': 'SReT',
        'random_eval': True,
        'deterministic_env': {'BACKBONEZOO_SRET_SHUFFLE_SEED': '0'},
        'flops_counter': 'fvcore (one fused multiply-add = one flop)',
        'notes': [
            'The official forward draws torch.randperm from the global CPU generator on every recursive pass, in eval '
            'mode too: outputs vary run to run by ~1e-3 unless the generator is seeded. backbonezoo reproduces the '
            'same draws in the same order; `model.set_shuffle_seed(seed)` draws from a private generator instead.',
            'Official checkpoints store each shared block twice; conversion keeps the later copy (what the official '
            'loader ends with) and warns when the copies differ.',
            'Other input sizes: the position embedding is resized bicubically (timm ViT style); sides must be '
            'multiples of 32 so that token counts split into the attention groups.',
            'Dense prediction is our design (SReT ships none): mm type `SReT` returns the stride 8 / 16 / 32 maps '
            'through new LayerNorms, pads inputs to multiples of 32, and uses the deterministic shuffle mode; the '
            '`Stride4Pyramid` neck adds a stride-4 level (ViTDet-style transposed conv) for FPN / UPerNet.',
        ],
    },
)
