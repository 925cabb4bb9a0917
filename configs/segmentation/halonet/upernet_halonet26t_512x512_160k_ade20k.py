# UPerNet + halonet26t, ADE20K 512x512, 160k iterations: the standard UPerNet 160k recipe (no official HaloNet
# segmentation setup exists). 512 is a multiple of 32 x block 8, so the halo attention runs unpadded in training.
_base_ = ['../../_base_/upernet_160k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HaloNet',
        arch='26t',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-attn-weights/halonet26t_a1h_256-3083328c.pth',
        ),
    ),
    decode_head=dict(in_channels=[256, 512, 1024, 2048], in_index=[0, 1, 2, 3], num_classes=150),
    auxiliary_head=dict(in_channels=1024, in_index=2, num_classes=150),
)
train_dataloader = dict(batch_size=2)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
