# UperNet + A2Mamba-Small, ADE20K 512x512, 160k iterations. The official repository ships no segmentation code: this
# is the standard UperNet 160k setup (AdamW lr 6e-5, weight decay 0.01, none on norms; poly decay with 1500 linear
# warm-up iterations, 2 images per GPU on 8 GPUs), drop path 0.3. At 512x512 the second head half uses dilations
# 11 / 7 / 4 / 2 (min(map // window, window)) and the stage-4 bias is resized from 7x7 to 16x16.
_base_ = ['../../_base_/upernet_160k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='A2Mamba',
        arch='small',
        drop_path_rate=0.3,
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/LMMM2025/A2Mamba/resolve/main/a2mamba_pretrained_weights/a2mamba_small.pth',
        ),
    ),
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150),
)
train_dataloader = dict(batch_size=2)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
