"""Data pipeline pieces that need only torch, timm and the package (no OpenMMLab).

- :func:`eval_transform`: THE evaluation protocol. timm's ``resolve_data_config`` + ``create_transform`` on the
  model's ``pretrained_cfg`` (input size, ``crop_pct``, interpolation, mean / std, crop mode), overridable. Used by
  ``tools/eval_imagenet.py``, by mmengine validation (``TimmClsEval``) and so by ``tools/test.py``: the three routes
  feed the model bit-identical tensors.
- :func:`train_transform`: timm's training transform (RandomResizedCrop, flips, colour jitter, RandAugment /
  AutoAugment / AugMix, random erasing), the one the papers trained with.
- :func:`load_image`: decode to a PIL RGB image exactly as timm's ``ImageDataset`` does.
- :class:`ImageListDataset`: a flat image folder with a ``file label`` list (timm's folder reader needs one
  sub-folder per class).
- Per-sample randomness: :func:`sample_seed` and :func:`sample_rng` make a sample's augmentation a function of
  ``(seed, epoch, position)``, so any data-loader worker layout, and a resumed run, draws the same augmentation;
  :func:`get_rng_state` / :func:`set_rng_state` capture and restore the process-wide generators (python, numpy,
  torch CPU and CUDA).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    'IMG_EXTENSIONS',
    'ImageListDataset',
    'eval_transform',
    'get_rng_state',
    'load_image',
    'resolve_eval_config',
    'sample_rng',
    'sample_seed',
    'current_sample_seed',
    'set_rng_state',
    'train_transform',
]

IMG_EXTENSIONS = ('.jpeg', '.jpg', '.png', '.bmp', '.webp')


# ---------------------------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------------------------
def _pretrained_cfg(model_or_name) -> dict:
    if model_or_name is None:
        return {}
    if isinstance(model_or_name, torch.nn.Module):
        cfg = getattr(model_or_name, 'pretrained_cfg', None) or getattr(model_or_name, 'default_cfg', None) or {}
        return dict(cfg)
    import timm

    import backbonezoo  # noqa: F401  (registers the zoo's models with timm)

    cfg = timm.models.get_pretrained_cfg(model_or_name)
    if cfg is None:
        raise ValueError(f'model {model_or_name!r}: not a registered timm / zoo model (see backbonezoo.list_models())')
    return cfg.to_dict()


def _size3(input_size) -> tuple[int, int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (3, input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (3, *size)
    if len(size) != 3:
        raise ValueError(f'input_size={input_size!r}: expected an int, (H, W) or (C, H, W)')
    return size


def resolve_eval_config(
    model_or_name: str | torch.nn.Module | None = None,
    *,
    input_size: int | Sequence[int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    crop_mode: str | None = None,
) -> dict:
    """timm's evaluation data config (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``,
    ``crop_mode``): given values first, then the model's ``pretrained_cfg`` (test size where it has one), then
    timm's defaults."""
    from timm.data import resolve_data_config

    overrides = dict(
        input_size=_size3(input_size),
        crop_pct=crop_pct,
        interpolation=interpolation,
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        crop_mode=crop_mode,
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return resolve_data_config(overrides, pretrained_cfg=_pretrained_cfg(model_or_name), use_test_size=True)


def eval_transform(
    model_or_name: str | torch.nn.Module | None = None,
    *,
    input_size: int | Sequence[int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    crop_mode: str | None = None,
):
    """The evaluation transform (PIL RGB image in, normalised CHW float tensor out); see :func:`resolve_eval_config`."""
    from timm.data import create_transform

    cfg = resolve_eval_config(
        model_or_name,
        input_size=input_size,
        crop_pct=crop_pct,
        interpolation=interpolation,
        mean=mean,
        std=std,
        crop_mode=crop_mode,
    )
    transform = create_transform(**cfg, is_training=False)
    transform.data_config = cfg
    return transform


def train_transform(input_size: int | Sequence[int] = 224, **kwargs):
    """timm's training transform, ``timm.data.create_transform(input_size, is_training=True, **kwargs)``: keyword
    names are timm's (``scale``, ``ratio``, ``hflip``, ``vflip``, ``color_jitter``, ``auto_augment``,
    ``interpolation``, ``re_prob``, ``re_mode``, ``re_count``, ``re_num_splits``, ``mean``, ``std``, ...); ``None``
    or 0 disables a step."""
    from timm.data import create_transform

    if not kwargs.get('color_jitter'):  # timm adds a no-op ColorJitter for 0 (and draws from torch for it)
        kwargs['color_jitter'] = None
    for key in ('mean', 'std', 'scale', 'ratio'):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    if kwargs.get('auto_augment') in ('', 'none'):
        kwargs['auto_augment'] = None
    for key in ('re_prob', 'hflip', 'vflip'):
        if kwargs.get(key) is None and key in kwargs:
            kwargs[key] = 0.0
    size = input_size if isinstance(input_size, int) else tuple(int(s) for s in input_size)
    return create_transform(size, is_training=True, **kwargs)


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to PIL RGB, as timm's ``ImageDataset`` does (``Image.open(f).convert('RGB')``)."""
    with Image.open(path) as img:
        return img.convert('RGB')


# ---------------------------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------------------------
def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (first word of each line)."""
    return [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]


def read_label_file(path: str | os.PathLike, classes: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """``file label`` lines; a label is a class index or a class name from ``classes``."""
    index = {c: i for i, c in enumerate(classes or [])}
    samples = []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, label = line.split()[:2]
        if label.lstrip('-').isdigit():
            label = int(label)
        elif label in index:
            label = index[label]
        else:
            raise ValueError(f'{path}:{line_no}: label {label!r} is neither an index nor a class')
        samples.append((name, label))
    return samples


class ImageListDataset(torch.utils.data.Dataset):
    """Images of a flat folder with a label file (``file label`` lines), decoded like timm's ``ImageDataset``.

    Items are ``(transform(image), label)``; ``filenames(basename=)`` as timm's datasets (for ImageNet-ReaL).
    """

    def __init__(self, root: str | os.PathLike, ann_file: str | os.PathLike, classes=None, transform=None) -> None:
        self.root = Path(root)
        self.classes = read_class_names(classes) if isinstance(classes, (str, os.PathLike)) else classes
        self.samples = read_label_file(ann_file, self.classes)
        if not self.samples:
            raise FileNotFoundError(f'{ann_file}: no samples listed')
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        name, label = self.samples[index]
        img = load_image(self.root / name)
        return (self.transform(img) if self.transform is not None else img), label

    def filenames(self, basename: bool = False, absolute: bool = False) -> list[str]:
        names = [name for name, _ in self.samples]
        if basename:
            return [os.path.basename(n) for n in names]
        return [str(self.root / n) for n in names] if absolute else names


# ---------------------------------------------------------------------------------------------------------------
# randomness
# ---------------------------------------------------------------------------------------------------------------
def sample_seed(*keys: int) -> int:
    """A 32-bit seed mixed from integer keys (e.g. ``seed, epoch, position``) with numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(k) % 2**63 for k in keys]).generate_state(1, dtype=np.uint32)[0])


_current_sample_seed: int | None = None


def current_sample_seed() -> int | None:
    """The seed of the sample being prepared inside :func:`sample_rng` (None outside): transforms keeping their
    own generators (albumentations) seed from it."""
    return _current_sample_seed


@contextlib.contextmanager
def sample_rng(seed: int):
    """Run a sample's transforms on python / numpy / torch (CPU) generators seeded with ``seed``; the process's own
    generator states are restored afterwards, so preparing data neither consumes nor depends on them."""
    global _current_sample_seed

    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    previous = _current_sample_seed
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    _current_sample_seed = seed
    try:
        yield
    finally:
        _current_sample_seed = previous
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)


def get_rng_state() -> dict:
    """The process-wide generator states (python, numpy, torch CPU, torch CUDA when initialised), as tensors and
    plain python values (readable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=dict(version=version, internal=torch.tensor(internal, dtype=torch.int64), gauss=gauss),
        numpy=dict(
            kind=kind,
            keys=torch.from_numpy(keys.astype(np.int64)),
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached=float(cached),
        ),
        torch=torch.random.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` captured."""
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['internal'].tolist()), py['gauss']))
    nps = state['numpy']
    np.random.set_state(
        (nps['kind'], nps['keys'].numpy().astype(np.uint32), nps['pos'], nps['has_gauss'], nps['cached'])
    )
    torch.random.set_rng_state(state['torch'].cpu())
    if state.get('cuda') is not None and torch.cuda.is_available():
        cuda = [s.cpu() for s in state['cuda']]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
