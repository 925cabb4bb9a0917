# overlock_xt on ImageNet-1K, the official recipe (LMMMEng/OverLoCK scripts/train_xt_model.sh + train.py defaults):
# 300 epochs, batch 2048 (8 GPUs x 256), AdamW lr 1e-3 x batch / 1024 = 2e-3 (--auto-lr), weight decay 0.05 (none on
# 1-D parameters: biases, norms), 5 warm-up epochs from 1e-6, cosine to 1e-5, gradient clipping 5 (norm), mixup 0.8 /
# cutmix 1.0, label smoothing 0.1, RandAugment rand-m9-mstd0.5-inc1 + random erasing 0.25 (here: the zoo's
# albumentations pipeline), model EMA 0.9999, drop path 0.1, training form (deploy=False) with the Overview-Net
# auxiliary head and its loss weighted 0.4 (--aux-loss-ratio). The official run used native AMP (on GPUs set
# optim_wrapper.type='AmpOptimWrapper'; the README advises dropping it on NaN loss). Top-1 82.7 (paper).
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'overlock_xt'
model = dict(
    type='OverLoCKClassifier',
    model_name=model_name,
    aux_loss_ratio=0.4,
    model_kwargs=dict(drop_path_rate=0.1, deploy=False, use_ds=True),
)
custom_hooks = [dict(type='EMAHook', momentum=1e-4, update_buffers=True, priority='ABOVE_NORMAL')]

train_dataloader = dict(batch_size=256)
optim_wrapper = dict(
    optimizer=dict(lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0, norm_type=2),
    # timm's filter decays every parameter with ndim > 1: the official layer scales and GRN parameters are 4-D
    # tensors (decayed), ours are 1-D, so name them
    paramwise_cfg=dict(
        custom_keys={
            k: dict(decay_mult=1.0)
            for k in ('ls.weight', 'ls1.weight', 'ls2.weight', 'ctx_scale.weight', 'overview_scale.weight', 'grn.')
        }
    ),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=5e-4, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=2048)
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
