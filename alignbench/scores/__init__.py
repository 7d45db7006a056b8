"""Attention alignment score functions.

The config group ``conf/score/`` is the registry: one YAML per score with a
``_target_`` class (:func:`alignbench.config.build_score` composes such a file and
instantiates it).
"""

from __future__ import annotations

from .additive import AdditiveScore
from .ban import BANScore, BilinearPooling
from .base import NORMALIZATIONS, AlignmentScore, LearnedTemperature, ScoreFactory, cross_logits
from .coattention import CoAttentionMaxPoolScore, CoAttentionScore
from .cosine import CosineScore
from .dot import DotScore, ScaledDotScore
from .general import ActivatedGeneralScore, BiasedGeneralScore, GeneralScore
from .uniform import UniformScore

__all__ = [
    "AlignmentScore", "NORMALIZATIONS", "DotScore", "ScaledDotScore", "GeneralScore",
    "BiasedGeneralScore", "ActivatedGeneralScore", "AdditiveScore", "CosineScore",
    "CoAttentionScore", "CoAttentionMaxPoolScore", "UniformScore", "BANScore", "BilinearPooling",
    "LearnedTemperature", "ScoreFactory", "cross_logits",
]
