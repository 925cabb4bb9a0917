# RetinaNet 1x on COCO for a zoo backbone. A family config:
#   _base_ = '../../_base_/retinanet_1x_coco.py'
#   model = dict(backbone=dict(type='BiFormer', arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=CKPT)),
#                neck=dict(in_channels=[64, 128, 256, 512]))
_base_ = ['./models/retinanet_fpn.py', './datasets/coco_detection.py', './schedules/schedule_1x.py', './det_runtime.py']
