"""The ``uniform`` control: every logit 0, so attention is uniform over the valid keys."""

from __future__ import annotations

import torch

from .base import AlignmentScore


class UniformScore(AlignmentScore):
    """Logits ``[B, 1, Lq, Lk]`` of zeros; no parameters. A score that does not beat this
    control has not shown that its attention helps on that task (Wiegreffe & Pinter 2019)."""

    normalization = "row"
    is_control = True

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return query.new_zeros(query.shape[0], 1, query.shape[1], key.shape[1])
