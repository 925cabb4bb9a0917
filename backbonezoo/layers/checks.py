"""Input checks every family shares: a named error for a batch the model cannot compute with."""

import torch

__all__ = ['check_input_dtype']


@torch.jit.ignore
def check_input_dtype(x: torch.Tensor, weight: torch.Tensor, family: str) -> None:
    """Raise TypeError unless ``x`` is floating point and of ``weight``'s dtype (autocast and meta weights excepted).

    ``weight`` is the model's first layer weight; ``family`` names the model in the message.
    """
    if not x.is_floating_point():
        raise TypeError(f'{family}: expected a floating-point image tensor, got dtype {x.dtype}')
    if x.dtype != weight.dtype and weight.device.type != 'meta' and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f'{family}: input dtype {x.dtype} differs from the model dtype {weight.dtype}; cast one')
