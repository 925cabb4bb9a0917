# PATNet-T2 on ImageNet-1K, the official recipe (haiduo/PartialNet cfg/PartialNet_t2.yaml): 300 epochs, batch
# 4096 (256 x 16 processes), AdamW lr 0.004 at that batch, weight decay 0.02, 20 warm-up epochs from 1e-6, cosine to
# 1e-5, no gradient clipping, label smoothing 0.1, mixup 0.1 / cutmix 1.0, no colour jitter, no random erasing,
# RandAugment rand-m5-mstd0.5-inc1 (here: the zoo's albumentations ops, rand_ops=0.5), drop path 0.05, no EMA.
# Not reproduced: the official multi-scale schedule (192 px until epoch 280, then 224) and fp16 training.
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'patnet_t2'
model = dict(
    model_name=model_name,
    model_kwargs=dict(drop_path_rate=0.05),
    data_preprocessor=dict(mixup=dict(mixup_alpha=0.1, cutmix_alpha=1.0, label_smoothing=0.1)),
)
custom_hooks = []
optim_wrapper = dict(optimizer=dict(lr=0.004, weight_decay=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=2.5e-4, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=4096)
train_dataloader = dict(
    batch_size=256,
    dataset=dict(
        pipeline=[
            dict(type='LoadImageRGB'),
            dict(type='AlbuClsTrain', img_size=224, scale=(0.08, 1.0), hflip=0.5, color_jitter=0.0, rand_ops=0.5),
        ]
    ),
)
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
