"""Input checks every family shares: a named error for a batch the model cannot compute with.

Every family's ``forward_features`` / ``forward_intermediates`` starts with one ``check_input`` call, so a wrong
rank, channel count, dtype or size fails with a ``ValueError`` / ``TypeError`` naming the family, what it expected and
what it got, instead of a reshape error deep inside a stage.
"""

import torch
from timm.layers import register_notrace_function

__all__ = ['check_input', 'check_input_dtype']


@torch.jit.ignore
def check_input_dtype(x: torch.Tensor, weight: torch.Tensor, family: str) -> None:
    """Raise TypeError unless ``x`` is floating point and of ``weight``'s dtype (autocast and meta weights excepted).

    ``weight`` is the model's first layer weight; ``family`` names the model in the message.
    """
    if not x.is_floating_point():
        raise TypeError(f'{family}: expected a floating-point image tensor, got dtype {x.dtype}')
    if x.dtype != weight.dtype and weight.device.type != 'meta' and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f'{family}: input dtype {x.dtype} differs from the model dtype {weight.dtype}; cast one')


@register_notrace_function  # a leaf for timm's fx tracer: the body branches on sizes
def check_input(
    x: torch.Tensor,
    weight: torch.Tensor,
    family: str,
    in_chans: int,
    min_size: int = 1,
    divisor: int = 1,
    reason: str = '',
) -> None:
    """Raise a named error unless ``x`` is a (B, ``in_chans``, H, W) batch the model can compute with.

    Args:
        x: the image batch.
        weight: the model's first layer weight; ``x`` must be floating point and of its dtype (``check_input_dtype``).
        family: names the model at the start of every message (``'BiFormer: expected ...'``).
        in_chans: the channel count the model was built for.
        min_size: the smallest height and width the model accepts.
        divisor: height and width must be multiples of it (1: any size).
        reason: why the size limits hold, appended to their messages (``'n_win=7 needs ...'``).

    Raises ValueError for a wrong rank, channel count or size and TypeError for a wrong dtype. The arguments are
    positional-or-keyword (TorchScript has no keyword-only arguments); call it with keywords after ``family``.
    TorchScript compiles this wrapper (it keeps the defaults) and leaves the checks to Python (``torch.jit.ignore``
    drops defaults from the signature it records, hence the two functions).
    """
    _check_input(x, weight, family, in_chans, min_size, divisor, reason)


@torch.jit.ignore
def _check_input(
    x: torch.Tensor, weight: torch.Tensor, family: str, in_chans: int, min_size: int, divisor: int, reason: str
) -> None:
    if x.ndim != 4:
        raise ValueError(f'{family}: expected a 4-D input (B, {in_chans}, H, W), got shape {tuple(x.shape)}')
    check_input_dtype(x, weight, family)
    if x.shape[1] != in_chans:
        raise ValueError(f'{family}: expected {in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)})')
    height, width = x.shape[-2], x.shape[-1]
    why = f' ({reason})' if reason else ''
    if height < min_size or width < min_size:
        raise ValueError(f'{family}: input {height}x{width} is too small; expected at least {min_size}x{min_size}{why}')
    if height % divisor != 0 or width % divisor != 0:
        raise ValueError(f'{family}: input {height}x{width} is not a multiple of {divisor} per side{why}')
