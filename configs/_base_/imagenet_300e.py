# Everything a family's ImageNet-1K classification config inherits: zoo classifier (mixup / cutmix / label
# smoothing / EMA), ImageNet folder data with albumentations, AdamW + cosine 300 epochs, runtime. A family config:
#   _base_ = '../../_base_/imagenet_300e.py'
#   model = dict(model_name='biformer_tiny', model_kwargs=dict(drop_path_rate=0.1))
#   val_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name='biformer_tiny')]))
_base_ = [
    './models/zoo_classifier.py',
    './datasets/imagenet.py',
    './schedules/imagenet_adamw_cosine_300e.py',
    './default_runtime.py',
]
