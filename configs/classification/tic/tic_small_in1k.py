# tic_small on ImageNet-1K: the tic_tiny recipe (see tic_tiny_in1k.py; our choice, no official recipe exists) with drop
# path 0.3.
_base_ = ['./tic_tiny_in1k.py']

model_name = 'tic_small'
model = dict(model_name=model_name, model_kwargs=dict(drop_path_rate=0.3))
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
