# Semantic FPN + PATNet-T2, ADE20K 80k (the PVT / PoolFormer recipe: AdamW lr 2e-4, weight decay 1e-4, poly).
# PATNet ships no segmentation code: our design (see the PATNet model card).
_base_ = ['../../_base_/fpn_80k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='PATNet', arch='t2', drop_path_rate=0.05),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

# Batch: 32 in total = 8 GPUs x 4 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 32; `--amp` trains in mixed precision.
train_dataloader = dict(batch_size=4)  # the PoolFormer recipe of lr 2e-4
auto_scale_lr = dict(enable=False, base_batch_size=32)
