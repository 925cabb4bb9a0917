# Everything a family's ImageNet-1K classification config inherits: zoo classifier (mixup / cutmix / label
# smoothing / EMA), ImageNet folder data with timm's transforms (RandAugment + random erasing; the shared eval
# protocol), AdamW + cosine 300 epochs with timm's weight-decay exclusions (ZooOptimConstructor: the model's
# no_weight_decay() names, norms, biases; paramwise_cfg=dict(layer_decay=...) for layer-wise lr decay), runtime.
# A family config:
#   _base_ = '../../_base_/imagenet_300e.py'
#   model = dict(model_name='biformer_tiny', model_kwargs=dict(drop_path_rate=0.1))
#   val_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImagePIL'), dict(type='TimmClsEval', model_name='biformer_tiny')]))
#   test_dataloader = val_dataloader
_base_ = [
    './models/zoo_classifier.py',
    './datasets/imagenet.py',
    './schedules/imagenet_adamw_cosine_300e.py',
    './default_runtime.py',
]
optim_wrapper = dict(constructor='ZooOptimConstructor')
