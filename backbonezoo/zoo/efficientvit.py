"""EfficientViT-M (MSRA, cascaded group attention): timm's ``efficientvit_m0..m5``, extended by backbonezoo."""

from . import DenseCheckpoint, Family, FamilyExtra, Variant, Weights

_RELEASE = 'https://github.com/xinyuliu-jeffrey/EfficientViT_Model_Zoo/releases/download/v1.0'


def _weights(index: int) -> tuple[Weights, ...]:
    # timm's own tag (hub layout); the authors' release file (nested under "model") converts on load
    return (
        Weights(
            'r224_in1k',
            hf_hub_id=f'timm/efficientvit_m{index}.r224_in1k',
            official=f'{_RELEASE}/efficientvit_m{index}.pth',
            note='The official file nests the weights under "model".',
        ),
    )


# The authors' detection checkpoints (issue 23): each loads whole into the config named beside it
# (backbonezoo.convert_checkpoint(FILE, CONFIG); tools/test.py CONFIG FILE). Numbers: the official downstream README
# (its Mask R-CNN table gives mask AP only).
_RELEASE = 'https://github.com/xinyuliu-jeffrey/EfficientViT_Model_Zoo/releases/download/v1.0/'
_README = 'https://github.com/microsoft/Cream/blob/main/EfficientViT/downstream/README.md'
_DENSE = (
    DenseCheckpoint(
        'detection',
        'RetinaNet 1x',
        'configs/detection/efficientvit/retinanet_efficientvit_m4_fpn_1x_coco.py',
        'retinanet_efficientvit_m4_fpn_1x_coco.pth',
        f'{_RELEASE}retinanet_efficientvit_m4_fpn_1x_coco.pth',
        {'box AP': 32.7, 'box AP50': 52.2, 'box AP75': 34.1},
        _README,
    ),
    DenseCheckpoint(
        'detection',
        'Mask R-CNN 1x',
        'configs/detection/efficientvit/mask_rcnn_efficientvit_m4_fpn_1x_coco.py',
        'mask_rcnn_efficientvit_m4_fpn_1x_coco.pth',
        f'{_RELEASE}mask_rcnn_efficientvit_m4_fpn_1x_coco.pth',
        {'mask AP': 31.0, 'mask AP50': 51.2, 'mask AP75': 32.2},
        _README,
    ),
)

FAMILY = Family(
    name='efficientvit',
    title='EfficientViT-M',
    paper='EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention (CVPR 2023)',
    arxiv='2305.07027',
    code='https://github.com/microsoft/Cream/tree/4a13c4091e78f9abd2160e7e01c02e48c1cf8fb9/EfficientViT',
    code_license='MIT',
    weights_license='MIT',
    module='backbonezoo.backbones.efficientvit_ext',
    timm_owned=True,
    # timm's model runs at any size (windows are padded); the stem and two merges give stride 64
    size_divisor=64,
    min_size=64,
    fixed_size=False,
    variants=(
        Variant('efficientvit_m0', 'EfficientViT-M0', 2_349_436, 0.079, 63.2, 224, pretrained=_weights(0)),
        Variant('efficientvit_m1', 'EfficientViT-M1', 2_980_560, 0.167, 68.4, 224, pretrained=_weights(1)),
        Variant('efficientvit_m2', 'EfficientViT-M2', 4_187_554, 0.201, 70.8, 224, pretrained=_weights(2)),
        Variant('efficientvit_m3', 'EfficientViT-M3', 6_900_722, 0.263, 73.4, 224, pretrained=_weights(3)),
        Variant('efficientvit_m4', 'EfficientViT-M4', 8_804_228, 0.299, 74.3, 224, pretrained=_weights(4)),
        Variant('efficientvit_m5', 'EfficientViT-M5', 12_473_772, 0.522, 77.1, 224, pretrained=_weights(5)),
    ),
    citation="""@inproceedings{liu2023efficientvit,
  title     = {EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention},
  author    = {Liu, Xinyu and Peng, Houwen and Zheng, Ningxin and Yang, Yuqing and Hu, Han and Yuan, Yixuan},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {14420--14430},
  year      = {2023}
}""",
    summary=(
        'A three-stage BatchNorm/ReLU hybrid (strides 16/32/64) whose token mixer is cascaded group attention: '
        "each head attends inside 7x7 local windows over its own channel chunk plus the previous head's output, "
        'with a per-head relative-position bias and a depthwise conv on the queries. timm ships the models '
        '(identical math); backbonezoo adds official-checkpoint conversion, a kernel-backed attention that runs at '
        'any input size (to_kernel_backed), the mmdet/mmseg backbone and the official EfficientViTFPN neck.'
    ),
    extra=FamilyExtra(
        params_note='sum(p.numel()) of the unfused model, attention_biases included (equal to the official count)',
        gmacs_note='paper FLOPs = MACs of the BN-fused model at 224 (fvcore convention: softmax/elementwise skipped)',
        top1_note='ImageNet-1k top-1 reported in the official README (paper numbers)',
        timm_module='timm.models.efficientvit_msra',
    ),
    dense=_DENSE,
)
