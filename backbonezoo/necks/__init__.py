"""Necks our dense configs need that mmdet / mmseg lack; importing this package registers them (it needs the
OpenMMLab stack, and ``backbonezoo.mm`` imports it)."""

from . import efficientvit_fpn, stride4_pyramid  # noqa: F401
