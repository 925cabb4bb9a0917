"""SHViT (single-head vision transformer): timm's ``shvit_s1..s4``, extended by backbonezoo."""

from . import Family, FamilyExtra, Variant, Weights

_RELEASE = 'https://github.com/ysj9909/SHViT/releases/download/v1.0'


def _weights(index: int) -> tuple[Weights, ...]:
    # timm's own tag (hub layout); the authors' release file (nested under "model") converts on load
    return (
        Weights(
            'in1k',
            hf_hub_id=f'timm/shvit_s{index}.in1k',
            official=f'{_RELEASE}/shvit_s{index}.pth',
            note='The official file nests the weights under "model".',
        ),
    )


FAMILY = Family(
    name='shvit',
    title='SHViT',
    paper='SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design (CVPR 2024)',
    arxiv='2401.16456',
    code='https://github.com/ysj9909/SHViT/tree/6a729ccf18e0b941714b529638bd3d9bacebcef0',
    code_license='MIT',
    weights_license='MIT',
    module='backbonezoo.backbones.shvit_ext',
    timm_owned=True,
    # global attention and stride-2 convs that round up: any size works, stride 64 overall
    size_divisor=64,
    min_size=64,
    fixed_size=False,
    variants=(
        Variant('shvit_s1', 'SHViT-S1', 6_330_808, 0.241, 72.8, 224, pretrained=_weights(1)),
        Variant('shvit_s2', 'SHViT-S2', 11_483_072, 0.366, 75.2, 224, pretrained=_weights(2)),
        Variant('shvit_s3', 'SHViT-S3', 14_245_273, 0.601, 77.4, 224, pretrained=_weights(3)),
        Variant('shvit_s4', 'SHViT-S4', 16_588_484, 0.986, 79.4, 256, pretrained=_weights(4)),
    ),
    citation="""@inproceedings{yun2024shvit,
  title     = {SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design},
  author    = {Yun, Seokju and Ro, Youngmin},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {5756--5767},
  year      = {2024}
}""",
    summary=(
        'A three-stage BatchNorm/ReLU hybrid (strides 16/32/64, 16x16 patchify stem) whose token mixer is '
        'single-head global attention over only the first partial_dim channels (GroupNorm(1) pre-norm, qk dim 16, '
        'value dim = partial_dim). timm ships the models (identical math); backbonezoo adds official-checkpoint '
        'conversion, a fast single-head attention path (qk dim != v dim), and the mmdet/mmseg backbone.'
    ),
    extra=FamilyExtra(
        params_note='sum(p.numel()) of the unfused model (equal to the official count)',
        gmacs_note='paper FLOPs = MACs of the BN-fused model (fvcore convention)',
        top1_note='ImageNet-1k top-1 from the paper / official README',
        timm_module='timm.models.shvit',
    ),
)
