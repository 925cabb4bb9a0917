"""OpenMMLab adapters: ``custom_imports=dict(imports=['backbonezoo.mm'], allow_failed_imports=False)``.

Importing this package registers, in mmengine's root registries (and mmdet's / mmseg's where installed):
the generic ``ZooTimmBackbone`` and every family's named backbone type (``backbonezoo.mm.families``), the
classification model, data preprocessor, dataset, transforms and metric (``backbonezoo.mm.classification``),
and the runtime fixes for torch >= 2.6 and CPU DDP (``backbonezoo.mm.runtime``: trusted-checkpoint loader,
``CPUDistributedDataParallel``).
"""

from .. import necks  # noqa: F401  (registers the necks: EfficientViTFPN, Stride4Pyramid)
from . import families  # noqa: F401  (registers the families' named backbone types)
from .backbone import ZooBackbone, ZooTimmBackbone, read_checkpoint, register_backbone
from .classification import (
    AlbuClsEval,
    AlbuClsTrain,
    ClsAccuracy,
    ClsDataPreprocessor,
    ImageFolderDataset,
    LoadImageRGB,
    ZooClassifier,
    resolve_eval_config,
)
from .runtime import CPUAmpOptimWrapper, CPUDistributedDataParallel, trust_checkpoint_dir, trusted_checkpoint_dirs

__all__ = [
    'AlbuClsEval',
    'AlbuClsTrain',
    'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel',
    'ClsAccuracy',
    'ClsDataPreprocessor',
    'ImageFolderDataset',
    'LoadImageRGB',
    'ZooBackbone',
    'ZooClassifier',
    'ZooTimmBackbone',
    'read_checkpoint',
    'register_backbone',
    'resolve_eval_config',
    'trust_checkpoint_dir',
    'trusted_checkpoint_dirs',
]
