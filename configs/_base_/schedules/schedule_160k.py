# UPerNet 160k schedule (Swin style): AdamW lr 6e-5, weight decay 0.01 (none on norms), 1500 linear warm-up
# iterations, poly decay (power 1), batch 16.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The lr above is for 16 images per iteration (8 GPUs x 2): `tools/train.py --auto-scale-lr` rescales it.
auto_scale_lr = dict(enable=False, base_batch_size=16)
