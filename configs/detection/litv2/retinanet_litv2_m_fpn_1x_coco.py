# RetinaNet + LITv2-M FPN, COCO 1x (official detection/configs/litv2/retinanet_litv2_m_fpn_1x_coco.py):
# AdamW lr 1e-4, weight decay 1e-4 (none on norms), 12 epochs, steps at 8 and 11, batch 16, drop path 0.2, HiLo
# window 2. The official run used fp16 mixed precision on 8 V100 (here: OptimWrapper; on GPUs set
# optim_wrapper.type='AmpOptimWrapper'). Box AP 44.0 / 46.0 / 46.7 for S / M / B (paper).
# The authors' checkpoint for this config: retinanet_litv2_m_fpn_1x_coco.pth (box AP 46.0),
# https://github.com/ziplab/LITv2/releases/download/v1.0/retinanet_litv2_m_fpn_1x_coco.pth
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/retinanet_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='LITv2',
        arch='medium',
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained', checkpoint='https://github.com/ziplab/LITv2/releases/download/v1.0/litv2_m.pth'
        ),
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=1e-4), paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)})
)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
