# The official "ws_4" variant: HiLo window 4 in stage 3, same ImageNet weights (the window has no parameters).
_base_ = ['./retinanet_litv2_b_fpn_1x_coco.py']

model = dict(backbone=dict(model_kwargs=dict(window_sizes=(0, 0, 4, 1))))
