"""Named mmdet / mmseg backbone types, one module per family (see ``backbonezoo.mm.backbone`` for the recipe).

Family helpers add one import line each, e.g. ``from . import biformer  # noqa: F401``.
"""

from . import (
    a2mamba,  # noqa: F401
    biformer,  # noqa: F401
    efficientvit,  # noqa: F401
    halonet,  # noqa: F401
    litv2,  # noqa: F401
    overlock,  # noqa: F401
    patnet,  # noqa: F401
    shvit,  # noqa: F401
    sret,  # noqa: F401
    tic,  # noqa: F401
)
