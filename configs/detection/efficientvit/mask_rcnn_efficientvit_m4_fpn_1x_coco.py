# Mask R-CNN + EfficientViT-M4 + EfficientViTFPN, COCO 1x: the official setup (microsoft/Cream EfficientViT/downstream/configs/mask_rcnn_efficientvit_m4_fpn_1x_coco.py):
# AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 (none on attention_biases), 500 linear warm-up iterations,
# 12 epochs with steps at 8 and 11, 1333x800 keeping the aspect ratio, 2 images per GPU on 8 GPUs, backbone BN
# frozen (official wrapper; norm_eval=True). The neck adds 2 transposed-conv level(s) under stride 16. mask AP 31.0 (paper).
# The authors' checkpoint for this config: mask_rcnn_efficientvit_m4_fpn_1x_coco.pth (mask AP 31.0, mask AP50 51.2, mask AP75 32.2),
# https://github.com/xinyuliu-jeffrey/EfficientViT_Model_Zoo/releases/download/v1.0/mask_rcnn_efficientvit_m4_fpn_1x_coco.pth
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/mask_rcnn_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm', 'backbonezoo.necks.efficientvit_fpn'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='EfficientViT',
        arch='m4',
        frozen_stages=-1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/xinyuliu-jeffrey/EfficientViT_Model_Zoo/releases/download/v1.0/efficientvit_m4.pth',
        ),
    ),
    neck=dict(
        _delete_=True,
        type='EfficientViTFPN',
        in_channels=[128, 256, 384],
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
