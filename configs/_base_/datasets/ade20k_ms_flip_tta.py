# Multi-scale + flip test-time augmentation for ADE20K (``tools/test.py --tta``): the official MultiScaleFlipAug of
# BiFormer's UperNet results (semantic_segmentation/configs/_base_/datasets/ade20k_upernet.py), ratios 0.5-1.75 of
# (2048, 512) with flip. Add this file to a config's _base_ list.
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True) for r in img_ratios],
            [
                dict(type='RandomFlip', prob=0.0, direction='horizontal'),
                dict(type='RandomFlip', prob=1.0, direction='horizontal'),
            ],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ],
    ),
]
