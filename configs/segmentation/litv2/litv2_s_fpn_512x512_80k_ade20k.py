# Semantic FPN + LITv2-S, ADE20K 512x512, 80k iterations, batch 16, AdamW lr 1e-4, weight decay 1e-4, drop path
# 0.2 (official segmentation/configs/litv2/litv2_s_fpn_r50_512x512_80k_ade20k.py). The official mmseg wrapper
# LayerNorms all four outputs (norm_first_output=True). mIoU 44.3 / 45.7 / 47.2 for S / M / B (paper).
# The authors' checkpoint for this config: litv2_s_fpn_r50_512x512_80k_ade20k.pth (mIoU 44.3),
# https://github.com/ziplab/LITv2/releases/download/v1.0/litv2_s_fpn_r50_512x512_80k_ade20k.pth
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/fpn_80k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='LITv2',
        arch='small',
        norm_first_output=True,
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained', checkpoint='https://github.com/ziplab/LITv2/releases/download/v1.0/litv2_s.pth'
        ),
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=1e-4))

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
