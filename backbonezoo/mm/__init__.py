"""OpenMMLab adapters: ``custom_imports=dict(imports=['backbonezoo.mm'], allow_failed_imports=False)``.

Importing this package registers, in mmengine's root registries (and mmdet's / mmseg's where installed):
the generic ``ZooTimmBackbone`` and every family's named backbone type (``backbonezoo.mm.families``), the
classification model, data preprocessor, dataset, samplers, timm-based transforms, optimizer constructor and
metric (``backbonezoo.mm.classification``), the ``RNGStateHook`` for exact resume (``backbonezoo.mm.hooks``),
and the runtime fixes for torch >= 2.6 and CPU DDP (``backbonezoo.mm.runtime``: ``ZooRunner``, whose checkpoint
loader unpickles fully only the run's own checkpoints or files trusted one by one, and loads strictly through the
zoo's converters; ``CPUDistributedDataParallel``).
"""

from .. import necks  # noqa: F401  (registers the necks: EfficientViTFPN, Stride4Pyramid)
from . import families  # noqa: F401  (registers the families' named backbone types)
from .backbone import ZooBackbone, ZooTimmBackbone, read_checkpoint, register_backbone
from .classification import (
    AlbuAugment,
    AlbuClsEval,
    AlbuClsTrain,
    ClsAccuracy,
    ClsDataPreprocessor,
    ImageFolderDataset,
    LoadImagePIL,
    LoadImageRGB,
    RepeatAugSampler,
    SeededIndex,
    SeededSampler,
    TimmClsEval,
    TimmClsTrain,
    ZooClassifier,
    ZooOptimConstructor,
    resolve_eval_config,
)
from .hooks import RNGStateHook
from .runtime import (
    CPUAmpOptimWrapper,
    CPUDistributedDataParallel,
    WeightsOnlyCheckpointError,
    ZooRunner,
    build_runner,
    fit_state_dict,
    is_run_checkpoint,
    trust_checkpoint,
    trust_checkpoint_dir,
    trusted_checkpoint_dirs,
)

__all__ = [
    'AlbuAugment',
    'AlbuClsEval',
    'AlbuClsTrain',
    'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel',
    'ClsAccuracy',
    'ClsDataPreprocessor',
    'ImageFolderDataset',
    'LoadImagePIL',
    'LoadImageRGB',
    'RNGStateHook',
    'RepeatAugSampler',
    'SeededIndex',
    'SeededSampler',
    'TimmClsEval',
    'TimmClsTrain',
    'WeightsOnlyCheckpointError',
    'ZooBackbone',
    'ZooClassifier',
    'ZooOptimConstructor',
    'ZooRunner',
    'ZooTimmBackbone',
    'build_runner',
    'fit_state_dict',
    'is_run_checkpoint',
    'read_checkpoint',
    'register_backbone',
    'resolve_eval_config',
    'trust_checkpoint',
    'trust_checkpoint_dir',
    'trusted_checkpoint_dirs',
]
