# a2mamba_nano on ImageNet-1K, the official recipe (LMMMEng/A2Mamba scripts/train_a2m_nano.sh + train.py defaults):
# 300 epochs, 8 GPUs x batch 256 = 2048, AdamW weight decay 0.05, lr 4e-3 given directly (no --auto-lr), no EMA, no MESA,
# 5 warm-up epochs from 1e-6, cosine to 1e-5, gradient clipping 5 (norm), drop path 0.0, mixup 0.8 / cutmix 1.0,
# label smoothing 0.1, RandAugment rand-m9-mstd0.5-inc1 + random erasing 0.25 (here: the zoo's albumentations
# pipeline), native AMP (on GPUs set optim_wrapper.type='AmpOptimWrapper'; the README advises turning it off on NaN loss).
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'a2mamba_nano'
model = dict(model_name=model_name, model_kwargs=dict(drop_path_rate=0.0))
custom_hooks = []  # the official Nano run keeps no EMA

train_dataloader = dict(batch_size=256)
auto_scale_lr = dict(base_batch_size=2048)
optim_wrapper = dict(optimizer=dict(lr=4e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 4e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300, convert_to_iter_based=True),
]
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
