# RetinaNet + BiFormer-S FPN, COCO 1x (official object_detection/configs/coco/retinanet.1x.biformer_small.py):
# n_win 16 with auto_pad, AdamW lr 1e-4, weight decay 1e-4, 12 epochs, steps at 8 and 11, batch 16, drop path
# 0.2, BN frozen (official mmdet wrapper: norm_eval). FPN from stride 8 with extra convs on the input.
# The official run used fp16 (loss scale 512): on GPUs set optim_wrapper.type='AmpOptimWrapper'. Box AP 45.9 (repro 47.3).
# The authors' checkpoint for this config: retinanet.1x.biformer_small (run folder) (box AP 45.9, box AP (reproduced) 47.3),
# https://1drv.ms/u/s!AkBbczdRlZvChhKipB3XMN4_nIvO?e=TYZzFc
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/retinanet_1x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='BiFormer',
        arch='small',
        n_win=16,
        auto_pad=True,
        drop_path_rate=0.2,
        norm_eval=True,
        # the ImageNet checkpoint sits behind a OneDrive share page (model_cards/biformer.md): save it here
        init_cfg=dict(
            type='Pretrained',
            checkpoint='pretrained/biformer_small.pth',
        ),
    ),
    neck=dict(in_channels=[64, 128, 256, 512], start_level=1, add_extra_convs='on_input'),
)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
