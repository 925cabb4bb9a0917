# Runtime for classification (mmengine's own scope: the zoo's classifier, dataset and metric live in the root
# registries). tools/train.py switches the process group to gloo and the DDP wrapper to the CPU one without a GPU.
default_scope = 'mmengine'
custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # exact resume: the generators' states go into every checkpoint; validation does not shift them
    rng_state=dict(type='RNGStateHook'),
)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
log_processor = dict(window_size=10, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
