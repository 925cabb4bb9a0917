"""Named mmdet / mmseg backbone types, one module per family (see ``backbonezoo.mm.backbone`` for the recipe).

The zoo is the registry: ``backbonezoo/mm/families/<family>.py`` for every family ``backbonezoo/zoo/<family>.py``
describes (the same name), imported here.
"""

import importlib

from ...zoo import families as _families

for _name in _families():
    importlib.import_module(f'{__name__}.{_name}')
