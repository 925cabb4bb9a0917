# DeiT-style ImageNet-1K schedule most efficient-backbone papers follow: AdamW, lr 1e-3 at batch 1024
# (5e-4 x batch / 512), weight decay 0.05 (none on norms and biases), 5 linear warm-up epochs, cosine to 1e-5,
# 300 epochs. Family configs override lr / warm-up / epochs where their paper differs.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
