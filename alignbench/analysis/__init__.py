"""Interpretability analyses of trained runs (grounding, faithfulness); see :mod:`.vqa`."""

from .retrieval import analyze_retrieval
from ..metrics.grounding import region_cover
from .vqa import analyze_vqa

__all__ = ["analyze_vqa", "analyze_retrieval", "region_cover"]
