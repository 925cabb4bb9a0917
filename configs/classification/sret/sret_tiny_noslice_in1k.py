# SReT (sret_tiny_noslice) on ImageNet-1K: the SReT-T recipe (DeiT's, see sret_tiny_in1k.py) for this variant.
_base_ = ['./sret_tiny_in1k.py']

model_name = 'sret_tiny_noslice'
model = dict(model_name=model_name)
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
