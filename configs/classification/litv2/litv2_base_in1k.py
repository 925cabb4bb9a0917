# litv2_base on ImageNet-1K: official classification/config.py defaults + configs/litv2-*.yaml (Swin codebase) @
# ziplab/LITv2@7501c86. Every value below is the recipe table's (backbonezoo/zoo/litv2.py, recipes['litv2_base'];
# sources per value in model_cards/litv2.md), checked by tests/test_recipes.py.
# Total batch 1024 = 8 GPUs x 128; lr 0.001 is the lr at that batch, official rule: linear: BASE_LR 5e-4, WARMUP_LR
# 5e-7 and MIN_LR 5e-6, each x total batch / 512 (main.py). On another total batch run tools/train.py --auto-scale-lr
# (linear rule from auto_scale_lr.base_batch_size). The official run used mixed precision: add --amp.
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'litv2_base'
model = dict(
    model_name=model_name,
    model_kwargs=dict(drop_path_rate=0.5),
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
# timm's rule: no decay on 1-D parameters (norms, biases) and on the model's no_weight_decay() names; then the
# official exceptions as custom_keys (mmengine semantics: a match takes weight_decay x decay_mult, lr x lr_mult)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ZooOptimConstructor',
    optimizer=dict(type='AdamW', lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={'conv_offset.weight': dict(lr_mult=0.01)},
    ),
    clip_grad=dict(max_norm=5.0, norm_type=2),
)
# linear warm-up from 1e-06, then cosine to 1e-05, the lr updated per iter
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-06 / 0.001, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-05, by_epoch=True, begin=20, end=300, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=1024)
custom_hooks = []  # no EMA of the weights
