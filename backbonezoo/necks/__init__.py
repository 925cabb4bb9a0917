"""Necks our dense configs need that mmdet / mmseg lack."""
