# Cascade Mask R-CNN 3x on COCO with multi-scale training (the Swin / ConvNeXt setup most recent backbones report):
# DETR-style augmentation (shorter side 480-800 step 32, or 400-600 then an absolute-range crop of 384-600 then
# 480-800), AdamW lr 1e-4 and weight decay 0.05, 36 epochs with steps at 27 and 33, 500 linear warm-up iterations,
# batch 16 (2 per process x 8). Fill model.backbone and model.neck.in_channels.
_base_ = [
    './models/cascade_mask_rcnn_fpn.py',
    './datasets/coco_instance.py',
    './schedules/schedule_1x.py',
    './det_runtime.py',
]

_short_sides = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=[(1333, s) for s in _short_sides], keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=[(1333, s) for s in _short_sides], keep_ratio=True),
            ],
        ],
    ),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
train_cfg = dict(max_epochs=36)
