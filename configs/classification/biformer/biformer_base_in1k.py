# biformer_base on ImageNet-1K: official configs/train_args.yaml (DeiT main.py defaults) @ rayleizhu/BiFormer@1697bbb.
# Every value below is the recipe table's (backbonezoo/zoo/biformer.py, recipes['biformer_base']; sources per value in
# model_cards/biformer.md), checked by tests/test_recipes.py.
# Total batch 1024 = 8 GPUs x 128; lr 0.001 is the lr at that batch, official rule: linear: 5e-4 x total batch / 512
# (main.py); warmup_lr and min_lr are not scaled. On another total batch run tools/train.py --auto-scale-lr (linear
# rule from auto_scale_lr.base_batch_size). The official run used mixed precision: add --amp.
# The paper trains with the DeiT recipe; the values are the official code defaults (configs/train_args.yaml) with the
# per-model overrides of the README and scripts/train.sh.
# DeiT-style EMA: the official run keeps an EMA (0.99996) but evaluates and releases the raw weights ('model');
# mmengine's EMAHook validates with the EMA weights.
# BiFormer-B drop path 0.3 is inferred from the official Semantic FPN config (see its source); the training log
# that would confirm it is on OneDrive only. train_args.yaml's default would be 0.1.
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'biformer_base'
model = dict(
    model_name=model_name,
    model_kwargs=dict(drop_path_rate=0.3),
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
    batch_size=128,
    sampler=dict(_delete_=True, type='RepeatAugSampler', num_repeats=3, shuffle=True),
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
                interpolation='bicubic',
                re_prob=0.25,
                re_mode='pixel',
                re_count=1,
            ),
        ]
    ),
)
# evaluation: 224 px, crop_pct 0.875 (center), bicubic (the model's pretrained_cfg)
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImagePIL'), dict(type='TimmClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
# timm's rule: no decay on 1-D parameters (norms, biases) and on the model's no_weight_decay() names
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ZooOptimConstructor',
    optimizer=dict(type='AdamW', lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.05),
    clip_grad=None,
)
# linear warm-up from 1e-06, then cosine to 1e-05, the lr updated per epoch
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-06 / 0.001, by_epoch=True, begin=0, end=5, convert_to_iter_based=False),
    dict(type='CosineAnnealingLR', eta_min=1e-05, by_epoch=True, begin=5, end=300, convert_to_iter_based=False),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=1024)
# EMA of the weights, decay 0.99996 (mmengine momentum = 1 - decay)
custom_hooks = [dict(type='EMAHook', momentum=1 - 0.99996, update_buffers=True, priority='ABOVE_NORMAL')]
