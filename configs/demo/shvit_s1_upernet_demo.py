# Demo: UPerNet with a SHViT-S1 backbone (ZooTimmBackbone, strides 16 / 32 / 64) on the generated ADE-style
# data (4 classes after reduce_zero_label); slim heads and 128 px crops.
_base_ = ['../_base_/upernet_160k_ade20k.py']

data_root = '{{$BACKBONEZOO_DEMO_DATA:work_dirs/demo/data}}/ade'
classes = ('background', 'circle', 'square', 'triangle')
metainfo = dict(classes=classes, palette=[[120, 120, 120], [230, 25, 75], [60, 180, 75], [0, 130, 200]])
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(type='ZooTimmBackbone', model_name='shvit_s1', out_indices=(0, 1, 2)),
    decode_head=dict(in_channels=[128, 224, 320], in_index=[0, 1, 2], channels=64, num_classes=len(classes)),
    auxiliary_head=dict(in_channels=224, in_index=1, channels=32, num_classes=len(classes)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True,
)
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        dataset,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        dataset,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10)]
train_cfg = dict(max_iters=20, val_interval=20)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=20, max_keep_ckpts=1))
