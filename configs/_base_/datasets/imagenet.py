# ImageNet-1K in the folder layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG). For a flat val folder with a label
# file: dataset=dict(data_prefix='val_flat', ann_file='meta/val.txt', classes='meta/classes.txt').
# Batch 128 per process; the schedules assume 1024 in total (8 processes), see auto_scale_lr.
#
# Training: timm's own transform (what the papers ran), DeiT's recipe: RandomResizedCrop 0.08-1, flip, colour
# jitter 0.4 (off while RandAugment is on, as in timm), RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25
# (pixel mode). Mixup / cutmix / label smoothing live on the model (configs/_base_/models/zoo_classifier.py).
# Extra albumentations augmentations are an opt-in stage before TimmClsTrain, e.g.
#   dict(type='AlbuAugment', transforms=[dict(type='GaussNoise', p=0.2), dict(type='CLAHE', p=0.1)]),
# Evaluation: TimmClsEval, the one protocol shared with tools/eval_imagenet.py and tools/test.py (timm's
# resolve_data_config + create_transform on the model's pretrained_cfg). Family configs pass model_name=... to take
# the paper's resolution, crop_pct and interpolation from the model.
# SeededSampler: mmengine's DefaultSampler order, each sample's augmentation drawn from (seed, epoch, position),
# so a resumed run replays exactly (RNGStateHook in default_runtime.py covers mixup / drop path).
data_root = 'data/imagenet'

train_pipeline = [
    dict(type='LoadImagePIL'),
    dict(
        type='TimmClsTrain',
        input_size=224,
        scale=(0.08, 1.0),
        ratio=(3 / 4, 4 / 3),
        hflip=0.5,
        color_jitter=0.4,
        auto_augment='rand-m9-mstd0.5-inc1',
        interpolation='bicubic',
        re_prob=0.25,
        re_mode='pixel',
        re_count=1,
    ),
]
test_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmClsEval', input_size=224, crop_pct=0.875, interpolation='bicubic'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='SeededSampler', shuffle=True),
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
