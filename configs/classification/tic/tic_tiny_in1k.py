# tic_tiny on ImageNet-1K. TiC's authors released no training code or recipe: this is the DeiT / Swin recipe the paper's
# comparisons use (our choice): 300 epochs, batch 1024, AdamW lr 5e-4 x batch / 512 = 1e-3, weight decay 0.05 (none on
# norms and biases), 20 warm-up epochs from 1e-6, cosine to 1e-5, gradient clipping 5.0, mixup 0.8 / cutmix 1.0,
# label smoothing 0.1, RandAugment + random erasing (here: the zoo's albumentations pipeline), no EMA (Swin), drop
# path 0.2 / 0.3 / 0.5 for T / S / B.
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'tic_tiny'
model = dict(model_name=model_name, model_kwargs=dict(drop_path_rate=0.2))
custom_hooks = []  # Swin-style training keeps no EMA of the weights

optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300, convert_to_iter_based=True),
]
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
