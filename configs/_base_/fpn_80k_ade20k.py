# Semantic FPN 80k on ADE20K for a zoo backbone (fill model.backbone and model.neck.in_channels): batch 16 = 8 GPUs x 2.
_base_ = ['./models/fpn_seg.py', './datasets/ade20k.py', './schedules/schedule_80k.py', './seg_runtime.py']
