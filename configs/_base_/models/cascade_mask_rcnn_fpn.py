# Cascade Mask R-CNN + FPN for a zoo backbone with four stages at strides 4..32: mmdet's own model definition
# (three cascade stages at IoU 0.5 / 0.6 / 0.7, class-agnostic box regression), read from the installed mmdet. The
# family config replaces model.backbone (with _delete_=True) and fills model.neck.in_channels.
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py']

model = dict(neck=dict(in_channels=[]))
