# UPerNet + SReT-T, ADE20K 160k (standard Swin-style recipe: AdamW lr 6e-5, weight decay 0.01, poly). SReT ships no
# dense setup: this is our design (see the SReT model card). Stride4Pyramid adds the stride-4 level UPerNet expects.
# Pretrained: the official SReT_T.pth (Google Drive, see the model card) saved locally.
_base_ = ['../../_base_/upernet_160k_ade20k.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='SReT',
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/SReT_T.pth'),
    ),
    neck=dict(type='Stride4Pyramid', in_channels=[64, 128, 256]),
    decode_head=dict(in_channels=[64, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128),
)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
