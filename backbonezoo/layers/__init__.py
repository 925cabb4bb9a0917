"""Small shared building blocks that timm.layers does not already have.

- ``ChannelAffine``: a learned per-channel scale (A2Mamba, OverLoCK).
- ``deep_conv_stem``: the four-conv stride-4 stem of A2Mamba and OverLoCK.
- ``opaque_to_tracing``: marks a kernel-calling function as one opaque call for TorchScript and timm's fx tracer.
- ``is_tracing`` / ``size_oblivious`` / ``block_counts`` / ``crop``: size-independent paths and layout-only shape
  reasoning under torch.export.
- ``neighborhood_scores`` / ``neighborhood_probs`` / ``neighborhood_aggregate`` / ``neighborhood_aggregate_probs``:
  NATTEN-style neighborhood attention through ``backbonezoo.kernels``, opaque to TorchScript and fx (A2Mamba,
  OverLoCK).
- ``dense_attention``: all-pairs attention, SDPA or (``BACKBONEZOO_KERNEL_BACKEND=reference``) the materialising math.
- ``deform_conv2d``: torchvision's deformable convolution as grid-sample + matmul on CPU (no scalar loop, no crash
  on NaN offsets), torchvision's operator on CUDA and in captured graphs; ``DeformConv2d``, its module (torchvision's
  parameters, with ``device`` / ``dtype``).
- ``check_input`` / ``check_input_dtype``: every family's input check, named ValueError / TypeError for a wrong rank,
  channel count, size or dtype.
- ``bn_fold``: eval-time BN folding and the state-dict (un)fusing of BN-fused official checkpoints.
"""

from .attention import dense_attention
from .bn_fold import cached_fold, fold_batchnorm, merge_distillation_head, unfuse_conv_bn
from .checks import check_input, check_input_dtype
from .deform import DEFORM_BACKENDS, DeformConv2d, deform_conv2d, deform_conv2d_grid
from .neighborhood import neighborhood_aggregate, neighborhood_aggregate_probs, neighborhood_probs, neighborhood_scores
from .scale import ChannelAffine
from .stem import deep_conv_stem
from .tracing import block_counts, crop, is_tracing, opaque_to_tracing, size_oblivious

__all__ = [
    'DEFORM_BACKENDS',
    'ChannelAffine',
    'DeformConv2d',
    'block_counts',
    'cached_fold',
    'check_input',
    'check_input_dtype',
    'crop',
    'deform_conv2d',
    'deform_conv2d_grid',
    'dense_attention',
    'deep_conv_stem',
    'fold_batchnorm',
    'is_tracing',
    'merge_distillation_head',
    'neighborhood_aggregate',
    'neighborhood_aggregate_probs',
    'neighborhood_probs',
    'neighborhood_scores',
    'opaque_to_tracing',
    'size_oblivious',
    'unfuse_conv_bn',
]
