"""Bilinear ("general") scores: ``qᵀWk``, ``kᵀWq``, ``qᵀ(Wk+b)`` and ``act(qᵀ(Wk+b))``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .base import AlignmentScore, LearnedTemperature
from ..ranges import PositiveFloat

ORIENTATIONS = ("qwk", "kwq")
ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "leaky_relu": F.leaky_relu,
}


class GeneralScore(AlignmentScore):
    """General (bilinear) score, logits ``[B, 1, Lq, Lk]``.

    ``orientation="qwk"``: ``qᵀ W k`` with ``W [q_dim, k_dim]`` (Luong et al. 2015).
    ``orientation="kwq"``: ``kᵀ W q`` with ``W [k_dim, q_dim]``, the transposed form the
    seed study (Cao et al. 2022) also evaluates.
    """

    normalization = "row"

    def __init__(self, q_dim: int, k_dim: int, orientation: str = "qwk") -> None:
        super().__init__(q_dim, k_dim)
        if orientation not in ORIENTATIONS:
            raise ValueError(
                f"{type(self).__name__}: unknown orientation {orientation!r}; valid: {', '.join(ORIENTATIONS)}"
            )
        self.orientation = orientation
        shape = (q_dim, k_dim) if orientation == "qwk" else (k_dim, q_dim)
        self.weight = nn.Parameter(torch.empty(*shape))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(math.sqrt(q_dim * k_dim)))

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        return query @ self.weight if self.orientation == "qwk" else query

    def prepare_key(self, key: torch.Tensor) -> torch.Tensor:
        return key if self.orientation == "qwk" else key @ self.weight

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return (query @ key.transpose(1, 2)).unsqueeze(1)


class BiasedGeneralScore(AlignmentScore):
    """Biased general score ``qᵀ(W k + b)`` with ``W [q_dim, k_dim]``, ``b [q_dim]``; ``[B, 1, Lq, Lk]``."""

    normalization = "row"

    def __init__(self, q_dim: int, k_dim: int) -> None:
        super().__init__(q_dim, k_dim)
        self.key_map = nn.Linear(k_dim, q_dim, bias=True)

    def prepare_key(self, key: torch.Tensor) -> torch.Tensor:
        return self.key_map(key)

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return (query @ key.transpose(1, 2)).unsqueeze(1)


class ActivatedGeneralScore(BiasedGeneralScore):
    """Activated general score ``s · act(qᵀ(W k + b))``; ``act`` ∈ tanh, relu, sigmoid, leaky_relu.

    tanh and sigmoid bound the logits, so the score follows the bounded-score rule: a
    learned temperature ``s`` (:class:`LearnedTemperature`, initial value ``temperature``
    from the YAML, the same for every bounded score); with relu/leaky_relu ``s`` is one
    more learned scalar.
    """

    bounded = True

    def __init__(self, q_dim: int, k_dim: int, act: str = "tanh", temperature: PositiveFloat = 9.0) -> None:
        super().__init__(q_dim, k_dim)
        if act not in ACTIVATIONS:
            raise ValueError(
                f"{type(self).__name__}: unknown act {act!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        self.act = act
        self.temperature = LearnedTemperature(type(self).__name__, temperature)

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.temperature(ACTIVATIONS[self.act](super().combine(query, key)))
