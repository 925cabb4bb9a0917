# Semantic FPN 80k schedule (PVT style): AdamW lr 1e-4, weight decay 1e-4, poly decay (power 0.9), batch 16.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The lr above is for 16 images per iteration (8 GPUs x 2): `tools/train.py --auto-scale-lr` rescales it.
auto_scale_lr = dict(enable=False, base_batch_size=16)
