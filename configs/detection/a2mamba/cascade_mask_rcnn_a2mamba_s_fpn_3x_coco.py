# Cascade Mask R-CNN + A2Mamba-Small FPN, COCO 3x with multi-scale training: the detector the paper's COCO table
# reports (the paper's exact settings were not read; unverified). The official repository ships no dense code: this
# is the standard Cascade Mask R-CNN 3x setup of configs/_base_/cascade_mask_rcnn_3x_coco.py, drop path 0.3, BN
# frozen (norm_eval), no weight decay on norms and relative-position biases.
_base_ = ['../../_base_/cascade_mask_rcnn_3x_coco.py']

custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='A2Mamba',
        arch='small',
        drop_path_rate=0.3,
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/LMMM2025/A2Mamba/resolve/main/a2mamba_pretrained_weights/a2mamba_small.pth',
        ),
    ),
    neck=dict(in_channels=[64, 128, 320, 512]),
)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0), 'rpb': dict(decay_mult=0.0)}))

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
