# overlock_s on ImageNet-1K: official scripts/train_s_model.sh + train.py defaults @ LMMMEng/OverLoCK@2c8ab3b. Every
# value below is the recipe table's (backbonezoo/zoo/overlock.py, recipes['overlock_s']; sources per value in
# model_cards/overlock.md), checked by tests/test_recipes.py.
# Total batch 2048 = 8 GPUs x 256; lr 0.002 is the lr at that batch, official rule: --auto-lr: 1e-3 x total batch /
# 1024 (train.py); warmup_lr and min_lr are not scaled. On another total batch run tools/train.py --auto-scale-lr
# (linear rule from auto_scale_lr.base_batch_size). The official run used mixed precision: add --amp.
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'overlock_s'
model = dict(
    type='OverLoCKClassifier',
    aux_loss_ratio=0.4,
    model_name=model_name,
    model_kwargs=dict(drop_path_rate=0.4, deploy=False, use_ds=True),
    label_smoothing=0.1,
    mixup=dict(
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        cutmix_minmax=None,
        prob=1.0,
        switch_prob=0.5,
        mode='batch',
        label_smoothing=0.1,
    ),
)
train_dataloader = dict(
    batch_size=256,
    dataset=dict(
        pipeline=[
            dict(type='LoadImagePIL'),
            dict(
                type='TimmClsTrain',
                input_size=224,
                scale=(0.08, 1.0),
                ratio=(3 / 4, 4 / 3),
                hflip=0.5,
                vflip=0.0,
                color_jitter=0.4,
                auto_augment='rand-m9-mstd0.5-inc1',
                interpolation='random',
                re_prob=0.25,
                re_mode='pixel',
                re_count=1,
            ),
        ]
    ),
)
# evaluation: 224 px, crop_pct 0.95 (center), bicubic (the model's pretrained_cfg)
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImagePIL'), dict(type='TimmClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
# timm's rule: no decay on 1-D parameters (norms, biases) and on the model's no_weight_decay() names; then the
# official exceptions as custom_keys (mmengine semantics: a match takes weight_decay x decay_mult, lr x lr_mult)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ZooOptimConstructor',
    optimizer=dict(type='AdamW', lr=0.002, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'ls.weight': dict(decay_mult=1.0),
            'ls1.weight': dict(decay_mult=1.0),
            'ls2.weight': dict(decay_mult=1.0),
            'ctx_scale.weight': dict(decay_mult=1.0),
            'overview_scale.weight': dict(decay_mult=1.0),
            'grn.': dict(decay_mult=1.0),
        },
    ),
    clip_grad=dict(max_norm=5.0, norm_type=2),
)
# linear warm-up from 1e-06, then cosine to 1e-05, the lr updated per epoch; 10 more epochs at the min lr
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-06 / 0.002, by_epoch=True, begin=0, end=5, convert_to_iter_based=False),
    dict(type='CosineAnnealingLR', eta_min=1e-05, by_epoch=True, begin=5, end=300, convert_to_iter_based=False),
]
train_cfg = dict(by_epoch=True, max_epochs=310, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=2048)
# EMA of the weights, decay 0.9999 (mmengine momentum = 1 - decay)
custom_hooks = [dict(type='EMAHook', momentum=1 - 0.9999, update_buffers=True, priority='ABOVE_NORMAL')]
sync_bn = 'torch'  # SyncBatchNorm when distributed, as the official run
