# UPerNet 160k on ADE20K for a zoo backbone (fill model.backbone, decode_head.in_channels and
# auxiliary_head.in_channels, the third stage's channels). Batch 16 = 8 GPUs x 2.
_base_ = ['./models/upernet.py', './datasets/ade20k.py', './schedules/schedule_160k.py', './seg_runtime.py']
