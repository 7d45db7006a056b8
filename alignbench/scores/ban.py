"""Low-rank bilinear attention and bilinear pooling (Kim, Jun & Zhang, NeurIPS 2018)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import AlignmentScore, positive_int
from ..ranges import DropoutRate, PositiveInt


class BANScore(AlignmentScore):
    """Bilinear attention maps for G glimpses; logits ``[B, G, Lq, Lk]``, normalisation ``joint``.

    ``logit_g[i, j] = p_gᵀ (ReLU(x_i U) ∘ ReLU(y_j V))`` with ``U [q_dim, rank]`` and
    ``V [k_dim, rank]`` shared by all glimpses and ``p_g [rank]`` per glimpse, i.e.
    ``((1·p_gᵀ) ∘ XᵀU) VᵀY``. A per-glimpse bias is left out: the joint softmax over all
    pairs of a glimpse cancels any constant, so it could never learn. Computed as ``(XU ∘ p_g) (YV)ᵀ``, so no
    ``[B, Lq, Lk, rank]`` tensor is ever built. ``rank`` defaults to ``3·k_dim`` (BAN's k=3).
    The softmax over all Lq×Lk pairs is done by :func:`alignbench.attention.attend`.
    """

    normalization = "joint"

    def __init__(
        self, q_dim: int, k_dim: int, glimpses: PositiveInt = 8, rank: PositiveInt | None = None,
        dropout: DropoutRate = 0.0
    ) -> None:
        super().__init__(q_dim, k_dim)
        owner = type(self).__name__
        self.heads = positive_int(owner, "glimpses", glimpses)
        self.rank = positive_int(owner, "rank", rank if rank is not None else 3 * k_dim)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1), got {dropout!r}")
        self.query_map = nn.Linear(q_dim, self.rank)
        self.key_map = nn.Linear(k_dim, self.rank)
        self.glimpse_vectors = nn.Parameter(torch.randn(self.heads, self.rank) / self.rank**0.5)
        self.dropout = nn.Dropout(float(dropout))

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        return self.dropout(F.relu(self.query_map(query)))  # [B, Lq, K]

    def prepare_key(self, key: torch.Tensor) -> torch.Tensor:
        return self.dropout(F.relu(self.key_map(key)))  # [B, Lk, K]

    def combine(self, xu: torch.Tensor, yv: torch.Tensor) -> torch.Tensor:
        b, lq, k = xu.shape
        # one bmm over the stacked glimpses: [B, G·Lq, K] @ [B, K, Lk]; broadcasting yv
        # over G instead would copy it G times
        weighted = (xu.unsqueeze(1) * self.glimpse_vectors[None, :, None, :]).reshape(b, self.heads * lq, k)
        return torch.bmm(weighted, yv.transpose(1, 2)).view(b, self.heads, lq, yv.shape[1])


    def score_heads(self, queries: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Glimpse ``g`` from its own queries ``queries[:, g]`` (``[B, G, Lq, Dq]``); logits
        ``[B, G, Lq, Lk]`` at the cost of one call (U and V stay shared)."""
        b, g, lq, d = queries.shape
        if g != self.heads:
            raise ValueError(f"{type(self).__name__}: {g} query sequences for {self.heads} glimpses")
        self._check_inputs(queries[:, 0], key)
        xu = self.prepare_query(queries.reshape(b, g * lq, d)).view(b, g, lq, self.rank)
        weighted = (xu * self.glimpse_vectors[None, :, None, :]).reshape(b, g * lq, self.rank)
        return torch.bmm(weighted, self.prepare_key(key).transpose(1, 2)).view(b, g, lq, key.shape[1])


class BilinearPooling(nn.Module):
    """BAN's pooling of two sequences with a given attention map.

    ``f'_k = (XᵀU')_kᵀ A (YᵀV')_k`` for ``x [B, Lq, x_dim]``, ``y [B, Lk, y_dim]`` and
    ``attention [B, Lq, Lk]``; returns ``[B, out_dim]``. With ``pool > 1`` the rank is
    ``out_dim·pool`` and groups of ``pool`` ranks are summed (BAN's k). Cost is two
    projections and one batched matmul, never a ``[B, Lq, Lk, rank]`` tensor.
    """

    def __init__(self, x_dim: int, y_dim: int, out_dim: int, pool: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        owner = type(self).__name__
        for label, value in (("x_dim", x_dim), ("y_dim", y_dim), ("out_dim", out_dim), ("pool", pool)):
            positive_int(owner, label, value)
        self.out_dim, self.pool = out_dim, pool
        self.x_map = nn.Linear(x_dim, out_dim * pool)
        self.y_map = nn.Linear(y_dim, out_dim * pool)
        self.dropout = nn.Dropout(float(dropout))

    def forward(self, x: torch.Tensor, y: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        if attention.shape != (x.shape[0], x.shape[1], y.shape[1]):
            raise ValueError(
                f"BilinearPooling: attention must be [B, Lq, Lk] = {(x.shape[0], x.shape[1], y.shape[1])}, "
                f"got {tuple(attention.shape)}"
            )
        xu = self.dropout(F.relu(self.x_map(x)))  # [B, Lq, K']
        yv = self.dropout(F.relu(self.y_map(y)))  # [B, Lk, K']
        pooled = (xu * (attention.to(yv.dtype) @ yv)).sum(dim=1)  # [B, K']
        if self.pool > 1:
            pooled = pooled.view(pooled.shape[0], self.out_dim, self.pool).sum(-1)
        return pooled
