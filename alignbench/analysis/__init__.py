"""Interpretability analyses of trained runs (grounding, faithfulness); see :mod:`.vqa`."""

from .vqa import analyze_vqa, region_cover

__all__ = ["analyze_vqa", "region_cover"]
