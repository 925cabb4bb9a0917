# Demo: RetinaNet with an EfficientViT-M0 backbone (ZooTimmBackbone, strides 16 / 32 / 64) on the generated
# 3-class COCO data; slim FPN / head, small images, a low score threshold so a short run still reports a metric.
_base_ = ['../_base_/retinanet_1x_coco.py']

data_root = '{{$BACKBONEZOO_DEMO_DATA:work_dirs/demo/data}}/coco/'
classes = ('circle', 'square', 'triangle')
metainfo = dict(classes=classes)
img_scale = (256, 160)

model = dict(
    backbone=dict(type='ZooTimmBackbone', model_name='efficientvit_m0', out_indices=(0, 1, 2), frozen_stages=0),
    neck=dict(in_channels=[64, 128, 192], out_channels=64, start_level=0, num_outs=5),
    bbox_head=dict(
        num_classes=len(classes),
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        anchor_generator=dict(octave_base_scale=2, strides=[16, 32, 64, 128, 256]),
    ),
    test_cfg=dict(score_thr=0.001),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10)]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=20, val_interval=20)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(by_epoch=False, interval=20, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
