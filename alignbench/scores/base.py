"""Base class shared by every attention alignment score function.

A score maps a query sequence ``[B, Lq, Dq]`` and a key sequence ``[B, Lk, Dk]`` to raw
logits ``[B, H, Lq, Lk]``. It never masks, never applies a softmax and never pools over
queries or keys: every logit is a function of one (query_i, key_j) pair. How the logits
are normalised is declared by :attr:`AlignmentScore.normalization` and carried out by
:func:`alignbench.attention.attend`.
"""

from __future__ import annotations

import torch
from torch import nn

NORMALIZATIONS = ("row", "joint", "co")


class AlignmentScore(nn.Module):
    """Common checks and attributes of a score function.

    Subclasses set ``normalization`` (``row``: softmax over keys for each query;
    ``joint``: softmax over all query-key pairs; ``co``: co-attention's factorised map)
    and ``heads`` (number of maps H the score returns).

    A score is written in two stages so that cross-modal evaluation of every query
    sequence against every key sequence can reuse per-sequence work:
    :meth:`prepare_query` / :meth:`prepare_key` map each sequence on its own (e.g. ``W k``),
    and :meth:`combine` turns prepared pairs into logits. A subclass may instead override
    :meth:`score` alone; :func:`cross_logits` then falls back to pairing raw inputs.
    """

    normalization: str = "row"
    heads: int = 1

    def __init__(self, q_dim: int, k_dim: int) -> None:
        super().__init__()
        name = type(self).__name__
        for label, value in (("q_dim", q_dim), ("k_dim", k_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: {label} must be a positive int, got {value!r}")
        self.q_dim = q_dim
        self.k_dim = k_dim

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Return raw logits ``[B, H, Lq, Lk]`` for ``query [B, Lq, Dq]`` and ``key [B, Lk, Dk]``."""
        self._check_inputs(query, key)
        logits = self.score(query, key)
        return logits

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        """Per-sequence query work ``[B, Lq, Dq] -> [B, Lq, *]`` (identity by default)."""
        return query

    def prepare_key(self, key: torch.Tensor) -> torch.Tensor:
        """Per-sequence key work ``[B, Lk, Dk] -> [B, Lk, *]`` (identity by default)."""
        return key

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, H, Lq, Lk]`` from prepared ``query [B, Lq, *]`` and ``key [B, Lk, *]``."""
        raise NotImplementedError(f"{type(self).__name__} implements score() only")

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.combine(self.prepare_query(query), self.prepare_key(key))

    def _check_inputs(self, query: torch.Tensor, key: torch.Tensor) -> None:
        name = type(self).__name__
        if query.dim() != 3 or key.dim() != 3:
            raise ValueError(
                f"{name}: expected query [B, Lq, {self.q_dim}] and key [B, Lk, {self.k_dim}], "
                f"got query {tuple(query.shape)} and key {tuple(key.shape)}"
            )
        if query.shape[-1] != self.q_dim:
            raise ValueError(f"{name}: query feature size {query.shape[-1]} != q_dim={self.q_dim}")
        if key.shape[-1] != self.k_dim:
            raise ValueError(f"{name}: key feature size {key.shape[-1]} != k_dim={self.k_dim}")
        if query.shape[0] != key.shape[0]:
            raise ValueError(f"{name}: batch sizes differ: query {query.shape[0]} vs key {key.shape[0]}")

    def extra_repr(self) -> str:
        return f"q_dim={self.q_dim}, k_dim={self.k_dim}, normalization={self.normalization}, heads={self.heads}"


def positive_int(owner: str, label: str, value: object) -> int:
    """Validate a positive integer hyper-parameter, naming the score and the bad value."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: {label} must be a positive int, got {value!r}")
    return value


def cross_logits(score: nn.Module, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Logits of every query sequence against every key sequence.

    ``query [Nq, Lq, Dq]``, ``key [Nk, Lk, Dk]`` → ``[Nk, Nq, H, Lq, Lk]``. Scores built on
    :class:`AlignmentScore` prepare each sequence once and pair the prepared tensors;
    any other score module is called on the expanded raw pairs.
    """
    nq, nk = query.shape[0], key.shape[0]
    if isinstance(score, AlignmentScore):
        score._check_inputs(query[:1], key[:1])
        try:
            pq, pk = score.prepare_query(query), score.prepare_key(key)
            # every logit depends on one (query_i, key_j) pair only, so all sequences can be
            # paired at once as one long query and one long key sequence: one large product
            # instead of Nq·Nk small ones, and no Nk-fold copy of the queries
            lq, lk = pq.shape[1], pk.shape[1]
            logits = score.combine(pq.reshape(1, nq * lq, *pq.shape[2:]), pk.reshape(1, nk * lk, *pk.shape[2:]))
            h = logits.shape[1]
            return logits.view(h, nq, lq, nk, lk).permute(3, 1, 0, 2, 4).contiguous()
        except NotImplementedError:
            pass
    q = query.unsqueeze(0).expand(nk, *query.shape).reshape(nk * nq, *query.shape[1:])
    k = key.unsqueeze(1).expand(nk, nq, *key.shape[1:]).reshape(nk * nq, *key.shape[1:])
    logits = score(q, k)
    return logits.view(nk, nq, *logits.shape[1:])
