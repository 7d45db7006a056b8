"""Interpretability analyses of trained runs (grounding, faithfulness); see :mod:`.vqa`."""

from .retrieval import analyze_retrieval
from .vqa import analyze_vqa, region_cover

__all__ = ["analyze_vqa", "analyze_retrieval", "region_cover"]
