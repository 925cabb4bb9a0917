# SReT-T on ImageNet-1K. The authors released no training script; the paper trains with DeiT's recipe: 300 epochs,
# batch 1024, AdamW lr 5e-4 x batch / 512 = 1e-3, weight decay 0.05, 5 warm-up epochs, cosine, mixup 0.8 / cutmix
# 1.0, label smoothing 0.1, RandAugment + random erasing (here: the zoo's albumentations pipeline), drop path 0.1 (the
# official model's default). The README notes that 30 warm-up epochs give better results (set param_scheduler).
# The distilled checkpoints were trained with soft labels from a teacher (MEAL V2 / FKD), not reproduced here.
_base_ = ['../../_base_/imagenet_300e.py']

model_name = 'sret_tiny'
model = dict(model_name=model_name, model_kwargs=dict(drop_path_rate=0.1))
custom_hooks = []  # DeiT's recipe as the paper uses it keeps no EMA
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
