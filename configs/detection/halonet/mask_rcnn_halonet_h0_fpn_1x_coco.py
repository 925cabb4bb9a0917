# Mask R-CNN + halonet_h0 + FPN, COCO 1x. No official HaloNet detection code or configs exist: the standard 1x setup
# (AdamW lr 1e-4, weight decay 0.05, 500 linear warm-up iterations, steps at 8 and 11, batch 16, 1333x800),
# BN frozen (norm_eval). The halo attention pads its inputs to block multiples. no weights exist (paper variant): set init_cfg to your checkpoint.
_base_ = ['../../_base_/mask_rcnn_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='HaloNet', arch='h0', norm_eval=True),
    neck=dict(in_channels=[32, 64, 128, 256]),
)
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
