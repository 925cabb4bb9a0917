# Mask R-CNN 1x on COCO for a zoo backbone (fill model.backbone and model.neck.in_channels).
_base_ = ['./models/mask_rcnn_fpn.py', './datasets/coco_instance.py', './schedules/schedule_1x.py', './det_runtime.py']
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
