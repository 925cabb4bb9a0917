# Mask R-CNN + OverLoCK-S FPN, COCO 3x with multi-scale training (official detection/configs/
# maskrcnn_overlock/mask_rcnn_overlock_s_in1k_fpn_3x_coco.py): DETR-style augmentation (shorter side 480-800 step 32,
# or 400-600 then an absolute-range crop of 384-600 then 480-800), AdamW lr 1e-4, weight decay 0.05 (none on norms),
# 36 epochs with steps at 27 and 33, 500 linear warm-up iterations, batch 16, drop path 0.4, Overview-Net projection
# on the last map. Box / mask AP 51.0 / 45.0 (paper).
# The authors' checkpoint for this config: maskrcnn3x_overlock_small_coco.pth (box AP 51.0, mask AP 45.0),
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/maskrcnn3x_overlock_small_coco.pth
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['./mask_rcnn_overlock_s_fpn_1x_coco.py']

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
optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
train_cfg = dict(max_epochs=36)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
