"""Dot-product scores: ``dot`` (qᵀk) and ``scaled_dot`` (qᵀk/√d)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import AlignmentScore


class DotScore(AlignmentScore):
    """Dot product ``qᵀk``; logits ``[B, 1, Lq, Lk]``.

    When ``q_dim != k_dim`` the query is first mapped to ``k_dim`` by a learned linear
    projection without bias (the only parameters this score then has); with equal sizes
    the score has no parameters.
    """

    normalization = "row"

    def __init__(self, q_dim: int, k_dim: int) -> None:
        super().__init__(q_dim, k_dim)
        self.proj = nn.Linear(q_dim, k_dim, bias=False) if q_dim != k_dim else None

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        return self.proj(query) if self.proj is not None else query

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return (query @ key.transpose(1, 2)).unsqueeze(1)


class ScaledDotScore(DotScore):
    """Scaled dot product ``qᵀk / √d`` with d = ``k_dim`` (Vaswani et al. 2017).

    Projects the query like :class:`DotScore` when the sizes differ.
    """

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return super().combine(query, key) / math.sqrt(self.k_dim)
