"""Cosine score ``s·cos(q, k)`` with a learned temperature ``s`` (SCAN uses a fixed 9)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import AlignmentScore, LearnedTemperature
from ..ranges import PositiveFloat


class CosineScore(AlignmentScore):
    """Cosine similarity times a learned temperature ``s``; logits ``[B, 1, Lq, Lk]`` in ``[-s, s]``.

    Bounded, so it follows the bounded-score rule (:class:`LearnedTemperature`, initial
    value ``temperature`` from the YAML). When ``q_dim != k_dim`` the query is mapped to
    ``k_dim`` by a linear projection without bias first.
    """

    normalization = "row"
    bounded = True

    def __init__(self, q_dim: int, k_dim: int, temperature: PositiveFloat = 9.0, eps: PositiveFloat = 1e-8) -> None:
        super().__init__(q_dim, k_dim)
        self.temperature = LearnedTemperature(type(self).__name__, temperature)
        self.eps = eps
        self.proj = nn.Linear(q_dim, k_dim, bias=False) if q_dim != k_dim else None

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        q = self.proj(query) if self.proj is not None else query
        return F.normalize(q, dim=-1, eps=self.eps)

    def prepare_key(self, key: torch.Tensor) -> torch.Tensor:
        return F.normalize(key, dim=-1, eps=self.eps)

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.temperature(query @ key.transpose(1, 2)).unsqueeze(1)
