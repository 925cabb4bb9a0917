# Semantic FPN + BiFormer-S, ADE20K 512x512 (official semantic_segmentation/configs/ade20k/sfpn.biformer_small.py,
# UniFormer recipe): n_win 8 with auto_pad, AdamW lr 2e-4 (8 GPUs x 4 images), weight decay 1e-4, 80k iterations,
# cosine annealing with 1000 linear warm-up iterations from 0.1, drop path 0.15. The official
# wrapper turned BN into SyncBN; here BN (use SyncBN on multi-GPU runs). fp16 in the official run. mIoU 48.9.
# The authors' checkpoint for this config: sfpn.biformer_small (run folder) (mIoU 48.9), https://matix.li/b5be1f63c18d
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/fpn_80k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm', 'backbonezoo.mm.dense_convert'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='BiFormer',
        arch='small',
        n_win=8,
        auto_pad=True,
        drop_path_rate=0.15,
        norm_eval=False,
        # the ImageNet checkpoint sits behind a OneDrive share page (model_cards/biformer.md): save it here
        init_cfg=dict(
            type='Pretrained',
            checkpoint='pretrained/biformer_small.pth',
        ),
    ),
    neck=dict(in_channels=[64, 128, 256, 512]),
)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', T_max=79000, eta_min=2e-12, by_epoch=False, begin=1000, end=80000),
]

# Batch: 32 in total = 8 GPUs x 4 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 32; `--amp` trains in mixed precision.
train_dataloader = dict(batch_size=4)  # the UniFormer recipe BiFormer follows
auto_scale_lr = dict(enable=False, base_batch_size=32)

# Test time as the official results (semantic_segmentation/configs/_base_/datasets/ade20k_sfpn.py, the UniFormer
# setting): rescale to (2048, 512) keeping the ratio, then AlignResize to multiples of 32 (a resize, not a pad;
# backbonezoo.mm.dense_convert.AlignResize), single scale, no flip, whole-image inference (test_cfg mode 'whole').
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='AlignResize', scale=(2048, 512), keep_ratio=True, size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
