"""Glimpse fusion: per-glimpse queries → score → attend → bilinear pooling → residual update (pure torch).

The score is the only part that differs between runs. Every glimpse reads the word
features through its own linear map (part of the shared model, the same for every score
and counted in its parameters), so every score can give G different maps, parameter-free
ones (``dot``, ``scaled_dot``, ``uniform`` aside) included. With a one-head score the fusion
builds one score module per glimpse (each with its own parameters); a multi-head score
(BAN) gives all G maps in one call from the G query sequences
(:meth:`~alignbench.scores.AlignmentScore.score_heads`) and must have ``heads == glimpses``.
Every map is normalised as its score declares (:func:`alignbench.attention.score_attention`),
made a distribution over (word, region) pairs by :func:`alignbench.attention.to_joint` and
pooled by BAN's bilinear pooling, so row, joint and co maps flow through the same code.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..attention import score_attention, to_joint
from ..scores import BilinearPooling


class GlimpseFusion(nn.Module):
    """Fuse word features ``q [B, Lq, h]`` with region features ``v [B, Lk, h]``.

    ``forward`` returns the updated word features ``[B, Lq, h]`` and the attention
    weights ``[B, G, Lq, Lk]`` (as normalised by the score's normalisation).
    """

    def __init__(self, score_factory: Callable[[], nn.Module], hidden_dim: int, glimpses: int,
                 pool: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        # the shared parts are built (and randomly initialised) before the score, so at a
        # given seed they start from the same weights whichever score is plugged in
        self.glimpses = glimpses
        self.pools = nn.ModuleList(
            [BilinearPooling(hidden_dim, hidden_dim, hidden_dim, pool=pool, dropout=dropout) for _ in range(glimpses)]
        )
        self.proj = nn.ModuleList([nn.Linear(hidden_dim, hidden_dim) for _ in range(glimpses)])
        self.glimpse_queries = nn.ModuleList([nn.Linear(hidden_dim, hidden_dim) for _ in range(glimpses)])
        first = score_factory()
        if first.heads == 1:
            self.scores = nn.ModuleList([first] + [score_factory() for _ in range(glimpses - 1)])
        elif first.heads == glimpses:
            self.scores = nn.ModuleList([first])
        else:
            raise ValueError(
                f"{type(first).__name__} gives {first.heads} maps but the model has glimpses={glimpses}; "
                f"set the score's glimpses to {glimpses} or use a one-head score"
            )
        self.normalization = first.normalization
        if any(s.normalization != self.normalization for s in self.scores):
            raise ValueError("GlimpseFusion: every glimpse's score must share one normalization")
        if first.heads > 1 and self.normalization == "co":
            raise ValueError(f"{type(first).__name__}: a multi-map co score is not supported; give it heads=1")

    def attention(self, q: torch.Tensor, v: torch.Tensor, q_mask: torch.Tensor | None,
                  v_mask: torch.Tensor | None) -> torch.Tensor:
        """Attention weights ``[B, G, Lq, Lk]`` computed from the input word features, map
        ``g`` from glimpse ``g``'s queries."""
        queries = [proj(q) for proj in self.glimpse_queries]
        try:
            if len(self.scores) == self.glimpses:
                return torch.cat([score_attention(score, qg, v, v_mask, q_mask)
                                  for score, qg in zip(self.scores, queries)], dim=1)
            logits = self.scores[0].score_heads(torch.stack(queries, 1), v)
            return score_attention(self.scores[0], queries[0], v, v_mask, q_mask, logits=logits)
        except ValueError as err:
            raise ValueError(f"{type(self.scores[0]).__name__}: {err}") from err

    def forward(self, q: torch.Tensor, v: torch.Tensor, q_mask: torch.Tensor | None = None,
                v_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.attention(q, v, q_mask, v_mask)
        joint = to_joint(weights, self.normalization, q_mask)
        x = q
        for g in range(self.glimpses):
            pooled = self.pools[g](x, v, joint[:, g])  # [B, h]
            x = x + self.proj[g](pooled).unsqueeze(1)
        return x, weights
