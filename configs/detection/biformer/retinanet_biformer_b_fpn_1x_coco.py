# RetinaNet + BiFormer-B FPN, COCO 1x (official object_detection/configs/coco/retinanet.1x.biformer_base.py):
# n_win 16 with auto_pad, AdamW lr 1e-4, weight decay 1e-4, 12 epochs, steps at 8 and 11, batch 16, drop path
# 0.3, BN frozen (official mmdet wrapper: norm_eval). FPN from stride 8 with extra convs on the input.
# The official run used fp16 (loss scale 512): on GPUs set optim_wrapper.type='AmpOptimWrapper'. Box AP 47.1.
# The authors' checkpoint for this config: retinanet.1x.biformer_base (run folder) (box AP 47.1),
# https://1drv.ms/u/s!AkBbczdRlZvChg-8GDypSY9leBsm?e=FyJQm1
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/retinanet_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='BiFormer',
        arch='base',
        n_win=16,
        auto_pad=True,
        drop_path_rate=0.3,
        norm_eval=True,
        # the ImageNet checkpoint sits behind a OneDrive share page (model_cards/biformer.md): save it here
        init_cfg=dict(
            type='Pretrained',
            checkpoint='pretrained/biformer_base.pth',
        ),
    ),
    neck=dict(in_channels=[96, 192, 384, 768], start_level=1, add_extra_convs='on_input'),
)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
