# Semantic FPN + PATNet-T2, ADE20K 80k (the PVT / PoolFormer recipe: AdamW lr 2e-4, weight decay 1e-4, poly).
# PATNet ships no segmentation code: our design (see the PATNet model card).
_base_ = ['../../_base_/fpn_80k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='PATNet', arch='t2', drop_path_rate=0.05),
    neck=dict(in_channels=[64, 128, 256, 512]),
)
