# UPerNet + halonet_h0, ADE20K 512x512, 160k iterations: the standard UPerNet 160k recipe (no official HaloNet
# segmentation setup exists). 512 is a multiple of 32 x block 8, so the halo attention runs unpadded in training.
# No weights exist for this paper variant: set init_cfg to your checkpoint.
_base_ = ['../../_base_/upernet_160k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='HaloNet', arch='h0'),
    decode_head=dict(in_channels=[32, 64, 128, 256], in_index=[0, 1, 2, 3], num_classes=150),
    auxiliary_head=dict(in_channels=128, in_index=2, num_classes=150),
)
train_dataloader = dict(batch_size=2)
