# ImageNet-1K in the folder layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG). For a flat val folder with a label
# file: dataset=dict(data_prefix='val_flat', ann_file='meta/val.txt', classes='meta/classes.txt').
# Batch 128 per process; the schedules assume 1024 in total (8 processes), see auto_scale_lr.
data_root = 'data/imagenet'

train_pipeline = [
    dict(type='LoadImageRGB'),
    dict(type='AlbuClsTrain', img_size=224, scale=(0.08, 1.0), hflip=0.5, color_jitter=0.4, rand_ops=0.5),
]
# Resolution, crop_pct and interpolation of the paper's evaluation: family configs pass model_name=... instead
# to take them from the model's pretrained_cfg.
test_pipeline = [
    dict(type='LoadImageRGB'),
    dict(type='AlbuClsEval', img_size=224, crop_pct=0.875, interpolation='bicubic'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, data_prefix='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ImageFolderDataset', data_root=data_root, data_prefix='val', pipeline=test_pipeline, test_mode=True
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='ClsAccuracy', topk=(1, 5))
test_evaluator = val_evaluator
