"""SReT: Sliced Recursive Transformer (ECCV 2022)."""

from . import Family, FamilyExtra, Variant, Weights
from .recipe import TIMM_COSINE, Recipe

_DRIVE = 'https://drive.google.com/file/d/{}/view'
_DRIVE_NOTE = 'Official Google Drive file (last-epoch weights, nested under "model").'


def _drive(in1k: str | None, in1k_dist: str | None = None) -> tuple[Weights, ...]:
    """The official Google Drive files by file id: ImageNet-1k training, and training with distillation (in1k_dist)."""
    ids = {'in1k': in1k, 'in1k_dist': in1k_dist}
    return tuple(
        Weights(tag, manual_download=_DRIVE.format(file_id), note=_DRIVE_NOTE)
        for tag, file_id in ids.items()
        if file_id
    )


_CODE = 'szq0214/SReT@af6db0a'
_DEIT = 'facebookresearch/deit main.py defaults'
# No training code was released (the per-run configurations are Google-Drive links); the paper trains with DeiT's
# recipe, so the values are DeiT's main.py defaults.
_SRET = Recipe(
    source=f'paper: the DeiT recipe ({_DEIT}); no official training code',
    epochs=300,
    batch_size=1024,
    batch_per_gpu=128,
    lr=1e-3,
    lr_rule='linear: 5e-4 x total batch / 512 (DeiT main.py); warmup_lr and min_lr are not scaled',
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
        'drop_path': f'SReT.py model default drop_path_rate 0.1 @ {_CODE}',
        'batch_size': "DeiT paper / README (8 GPUs x 128); SReT's own batch is not published (unverified)",
    },
    notes=(
        f'The README ({_CODE}) reports better results with lr 1e-3 x batch / 512 and 30 warm-up epochs; the released '
        'checkpoints do not say which they used, so the table keeps the DeiT values.',
        "DeiT-style EMA: DeiT keeps an EMA (0.99996) but evaluates and releases the raw weights; mmengine's EMAHook "
        'validates with the EMA weights.',
    ),
)

_RECIPES = {
    name: _SRET
    for name in (
        'sret_tiny',
        'sret_tiny_noslice',
        'sret_little_tiny',
        'sret_little_tiny_noslice',
        'sret_small',
        'sret_small_noslice',
    )
}
_RECIPES['sret_tiny_distill'] = _SRET.replace(
    distill={
        'teachers': ['senet154.gluon_in1k', 'resnet152s.gluon_in1k'],
        'pretrained': True,
        'checkpoints': None,
        'temperature': 1.0,
        'weight': 1.0,
    },
    sources={
        'distill': f'README: "soft label only for distillation procedure as MEAL V2" and kd_loss.py (cross-entropy '
        f"to the teacher softmax, no hard labels, T=1) @ {_CODE}; the teachers are not published: MEAL V2's "
        'published ensemble (SENet-154 + ResNet-152-v1s, gluon weights in timm) is our choice (unverified)',
    },
    notes=(
        'Distilled checkpoints (*_Distill, 77.6 % for SReT-T) come from soft-label-only distillation; the README '
        'recommends FKD (pre-computed region soft labels) instead, not reproduced.',
    ),
)

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
            pretrained=_drive('1FDTpva6y-I_bKmyVmLFDn_3BlDq3dwni', '1xzG4VQyQyxWJfQTcGCE-fuMuK3BwPCjK'),
            notes='Distilled weights (77.6) load into the same model (tag in1k_dist).',
        ),
        Variant(
            'sret_little_tiny',
            'SReT-LT',
            4_988_024,
            gmacs=1.2,
            top1=76.7,
            pretrained=_drive('1uSWvoVLHmOH6rNYiXSxD_rlN5dSBvEm3', '1l6u0q4kwli5czEyo4TeJANtqsulh-J5G'),
            notes='Distilled: 77.7.',
        ),
        Variant(
            'sret_little_tiny_g16',
            'SReT-LT [16-14-1, 1-1-1]',
            4_988_024,
            gmacs=1.2,
            top1=76.6,
            pretrained=_drive('1sKW9KJ5PLkDVXcW6m7dp8ieLwyCJNRqV'),
            notes="The README's alternative slicing: 16/14/1 groups, no recursive slicing.",
        ),
        Variant(
            'sret_small',
            'SReT-S',
            20_899_692,
            gmacs=4.2,
            top1=81.9,
            pretrained=_drive('1y6F_bCgS1sagm7pxjAtuSPUB5HoNb8Ed'),
        ),
        Variant(
            'sret_tiny_noslice',
            'SReT-⋇T',
            4_755_979,
            gmacs=1.4,
            top1=76.1,
            pretrained=_drive('1wHM7NRSkz-WykCSES17xFV56h_m5RMXj', '1P1qK-j1Cac5le8-DNUFBbjmIpRThuiVp'),
            notes='Distilled: 77.7.',
        ),
        Variant(
            'sret_little_tiny_noslice',
            'SReT-⋇LT',
            4_988_024,
            gmacs=1.4,
            top1=76.8,
            pretrained=_drive('1EXwfiMMa1UVQ_tmY6YQJ-Se0b3bW5NpC', '1FDqkfkw5nZEuTcBmiBKg3lvPJOPQWS6i'),
            notes='Distilled: 77.9.',
        ),
        Variant(
            'sret_small_noslice',
            'SReT-⋇S',
            20_899_692,
            gmacs=4.7,
            top1=82.0,
            pretrained=_drive('1vlsxJieKhfnw-F6xFiwczvXBuk7ugXxm'),
        ),
        Variant(
            'sret_tiny_noslice_384',
            'SReT-⋇T distill ft384',
            4_853_259,
            gmacs=6.4,
            top1=79.7,
            img_size=384,
            pretrained=_drive(None, '11mWAktu6LrNa0Qt61WJGA0eTWoKYD1Be'),
            notes='README: 4.9M params; count = SReT-⋇T with a 48x48 position embedding.',
        ),
        Variant(
            'sret_small_noslice_384',
            'SReT-⋇S distill ft384',
            21_091_212,
            gmacs=18.5,
            top1=83.8,
            img_size=384,
            pretrained=_drive(None, '1z5whJpXbbtFdjLpS1pCPvKcJhVnYCeo-'),
        ),
        Variant(
            'sret_small_noslice_512',
            'SReT-⋇S distill ft512',
            21_317_004,
            gmacs=42.8,
            top1=84.3,
            img_size=512,
            pretrained=_drive(None, '1AZXIGMiGboI-nkoKuPnHnhDlBwZumuiB'),
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
    extra=FamilyExtra(
        mm_type='SReT',
        random_eval=True,
        deterministic_env={'BACKBONEZOO_SRET_SHUFFLE_SEED': '0'},
        flops_counter='fvcore (one fused multiply-add = one flop)',
        notes=[
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
    ),
    recipes=_RECIPES,
)
