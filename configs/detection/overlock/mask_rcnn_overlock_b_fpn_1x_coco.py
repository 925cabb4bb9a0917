# Mask R-CNN + OverLoCK-B FPN, COCO 1x (official detection/configs/maskrcnn_overlock/
# mask_rcnn_overlock_b_in1k_fpn_1x_coco.py): AdamW lr 2e-4, betas (0.9, 0.999), weight decay 0.05 (none on the ContMix
# and output norms, as the official 'norm' key), 12 epochs with steps at 8 and 11, 500 linear warm-up iterations, batch 16 (8 GPUs x 2), drop path 0.6,
# single-scale 1333x800 training. The official detection wrapper adds the Overview-Net projection to the last map
# (overview_proj=True) and fine-tunes the training form (deploy=False). Box / mask AP 49.9 / 44.4 (paper).
# The authors' checkpoint for this config: maskrcnn1x_overlock_base_coco.pth (box AP 49.9, mask AP 44.4),
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/maskrcnn1x_overlock_base_coco.pth
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/mask_rcnn_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='OverLoCK',
        arch='b',
        overview_proj=True,
        deploy=False,
        drop_path_rate=0.6,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/LMMMEng/OverLoCK/releases/download/v1/overlock_b_in1k_224.pth',
        ),
    ),
    neck=dict(in_channels=[80, 160, 528, 720]),
)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # the official custom key 'norm' matched only the ContMix norms and the dense output norms (its other norms are
    # unnamed Sequential entries, decayed): the same parameters under our names
    paramwise_cfg=dict(
        custom_keys={k: dict(decay_mult=0.0) for k in ('norm1', 'norm2', 'out_norms', 'overview_proj.norm')}
    ),
)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
