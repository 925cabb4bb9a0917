# biformer_small on ImageNet-1K, the official recipe (rayleizhu/BiFormer configs/train_args.yaml, DeiT-style main.py):
# 300 epochs, batch 1024 in all, AdamW lr 5e-4 x batch / 512 = 1e-3, weight decay 0.05, 5 warm-up epochs from 1e-6,
# cosine to 1e-5, no gradient clipping, mixup 0.8 / cutmix 1.0, label smoothing 0.1, RandAugment rand-m9-mstd0.5-inc1
# + random erasing 0.25 (here: the zoo's albumentations pipeline), model EMA 0.99996, drop path 0.15 (README / scripts/train.sh).
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'biformer_small'
model = dict(model_name=model_name, model_kwargs=dict(drop_path_rate=0.15))
custom_hooks = [dict(type='EMAHook', momentum=4e-5, update_buffers=True, priority='ABOVE_NORMAL')]

optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300, convert_to_iter_based=True),
]
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
