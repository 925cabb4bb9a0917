# Mask R-CNN + BiFormer-S FPN, COCO 1x (official object_detection/configs/coco/maskrcnn.1x.biformer_small.py):
# n_win 16 with auto_pad, AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 (none on norms), 12 epochs, steps at 8
# and 11, batch 16, drop path 0.2, BN frozen (official mmdet wrapper: norm_eval). The official run used fp16:
# on GPUs set optim_wrapper.type='AmpOptimWrapper'. Box / mask AP 47.8 / 43.2.
# The authors' checkpoint for this config: maskrcnn.1x.biformer_small (run folder) (box AP 47.8, mask AP 43.2, box AP (reproduced) 48.1, mask AP (reproduced) 43.6),
# https://1drv.ms/u/s!AkBbczdRlZvChgmyNozEQrrsfOdG?e=aOCj2A
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['../../_base_/mask_rcnn_1x_coco.py']

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
    neck=dict(in_channels=[64, 128, 256, 512]),
)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
)

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
