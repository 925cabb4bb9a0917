# Mask R-CNN + A2Mamba-Small FPN, COCO 1x. The official repository ships no dense code: this is the standard
# Mask R-CNN 1x setup (AdamW lr 1e-4, weight decay 0.05, none on norms; 12 epochs, steps at 8 and 11, batch 16),
# drop path 0.3, BN frozen (norm_eval). The paper's COCO numbers use Cascade Mask R-CNN (not read; unverified).
_base_ = ['../../_base_/mask_rcnn_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='A2Mamba',
        arch='small',
        drop_path_rate=0.3,
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/LMMM2025/A2Mamba/resolve/main/a2mamba_pretrained_weights/a2mamba_small.pth',
        ),
    ),
    neck=dict(in_channels=[64, 128, 320, 512]),
)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0), 'rpb': dict(decay_mult=0.0)}),
)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
