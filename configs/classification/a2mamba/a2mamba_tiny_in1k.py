# a2mamba_tiny on ImageNet-1K: official scripts/train_a2m_tiny.sh + train.py defaults (timm train.py) @
# LMMMEng/A2Mamba@a9ea14c. Every value below is the recipe table's (backbonezoo/zoo/a2mamba.py,
# recipes['a2mamba_tiny']; sources per value in model_cards/a2mamba.md), checked by tests/test_recipes.py.
# Total batch 2048 = 8 GPUs x 256; lr 0.002 is the lr at that batch, official rule: --auto-lr: 1e-3 x total batch /
# 1024 (train.py); warmup_lr and min_lr are not scaled. On another total batch run tools/train.py --auto-scale-lr
# (linear rule from auto_scale_lr.base_batch_size). The official run used mixed precision: add --amp.
# Not reproduced: MESA (--mesa 1 from epoch 75): train.py adds 1 x a distillation loss towards the EMA model's
# outputs; the zoo classifier has no MESA loss.
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'a2mamba_tiny'
model = dict(
    model_name=model_name,
    model_kwargs=dict(drop_path_rate=0.1),
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
# evaluation: 224 px, crop_pct 0.9 (center), bicubic (the model's pretrained_cfg)
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
        custom_keys={'A_logs': dict(decay_mult=1.0)},
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
# EMA of the weights, decay 0.99984 (mmengine momentum = 1 - decay)
custom_hooks = [dict(type='EMAHook', momentum=1 - 0.99984, update_buffers=True, priority='ABOVE_NORMAL')]
sync_bn = 'torch'  # SyncBatchNorm when distributed, as the official run
