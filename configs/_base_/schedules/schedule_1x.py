# 1x detection schedule of the efficient-backbone papers (PVT / Swin style): AdamW lr 1e-4, weight decay 1e-4,
# 500 linear warm-up iterations, 12 epochs with steps at 8 and 11, batch 16.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The lr above is for 16 images per iteration (8 GPUs x 2): `tools/train.py --auto-scale-lr` rescales it.
auto_scale_lr = dict(enable=False, base_batch_size=16)
