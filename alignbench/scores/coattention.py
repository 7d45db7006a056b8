"""Parallel co-attention (Lu et al. 2016) and its max-pooled variant (attentive pooling).

Both share the affinity matrix ``C = tanh(Q W Kᵀ)``, a pairwise function of (q_i, k_j), and
the ``co`` normalisation: attention over both modalities, a query marginal and a key
marginal, whose outer product is the joint map. They differ in how the marginals arise:

- :class:`CoAttentionScore` learns them (Lu et al. 2016, eq. 4):
  ``H_v = tanh(W_v V + (W_q Q) C)``, ``a_v = softmax(w_hvᵀ H_v)`` and
  ``H_q = tanh(W_q Q + (W_v V) Cᵀ)``, ``a_q = softmax(w_hqᵀ H_q)``;
- :class:`CoAttentionMaxPoolScore` takes each position's strongest affinity to the other
  side (attentive pooling, dos Santos et al. 2016).

The sums over the other side (``(W_q Q) C``) and the max-pooling see the masks, so they are
done by :mod:`alignbench.attention`; a score only maps features and never sees a mask.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .base import AlignmentScore, LearnedTemperature, positive_int
from ..ranges import PositiveFloat, PositiveInt


class _Affinity(AlignmentScore):
    """``C = tanh(Q W Kᵀ)``; logits ``[B, 1, Lq, Lk]``."""

    normalization = "co"

    def __init__(self, q_dim: int, k_dim: int) -> None:
        super().__init__(q_dim, k_dim)
        self.weight = nn.Parameter(torch.empty(q_dim, k_dim))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(math.sqrt(q_dim * k_dim)))

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        return query @ self.weight

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return torch.tanh(query @ key.transpose(1, 2)).unsqueeze(1)


class CoAttentionScore(_Affinity):
    """Lu et al.'s parallel co-attention: affinity ``C = tanh(Q W_b Kᵀ)`` as logits
    ``[B, 1, Lq, Lk]``; learned marginals from :meth:`marginal_logits` with
    ``W_q [q_dim, hidden_dim]``, ``W_v [k_dim, hidden_dim]``, ``w_hq``, ``w_hv [hidden_dim]``.

    The marginal logits ``w_hᵀ H`` are unbounded (``w_h`` learns their scale), so the
    bounded-score rule does not apply; ``C`` enters them only through the pooled sums.
    """

    def __init__(self, q_dim: int, k_dim: int, hidden_dim: PositiveInt = 64) -> None:
        super().__init__(q_dim, k_dim)
        self.hidden_dim = positive_int(type(self).__name__, "hidden_dim", hidden_dim)
        self.query_map = nn.Linear(q_dim, hidden_dim, bias=False)  # W_q
        self.key_map = nn.Linear(k_dim, hidden_dim, bias=False)  # W_v
        self.query_vector = nn.Linear(hidden_dim, 1, bias=False)  # w_hq
        self.key_vector = nn.Linear(hidden_dim, 1, bias=False)  # w_hv

    def marginal_logits(
        self, query: torch.Tensor, key: torch.Tensor,
        pool_keys: Callable[[torch.Tensor], torch.Tensor], pool_queries: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        wq = self.query_map(query)  # [B, Lq, h]: W_q Q
        wv = self.key_map(key)  # [B, Lk, h]: W_v V
        h_q = torch.tanh(wq.unsqueeze(1) + pool_keys(wv))  # [B, 1, Lq, h]: W_q Q + (W_v V) Cᵀ
        h_v = torch.tanh(wv.unsqueeze(1) + pool_queries(wq))  # [B, 1, Lk, h]: W_v V + (W_q Q) C
        return self.query_vector(h_q).squeeze(-1), self.key_vector(h_v).squeeze(-1)


class CoAttentionMaxPoolScore(_Affinity):
    """Co-attention with max-pooled marginals (attentive pooling): logits ``s · tanh(Q W Kᵀ)``
    ``[B, 1, Lq, Lk]``; each key's marginal logit is its strongest logit to a valid query
    and vice versa. Bounded, so ``s`` is the bounded-score rule's learned temperature
    (:class:`LearnedTemperature`, initial value ``temperature`` from the YAML)."""

    bounded = True

    def __init__(self, q_dim: int, k_dim: int, temperature: PositiveFloat = 9.0) -> None:
        super().__init__(q_dim, k_dim)
        self.temperature = LearnedTemperature(type(self).__name__, temperature)

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.temperature(super().combine(query, key))
