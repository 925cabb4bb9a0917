# UPerNet + shvit_s4, ADE20K 512x512, 160k iterations. The authors released no segmentation setup: this is the
# standard UPerNet 160k recipe (AdamW lr 6e-5, weight decay 0.01, poly decay, 1500 warm-up iterations, 2 images per
# GPU on 8 GPUs) on the backbone's three outputs (strides 16 / 32 / 64), BN frozen as in the official detection
# wrapper.
_base_ = ['../../_base_/upernet_160k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='SHViT',
        arch='s4',
        init_cfg=dict(
            type='Pretrained', checkpoint='https://github.com/ysj9909/SHViT/releases/download/v1.0/shvit_s4.pth'
        ),
    ),
    decode_head=dict(in_channels=[224, 336, 448], in_index=[0, 1, 2], num_classes=150),
    auxiliary_head=dict(in_channels=336, in_index=1, num_classes=150),
)
train_dataloader = dict(batch_size=2)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
