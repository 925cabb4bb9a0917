"""Small shared building blocks that timm.layers does not already have.

- ``ChannelAffine``: a learned per-channel scale (A2Mamba, OverLoCK).
- ``opaque_to_tracing``: marks a kernel-calling function as one opaque call for TorchScript and timm's fx tracer.
- ``is_tracing`` / ``size_oblivious`` / ``block_counts`` / ``crop``: size-independent paths and layout-only shape
  reasoning under torch.export.
- ``dense_attention``: all-pairs attention, SDPA or (``BACKBONEZOO_KERNEL_BACKEND=reference``) the materialising math.
- ``deform_conv2d``: torchvision's deformable convolution as grid-sample + matmul on CPU (no scalar loop, no crash
  on NaN offsets), torchvision's operator on CUDA and in captured graphs.
- ``check_input_dtype``: the named TypeError for an integer input or one of another dtype than the model.
- ``bn_fold``: eval-time BN folding and the state-dict (un)fusing of BN-fused official checkpoints.
"""

from .attention import dense_attention
from .bn_fold import cached_fold, fold_batchnorm, merge_distillation_head, unfuse_conv_bn
from .checks import check_input_dtype
from .deform import DEFORM_BACKENDS, deform_conv2d, deform_conv2d_grid
from .scale import ChannelAffine
from .tracing import block_counts, crop, is_tracing, opaque_to_tracing, size_oblivious

__all__ = [
    'DEFORM_BACKENDS',
    'ChannelAffine',
    'block_counts',
    'cached_fold',
    'check_input_dtype',
    'crop',
    'deform_conv2d',
    'deform_conv2d_grid',
    'dense_attention',
    'fold_batchnorm',
    'is_tracing',
    'merge_distillation_head',
    'opaque_to_tracing',
    'size_oblivious',
    'unfuse_conv_bn',
]
