# RetinaNet + TiC-Tiny FPN, COCO 1x. TiC ships no dense setup: this is our design (see the TiC model card), the
# standard Swin-style RetinaNet 1x: FPN from stride 8 with extra convs on the input, AdamW lr 1e-4, weight decay 0.05
# (none on norms), 12 epochs, steps at 8 and 11, batch 16, drop path 0.2. No ImageNet weights exist: set
# init_cfg=dict(type='Pretrained', checkpoint=...) to a tic_tiny classification checkpoint you trained
# (configs/classification/tic/), or train from scratch.
_base_ = ['../../_base_/retinanet_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='TiC', arch='tiny', drop_path_rate=0.2),
    neck=dict(in_channels=[96, 192, 384, 768], start_level=1, add_extra_convs='on_input'),
)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
