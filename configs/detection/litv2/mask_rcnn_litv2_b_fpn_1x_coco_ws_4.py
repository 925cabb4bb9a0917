# The official "ws_4" variant: HiLo window 4 in stage 3, same ImageNet weights (the window has no parameters).
# The authors' checkpoint for this config: mask_rcnn_litv2_b_fpn_1x_coco_ws_4.pth (box AP 46.8, mask AP 42.3),
# https://github.com/ziplab/LITv2/releases/download/v1.0/mask_rcnn_litv2_b_fpn_1x_coco_ws_4.pth
# tools/test.py CONFIG FILE evaluates it as released (converted on the fly, strictly).
_base_ = ['./mask_rcnn_litv2_b_fpn_1x_coco.py']

model = dict(backbone=dict(model_kwargs=dict(window_sizes=(0, 0, 4, 1))))

# Batch: 16 in total = 8 GPUs x 2 images (train_dataloader.batch_size is per GPU). On N GPUs x B
# images, `tools/train.py --auto-scale-lr` multiplies the lr by N x B / 16; `--amp` trains in mixed precision.
auto_scale_lr = dict(enable=False, base_batch_size=16)
