# UPerNet 160k on ADE20K for a zoo backbone (fill model.backbone, decode_head.in_channels and
# auxiliary_head.in_channels, the third stage's channels).
_base_ = ['./models/upernet.py', './datasets/ade20k.py', './schedules/schedule_160k.py', './seg_runtime.py']
