"""One module per family; importing a module registers its variants with timm.

Module names must differ from timm's model module names (timm groups ``list_models(module=...)`` by them).
"""

from . import (
    a2mamba,  # noqa: F401
    biformer,  # noqa: F401
    efficientvit_m,  # noqa: F401
    halonet,  # noqa: F401
    litv2,  # noqa: F401
    overlock,  # noqa: F401
    patnet,  # noqa: F401
    shvit_ext,  # noqa: F401
    sret,  # noqa: F401
    tic,  # noqa: F401
)
