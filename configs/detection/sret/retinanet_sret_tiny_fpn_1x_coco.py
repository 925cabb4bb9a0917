# RetinaNet + SReT-T, COCO 1x. SReT ships no dense setup: this is our design (see the SReT model card). The three
# stage maps (strides 8 / 16 / 32) get a stride-4 level from Stride4Pyramid (a ViTDet-style transposed conv), then the
# standard RetinaNet FPN from stride 8 with extra convs on the input; AdamW lr 1e-4, weight decay 0.05, 12 epochs,
# drop path 0.1. Pretrained: the official SReT_T.pth (Google Drive, see the model card) saved locally.
_base_ = ['../../_base_/retinanet_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='SReT',
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/SReT_T.pth'),
    ),
    neck=[
        dict(type='Stride4Pyramid', in_channels=[64, 128, 256]),
        dict(
            type='FPN',
            in_channels=[64, 64, 128, 256],
            out_channels=256,
            start_level=1,
            add_extra_convs='on_input',
            num_outs=5,
        ),
    ],
)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
