"""Interpretability analyses of trained runs (grounding, faithfulness); see :mod:`.vqa`."""

from .retrieval import analyze_retrieval
from ..metrics.grounding import region_cover
from .t2i import analyze_t2i
from .vqa import analyze_vqa

__all__ = ["analyze_vqa", "analyze_retrieval", "analyze_t2i", "region_cover"]
