# LITv2-B on ImageNet-1K: the LITv2-S recipe with drop path 0.5 (official configs/litv2-base.yaml).
_base_ = ['./litv2_small_in1k.py']

model_name = 'litv2_base'
model = dict(model_name=model_name, model_kwargs=dict(drop_path_rate=0.5))
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
