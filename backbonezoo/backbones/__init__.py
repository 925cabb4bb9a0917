"""One module per family; importing a module registers its variants with timm.

The zoo is the registry: each ``backbonezoo/zoo/<family>.py`` names its model module (``Family.module``), and this
package imports exactly those. Module names: ``<family>.py`` for the zoo's own families, ``<family>_ext.py`` for
the families timm already ships (EfficientViT-M, SHViT, HaloNet: the module extends timm's models, and a module name
must differ from timm's, which groups ``list_models(module=...)`` by file name).
"""

import importlib

from ..zoo import families as _families

for _family in _families().values():
    importlib.import_module(_family.module)
