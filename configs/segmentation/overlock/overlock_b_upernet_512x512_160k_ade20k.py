# UperNet + OverLoCK-B, ADE20K 512x512, 160k iterations (official segmentation/configs/overlock/
# upernet_overlock_base_ade20k_8xb2.py): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 (none on the ContMix and
# output norms, the official 'norm' key), poly decay with 1500 linear warm-up iterations, 2 images per GPU on 8 GPUs,
# drop path 0.5, auxiliary head on output 2. The official segmentation wrapper has no Overview-Net projection
# (overview_proj=False) and fine-tunes the training form (deploy=False). mIoU 51.7 (paper).
# The authors' checkpoint for this config: upernet_overlock_base_ade20k.pth (mIoU 51.7),
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/upernet_overlock_base_ade20k.pth
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/upernet_160k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='OverLoCK',
        arch='b',
        overview_proj=False,
        deploy=False,
        drop_path_rate=0.5,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/LMMMEng/OverLoCK/releases/download/v1/overlock_b_in1k_224.pth',
        ),
    ),
    decode_head=dict(in_channels=[80, 160, 528, 720], num_classes=150),
    auxiliary_head=dict(in_channels=528, num_classes=150),
)
optim_wrapper = dict(
    optimizer=dict(lr=6e-5, weight_decay=0.01),
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={k: dict(decay_mult=0.0) for k in ('norm1', 'norm2', 'out_norms')},
    ),
)
train_dataloader = dict(batch_size=2)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
