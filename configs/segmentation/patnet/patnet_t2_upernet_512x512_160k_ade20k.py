# UPerNet + PATNet-T2, ADE20K 160k. PATNet ships no segmentation code: the standard Swin-style UPerNet recipe (AdamW
# lr 6e-5, weight decay 0.01, poly, 512x512), our design (see the PATNet model card).
_base_ = ['../../_base_/upernet_160k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='PATNet', arch='t2', drop_path_rate=0.05),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256),
)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
