"""Parallel co-attention affinity (Lu et al. 2016)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import AlignmentScore


class CoAttentionScore(AlignmentScore):
    """Affinity ``s · tanh(Q W Kᵀ)``; logits ``[B, 1, Lq, Lk]``, normalisation ``co``.

    The affinity matrix ``C = tanh(Q W Kᵀ)`` of parallel co-attention is a pairwise
    function of (q_i, k_j). :func:`alignbench.attention.attend` turns it into attention
    over both modalities with the masks: each key's marginal logit is its strongest
    affinity to a valid query (and vice versa), each marginal is a masked softmax, and
    the joint map is the outer product of the two marginals (attentive pooling, dos
    Santos et al. 2016). ``tanh`` bounds the affinity to [-1, 1]; the learned scale
    ``s`` (initialised to ``temperature``) lets the marginals become sharp.

    ``temperature`` defaults to 1, i.e. Lu et al.'s unscaled affinity ``tanh(Q W Kᵀ)``:
    the marginals start soft (logits in [-1, 1]) and sharpen only as ``s`` and ``W``
    learn. A larger start makes the max-pooled marginals peak on one region and one
    word early; in text-to-image matching, where an outer-product map gives every word
    the same context, that loses most of a multi-object caption and hardest-negative
    training collapses (measured: experiments/retrieval_score_matrix/README.md).
    """

    normalization = "co"

    def __init__(self, q_dim: int, k_dim: int, temperature: float = 1.0) -> None:
        super().__init__(q_dim, k_dim)
        if not float(temperature) > 0:
            raise ValueError(f"{type(self).__name__}: temperature must be > 0, got {temperature!r}")
        self.weight = nn.Parameter(torch.empty(q_dim, k_dim))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(math.sqrt(q_dim * k_dim)))
        self.log_scale = nn.Parameter(torch.tensor(math.log(float(temperature))))

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        return query @ self.weight

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        affinity = torch.tanh(query @ key.transpose(1, 2))
        return (self.log_scale.exp().to(affinity.dtype) * affinity).unsqueeze(1)
