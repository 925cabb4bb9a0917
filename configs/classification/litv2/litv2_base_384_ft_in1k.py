# LITv2-B fine-tuned at 384 from LITv2-B 224 (official configs/litv2-base-finetune-384.yaml): 30 epochs, batch 1024,
# lr 2e-5 x batch / 512 = 4e-5, 5 warm-up epochs from 4e-8, cosine to 4e-7, weight decay 1e-8, drop path 0.5,
# evaluation without a centre crop. Set model.checkpoint to the LITv2-B (224) weights, e.g. the official litv2_b.pth.
_base_ = ['./litv2_small_in1k.py']

model_name = 'litv2_base_384'
img_size = 384
model = dict(
    model_name=model_name,
    checkpoint='https://github.com/ziplab/LITv2/releases/download/v1.0/litv2_b.pth',
    model_kwargs=dict(drop_path_rate=0.5),
)
optim_wrapper = dict(optimizer=dict(lr=4e-5, weight_decay=1e-8))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=4e-7, by_epoch=True, begin=5, end=30, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=30)
train_dataloader = dict(
    dataset=dict(
        pipeline=[
            dict(type='LoadImageRGB'),
            dict(type='AlbuClsTrain', img_size=img_size, scale=(0.08, 1.0), hflip=0.5, color_jitter=0.4, rand_ops=0.5),
        ]
    )
)
val_dataloader = dict(
    dataset=dict(pipeline=[dict(type='LoadImageRGB'), dict(type='AlbuClsEval', model_name=model_name)])
)
test_dataloader = val_dataloader
