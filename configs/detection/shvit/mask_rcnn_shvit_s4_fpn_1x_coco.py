# Mask R-CNN + SHViT-S4 + EfficientViTFPN, COCO 1x: the official setup (ysj9909/SHViT/downstream/configs/mask_rcnn_shvit_s4_fpn_1x_coco.py):
# AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 (none on attention_biases), 500 linear warm-up iterations,
# 12 epochs with steps at 8 and 11, 1333x800 keeping the aspect ratio, 2 images per GPU on 8 GPUs, backbone BN
# frozen (official wrapper; norm_eval=True). The neck adds 2 transposed-conv level(s) under stride 16. box / mask AP 39.0 / 35.9 (paper).
_base_ = ['../../_base_/mask_rcnn_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm', 'backbonezoo.necks.efficientvit_fpn'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='SHViT',
        arch='s4',
        frozen_stages=-1,
        init_cfg=dict(
            type='Pretrained', checkpoint='https://github.com/ysj9909/SHViT/releases/download/v1.0/shvit_s4.pth'
        ),
    ),
    neck=dict(
        _delete_=True,
        type='EfficientViTFPN',
        in_channels=[224, 336, 448],
        out_channels=256,
        start_level=0,
        num_outs=5,
        num_extra_trans_convs=2,
    ),
)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'attention_biases': dict(decay_mult=0.0)}),
)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
