# Mask R-CNN + PATNet (PartialNet-L detection backbone), COCO 1x: the official setup
# (haiduo/PartialNet detection/configs/partialnet/mask_rcnn_partialnet_l_fpn_1x_coco.py): AdamW lr 2e-4, weight
# decay 1e-4, no gradient clipping, 12 epochs (steps 8 and 11), batch 16, 1333x800. The official config names
# type='partialnet_l', which was never registered; this one works. Output norms as the official fork_feat wrapper.
_base_ = ['../../_base_/mask_rcnn_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='PATNet',
        arch='det_l',
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/partialnet_l.pth'),
    ),
    neck=dict(in_channels=[192, 384, 768, 1536]),
)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
