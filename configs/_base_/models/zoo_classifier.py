# A zoo / timm classifier with the DeiT-style regularisation: mixup 0.8, cutmix 1.0, label smoothing 0.1 (timm's
# Mixup, SoftTargetCrossEntropy), stochastic depth 0.1, EMA of the weights. Family configs set model_name (and their
# paper's rates). mixup=None gives hard labels with `label_smoothing` (LabelSmoothingCrossEntropy). Knowledge
# distillation: distill=dict(teacher='regnety_160', teacher_checkpoint=None, type='hard', alpha=0.5, tau=1.0).
num_classes = 1000
model = dict(
    type='ZooClassifier',
    model_name=None,
    num_classes=num_classes,
    model_kwargs=dict(drop_path_rate=0.1),
    label_smoothing=0.1,
    mixup=dict(
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        cutmix_minmax=None,
        prob=1.0,
        switch_prob=0.5,
        mode='batch',
        label_smoothing=0.1,
    ),
    data_preprocessor=dict(type='ClsDataPreprocessor'),
)
# mmengine's momentum is 1 - timm's decay (0.9999).
custom_hooks = [dict(type='EMAHook', momentum=1e-4, update_buffers=True, priority='ABOVE_NORMAL')]
