# overlock_t on ImageNet-1K, the official recipe (LMMMEng/OverLoCK scripts/train_t_model.sh + train.py defaults): the
# OverLoCK-XT recipe (see overlock_xt_in1k.py) with drop_path_rate 0.15. Top-1 84.2 (paper).
_base_ = ['./overlock_xt_in1k.py']

model_name = 'overlock_t'
model = dict(model_name=model_name, model_kwargs=dict(drop_path_rate=0.15))
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
