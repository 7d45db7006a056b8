"""Additive (concat) score ``wᵀ tanh(W₁q + W₂k)`` (Bahdanau et al. 2015)."""

from __future__ import annotations

import torch
from torch import nn

from .base import AlignmentScore, positive_int
from ..ranges import PositiveInt


class AdditiveScore(AlignmentScore):
    """Additive score with hidden size ``hidden_dim``; logits ``[B, 1, Lq, Lk]``.

    Builds a ``[B, Lq, Lk, hidden_dim]`` intermediate, so its memory grows with
    ``Lq·Lk·hidden_dim`` (the price of this family).
    """

    normalization = "row"

    def __init__(self, q_dim: int, k_dim: int, hidden_dim: PositiveInt = 64) -> None:
        super().__init__(q_dim, k_dim)
        self.hidden_dim = positive_int(type(self).__name__, "hidden_dim", hidden_dim)
        self.query_map = nn.Linear(q_dim, hidden_dim, bias=False)
        self.key_map = nn.Linear(k_dim, hidden_dim, bias=True)
        self.vector = nn.Linear(hidden_dim, 1, bias=False)

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        return self.query_map(query)

    def prepare_key(self, key: torch.Tensor) -> torch.Tensor:
        return self.key_map(key)

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(query.unsqueeze(2) + key.unsqueeze(1))
        return self.vector(hidden).squeeze(-1).unsqueeze(1)
